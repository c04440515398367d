/**
 * Link frames: the 1176-byte plaintext of a data datagram (PROTOCOL.md §3.4),
 * `type u8 ‖ length u16 ‖ payload ‖ zero`.
 */
import { assertNever } from '@deut/common';
import { LINK_FRAME_BYTES, LINK_FRAME_HEADER_BYTES, MAX_LINK_PAYLOAD } from './constants.js';
import { expectLength, expectZero, fail, readU16, writeU16 } from './checks.js';

/** Frame type byte of a KEEPALIVE (§3.4). */
export const LINK_FRAME_KEEPALIVE = 0;

/** Frame type byte of a PAYLOAD (§3.4). */
export const LINK_FRAME_PAYLOAD = 1;

/** An empty frame: key confirmation and liveness (§3.3). */
export interface KeepaliveFrame {
  readonly type: 'keepalive';
}

/** A frame carrying one link payload, opaque to the link layer (a tunnel message). */
export interface PayloadFrame {
  readonly type: 'payload';
  /** 0..MAX_LINK_PAYLOAD bytes. Decoded frames return a view that aliases the input. */
  readonly payload: Uint8Array;
}

/** The plaintext of a data datagram. */
export type LinkFrame = KeepaliveFrame | PayloadFrame;

/**
 * Writes `frame` as exactly LINK_FRAME_BYTES at `out[offset]`, zero padding included (the
 * buffer may hold an earlier frame), so the link layer can encrypt in place right after.
 * @param offset - where the frame starts in `out`; default 0
 * @throws ProtocolError `BAD_FIELD` for a payload over MAX_LINK_PAYLOAD; `BAD_LENGTH` if
 *   `out` is too short; DeutError (kind `bug`) for a type outside the union
 */
export function encodeLinkFrameInto(frame: LinkFrame, out: Uint8Array, offset = 0): void {
  if (!Number.isInteger(offset) || offset < 0 || out.length - offset < LINK_FRAME_BYTES) {
    fail('BAD_LENGTH', 'link frame: output buffer too short');
  }
  let length = 0;
  switch (frame.type) {
    case 'payload':
      if (!(frame.payload instanceof Uint8Array) || frame.payload.length > MAX_LINK_PAYLOAD) {
        fail('BAD_FIELD', `link frame: payload must be at most ${MAX_LINK_PAYLOAD} bytes`);
      }
      length = frame.payload.length;
      out[offset] = LINK_FRAME_PAYLOAD;
      out.set(frame.payload, offset + LINK_FRAME_HEADER_BYTES);
      break;
    case 'keepalive':
      out[offset] = LINK_FRAME_KEEPALIVE;
      break;
    default:
      assertNever(frame, 'link frame');
  }
  writeU16(out, offset + 1, length);
  out.fill(0, offset + LINK_FRAME_HEADER_BYTES + length, offset + LINK_FRAME_BYTES);
}

/**
 * Encodes `frame` as a new LINK_FRAME_BYTES array.
 * @throws ProtocolError as `encodeLinkFrameInto`
 */
export function encodeLinkFrame(frame: LinkFrame): Uint8Array {
  const out = new Uint8Array(LINK_FRAME_BYTES);
  encodeLinkFrameInto(frame, out);
  return out;
}

/**
 * Decodes and validates a link frame. A payload frame's `payload` is a subarray view of
 * `bytes`: copy it if `bytes` will be reused.
 * @throws ProtocolError `BAD_LENGTH` for a frame that is not LINK_FRAME_BYTES long, a
 *   length over MAX_LINK_PAYLOAD or a KEEPALIVE with a length; `BAD_TYPE`; `BAD_PADDING`
 */
export function decodeLinkFrame(bytes: Uint8Array): LinkFrame {
  expectLength(bytes, LINK_FRAME_BYTES, 'link frame');
  const type = bytes[0];
  const length = readU16(bytes, 1);
  if (type !== LINK_FRAME_KEEPALIVE && type !== LINK_FRAME_PAYLOAD) {
    fail('BAD_TYPE', `link frame: unknown type ${String(type)}`);
  }
  if (length > MAX_LINK_PAYLOAD) fail('BAD_LENGTH', `link frame: payload length ${length} over ${MAX_LINK_PAYLOAD}`);
  if (type === LINK_FRAME_KEEPALIVE && length !== 0) fail('BAD_LENGTH', 'link frame: keepalive with a payload');
  const end = LINK_FRAME_HEADER_BYTES + length;
  expectZero(bytes, end, LINK_FRAME_BYTES, 'link frame padding');
  if (type === LINK_FRAME_KEEPALIVE) return { type: 'keepalive' };
  return { type: 'payload', payload: bytes.subarray(LINK_FRAME_HEADER_BYTES, end) };
}

/**
 * Frames of the 1048-byte cell plaintext exchanged by master and endpoint (PROTOCOL.md
 * §6): datagram fragments, probes and exit refusals. A frame is followed by zeros up to
 * CELL_PLAINTEXT_BYTES; the zeros are checked, so a plaintext has one reading only.
 */
import { assertNever } from '@deut/common';
import type { UdpAddress } from '@deut/common';
import { CELL_PLAINTEXT_BYTES, DATAGRAM_FRAME_HEADER_BYTES, MAX_FRAGMENTS, MAX_FRAGMENT_DATA, PROBE_ID_BYTES } from './constants.js';
import { readAddress, writeAddress } from './address.js';
import { expectBytes, expectInt, expectLength, expectZero, fail, readU16, readU32, writeU16, writeU32 } from './checks.js';

/** Type byte of each cell frame (§6). */
export const CELL_FRAME_TYPES = {
  datagram: 0x01,
  probe: 0x02,
  'probe-reply': 0x03,
  'exit-refused': 0x04,
} as const;

/** Name of a cell frame type. */
export type CellFrameType = keyof typeof CELL_FRAME_TYPES;

/** One fragment of a UDP datagram: to `address` outbound, from `address` inbound (§6). */
export interface DatagramFrame {
  readonly type: 'datagram';
  /** Sender-chosen u32 that groups the fragments of one datagram. */
  readonly datagramId: number;
  /** Position of this fragment, 0..count−1. */
  readonly index: number;
  /** Number of fragments of the datagram, 1..MAX_FRAGMENTS. */
  readonly count: number;
  /** Destination (outbound) or source (inbound) of the datagram. */
  readonly address: UdpAddress;
  /** 0..MAX_FRAGMENT_DATA bytes. Decoding returns a view that aliases the input. */
  readonly data: Uint8Array;
}

/** A liveness probe sent through a tunnel; the far end answers with a PROBE_REPLY. */
export interface ProbeFrame {
  readonly type: 'probe';
  /** PROBE_ID_BYTES chosen by the prober (a view when decoded). */
  readonly probeId: Uint8Array;
}

/** The answer to a probe, echoing its id. */
export interface ProbeReplyFrame {
  readonly type: 'probe-reply';
  /** PROBE_ID_BYTES copied from the probe (a view when decoded). */
  readonly probeId: Uint8Array;
}

/** The endpoint refused to send a datagram (exit policy, §5.5). */
export interface ExitRefusedFrame {
  readonly type: 'exit-refused';
  /** The refused datagram's id. */
  readonly datagramId: number;
  /** u8; 1 exit policy, 2 rate limit, 3 send failed (PROTOCOL.md §6); other values are carried as is. */
  readonly reason: number;
}

/** Every frame of the cell plaintext. */
export type CellFrame = DatagramFrame | ProbeFrame | ProbeReplyFrame | ExitRefusedFrame;

/** Offsets of the DATAGRAM frame fields after the type byte. */
const DG_ID = 1;
const DG_INDEX = 5;
const DG_COUNT = 6;
const DG_LENGTH = 7;
const DG_ADDRESS = 9;
/** Offset of the fields after the type byte in PROBE, PROBE_REPLY and EXIT_REFUSED. */
const BODY = 1;

/** Requires index < count ≤ MAX_FRAGMENTS. */
function expectFragment(index: unknown, count: unknown): void {
  expectInt(count, 1, MAX_FRAGMENTS, 'datagram frame count');
  expectInt(index, 0, count - 1, 'datagram frame index');
}

/**
 * Writes `frame` as exactly CELL_PLAINTEXT_BYTES at `out[0]`, zeros included (the buffer
 * may hold an earlier plaintext), without allocating for probes and refusals.
 * @throws ProtocolError `BAD_LENGTH` if `out` is too short; `BAD_FIELD` or `BAD_ADDRESS`
 *   for a field out of range; DeutError (kind `bug`) for a type outside the union
 */
export function encodeCellFrameInto(frame: CellFrame, out: Uint8Array): void {
  if (out.length < CELL_PLAINTEXT_BYTES) fail('BAD_LENGTH', 'cell frame: output buffer too short');
  let end: number;
  switch (frame.type) {
    case 'datagram': {
      expectInt(frame.datagramId, 0, 0xffffffff, 'datagram frame id');
      expectFragment(frame.index, frame.count);
      if (!(frame.data instanceof Uint8Array) || frame.data.length > MAX_FRAGMENT_DATA) {
        fail('BAD_FIELD', `datagram frame: data must be at most ${MAX_FRAGMENT_DATA} bytes`);
      }
      writeAddress(out, DG_ADDRESS, frame.address);
      writeU32(out, DG_ID, frame.datagramId);
      out[DG_INDEX] = frame.index;
      out[DG_COUNT] = frame.count;
      writeU16(out, DG_LENGTH, frame.data.length);
      out.set(frame.data, DATAGRAM_FRAME_HEADER_BYTES);
      end = DATAGRAM_FRAME_HEADER_BYTES + frame.data.length;
      break;
    }
    case 'probe':
    case 'probe-reply':
      expectBytes(frame.probeId, PROBE_ID_BYTES, `${frame.type} frame id`);
      out.set(frame.probeId, BODY);
      end = BODY + PROBE_ID_BYTES;
      break;
    case 'exit-refused':
      expectInt(frame.datagramId, 0, 0xffffffff, 'exit-refused frame datagram id');
      expectInt(frame.reason, 0, 255, 'exit-refused frame reason');
      writeU32(out, BODY, frame.datagramId);
      out[BODY + 4] = frame.reason;
      end = BODY + 5;
      break;
    default:
      return assertNever(frame, 'cell frame');
  }
  out[0] = CELL_FRAME_TYPES[frame.type];
  out.fill(0, end, CELL_PLAINTEXT_BYTES);
}

/**
 * Encodes `frame` as a new CELL_PLAINTEXT_BYTES array.
 * @throws ProtocolError as `encodeCellFrameInto`
 */
export function encodeCellFrame(frame: CellFrame): Uint8Array {
  const out = new Uint8Array(CELL_PLAINTEXT_BYTES);
  encodeCellFrameInto(frame, out);
  return out;
}

/**
 * Decodes and validates a cell plaintext. `data` and `probeId` are subarray views of
 * `bytes`: copy them if `bytes` is reused.
 * @throws ProtocolError `BAD_LENGTH` for a plaintext that is not CELL_PLAINTEXT_BYTES or a
 *   fragment over MAX_FRAGMENT_DATA; `BAD_TYPE`; `BAD_FIELD` unless index < count ≤
 *   MAX_FRAGMENTS; `BAD_ADDRESS`; `BAD_PADDING` for non-zero bytes after the frame
 */
export function decodeCellFrame(bytes: Uint8Array): CellFrame {
  expectLength(bytes, CELL_PLAINTEXT_BYTES, 'cell plaintext');
  switch (bytes[0]) {
    case CELL_FRAME_TYPES.datagram: {
      const index = bytes[DG_INDEX] ?? 0;
      const count = bytes[DG_COUNT] ?? 0;
      const length = readU16(bytes, DG_LENGTH);
      expectFragment(index, count);
      if (length > MAX_FRAGMENT_DATA) fail('BAD_LENGTH', `datagram frame: ${length} data bytes, over ${MAX_FRAGMENT_DATA}`);
      const address = readAddress(bytes, DG_ADDRESS);
      const end = DATAGRAM_FRAME_HEADER_BYTES + length;
      expectZero(bytes, end, CELL_PLAINTEXT_BYTES, 'datagram frame tail');
      const datagramId = readU32(bytes, DG_ID);
      return { type: 'datagram', datagramId, index, count, address, data: bytes.subarray(DATAGRAM_FRAME_HEADER_BYTES, end) };
    }
    case CELL_FRAME_TYPES.probe:
    case CELL_FRAME_TYPES['probe-reply']: {
      expectZero(bytes, BODY + PROBE_ID_BYTES, CELL_PLAINTEXT_BYTES, 'probe frame tail');
      const probeId = bytes.subarray(BODY, BODY + PROBE_ID_BYTES);
      return bytes[0] === CELL_FRAME_TYPES.probe ? { type: 'probe', probeId } : { type: 'probe-reply', probeId };
    }
    case CELL_FRAME_TYPES['exit-refused']:
      expectZero(bytes, BODY + 5, CELL_PLAINTEXT_BYTES, 'exit-refused frame tail');
      return { type: 'exit-refused', datagramId: readU32(bytes, BODY), reason: bytes[BODY + 4] ?? 0 };
    default:
      return fail('BAD_TYPE', `cell frame: unknown type ${String(bytes[0])}`);
  }
}

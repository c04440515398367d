/**
 * The message envelope of master-to-master messaging (PROTOCOL.md §7):
 * `version u8 ‖ kind u8 ‖ messageId 16 ‖ replyCount u8 ‖ paddingLength u16 ‖
 * replyTo 19 × replyCount ‖ zero × paddingLength ‖ payload`, at most MAX_ENVELOPE_BYTES in
 * all, since it travels as one datagram.
 */
import type { UdpAddress } from '@deut/common';
import {
  ADDRESS_BYTES,
  ENVELOPE_HEADER_BYTES,
  MAX_ENVELOPE_BYTES,
  MAX_REPLY_TO,
  MESSAGE_ID_BYTES,
  PROTOCOL_VERSION,
  TOO_LARGE_PAYLOAD_BYTES,
} from './constants.js';
import { readAddress, writeAddress } from './address.js';
import { expectBytes, expectInt, expectZero, fail, readU16, writeU16 } from './checks.js';

/** Envelope version byte written and accepted (§7). */
export const ENVELOPE_VERSION = PROTOCOL_VERSION;

/**
 * Kind byte of each envelope kind (§7). `too-large` answers a request whose response does
 * not fit in the bytes of the request copy: its payload is the size to pad the request to.
 */
export const ENVELOPE_KINDS = { request: 1, response: 2, oneway: 3, 'too-large': 4 } as const;

/** What an envelope is: a request, its response, a one-way message, or "pad your request". */
export type EnvelopeKind = keyof typeof ENVELOPE_KINDS;

/** A message between masters (§7). */
export interface Envelope {
  readonly kind: EnvelopeKind;
  /** MESSAGE_ID_BYTES of randomness from the requester; a response repeats it (a view when decoded). */
  readonly messageId: Uint8Array;
  /** Up to MAX_REPLY_TO of the sender's endpoint addresses for the response. */
  readonly replyTo: readonly UdpAddress[];
  /**
   * Zero bytes a request carries so that its response fits in it (§7); only requests pad.
   * Absent when there is none (decoding leaves it out for 0).
   */
  readonly padding?: number;
  /** Application bytes. Decoding returns a view that aliases the input. */
  readonly payload: Uint8Array;
}

/** Offsets of the fixed header fields. */
const KIND = 1;
const MESSAGE_ID = 2;
const REPLY_COUNT = MESSAGE_ID + MESSAGE_ID_BYTES;
const PADDING_LENGTH = REPLY_COUNT + 1;

/** Bytes of an envelope whose fields are all empty but `payloadBytes`, with `replyCount` addresses. */
export function envelopeBytes(replyCount: number, payloadBytes: number, padding = 0): number {
  return ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * replyCount + padding + payloadBytes;
}

/** Bytes of every TOO_LARGE envelope. */
export const TOO_LARGE_ENVELOPE_BYTES = envelopeBytes(0, TOO_LARGE_PAYLOAD_BYTES);

/**
 * Encodes an envelope.
 * @throws ProtocolError `BAD_TYPE` for an unknown kind; `BAD_FIELD` for a message id that
 *   is not 16 bytes, padding on a kind other than request, or a malformed TOO_LARGE;
 *   `TOO_MANY` for more than MAX_REPLY_TO addresses; `BAD_ADDRESS`; `BAD_LENGTH` if the
 *   whole envelope would exceed MAX_ENVELOPE_BYTES
 */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  const kind = Object.hasOwn(ENVELOPE_KINDS, envelope.kind) ? ENVELOPE_KINDS[envelope.kind] : undefined;
  if (kind === undefined) fail('BAD_TYPE', 'envelope: unknown kind');
  expectBytes(envelope.messageId, MESSAGE_ID_BYTES, 'envelope message id');
  const { replyTo, payload } = envelope;
  const padding = envelope.padding ?? 0;
  if (!Array.isArray(replyTo)) fail('BAD_FIELD', 'envelope: replyTo is not an array');
  if (replyTo.length > MAX_REPLY_TO) fail('TOO_MANY', `envelope: ${replyTo.length} reply addresses, at most ${MAX_REPLY_TO}`);
  if (!(payload instanceof Uint8Array)) fail('BAD_FIELD', 'envelope: payload is not bytes');
  expectInt(padding, 0, kind === ENVELOPE_KINDS.request ? MAX_ENVELOPE_BYTES : 0, 'envelope padding');
  const header = ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * replyTo.length;
  if (header + padding + payload.length > MAX_ENVELOPE_BYTES) fail('BAD_LENGTH', `envelope: over ${MAX_ENVELOPE_BYTES} bytes`);
  const out = new Uint8Array(header + padding + payload.length);
  out[0] = ENVELOPE_VERSION;
  out[KIND] = kind;
  out.set(envelope.messageId, MESSAGE_ID);
  out[REPLY_COUNT] = replyTo.length;
  writeU16(out, PADDING_LENGTH, padding);
  replyTo.forEach((address: UdpAddress, i) => writeAddress(out, ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * i, address));
  out.set(payload, header + padding);
  if (kind === ENVELOPE_KINDS['too-large']) checkTooLarge(replyTo.length, payload);
  return out;
}

/** The kind named by `code`, or undefined for an unknown byte. */
function kindOfCode(code: number | undefined): EnvelopeKind | undefined {
  switch (code) {
    case ENVELOPE_KINDS.request:
      return 'request';
    case ENVELOPE_KINDS.response:
      return 'response';
    case ENVELOPE_KINDS.oneway:
      return 'oneway';
    case ENVELOPE_KINDS['too-large']:
      return 'too-large';
    default:
      return undefined;
  }
}

/**
 * A TOO_LARGE names no reply addresses and exactly a u16 size that a request could be
 * padded to: at least the smallest envelope, at most MAX_ENVELOPE_BYTES.
 */
function checkTooLarge(replyCount: number, payload: Uint8Array): void {
  if (replyCount !== 0) fail('BAD_FIELD', 'envelope: a too-large answer names reply addresses');
  if (payload.length !== TOO_LARGE_PAYLOAD_BYTES) fail('BAD_FIELD', `envelope: a too-large payload of ${payload.length} bytes`);
  expectInt(readU16(payload, 0), ENVELOPE_HEADER_BYTES, MAX_ENVELOPE_BYTES, 'envelope too-large size');
}

/** A TOO_LARGE envelope asking the requester of `messageId` to pad its request to `size` bytes. */
export function encodeTooLarge(messageId: Uint8Array, size: number): Uint8Array {
  const payload = new Uint8Array(TOO_LARGE_PAYLOAD_BYTES);
  expectInt(size, ENVELOPE_HEADER_BYTES, MAX_ENVELOPE_BYTES, 'envelope too-large size');
  writeU16(payload, 0, size);
  return encodeEnvelope({ kind: 'too-large', messageId, replyTo: [], payload });
}

/** The size a decoded TOO_LARGE envelope asks for (decoding checked it). */
export function tooLargeSize(envelope: Envelope): number {
  return readU16(envelope.payload, 0);
}

/**
 * Decodes and validates an envelope. `messageId` and `payload` are subarray views of
 * `bytes`: copy them if `bytes` is reused.
 * @throws ProtocolError `BAD_LENGTH` for an envelope shorter than its header and padding
 *   or longer than MAX_ENVELOPE_BYTES; `BAD_VERSION`; `BAD_TYPE` for an unknown kind;
 *   `TOO_MANY` for a replyCount over MAX_REPLY_TO; `BAD_ADDRESS`; `BAD_FIELD` for padding
 *   outside a request or a malformed TOO_LARGE; `BAD_PADDING` for a non-zero padding byte
 */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length < ENVELOPE_HEADER_BYTES) fail('BAD_LENGTH', `envelope: ${bytes.length} bytes, shorter than its header`);
  if (bytes.length > MAX_ENVELOPE_BYTES) fail('BAD_LENGTH', `envelope: ${bytes.length} bytes, over ${MAX_ENVELOPE_BYTES}`);
  if (bytes[0] !== ENVELOPE_VERSION) fail('BAD_VERSION', `envelope: version ${String(bytes[0])}`);
  const kind = kindOfCode(bytes[KIND]);
  if (kind === undefined) fail('BAD_TYPE', `envelope: unknown kind ${String(bytes[KIND])}`);
  const replyCount = bytes[REPLY_COUNT] ?? 0;
  if (replyCount > MAX_REPLY_TO) fail('TOO_MANY', `envelope: ${replyCount} reply addresses, at most ${MAX_REPLY_TO}`);
  const padding = readU16(bytes, PADDING_LENGTH);
  if (padding !== 0 && kind !== 'request') fail('BAD_FIELD', `envelope: padding on a ${kind}`);
  const header = ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * replyCount;
  if (bytes.length < header + padding) fail('BAD_LENGTH', 'envelope: shorter than its reply addresses and padding');
  const replyTo: UdpAddress[] = [];
  for (let i = 0; i < replyCount; i++) replyTo.push(readAddress(bytes, ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * i));
  expectZero(bytes, header, header + padding, 'envelope padding');
  const payload = bytes.subarray(header + padding);
  if (kind === 'too-large') checkTooLarge(replyCount, payload);
  return {
    kind,
    messageId: bytes.subarray(MESSAGE_ID, MESSAGE_ID + MESSAGE_ID_BYTES),
    replyTo,
    ...(padding > 0 ? { padding } : {}),
    payload,
  };
}

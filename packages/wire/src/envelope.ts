/**
 * The message envelope of master-to-master messaging (PROTOCOL.md §7):
 * `version u8 ‖ kind u8 ‖ messageId 16 ‖ replyCount u8 ‖ replyTo 19 × replyCount ‖ payload`,
 * at most MAX_ENVELOPE_BYTES in all, since it travels as one datagram.
 */
import type { UdpAddress } from '@deut/common';
import { ADDRESS_BYTES, ENVELOPE_HEADER_BYTES, MAX_ENVELOPE_BYTES, MAX_REPLY_TO, MESSAGE_ID_BYTES, PROTOCOL_VERSION } from './constants.js';
import { readAddress, writeAddress } from './address.js';
import { expectBytes, fail } from './checks.js';

/** Envelope version byte written and accepted (§7). */
export const ENVELOPE_VERSION = PROTOCOL_VERSION;

/** Kind byte of each envelope kind (§7). */
export const ENVELOPE_KINDS = { request: 1, response: 2, oneway: 3 } as const;

/** What an envelope is: a request expecting a response, that response, or a one-way message. */
export type EnvelopeKind = keyof typeof ENVELOPE_KINDS;

/** A message between masters (§7). */
export interface Envelope {
  readonly kind: EnvelopeKind;
  /** MESSAGE_ID_BYTES of randomness from the requester; a response repeats it (a view when decoded). */
  readonly messageId: Uint8Array;
  /** Up to MAX_REPLY_TO of the sender's endpoint addresses for the response. */
  readonly replyTo: readonly UdpAddress[];
  /** Application bytes. Decoding returns a view that aliases the input. */
  readonly payload: Uint8Array;
}

/** Offsets of the fixed header fields. */
const KIND = 1;
const MESSAGE_ID = 2;
const REPLY_COUNT = MESSAGE_ID + MESSAGE_ID_BYTES;

/**
 * Encodes an envelope.
 * @throws ProtocolError `BAD_TYPE` for an unknown kind; `BAD_FIELD` for a message id that
 *   is not 16 bytes; `TOO_MANY` for more than MAX_REPLY_TO addresses; `BAD_ADDRESS`;
 *   `BAD_LENGTH` if the whole envelope would exceed MAX_ENVELOPE_BYTES
 */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  const kind = Object.hasOwn(ENVELOPE_KINDS, envelope.kind) ? ENVELOPE_KINDS[envelope.kind] : undefined;
  if (kind === undefined) fail('BAD_TYPE', 'envelope: unknown kind');
  expectBytes(envelope.messageId, MESSAGE_ID_BYTES, 'envelope message id');
  const { replyTo, payload } = envelope;
  if (!Array.isArray(replyTo)) fail('BAD_FIELD', 'envelope: replyTo is not an array');
  if (replyTo.length > MAX_REPLY_TO) fail('TOO_MANY', `envelope: ${replyTo.length} reply addresses, at most ${MAX_REPLY_TO}`);
  if (!(payload instanceof Uint8Array)) fail('BAD_FIELD', 'envelope: payload is not bytes');
  const header = ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * replyTo.length;
  if (header + payload.length > MAX_ENVELOPE_BYTES) fail('BAD_LENGTH', `envelope: over ${MAX_ENVELOPE_BYTES} bytes`);
  const out = new Uint8Array(header + payload.length);
  out[0] = ENVELOPE_VERSION;
  out[KIND] = kind;
  out.set(envelope.messageId, MESSAGE_ID);
  out[REPLY_COUNT] = replyTo.length;
  replyTo.forEach((address: UdpAddress, i) => writeAddress(out, ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * i, address));
  out.set(payload, header);
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
    default:
      return undefined;
  }
}

/**
 * Decodes and validates an envelope. `messageId` and `payload` are subarray views of
 * `bytes`: copy them if `bytes` is reused.
 * @throws ProtocolError `BAD_LENGTH` for an envelope shorter than its header or longer
 *   than MAX_ENVELOPE_BYTES; `BAD_VERSION`; `BAD_TYPE` for an unknown kind; `TOO_MANY`
 *   for a replyCount over MAX_REPLY_TO; `BAD_ADDRESS`
 */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (bytes.length < ENVELOPE_HEADER_BYTES) fail('BAD_LENGTH', `envelope: ${bytes.length} bytes, shorter than its header`);
  if (bytes.length > MAX_ENVELOPE_BYTES) fail('BAD_LENGTH', `envelope: ${bytes.length} bytes, over ${MAX_ENVELOPE_BYTES}`);
  if (bytes[0] !== ENVELOPE_VERSION) fail('BAD_VERSION', `envelope: version ${String(bytes[0])}`);
  const kind = kindOfCode(bytes[KIND]);
  if (kind === undefined) fail('BAD_TYPE', `envelope: unknown kind ${String(bytes[KIND])}`);
  const replyCount = bytes[REPLY_COUNT] ?? 0;
  if (replyCount > MAX_REPLY_TO) fail('TOO_MANY', `envelope: ${replyCount} reply addresses, at most ${MAX_REPLY_TO}`);
  const header = ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * replyCount;
  if (bytes.length < header) fail('BAD_LENGTH', 'envelope: shorter than its reply addresses');
  const replyTo: UdpAddress[] = [];
  for (let i = 0; i < replyCount; i++) replyTo.push(readAddress(bytes, ENVELOPE_HEADER_BYTES + ADDRESS_BYTES * i));
  return {
    kind,
    messageId: bytes.subarray(MESSAGE_ID, MESSAGE_ID + MESSAGE_ID_BYTES),
    replyTo,
    payload: bytes.subarray(header),
  };
}

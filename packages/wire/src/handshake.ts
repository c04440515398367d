/**
 * The 32-byte link handshake payload carried encrypted in Noise XX msg2 and msg3
 * (PROTOCOL.md §3.3; version negotiation §9).
 */
import { HANDSHAKE_PAYLOAD_BYTES } from './constants.js';
import { expectInt, expectLength, expectZero, fail } from './checks.js';

/** Flag bit 0: the sender's static key is ephemeral and must not be pinned (§3.7). */
const FLAG_EPHEMERAL_IDENTITY = 0x01;

/** What a node states about itself in its handshake payload. */
export interface HandshakePayload {
  /** Lowest link protocol version the sender speaks, 1..255. */
  readonly minVersion: number;
  /** Highest link protocol version the sender speaks, minVersion..255. */
  readonly maxVersion: number;
  /** The sender regenerates its identity at every start: do not pin its key (§3.7). */
  readonly ephemeralIdentity: boolean;
}

/**
 * Encodes a handshake payload as 32 bytes: `minVersion ‖ maxVersion ‖ flags ‖ zero 29`.
 * @throws ProtocolError `BAD_FIELD` for versions out of range or min > max
 */
export function encodeHandshakePayload(payload: HandshakePayload): Uint8Array {
  const { minVersion, maxVersion, ephemeralIdentity } = payload;
  expectInt(minVersion, 1, 255, 'handshake minVersion');
  expectInt(maxVersion, minVersion, 255, 'handshake maxVersion');
  if (typeof ephemeralIdentity !== 'boolean') fail('BAD_FIELD', 'handshake ephemeralIdentity: not a boolean');
  const out = new Uint8Array(HANDSHAKE_PAYLOAD_BYTES);
  out[0] = minVersion;
  out[1] = maxVersion;
  out[2] = ephemeralIdentity ? FLAG_EPHEMERAL_IDENTITY : 0;
  return out;
}

/**
 * Decodes and validates a 32-byte handshake payload.
 * @throws ProtocolError `BAD_LENGTH`; `BAD_FIELD` for minVersion 0, min > max or an
 *   unknown flag bit; `BAD_PADDING` for a non-zero reserved byte
 */
export function decodeHandshakePayload(bytes: Uint8Array): HandshakePayload {
  expectLength(bytes, HANDSHAKE_PAYLOAD_BYTES, 'handshake payload');
  const minVersion = bytes[0];
  const maxVersion = bytes[1];
  const flags = bytes[2] ?? 0;
  expectInt(minVersion, 1, 255, 'handshake minVersion');
  expectInt(maxVersion, minVersion, 255, 'handshake maxVersion');
  if ((flags & ~FLAG_EPHEMERAL_IDENTITY) !== 0) fail('BAD_FIELD', 'handshake payload: unknown flag bits');
  expectZero(bytes, 3, HANDSHAKE_PAYLOAD_BYTES, 'handshake payload reserved bytes');
  return { minVersion, maxVersion, ephemeralIdentity: flags !== 0 };
}

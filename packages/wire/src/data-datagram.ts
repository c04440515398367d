/**
 * Where things sit in a link data datagram (docs/PROTOCOL.md §3.4): `masked counter 8 ‖
 * ciphertext of one link frame 1176 ‖ tag 16`, the counter a little-endian u64 masked by
 * header protection keyed from a 16-byte sample that starts the ciphertext. Offsets, views
 * and the counter's byte order only: sealing and masking are @deut/link's, with @deut/crypto.
 * Every helper here runs once per datagram: none allocates more than the view it returns.
 */
import { LINK_COUNTER_BYTES, LINK_FRAME_BYTES } from './constants.js';

/** Bytes of ciphertext that seed the counter's header-protection mask (§3.4). */
export const LINK_SAMPLE_BYTES = 16;

/** Where the header-protection sample ends (24): it starts right after the counter (§3.4). */
export const LINK_SAMPLE_END = LINK_COUNTER_BYTES + LINK_SAMPLE_BYTES;

const TWO_32 = 0x1_0000_0000;
/** High words from here on make a counter of 2^53 or more, which no session reaches. */
const UNSAFE_HIGH = 0x20_0000;

/** Writes `counter` (0 ≤ counter < 2^53) as LE64 at `out[0..8)`, the counter field. */
export function writeLinkCounter(out: Uint8Array, counter: number): void {
  const low = counter % TWO_32;
  const high = Math.floor(counter / TWO_32);
  out[0] = low & 0xff;
  out[1] = (low >>> 8) & 0xff;
  out[2] = (low >>> 16) & 0xff;
  out[3] = low >>> 24;
  out[4] = high & 0xff;
  out[5] = (high >>> 8) & 0xff;
  out[6] = (high >>> 16) & 0xff;
  out[7] = high >>> 24;
}

/**
 * Reads the LE64 counter at `header[0..8)` (already unmasked), or -1 for a value of 2^53 or
 * more: not an exact JS number, so the datagram belongs to no session of ours.
 */
export function readLinkCounter(header: Uint8Array): number {
  const high = (header[4]! | (header[5]! << 8) | (header[6]! << 16) | (header[7]! << 24)) >>> 0;
  if (high >= UNSAFE_HIGH) return -1;
  const low = (header[0]! | (header[1]! << 8) | (header[2]! << 16) | (header[3]! << 24)) >>> 0;
  return high * TWO_32 + low;
}

/** The (masked) counter field. */
export function linkCounterField(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(0, LINK_COUNTER_BYTES);
}

/** The header-protection sample: the first ciphertext bytes. */
export function linkSample(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(LINK_COUNTER_BYTES, LINK_SAMPLE_END);
}

/** Ciphertext and tag: everything after the counter. */
export function linkCiphertext(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(LINK_COUNTER_BYTES);
}

/** Where the link frame sits once the datagram is decrypted in place. */
export function linkFrameOf(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(LINK_COUNTER_BYTES, LINK_COUNTER_BYTES + LINK_FRAME_BYTES);
}

/**
 * Header protection for link data datagrams (PROTOCOL.md §3.4), after QUIC (RFC 9001
 * §5.4.4): the 8-byte counter is XORed with ChaCha20 keystream keyed by a separate key and
 * seeded by a sample of the ciphertext, so the counter reads as random bytes on the wire.
 */
import { sodium } from './sodium.js';

/** Bytes of ciphertext used as the sample. */
export const HEADER_SAMPLE_BYTES = 16;
/** Bytes of header protected. */
export const HEADER_MASK_BYTES = 8;

const ZEROS = new Uint8Array(HEADER_MASK_BYTES);

/**
 * The 8-byte mask for `sample` (16 bytes of ciphertext): ChaCha20-IETF with
 * block counter = LE32(sample[0..4]) with its top bit cleared, and nonce = sample[4..16].
 * QUIC uses all 32 counter bits; libsodium's JS binding accepts only counters below 2^31,
 * so one sample bit is ignored. The mask remains a PRF of 127 ciphertext bits.
 */
export function headerMask(hpKey: Uint8Array, sample: Uint8Array): Uint8Array {
  if (sample.length !== HEADER_SAMPLE_BYTES) throw new RangeError('header sample must be 16 bytes');
  const counter = (sample[0]! | (sample[1]! << 8) | (sample[2]! << 16) | ((sample[3]! & 0x7f) << 24)) >>> 0;
  return sodium().crypto_stream_chacha20_ietf_xor_ic(ZEROS, sample.subarray(4, 16), counter, hpKey);
}

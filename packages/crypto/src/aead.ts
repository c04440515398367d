/**
 * AEAD wrappers over libsodium: XChaCha20-Poly1305-IETF with random 24-byte nonces, and
 * ChaCha20-Poly1305-IETF (RFC 8439) with the Noise nonce layout, 4 zero bytes followed by
 * a little-endian 64-bit counter (Noise spec rev. 34, section 12.3).
 *
 * Open functions return `null` when authentication fails: ciphertext comes from the
 * network, so failing to open it is an expected outcome, not an exception. They throw only
 * for a key or nonce of the wrong size, which is always our own bug.
 */
import { cryptoError } from './errors.js';
import { reportNonceUse } from './nonce-uses.js';
import { sodium } from './sodium.js';

/** Key length of both AEADs, in bytes. */
export const AEAD_KEY_BYTES = 32;

/** Poly1305 tag length appended to every ciphertext, in bytes. */
export const AEAD_TAG_BYTES = 16;

/** XChaCha20-Poly1305 nonce length, in bytes. */
export const XCHACHA_NONCE_BYTES = 24;

/** ChaCha20-Poly1305-IETF nonce length, in bytes. */
export const CHACHA_NONCE_BYTES = 12;

/** Largest counter {@link chachaSeal} accepts: the largest exactly representable JS integer. */
export const MAX_CHACHA_COUNTER = Number.MAX_SAFE_INTEGER;

const EMPTY = new Uint8Array(0);

function checkKey(key: Uint8Array): void {
  if (key.length !== AEAD_KEY_BYTES) {
    throw cryptoError('BAD_KEY_LENGTH', `AEAD key must be ${AEAD_KEY_BYTES} bytes, got ${key.length}`);
  }
}

function checkXNonce(nonce: Uint8Array): void {
  if (nonce.length !== XCHACHA_NONCE_BYTES) {
    throw cryptoError('BAD_NONCE_LENGTH', `XChaCha20 nonce must be ${XCHACHA_NONCE_BYTES} bytes, got ${nonce.length}`);
  }
}

/**
 * The Noise nonce for ChaChaPoly: 32 zero bits, then the counter as a little-endian
 * 64-bit integer.
 * @throws DeutError `BAD_NONCE` if `counter` is not an integer in 0..2^53-1
 */
export function chachaNonce(counter: number): Uint8Array {
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw cryptoError('BAD_NONCE', `ChaCha20 counter must be an integer in 0..2^53-1, got ${String(counter)}`);
  }
  const nonce = new Uint8Array(CHACHA_NONCE_BYTES);
  const view = new DataView(nonce.buffer);
  view.setUint32(4, counter % 0x1_0000_0000, true);
  view.setUint32(8, Math.floor(counter / 0x1_0000_0000), true);
  return nonce;
}

/**
 * XChaCha20-Poly1305 encryption. Returns ciphertext || 16-byte tag.
 * @param nonce 24 bytes; random nonces are safe at this size
 * @param ad associated data, authenticated but not encrypted
 * @default ad empty
 */
export function xchachaSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array = EMPTY,
): Uint8Array {
  checkKey(key);
  checkXNonce(nonce);
  reportNonceUse('xchacha20-poly1305', key, nonce);
  return sodium().crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key);
}

/**
 * XChaCha20-Poly1305 decryption of ciphertext || tag.
 * @returns the plaintext, or `null` if the ciphertext is too short or does not authenticate
 * @default ad empty
 */
export function xchachaOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  ad: Uint8Array = EMPTY,
): Uint8Array | null {
  checkKey(key);
  checkXNonce(nonce);
  if (ciphertext.length < AEAD_TAG_BYTES) return null;
  const s = sodium();
  try {
    return s.crypto_aead_xchacha20poly1305_ietf_decrypt(null, ciphertext, ad, nonce, key);
  } catch {
    // Lengths were checked above, so the only failure left is authentication.
    return null;
  }
}

/**
 * ChaCha20-Poly1305-IETF encryption with the Noise nonce for `counter`. Returns
 * ciphertext || 16-byte tag. INVARIANT: a (key, counter) pair is used at most once.
 * @default ad empty
 */
export function chachaSeal(
  key: Uint8Array,
  counter: number,
  plaintext: Uint8Array,
  ad: Uint8Array = EMPTY,
): Uint8Array {
  checkKey(key);
  const nonce = chachaNonce(counter);
  reportNonceUse('chacha20-poly1305', key, nonce);
  return sodium().crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, null, nonce, key);
}

/**
 * ChaCha20-Poly1305-IETF decryption with the Noise nonce for `counter`.
 * @returns the plaintext, or `null` if the ciphertext is too short or does not authenticate
 * @default ad empty
 */
export function chachaOpen(
  key: Uint8Array,
  counter: number,
  ciphertext: Uint8Array,
  ad: Uint8Array = EMPTY,
): Uint8Array | null {
  checkKey(key);
  const nonce = chachaNonce(counter);
  if (ciphertext.length < AEAD_TAG_BYTES) return null;
  const s = sodium();
  try {
    return s.crypto_aead_chacha20poly1305_ietf_decrypt(null, ciphertext, ad, nonce, key);
  } catch {
    // Lengths were checked above, so the only failure left is authentication.
    return null;
  }
}

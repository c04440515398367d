/**
 * Domain-separated key derivation and short hashes, all BLAKE2b (RFC 7693) via libsodium's
 * crypto_generichash. Every derived key names its purpose in a label that starts with
 * `deut/1 `, so two uses of the same secret can never produce the same output, and a
 * future protocol version changes every key at once by changing the prefix.
 */
import { cryptoError } from './errors.js';
import { concatBytes } from './bytes.js';
import { sodium } from './sodium.js';

/** Every KDF label starts with this; the version number is part of every derived key. */
export const KDF_LABEL_PREFIX = 'deut/1 ';

/** Smallest key and output length BLAKE2b accepts here, in bytes (libsodium's minimums). */
export const KDF_MIN_BYTES = 16;

/** Largest key and output length BLAKE2b supports, in bytes. */
export const KDF_MAX_BYTES = 64;

/** Output length of {@link mac16}, in bytes. */
export const MAC16_BYTES = 16;

const EMPTY = new Uint8Array(0);
const SEPARATOR = new Uint8Array([0x00]);
const utf8 = new TextEncoder();

function checkKey(key: Uint8Array, what: string): void {
  if (key.length < KDF_MIN_BYTES || key.length > KDF_MAX_BYTES) {
    throw cryptoError(
      'BAD_KEY_LENGTH',
      `${what}: key must be ${KDF_MIN_BYTES}..${KDF_MAX_BYTES} bytes, got ${key.length}`,
    );
  }
}

/**
 * Derives `length` bytes for the purpose named by `label` from `key`:
 * BLAKE2b(outlen = length, key = key, message = utf8(label) || 0x00 || context).
 *
 * The 0x00 separator cannot occur inside a label (labels are refused if they contain it),
 * so label and context never run into each other.
 *
 * @param label purpose of the key, starting with {@link KDF_LABEL_PREFIX}, e.g. `'deut/1 link send'`
 * @param key secret input keying material, 16..64 bytes
 * @param context public data bound into the key (transcript hashes, ids); may be empty
 * @param length output length in bytes, 16..64
 * @default context empty
 * @default length 32
 * @throws DeutError `BAD_LABEL`, `BAD_KEY_LENGTH` or `BAD_LENGTH` (kind `crypto`) on misuse
 */
export function deriveKey(
  label: string,
  key: Uint8Array,
  context: Uint8Array = EMPTY,
  length = 32,
): Uint8Array {
  if (!label.startsWith(KDF_LABEL_PREFIX) || label.length <= KDF_LABEL_PREFIX.length) {
    throw cryptoError('BAD_LABEL', `deriveKey: label must start with '${KDF_LABEL_PREFIX}' and name a purpose`);
  }
  if (label.includes('\u0000')) {
    throw cryptoError('BAD_LABEL', 'deriveKey: label must not contain NUL');
  }
  checkKey(key, 'deriveKey');
  if (!Number.isInteger(length) || length < KDF_MIN_BYTES || length > KDF_MAX_BYTES) {
    throw cryptoError(
      'BAD_LENGTH',
      `deriveKey: length must be ${KDF_MIN_BYTES}..${KDF_MAX_BYTES}, got ${String(length)}`,
    );
  }
  const message = concatBytes(utf8.encode(label), SEPARATOR, context);
  return sodium().crypto_generichash(length, message, key);
}

/**
 * Unkeyed BLAKE2b-256 of the concatenation of `parts`. Not a KDF: use it for public
 * identifiers and transcripts, never to turn a secret into a key.
 */
export function hash32(...parts: readonly Uint8Array[]): Uint8Array {
  return sodium().crypto_generichash(32, concatBytes(...parts), null);
}

/**
 * Keyed BLAKE2b with a 16-byte output: a short MAC for cookies and tags where 128 bits
 * of forgery resistance is enough.
 * @param key 16..64 bytes
 * @throws DeutError `BAD_KEY_LENGTH` (kind `crypto`) for a key of the wrong size
 */
export function mac16(key: Uint8Array, data: Uint8Array): Uint8Array {
  checkKey(key, 'mac16');
  return sodium().crypto_generichash(MAC16_BYTES, data, key);
}

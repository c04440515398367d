/**
 * The codes of every error @deut/crypto throws, as closed unions (the `WireErrorCode`
 * habit): callers branch on `code`, so a code is part of the API, and a code outside its
 * union fails to compile here instead of surprising a caller.
 */
import { ProtocolError, DeutError, bugError, cryptoError as deutCryptoError } from '@deut/common';

/**
 * Codes of the `ProtocolError`s the Noise handshake throws on remote input (PROTOCOL.md §2).
 *
 * - `NOISE_DECRYPT`: an encrypted key or payload does not authenticate
 * - `NOISE_LENGTH`: a message too short for the pattern, or over 65535 bytes
 * - `NOISE_STATE`: a message out of turn, or after the handshake finished
 */
export type NoiseErrorCode = (typeof NOISE_ERROR_CODES)[number];

/** Every {@link NoiseErrorCode}, for a socket handler that maps codes to its drop counters. */
export const NOISE_ERROR_CODES = ['NOISE_DECRYPT', 'NOISE_LENGTH', 'NOISE_STATE'] as const;

/**
 * Codes of the errors of kind `crypto`: misuse by the caller (a wrong length, a sequence
 * value out of range), or a key that must be refused.
 *
 * - `BAD_KEY_LENGTH`, `BAD_NONCE_LENGTH`, `BAD_LENGTH`, `BAD_CELL_LENGTH`, `BAD_PLAINTEXT_LENGTH`: a buffer of the wrong size
 * - `BAD_NONCE`: a nonce counter out of range
 * - `BAD_HEX`: text that is not hex
 * - `BAD_LABEL`: a KDF label without the `deut/1 ` prefix or with a NUL
 * - `BAD_HOP_COUNT`: an onion path, or its maximum, out of range
 * - `BAD_SEQUENCE`: a cell sequence value that is not an integer in [0, 2^53)
 * - `LOW_ORDER_KEY`: an X25519 key whose shared secret would be all zeros
 */
export type CryptoErrorCode =
  | 'BAD_KEY_LENGTH'
  | 'BAD_NONCE_LENGTH'
  | 'BAD_LENGTH'
  | 'BAD_CELL_LENGTH'
  | 'BAD_PLAINTEXT_LENGTH'
  | 'BAD_NONCE'
  | 'BAD_HEX'
  | 'BAD_LABEL'
  | 'BAD_HOP_COUNT'
  | 'BAD_SEQUENCE'
  | 'LOW_ORDER_KEY';

/** Codes of the key file errors (kind `config`). */
export type KeyFileErrorCode = 'KEY_FILE_EXISTS' | 'KEY_FILE_INVALID' | 'KEY_FILE_MISMATCH' | 'KEY_FILE_NOT_FOUND' | 'KEY_FILE_PERMISSIONS' | 'KEY_FILE_UNREADABLE';

/** Codes of broken invariants (kind `bug`): ours, never a peer's. */
export type CryptoBugCode = 'NOISE_PATTERN' | 'NOISE_MESSAGE_INDEX' | 'NOISE_PAYLOAD_LENGTH' | 'NOISE_OPTIONS' | 'NOISE_STATE' | 'SODIUM_NOT_READY' | 'UNREACHABLE';

/** An error of kind `crypto`. */
export function cryptoError(code: CryptoErrorCode, message: string): DeutError {
  return deutCryptoError(code, message);
}

/** The ProtocolError of a Noise message a peer got wrong. */
export function noiseError(code: NoiseErrorCode, message: string): ProtocolError {
  return new ProtocolError(code, message);
}

/** A broken invariant of this package. */
export function cryptoBug(code: CryptoBugCode, message: string): DeutError {
  return bugError(code, message);
}

/** A key file error, naming the file. */
export function keyFileError(code: KeyFileErrorCode, path: string, message: string, cause?: unknown): DeutError {
  return new DeutError('config', code, `key file ${path}: ${message}`, cause === undefined ? undefined : { cause });
}

/**
 * Byte helpers shared by the crypto package: randomness, constant-time comparison, wiping
 * secrets, concatenation and hex. Randomness comes from the OS CSPRNG (see randomBytes). Comparison and wiping go through libsodium so that the
 * compiler cannot turn them into an early-exit loop or drop a "dead" store.
 */
import { randomFillSync } from 'node:crypto';
import { cryptoError } from './errors.js';
import { sodium } from './sodium.js';

/** Fills `buf` from the operating system's CSPRNG, in place. */
export function fillRandomBytes(buf: Uint8Array): void {
  randomFillSync(buf);
}

/** `n` bytes from the operating system's CSPRNG. */
export function randomBytes(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw cryptoError('BAD_LENGTH', `randomBytes: invalid length ${String(n)}`);
  }
  // The OS CSPRNG through node, not libsodium's randombytes_buf: in the wasm build that
  // callback fetches 4 bytes per call (about 4 µs a byte), and padding every handshake
  // datagram made it the most expensive step of the link. Both draw from the same source.
  return randomFillSync(new Uint8Array(n));
}

/**
 * Compares two byte strings in time that depends only on their length. Arrays of
 * different lengths are unequal (lengths are not secret in any of our uses).
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (a.length === 0) return true;
  return sodium().memcmp(a, b);
}

/** Overwrites `buf` with zeros in place; use on secrets once they are no longer needed. */
export function zero(buf: Uint8Array): void {
  sodium().memzero(buf);
}

/** Concatenates byte strings into a new array. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Lower-case hex encoding. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * Decodes hex (either case, even length, no prefix or separators).
 * @throws DeutError `BAD_HEX` on anything else, rather than silently truncating as Buffer does.
 */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw cryptoError('BAD_HEX', 'fromHex: not an even-length hex string');
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Standard padded base64 of exactly 32 bytes (what key files held before they took hex). */
const BASE64_32 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const HEX_32 = /^[0-9a-fA-F]{64}$/;

/**
 * A 32-byte key written in a file: hex, the one encoding deut writes and prints everywhere,
 * or standard base64, which files written by earlier versions hold. Undefined otherwise.
 */
export function parseKey32(text: string): Uint8Array | undefined {
  if (HEX_32.test(text)) return new Uint8Array(Buffer.from(text, 'hex'));
  if (BASE64_32.test(text)) return new Uint8Array(Buffer.from(text, 'base64'));
  return undefined;
}

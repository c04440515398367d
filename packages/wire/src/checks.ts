/**
 * Validation helpers shared by every codec in this package: each failure becomes one
 * `ProtocolError` with a code from `WireErrorCode`, so socket handlers can count drops by
 * code. Encoders use the same checks as decoders, so a value that could not be decoded can
 * never be sent.
 */
import { Buffer } from 'node:buffer';
import { ProtocolError, bugError, type DeutError } from '@deut/common';
import { LINK_FRAME_BYTES } from './constants.js';

/**
 * The stable codes of every `ProtocolError` thrown by this package.
 *
 * - `BAD_LENGTH`: wrong total length, or a length field out of range
 * - `BAD_TYPE`: unknown type or kind byte
 * - `BAD_FIELD`: a field out of its range or of the wrong type
 * - `BAD_PADDING`: bytes that must be zero are not
 * - `BAD_ADDRESS`: an address that is not a valid, canonically encoded IP and port
 * - `BAD_VERSION`: an unsupported version number
 * - `BAD_MSGPACK`: instructions that do not parse as msgpack or are not in canonical form
 * - `TOO_MANY`: a count over its cap
 */
export const WIRE_ERROR_CODES = ['BAD_LENGTH', 'BAD_TYPE', 'BAD_FIELD', 'BAD_PADDING', 'BAD_ADDRESS', 'BAD_VERSION', 'BAD_MSGPACK', 'TOO_MANY'] as const;

/** One of {@link WIRE_ERROR_CODES}: counters built from it can be listed at run time (metrics export them all at 0). */
export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];

/**
 * Codes of the package's broken invariants (kind `bug`): ours, never a peer's.
 *
 * - `BAD_CONSTANTS`: a derived size disagrees with the number PROTOCOL.md prints
 * - `BAD_INDEX`: a build record or reply slot index out of range
 */
export type WireBugCode = 'BAD_CONSTANTS' | 'BAD_INDEX';

/** A broken invariant of this package. */
export function wireBug(code: WireBugCode, message: string): DeutError {
  return bugError(code, message);
}

/**
 * A decoder's error code as the suffix of a drop counter (`drop:decode-bad_length`). This
 * package throws only WireErrorCode codes (see `fail`), which ProtocolError's `code: string`
 * cannot say: the one place that asserts it.
 */
export function wireDropCode(error: ProtocolError): Lowercase<WireErrorCode> {
  return error.code.toLowerCase() as Lowercase<WireErrorCode>;
}

/** Throws the package's one error type. */
export function fail(code: WireErrorCode, message: string): never {
  throw new ProtocolError(code, message);
}

/** Requires `bytes` to be exactly `length` long. */
export function expectLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) fail('BAD_LENGTH', `${what}: ${bytes.length} bytes, expected ${length}`);
}

/** Zeros to compare padding against; the longest padding is a keepalive frame's 1173 bytes. */
const ZEROS = Buffer.alloc(LINK_FRAME_BYTES);

/** Below this many bytes a plain loop beats the call into native memcmp. */
const NATIVE_COMPARE_FROM = 64;

/** Requires `bytes[from..to)` to be all zero. */
export function expectZero(bytes: Uint8Array, from: number, to: number, what: string): void {
  const length = to - from;
  if (length >= NATIVE_COMPARE_FROM && length <= ZEROS.length) {
    // Padding is checked on every frame; memcmp is about three times faster than a JS loop.
    if (Buffer.from(bytes.buffer, bytes.byteOffset + from, length).equals(ZEROS.subarray(0, length))) return;
  }
  for (let i = from; i < to; i++) {
    if (bytes[i] !== 0) fail('BAD_PADDING', `${what}: non-zero byte at offset ${i}`);
  }
}

/** Requires `value` to be an integer in `[min, max]`. */
export function expectInt(value: unknown, min: number, max: number, what: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail('BAD_FIELD', `${what}: not an integer in ${min}..${max}`);
  }
}

/** Requires `value` to be a Uint8Array of exactly `length` bytes. */
export function expectBytes(value: unknown, length: number, what: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    fail('BAD_FIELD', `${what}: expected ${length} bytes`);
  }
}

/** Writes a big-endian u16 at `offset`. */
export function writeU16(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value >>> 8;
  out[offset + 1] = value & 0xff;
}

/** Reads a big-endian u16 at `offset`; the caller has checked the length. */
export function readU16(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset] ?? 0) << 8) | (bytes[offset + 1] ?? 0);
}

/** Writes a big-endian u32 at `offset`. */
export function writeU32(out: Uint8Array, offset: number, value: number): void {
  out[offset] = value >>> 24;
  out[offset + 1] = (value >>> 16) & 0xff;
  out[offset + 2] = (value >>> 8) & 0xff;
  out[offset + 3] = value & 0xff;
}

/** Reads a big-endian u32 at `offset`; the caller has checked the length. */
export function readU32(bytes: Uint8Array, offset: number): number {
  const high = ((bytes[offset] ?? 0) << 24) | ((bytes[offset + 1] ?? 0) << 16);
  return (high | ((bytes[offset + 2] ?? 0) << 8) | (bytes[offset + 3] ?? 0)) >>> 0;
}


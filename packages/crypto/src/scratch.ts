/**
 * The per-datagram primitives on reused memory: libsodium's WebAssembly exports called on
 * one block of its heap allocated once, instead of the JS wrappers, which allocate, copy in,
 * copy out and free on every call. The link and cell layers call these once or twice per
 * datagram, so the wrappers' bookkeeping cost more than the cipher itself (PERFORMANCE.md).
 * The bytes produced are exactly the wrappers' (the same C functions); the tests of aead,
 * header protection and onion layers check them against each other and against vectors.
 *
 * INVARIANT: every function here is synchronous and leaves nothing in the block that a
 * later call depends on; secrets copied in (keys) are overwritten by the next call and
 * wiped by {@link wipeScratch}. 64-bit lengths are passed as (low, high) pairs, as the
 * wrappers pass them to this build.
 */
import libsodium from 'libsodium-wrappers-sumo';
import { cryptoBug } from './errors.js';
import { chachaNonce } from './aead.js';
import { observingNonceUses, reportNonceUse } from './nonce-uses.js';

/** The raw module: WebAssembly exports and the heap. Typed here for what this file uses. */
interface RawSodium {
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _crypto_aead_chacha20poly1305_ietf_encrypt_detached(c: number, mac: number, maclenP: number, m: number, mlenLo: number, mlenHi: number, ad: number, adlenLo: number, adlenHi: number, nsec: number, npub: number, k: number): number;
  _crypto_aead_chacha20poly1305_ietf_decrypt_detached(m: number, nsec: number, c: number, clenLo: number, clenHi: number, mac: number, ad: number, adlenLo: number, adlenHi: number, npub: number, k: number): number;
  _crypto_stream_chacha20_ietf_xor_ic(c: number, m: number, mlenLo: number, mlenHi: number, n: number, ic: number, k: number): number;
  _crypto_stream_xchacha20_xor_ic(c: number, m: number, mlenLo: number, mlenHi: number, n: number, icLo: number, icHi: number, k: number): number;
  _crypto_onetimeauth(out: number, m: number, mlenLo: number, mlenHi: number, k: number): number;
  _crypto_onetimeauth_verify(h: number, m: number, mlenLo: number, mlenHi: number, k: number): number;
}

/** Largest message any scratch call takes (a cell body with its 64-byte block-0 prefix, a link datagram). */
export const SCRATCH_MESSAGE_BYTES = 1280;

const KEY = 0;
const NONCE = 32;
const AD = 64;
const MASK = 112;
const ZEROS = 128;
const MESSAGE = 192;
const SPARE = MESSAGE + SCRATCH_MESSAGE_BYTES;
const BLOCK_BYTES = SPARE + SCRATCH_MESSAGE_BYTES;

let raw: RawSodium | undefined;
let base = 0;

/** The raw module and the block's address, allocated on first use (after cryptoReady()). */
function arena(): RawSodium {
  if (raw === undefined) {
    // Read from the wrapper object itself (as onion.ts does), set once sodium.ready resolved.
    const module = (libsodium as unknown as { libsodium?: RawSodium }).libsodium;
    if (module?.HEAPU8 === undefined) throw cryptoBug('SODIUM_NOT_READY', 'libsodium used before it was ready');
    base = module._malloc(BLOCK_BYTES);
    module.HEAPU8.fill(0, base, base + BLOCK_BYTES);
    raw = module;
  }
  return raw;
}

/** The heap as it is now (it is replaced when the WebAssembly memory grows). */
function heap(module: RawSodium): Uint8Array {
  return module.HEAPU8;
}

function writeNoiseNonce(h: Uint8Array, counter: number): void {
  const at = base + NONCE;
  h.fill(0, at, at + 4);
  let low = counter % 0x1_0000_0000;
  let high = Math.floor(counter / 0x1_0000_0000);
  for (let i = 0; i < 4; i++) {
    h[at + 4 + i] = low & 0xff;
    h[at + 8 + i] = high & 0xff;
    low >>>= 8;
    high >>>= 8;
  }
}

/** Copies the 32-byte key at `key[offset]` into the block without making a view of it. */
function writeKey(h: Uint8Array, key: Uint8Array, offset: number): void {
  const at = base + KEY;
  for (let i = 0; i < 32; i++) h[at + i] = key[offset + i]!;
}

/** nonce = LE64(v) ‖ 0^16, the onion layers' XChaCha20 nonce (PROTOCOL.md §5.2). */
function writeLayerNonce(h: Uint8Array, v: number): void {
  const at = base + NONCE;
  let low = v % 0x1_0000_0000;
  let high = Math.floor(v / 0x1_0000_0000);
  for (let i = 0; i < 4; i++) {
    h[at + i] = low & 0xff;
    h[at + 4 + i] = high & 0xff;
    low >>>= 8;
    high >>>= 8;
  }
  h.fill(0, at + 8, at + 24);
}

/**
 * ChaCha20-Poly1305-IETF with the Noise nonce for `counter`: writes ciphertext ‖ tag
 * (plaintext.length + 16 bytes) at `out[outOffset]`. Same bytes as `chachaSeal`.
 * The caller has checked the key length and that counter is a safe non-negative integer.
 */
export function chachaSealInto(key: Uint8Array, counter: number, plaintext: Uint8Array, ad: Uint8Array, out: Uint8Array, outOffset: number): void {
  if (observingNonceUses()) reportNonceUse('chacha20-poly1305', key, chachaNonce(counter));
  const m = arena();
  const h = heap(m);
  h.set(key, base + KEY);
  writeNoiseNonce(h, counter);
  h.set(ad, base + AD);
  h.set(plaintext, base + MESSAGE);
  m._crypto_aead_chacha20poly1305_ietf_encrypt_detached(base + MESSAGE, base + MESSAGE + plaintext.length, 0, base + MESSAGE, plaintext.length, 0, base + AD, ad.length, 0, 0, base + NONCE, base + KEY);
  out.set(h.subarray(base + MESSAGE, base + MESSAGE + plaintext.length + 16), outOffset);
}

/**
 * Opens ciphertext ‖ tag sealed by {@link chachaSealInto} or `chachaSeal`, writing the
 * plaintext (sealed.length − 16 bytes) at `out[outOffset]`. false, and nothing written, if
 * it does not authenticate.
 */
export function chachaOpenInto(key: Uint8Array, counter: number, sealed: Uint8Array, ad: Uint8Array, out: Uint8Array, outOffset: number): boolean {
  const length = sealed.length - 16;
  if (length < 0) return false;
  const m = arena();
  const h = heap(m);
  h.set(key, base + KEY);
  writeNoiseNonce(h, counter);
  h.set(ad, base + AD);
  h.set(sealed, base + MESSAGE);
  const failed = m._crypto_aead_chacha20poly1305_ietf_decrypt_detached(base + MESSAGE, 0, base + MESSAGE, length, 0, base + MESSAGE + length, base + AD, ad.length, 0, base + NONCE, base + KEY);
  if (failed !== 0) return false;
  out.set(h.subarray(base + MESSAGE, base + MESSAGE + length), outOffset);
  return true;
}

/**
 * XORs the 8-byte header-protection mask for `sample` (16 bytes, PROTOCOL.md §3.4) into
 * `target[offset..offset+8]`. Same mask as `headerMask`.
 */
export function xorHeaderMask(hpKey: Uint8Array, sample: Uint8Array, target: Uint8Array, offset: number): void {
  const m = arena();
  const h = heap(m);
  h.set(hpKey, base + KEY);
  h.set(sample.subarray(4, 16), base + NONCE);
  const counter = (sample[0]! | (sample[1]! << 8) | (sample[2]! << 16) | ((sample[3]! & 0x7f) << 24)) >>> 0;
  m._crypto_stream_chacha20_ietf_xor_ic(base + MASK, base + ZEROS, 8, 0, base + NONCE, counter, base + KEY);
  for (let i = 0; i < 8; i++) target[offset + i] = target[offset + i]! ^ h[base + MASK + i]!;
}

/**
 * One onion layer's XChaCha20 keystream (nonce LE64(v) ‖ 0^16) from block `block` XORed
 * over `input`, written at `out[outOffset]` (input and out may be the same bytes). The key
 * is the 32 bytes at `key[keyOffset]` (a transit entry keeps both its layer keys in one array).
 */
export function xorLayerInto(key: Uint8Array, v: number, block: number, input: Uint8Array, out: Uint8Array, outOffset: number, keyOffset = 0): void {
  const m = arena();
  const h = heap(m);
  writeKey(h, key, keyOffset);
  writeLayerNonce(h, v);
  h.set(input, base + MESSAGE);
  m._crypto_stream_xchacha20_xor_ic(base + MESSAGE, base + MESSAGE, input.length, 0, base + NONCE, block, 0, base + KEY);
  out.set(h.subarray(base + MESSAGE, base + MESSAGE + input.length), outOffset);
}

/**
 * Removes one outbound onion layer from `body` = T ‖ Y (PROTOCOL.md §5.2): with the
 * keystream from block 0 (otk = its first 32 bytes, S from byte 64), checks T = MAC(otk, Y)
 * and writes (Y ‖ 0^16) XOR S, `body.length` bytes, at `out[outOffset]`. false, and nothing
 * written, if the tag is wrong. The key is the 32 bytes at `key[keyOffset]`.
 */
export function peelLayerInto(key: Uint8Array, v: number, body: Uint8Array, out: Uint8Array, outOffset: number, keyOffset = 0): boolean {
  const m = arena();
  const h = heap(m);
  const y = body.length - 16;
  writeKey(h, key, keyOffset);
  writeLayerNonce(h, v);
  // SPARE holds T ‖ Y for the MAC; MESSAGE holds 0^64 ‖ Y ‖ 0^16, XORed in place.
  h.set(body, base + SPARE);
  h.fill(0, base + MESSAGE, base + MESSAGE + 64);
  h.set(body.subarray(16), base + MESSAGE + 64);
  h.fill(0, base + MESSAGE + 64 + y, base + MESSAGE + 64 + y + 16);
  m._crypto_stream_xchacha20_xor_ic(base + MESSAGE, base + MESSAGE, 64 + body.length, 0, base + NONCE, 0, 0, base + KEY);
  const ok = m._crypto_onetimeauth_verify(base + SPARE, base + SPARE + 16, y, 0, base + MESSAGE) === 0;
  if (ok) out.set(h.subarray(base + MESSAGE + 64, base + MESSAGE + 64 + body.length), outOffset);
  return ok;
}

/**
 * Poly1305 of `message` under the one-time key at `otk[otkOffset..+32)`, written as 16
 * bytes at `out[outOffset]` (out may overlap neither input's bytes that are still needed).
 */
export function macInto(otk: Uint8Array, otkOffset: number, message: Uint8Array, out: Uint8Array, outOffset: number): void {
  const m = arena();
  const h = heap(m);
  writeKey(h, otk, otkOffset);
  h.set(message, base + MESSAGE);
  m._crypto_onetimeauth(base + MASK, base + MESSAGE, message.length, 0, base + KEY);
  out.set(h.subarray(base + MASK, base + MASK + 16), outOffset);
}

/** Overwrites the whole block (keys, plaintexts): for shutdown and tests. */
export function wipeScratch(): void {
  if (raw === undefined) return;
  heap(raw).fill(0, base, base + BLOCK_BYTES);
}

/**
 * Layered cell crypto for tunnels (docs/PROTOCOL.md §5.2): fixed-size cell bodies,
 * XChaCha20 keystream layers, and Poly1305 one-time tags.
 *
 * Outbound (master → endpoint) is Sphinx-like: the master seals all layers at once and
 * precomputes the filler that the hops' appended keystream bytes will become, so that
 * every hop finds a valid tag over its layer. A relayer that flips a bit or swaps a
 * block is therefore caught by the next honest hop. Inbound (endpoint → master) the
 * endpoint tags and encrypts, each relay only adds a keystream layer, and the master
 * removes them all and checks the endpoint's tag.
 *
 * For key k and sequence value v: nonce = LE64(v) ‖ 0^16; otk = keystream bytes 0..32
 * (block 0); S = one body's length of keystream from block 1 (RFC 8439's AEAD layout).
 * INVARIANT: a (key, v) pair is used for at most one cell; the sequence offsets and
 * replay windows of §5.3 guarantee it, and keystream reuse would leak plaintext XORs.
 *
 * The cell's geometry is @deut/wire's (CELL_BODY_BYTES, MAX_HOPS, CELL_PLAINTEXT_BYTES), not
 * this package's: a body's size is read from the body, and a plaintext's from `maxHops`, the
 * number of tags a body has room for, which the caller passes in (body = plaintext + one
 * tag per possible hop, so the endpoint cannot learn how many hops precede it).
 *
 * Every function here expects libsodium to be initialised: callers must have awaited
 * `sodium.ready` (the package's ready function does so). The ciphers run on reused
 * libsodium memory (scratch.ts): same bytes as the wrappers, without their copies.
 */
import { cryptoBug, cryptoError } from './errors.js';
import { AEAD_TAG_BYTES } from './aead.js';
import { fillRandomBytes } from './bytes.js';
import { observingNonceUses, reportNonceUse } from './nonce-uses.js';
import { SCRATCH_MESSAGE_BYTES, macInto, peelLayerInto, xorLayerInto } from './scratch.js';

/** Bytes in an outbound or inbound layer key. */
export const LAYER_KEY_BYTES = 32;

/** One hop's layer key and the sequence value that hop sees for this cell. */
export interface LayerKey {
  /** The hop's outbound or inbound layer key (32 bytes). */
  readonly key: Uint8Array;
  /** The sequence value as seen by this hop: an integer, 0 ≤ v < 2^53. */
  readonly v: number;
}

/** Each layer's tag is a Poly1305 tag, the AEAD's. */
const TAG = AEAD_TAG_BYTES;
// S starts at keystream block 1; block 0 holds the one-time MAC key.
const BLOCK = 64;
/** The scratch memory holds block 0 and one body: no body may be longer. */
const MAX_BODY_BYTES = SCRATCH_MESSAGE_BYTES - BLOCK;
// Input for a bare keystream (block 0 for otk, then S); only ever read.
const ZERO_INPUT = new Uint8Array(BLOCK + MAX_BODY_BYTES);

/** The XChaCha20 nonce of a layer at sequence value v, built only to report it (nonce-uses.ts). */
function nonceFor(v: number): Uint8Array {
  const nonce = new Uint8Array(24);
  const view = new DataView(nonce.buffer);
  view.setUint32(0, v >>> 0, true);
  view.setUint32(4, Math.floor(v / 0x1_0000_0000), true);
  return nonce;
}

function checkLayer(layer: LayerKey): void {
  if (layer.key.length !== LAYER_KEY_BYTES) {
    throw cryptoError('BAD_KEY_LENGTH', `layer key must be ${LAYER_KEY_BYTES} bytes, got ${layer.key.length}`);
  }
  if (!Number.isSafeInteger(layer.v) || layer.v < 0) {
    throw cryptoError('BAD_SEQUENCE', `sequence value must be an integer in [0, 2^53), got ${layer.v}`);
  }
}

/** As checkLayer, for a key that is the 32 bytes at `key[keyOffset]` of a longer array. */
function checkKeyAt(key: Uint8Array, keyOffset: number, v: number): void {
  if (!Number.isInteger(keyOffset) || keyOffset < 0 || key.length - keyOffset < LAYER_KEY_BYTES) {
    throw cryptoError('BAD_KEY_LENGTH', `layer key must be ${LAYER_KEY_BYTES} bytes at offset ${keyOffset} of ${key.length}`);
  }
  if (!Number.isSafeInteger(v) || v < 0) {
    throw cryptoError('BAD_SEQUENCE', `sequence value must be an integer in [0, 2^53), got ${v}`);
  }
}

/** A body has a tag and something under it, and fits the scratch memory; its exact size is the wire decoder's to fix. */
function checkBody(body: Uint8Array): void {
  if (body.length <= TAG || body.length > MAX_BODY_BYTES) {
    throw cryptoError('BAD_CELL_LENGTH', `cell body must be ${TAG + 1}..${MAX_BODY_BYTES} bytes, got ${body.length}`);
  }
}

/** Plaintext bytes of a body with room for `maxHops` tags, or a crypto error if it has no room. */
function plaintextBytes(bodyBytes: number, maxHops: number): number {
  if (!Number.isInteger(maxHops) || maxHops < 1) throw cryptoError('BAD_HOP_COUNT', `maxHops must be a positive integer, got ${maxHops}`);
  const plaintext = bodyBytes - TAG * maxHops;
  if (plaintext <= 0) throw cryptoError('BAD_CELL_LENGTH', `a ${bodyBytes}-byte cell body has no room for ${maxHops} tags`);
  return plaintext;
}

/** The body a plaintext is sealed into: the plaintext and one tag per possible hop. */
function bodyBytesFor(plaintext: Uint8Array, maxHops: number): number {
  if (!Number.isInteger(maxHops) || maxHops < 1) throw cryptoError('BAD_HOP_COUNT', `maxHops must be a positive integer, got ${maxHops}`);
  const body = plaintext.length + TAG * maxHops;
  if (plaintext.length === 0 || body > MAX_BODY_BYTES) {
    throw cryptoError('BAD_PLAINTEXT_LENGTH', `cell plaintext must be 1..${MAX_BODY_BYTES - TAG * maxHops} bytes, got ${plaintext.length}`);
  }
  return body;
}

function checkHops(hops: readonly LayerKey[], maxHops: number): void {
  if (hops.length < 1 || hops.length > maxHops) {
    throw cryptoError('BAD_HOP_COUNT', `a tunnel has 1 to ${maxHops} hops, got ${hops.length}`);
  }
  for (const hop of hops) checkLayer(hop);
}

/**
 * XChaCha20 from block 0 over `input`, so one libsodium call yields both the one-time key
 * (output bytes 0..32) and the layer (output from byte 64 on).
 */
function streamFromBlock0(layer: LayerKey, input: Uint8Array): Uint8Array {
  const out = new Uint8Array(input.length);
  xorLayerInto(layer.key, layer.v, 0, input, out, 0);
  return out;
}


/** `items[i]`, for indices that are in range by construction. */
function at<T>(items: readonly T[], i: number): T {
  const item = items[i];
  if (item === undefined) throw cryptoBug('UNREACHABLE', `index ${i} out of range`);
  return item;
}

/**
 * dst[dOff + i] ^= src[sOff + i] for i < len. Word-wise when both ranges are 4-byte
 * aligned, which every call here is (offsets are multiples of 16 in fresh buffers), since
 * sealing XORs a whole body per hop.
 */
function xorInto(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number, len: number): void {
  const dStart = dst.byteOffset + dOff;
  const sStart = src.byteOffset + sOff;
  if ((dStart | sStart | len) % 4 === 0) {
    const d = new Uint32Array(dst.buffer, dStart, len / 4);
    const s = new Uint32Array(src.buffer, sStart, len / 4);
    for (let i = 0; i < d.length; i++) d[i] = (d[i] ?? 0) ^ (s[i] ?? 0);
    return;
  }
  for (let i = 0; i < len; i++) dst[dOff + i] = (dst[dOff + i] ?? 0) ^ (src[sOff + i] ?? 0);
}

/**
 * Removes one outbound layer, at a relay or at the endpoint: checks T = MAC(otk, Y) in
 * constant time and returns (Y ‖ 0^16) XOR S, the body for the next hop (as long as
 * `body`).
 *
 * @param key - this hop's outbound layer key.
 * @param v - the sequence value this hop sees for the cell.
 * @param body - the received cell body T ‖ Y.
 * @returns the next body, or null if the tag does not verify (tampered cell, wrong key or
 *   wrong v): drop the cell.
 * @throws DeutError (kind `crypto`) on a wrong key length, sequence value or body length;
 *   these are the caller's bugs, the wire decoder fixes the body size.
 */
export function peelOutbound(key: Uint8Array, v: number, body: Uint8Array): Uint8Array | null {
  checkLayer({ key, v });
  checkBody(body);
  const next = new Uint8Array(body.length);
  return peelOutboundInto(key, v, body, next, 0) ? next : null;
}

/**
 * {@link peelOutbound} writing the next body straight into `out[outOffset..+body.length)`
 * (a relay writes it where the forwarded cell's body goes), on reused libsodium memory.
 *
 * @returns false, and nothing written, if the tag does not verify.
 * @throws DeutError (kind `crypto`) on a wrong key length, sequence value or body length,
 *   or an output too short.
 */
export function peelOutboundInto(key: Uint8Array, v: number, body: Uint8Array, out: Uint8Array, outOffset: number, keyOffset = 0): boolean {
  checkKeyAt(key, keyOffset, v);
  checkBody(body);
  checkRoom(out, outOffset, body.length);
  return peelLayerInto(key, v, body, out, outOffset, keyOffset);
}

/**
 * The endpoint's last outbound step: {@link peelOutbound} and keep the plaintext, the
 * first `body.length - 16 * maxHops` bytes.
 *
 * @param maxHops - the most hops a body has room for (@deut/wire's MAX_HOPS).
 * @returns the plaintext, or null if the tag does not verify.
 * @throws DeutError (kind `crypto`) on a wrong key length, sequence value, body length or maxHops.
 */
export function openOutbound(key: Uint8Array, v: number, body: Uint8Array, maxHops: number): Uint8Array | null {
  const plaintext = plaintextBytes(body.length, maxHops);
  return peelOutbound(key, v, body)?.subarray(0, plaintext) ?? null;
}

function checkRoom(out: Uint8Array, outOffset: number, bodyBytes: number): void {
  if (outOffset < 0 || out.length - outOffset < bodyBytes) throw cryptoError('BAD_CELL_LENGTH', `output must have room for ${bodyBytes} bytes`);
}

/** Writes MAC(otk, Y) before the Y of the `bodyBytes` body that starts at `start` in `work`. */
function sealTag(work: Uint8Array, start: number, bodyBytes: number, stream: Uint8Array): void {
  macInto(stream, 0, work.subarray(start + TAG, start + bodyBytes), work, start);
}

/**
 * The master seals a plaintext for a path of 1 to `maxHops` hops (hop 1 first, the
 * endpoint last) so that each hop's {@link peelOutbound} verifies and the endpoint's
 * {@link openOutbound} returns `plaintext`.
 *
 * Construction, with S_i and otk_i the keystream of hop i:
 * filler φ_1 = empty, φ_{i+1} = (φ_i ‖ 0^16) XOR S_i[B-16-|φ_i| .. B), which is what hop
 * i's appended 16 zero bytes and the tail before them will have become;
 * Y_n = ((plaintext ‖ random)[0 .. B-16n) XOR S_n) ‖ φ_n; then for each hop, innermost
 * first, X_i = MAC(otk_i, Y_i) ‖ Y_i with Y_i = (X_{i+1} XOR S_i)[0 .. B-16).
 *
 * @param hops - each hop's outbound key and the v it will see for this cell.
 * @param plaintext - the cell plaintext (@deut/wire's CELL_PLAINTEXT_BYTES).
 * @param maxHops - the most hops a body has room for (@deut/wire's MAX_HOPS): the body is
 *   the plaintext and 16 bytes per possible hop, whatever the path's length.
 * @returns the body to send to hop 1.
 * @throws DeutError (kind `crypto`) on a bad hop count, key, sequence value or plaintext length.
 */
export function sealOutbound(hops: readonly LayerKey[], plaintext: Uint8Array, maxHops: number): Uint8Array {
  const B = bodyBytesFor(plaintext, maxHops);
  checkHops(hops, maxHops);
  const n = hops.length;
  if (observingNonceUses()) for (const hop of hops) reportNonceUse('cell-layer', hop.key, nonceFor(hop.v));
  const zeros = ZERO_INPUT.subarray(0, BLOCK + B);
  const streams = hops.map((hop) => streamFromBlock0(hop, zeros));

  // One buffer holds every X_i: X_i sits at offset 16(i-1), so Y_i = (X_{i+1} XOR S_i)
  // is an in-place XOR at the position X_{i+1} already occupies, and T_i goes just before.
  const work = new Uint8Array(B + TAG * (n - 1));
  const endpointStart = TAG * (n - 1);
  const fillerStart = work.length - TAG * (n - 1); // φ_n is the tail of Y_n

  // Filler: φ_{i+1} is built in place over φ_i; it ends up as the tail of Y_n.
  for (let i = 0; i < n - 1; i++) {
    const stream = at(streams, i);
    const len = TAG * (i + 1);
    xorInto(work, fillerStart, stream, BLOCK + B - len, len);
  }

  // Endpoint layer: plaintext and random padding up to B-16n, encrypted, then the filler.
  const endpointStream = at(streams, n - 1);
  const yStart = endpointStart + TAG;
  const padBytes = B - TAG * n - plaintext.length;
  work.set(plaintext, yStart);
  fillRandomBytes(work.subarray(yStart + plaintext.length, yStart + plaintext.length + padBytes));
  xorInto(work, yStart, endpointStream, BLOCK, B - TAG * n);
  sealTag(work, endpointStart, B, endpointStream);

  for (let i = n - 2; i >= 0; i--) {
    const stream = at(streams, i);
    const start = TAG * i;
    xorInto(work, start + TAG, stream, BLOCK, B - TAG);
    sealTag(work, start, B, stream);
  }
  for (const stream of streams) stream.fill(0);
  return n === 1 ? work : work.slice(0, B);
}

/**
 * The endpoint seals a plaintext for the master: P' = plaintext ‖ random to B-16,
 * Y = P' XOR S[0 .. B-16), T = MAC(otk, Y); returns T ‖ Y.
 *
 * @param key - the endpoint's inbound layer key.
 * @param v - the sequence value the endpoint assigns to this cell.
 * @param plaintext - the cell plaintext (@deut/wire's CELL_PLAINTEXT_BYTES).
 * @param maxHops - the most hops a body has room for (@deut/wire's MAX_HOPS).
 * @throws DeutError (kind `crypto`) on a wrong key length, sequence value, plaintext length or maxHops.
 */
export function sealInbound(key: Uint8Array, v: number, plaintext: Uint8Array, maxHops: number): Uint8Array {
  const B = bodyBytesFor(plaintext, maxHops);
  const layer = { key, v };
  checkLayer(layer);
  if (observingNonceUses()) reportNonceUse('cell-layer', key, nonceFor(v));
  const work = new Uint8Array(BLOCK + B - TAG);
  work.set(plaintext, BLOCK);
  fillRandomBytes(work.subarray(BLOCK + plaintext.length));
  const out = streamFromBlock0(layer, work);
  const y = out.subarray(BLOCK);
  const body = new Uint8Array(B);
  macInto(out, 0, y, body, 0);
  body.set(y, TAG);
  work.fill(0);
  out.fill(0);
  return body;
}

/**
 * A relay adds its inbound layer: body XOR S(key, v). No tag: the relay knows nothing of
 * the content, and the master checks the endpoint's tag once all layers are off.
 *
 * @throws DeutError (kind `crypto`) on a wrong key length, sequence value or body length.
 */
export function addInboundLayer(key: Uint8Array, v: number, body: Uint8Array): Uint8Array {
  checkLayer({ key, v });
  checkBody(body);
  const out = new Uint8Array(body.length);
  addInboundLayerInto(key, v, body, out, 0);
  return out;
}

/**
 * {@link addInboundLayer} writing into `out[outOffset..+body.length)`, on reused
 * libsodium memory; `out` may hold `body` itself.
 *
 * @throws DeutError (kind `crypto`) on a wrong key length, sequence value or body length,
 *   or an output too short.
 */
export function addInboundLayerInto(key: Uint8Array, v: number, body: Uint8Array, out: Uint8Array, outOffset: number, keyOffset = 0): void {
  checkKeyAt(key, keyOffset, v);
  checkBody(body);
  checkRoom(out, outOffset, body.length);
  if (observingNonceUses()) reportNonceUse('cell-layer', key.subarray(keyOffset, keyOffset + LAYER_KEY_BYTES), nonceFor(v));
  xorLayerInto(key, v, 1, body, out, outOffset, keyOffset);
}

/**
 * The master opens an inbound cell: removes the relay layers of hops 1..n-1, then checks
 * the endpoint's tag and decrypts.
 *
 * @param hops - hop 1 first; each relay's inbound key and the v it saw; the last entry is
 *   the endpoint's inbound key and the v it used.
 * @param body - the body as received from hop 1.
 * @param maxHops - the most hops a body has room for (@deut/wire's MAX_HOPS).
 * @returns the endpoint's plaintext, or null if the tag does not verify (a layer was
 *   tampered with, or a key or v is wrong).
 * @throws DeutError (kind `crypto`) on a bad hop count, key, sequence value, body length or maxHops.
 */
export function openInbound(hops: readonly LayerKey[], body: Uint8Array, maxHops: number): Uint8Array | null {
  checkBody(body);
  const plaintext = plaintextBytes(body.length, maxHops);
  checkHops(hops, maxHops);
  const current = body.slice();
  for (let i = 0; i < hops.length - 1; i++) {
    const hop = at(hops, i);
    xorLayerInto(hop.key, hop.v, 1, current, current, 0);
  }
  const last = at(hops, hops.length - 1);
  return peelLayerInto(last.key, last.v, current, current, 0) ? current.subarray(0, plaintext) : null;
}

// Tests for kdf.ts: the checked-in vectors in test/vectors/kdf.json, each also recomputed
// with an independent BLAKE2b written from RFC 7693 (itself checked against the RFC's
// Appendix A, the official blake2b-kat.txt keyed vectors, and node's OpenSSL BLAKE2b-512).
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DeutError } from '@deut/common';
import { fromHex, toHex } from '../src/bytes.js';
import { deriveKey, hash32, mac16 } from '../src/kdf.js';
import { cryptoReady, sodium } from '../src/sodium.js';

const ROOT = new URL('../../../../', import.meta.url);

interface KdfVectors {
  deriveKey: { label: string; key: string; context: string; length: number; output: string }[];
  hash32: { parts: string[]; output: string }[];
  mac16: { key: string; data: string; output: string }[];
}

const vectors = JSON.parse(readFileSync(new URL('test/vectors/kdf.json', ROOT), 'utf8')) as KdfVectors;

// ---- Reference BLAKE2b (RFC 7693 section 3), BigInt for clarity rather than speed ----

const MASK64 = (1n << 64n) - 1n;
const IV = [
  0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
];
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

const at = <T>(xs: readonly T[], i: number): T => {
  const x = xs[i];
  if (x === undefined) throw new Error(`index ${i} out of range`);
  return x;
};
const rotr = (x: bigint, n: bigint): bigint => ((x >> n) | (x << (64n - n))) & MASK64;

function compress(h: bigint[], block: Uint8Array, t: bigint, last: boolean): void {
  const m: bigint[] = [];
  for (let i = 0; i < 16; i++) {
    let w = 0n;
    for (let j = 7; j >= 0; j--) w = (w << 8n) | BigInt(block[i * 8 + j] ?? 0);
    m.push(w);
  }
  const v = [...h, ...IV];
  v[12] = at(v, 12) ^ (t & MASK64);
  v[13] = at(v, 13) ^ (t >> 64n);
  if (last) v[14] = at(v, 14) ^ MASK64;
  const g = (a: number, b: number, c: number, d: number, x: bigint, y: bigint): void => {
    v[a] = (at(v, a) + at(v, b) + x) & MASK64;
    v[d] = rotr(at(v, d) ^ at(v, a), 32n);
    v[c] = (at(v, c) + at(v, d)) & MASK64;
    v[b] = rotr(at(v, b) ^ at(v, c), 24n);
    v[a] = (at(v, a) + at(v, b) + y) & MASK64;
    v[d] = rotr(at(v, d) ^ at(v, a), 16n);
    v[c] = (at(v, c) + at(v, d)) & MASK64;
    v[b] = rotr(at(v, b) ^ at(v, c), 63n);
  };
  for (let r = 0; r < 12; r++) {
    const s = at(SIGMA, r % 10);
    const w = (i: number): bigint => at(m, at(s, i));
    g(0, 4, 8, 12, w(0), w(1));
    g(1, 5, 9, 13, w(2), w(3));
    g(2, 6, 10, 14, w(4), w(5));
    g(3, 7, 11, 15, w(6), w(7));
    g(0, 5, 10, 15, w(8), w(9));
    g(1, 6, 11, 12, w(10), w(11));
    g(2, 7, 8, 13, w(12), w(13));
    g(3, 4, 9, 14, w(14), w(15));
  }
  for (let i = 0; i < 8; i++) h[i] = at(h, i) ^ at(v, i) ^ at(v, i + 8);
}

function referenceBlake2b(outlen: number, data: Uint8Array, key: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = [...IV];
  h[0] = at(h, 0) ^ BigInt(0x01010000 ^ (key.length << 8) ^ outlen);
  const input = new Uint8Array((key.length > 0 ? 128 : 0) + data.length);
  input.set(key, 0);
  input.set(data, key.length > 0 ? 128 : 0);
  const blocks = Math.max(1, Math.ceil(input.length / 128));
  for (let i = 0; i < blocks; i++) {
    const block = new Uint8Array(128);
    block.set(input.subarray(i * 128, (i + 1) * 128));
    const last = i === blocks - 1;
    compress(h, block, BigInt(last ? input.length : (i + 1) * 128), last);
  }
  const out = new Uint8Array(64);
  for (let i = 0; i < 8; i++) {
    for (let j = 0; j < 8; j++) out[i * 8 + j] = Number((at(h, i) >> BigInt(8 * j)) & 0xffn);
  }
  return out.slice(0, outlen);
}

const range = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i & 0xff);

before(async () => {
  await cryptoReady();
});

describe('reference BLAKE2b used by these tests', () => {
  test('reference blake2b - RFC 7693 Appendix A, BLAKE2b-512("abc")', () => {
    assert.equal(
      toHex(referenceBlake2b(64, new TextEncoder().encode('abc'))),
      'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1' +
        '7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923',
    );
  });

  test('reference blake2b - official blake2b-kat.txt keyed vectors (key 00..3f)', () => {
    // BLAKE2/BLAKE2 testvectors/blake2b-kat.txt, the first three entries.
    const kat = [
      '10ebb67700b1868efb4417987acf4690ae9d972fb7a590c2f02871799aaa4786b5e996e8f0f4eb981fc214b005f42d2ff4233499391653df7aefcbc13fc51568',
      '961f6dd1e4dd30f63901690c512e78e4b45e4742ed197c3c5e45c549fd25f2e4187b0bc9fe30492b16b0d0bc4ef9b0f34c7003fac09a5ef1532e69430234cebd',
      'da2cfbe2d8409a0f38026113884f84b50156371ae304c4430173d08a99d9fb1b983164a3770706d537f49e0c916d9f32b95cc37a95b99d857436f0232c88a965',
    ];
    kat.forEach((expected, n) => {
      assert.equal(toHex(referenceBlake2b(64, range(n), range(64))), expected, `reference, input length ${n}`);
      assert.equal(toHex(sodium().crypto_generichash(64, range(n), range(64))), expected, `libsodium, input length ${n}`);
    });
  });

  test('reference blake2b - agrees with node:crypto blake2b512 across block boundaries', () => {
    for (const n of [0, 1, 127, 128, 129, 255, 256, 300]) {
      const data = range(n);
      const node = createHash('blake2b512').update(data).digest('hex');
      assert.equal(toHex(referenceBlake2b(64, data)), node, `length ${n}`);
    }
  });
});

describe('kdf vectors', () => {
  test('kdf - deriveKey matches checked-in vectors and the reference BLAKE2b', () => {
    assert.ok(vectors.deriveKey.length >= 5);
    for (const v of vectors.deriveKey) {
      const got = deriveKey(v.label, fromHex(v.key), fromHex(v.context), v.length);
      assert.equal(toHex(got), v.output, v.label);
      const message = new Uint8Array([...new TextEncoder().encode(v.label), 0x00, ...fromHex(v.context)]);
      assert.equal(toHex(referenceBlake2b(v.length, message, fromHex(v.key))), v.output, `${v.label} (reference)`);
    }
  });

  test('kdf - hash32 matches checked-in vectors and the reference BLAKE2b', () => {
    for (const v of vectors.hash32) {
      const parts = v.parts.map(fromHex);
      assert.equal(toHex(hash32(...parts)), v.output);
      const joined = new Uint8Array(parts.flatMap((p) => [...p]));
      assert.equal(toHex(referenceBlake2b(32, joined)), v.output, 'reference');
    }
  });

  test('kdf - hash32 of "abc" is BLAKE2b-256("abc")', () => {
    // BLAKE2b-256 is a different function from truncated BLAKE2b-512: the output length
    // is part of the parameter block.
    assert.equal(
      toHex(hash32(new TextEncoder().encode('abc'))),
      'bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319',
    );
  });

  test('kdf - mac16 matches checked-in vectors and the reference BLAKE2b', () => {
    for (const v of vectors.mac16) {
      assert.equal(toHex(mac16(fromHex(v.key), fromHex(v.data))), v.output);
      assert.equal(toHex(referenceBlake2b(16, fromHex(v.data), fromHex(v.key))), v.output, 'reference');
    }
  });
});

describe('kdf domain separation and refusals', () => {
  const key = range(32);

  test('kdf - label, context and length each change the output', () => {
    const base = toHex(deriveKey('deut/1 a', key));
    assert.notEqual(toHex(deriveKey('deut/1 b', key)), base);
    assert.notEqual(toHex(deriveKey('deut/1 a', key, Uint8Array.of(0))), base);
    assert.notEqual(toHex(deriveKey('deut/1 a', key, undefined, 33).subarray(0, 32)), base);
    // The separator keeps label and context apart: "ab" + "" differs from "a" + "b".
    assert.notEqual(
      toHex(deriveKey('deut/1 ab', key)),
      toHex(deriveKey('deut/1 a', key, new TextEncoder().encode('b'))),
    );
  });

  test('kdf - refuses bad labels, keys and lengths with DeutError', () => {
    const refuses = (fn: () => unknown, code: string): void => {
      assert.throws(fn, (err: unknown) => err instanceof DeutError && err.kind === 'crypto' && err.code === code);
    };
    refuses(() => deriveKey('', key), 'BAD_LABEL');
    refuses(() => deriveKey('deut/1 ', key), 'BAD_LABEL');
    refuses(() => deriveKey('deut/2 x', key), 'BAD_LABEL');
    refuses(() => deriveKey('deut/1 a\u0000b', key), 'BAD_LABEL');
    refuses(() => deriveKey('deut/1 x', range(15)), 'BAD_KEY_LENGTH');
    refuses(() => deriveKey('deut/1 x', range(65)), 'BAD_KEY_LENGTH');
    refuses(() => deriveKey('deut/1 x', key, undefined, 15), 'BAD_LENGTH');
    refuses(() => deriveKey('deut/1 x', key, undefined, 65), 'BAD_LENGTH');
    refuses(() => deriveKey('deut/1 x', key, undefined, 31.5), 'BAD_LENGTH');
    refuses(() => mac16(range(8), key), 'BAD_KEY_LENGTH');
    assert.equal(deriveKey('deut/1 x', range(16), undefined, 16).length, 16);
    assert.equal(deriveKey('deut/1 x', range(64), undefined, 64).length, 64);
  });
});

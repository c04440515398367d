// Tests for aead.ts: RFC 8439 section 2.8.2 (ChaCha20-Poly1305), draft-irtf-cfrg-xchacha-03
// appendix A.3.1 (XChaCha20-Poly1305), the Noise nonce layout, and tampering.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DeutError } from '@deut/common';
import { fromHex, toHex } from '../src/bytes.js';
import { chachaNonce, chachaOpen, chachaSeal, xchachaOpen, xchachaSeal } from '../src/aead.js';
import { cryptoReady, sodium } from '../src/sodium.js';

const SUNSCREEN = new TextEncoder().encode(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
);
const KEY = fromHex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
const AAD = fromHex('50515253c0c1c2c3c4c5c6c7');

const RFC8439_NONCE = fromHex('070000004041424344454647');
const RFC8439_CT =
  'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6' +
  '3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36' +
  '92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc' +
  '3ff4def08e4b7a9de576d26586cec64b6116';
const RFC8439_TAG = '1ae10b594f09e26a7e902ecbd0600691';

const XCHACHA_NONCE = fromHex('404142434445464748494a4b4c4d4e4f5051525354555657');
const XCHACHA_CT =
  'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb' +
  '731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452' +
  '2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9' +
  '21f9664c97637da9768812f615c68b13b52e';
const XCHACHA_TAG = 'c0875924c1c7987947deafd8780acf49';

function flipped(bytes: Uint8Array, index: number): Uint8Array {
  const copy = bytes.slice();
  copy[index] = (copy[index] ?? 0) ^ 0x01;
  return copy;
}

before(async () => {
  await cryptoReady();
});

describe('ChaCha20-Poly1305', () => {
  test('aead - RFC 8439 section 2.8.2 vector through libsodium IETF', () => {
    const sealed = sodium().crypto_aead_chacha20poly1305_ietf_encrypt(SUNSCREEN, AAD, null, RFC8439_NONCE, KEY);
    assert.equal(toHex(sealed), RFC8439_CT + RFC8439_TAG);
  });

  test('aead - chachaSeal is IETF ChaCha20-Poly1305 under nonce 0x00000000 || le64(counter)', () => {
    const counter = 0x0001_0203_0405_0607; // < 2^53; every byte distinct, so order errors show
    assert.equal(toHex(chachaNonce(counter)), '000000000706050403020100');
    assert.equal(toHex(chachaNonce(0)), '000000000000000000000000');
    assert.equal(toHex(chachaNonce(Number.MAX_SAFE_INTEGER)), '00000000ffffffffffff1f00');
    const sealed = chachaSeal(KEY, counter, SUNSCREEN, AAD);
    const expected = sodium().crypto_aead_chacha20poly1305_ietf_encrypt(
      SUNSCREEN,
      AAD,
      null,
      fromHex('000000000706050403020100'),
      KEY,
    );
    assert.equal(toHex(sealed), toHex(expected));
    assert.deepEqual(chachaOpen(KEY, counter, sealed, AAD), SUNSCREEN);
  });

  test('aead - chachaOpen returns null for tampering, wrong counter, wrong ad, short input', () => {
    const sealed = chachaSeal(KEY, 5, SUNSCREEN, AAD);
    for (const i of [0, 57, sealed.length - 17, sealed.length - 16, sealed.length - 1]) {
      assert.equal(chachaOpen(KEY, 5, flipped(sealed, i), AAD), null, `byte ${i}`);
    }
    assert.equal(chachaOpen(KEY, 6, sealed, AAD), null);
    assert.equal(chachaOpen(KEY, 5, sealed, flipped(AAD, 0)), null);
    assert.equal(chachaOpen(KEY, 5, sealed), null);
    assert.equal(chachaOpen(KEY, 5, sealed.subarray(0, 15), AAD), null);
    assert.equal(chachaOpen(flipped(KEY, 0), 5, sealed, AAD), null);
  });

  test('aead - chacha refuses bad key lengths and counters', () => {
    const code = (c: string) => (err: unknown) => err instanceof DeutError && err.code === c;
    assert.throws(() => chachaSeal(KEY.subarray(0, 31), 0, SUNSCREEN), code('BAD_KEY_LENGTH'));
    assert.throws(() => chachaOpen(KEY.subarray(0, 31), 0, SUNSCREEN), code('BAD_KEY_LENGTH'));
    for (const counter of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN, Infinity]) {
      assert.throws(() => chachaSeal(KEY, counter, SUNSCREEN), code('BAD_NONCE'), String(counter));
      assert.throws(() => chachaOpen(KEY, counter, SUNSCREEN), code('BAD_NONCE'), String(counter));
    }
  });
});

describe('XChaCha20-Poly1305', () => {
  test('aead - draft-irtf-cfrg-xchacha-03 A.3.1 vector', () => {
    const sealed = xchachaSeal(KEY, XCHACHA_NONCE, SUNSCREEN, AAD);
    assert.equal(toHex(sealed), XCHACHA_CT + XCHACHA_TAG);
    assert.deepEqual(xchachaOpen(KEY, XCHACHA_NONCE, fromHex(XCHACHA_CT + XCHACHA_TAG), AAD), SUNSCREEN);
  });

  test('aead - xchachaOpen returns null for tampering, wrong nonce, wrong ad, short input', () => {
    const sealed = fromHex(XCHACHA_CT + XCHACHA_TAG);
    for (const i of [0, 64, sealed.length - 17, sealed.length - 16, sealed.length - 1]) {
      assert.equal(xchachaOpen(KEY, XCHACHA_NONCE, flipped(sealed, i), AAD), null, `byte ${i}`);
    }
    assert.equal(xchachaOpen(KEY, flipped(XCHACHA_NONCE, 23), sealed, AAD), null);
    assert.equal(xchachaOpen(KEY, XCHACHA_NONCE, sealed, flipped(AAD, 11)), null);
    assert.equal(xchachaOpen(KEY, XCHACHA_NONCE, sealed), null);
    assert.equal(xchachaOpen(KEY, XCHACHA_NONCE, new Uint8Array(0)), null);
  });

  test('aead - xchacha round trip with empty plaintext and default ad', () => {
    const sealed = xchachaSeal(KEY, XCHACHA_NONCE, new Uint8Array(0));
    assert.equal(sealed.length, 16);
    assert.deepEqual(xchachaOpen(KEY, XCHACHA_NONCE, sealed), new Uint8Array(0));
  });

  test('aead - xchacha refuses bad key and nonce lengths', () => {
    const code = (c: string) => (err: unknown) => err instanceof DeutError && err.code === c;
    assert.throws(() => xchachaSeal(new Uint8Array(16), XCHACHA_NONCE, SUNSCREEN), code('BAD_KEY_LENGTH'));
    assert.throws(() => xchachaSeal(KEY, RFC8439_NONCE, SUNSCREEN), code('BAD_NONCE_LENGTH'));
    assert.throws(() => xchachaOpen(KEY, RFC8439_NONCE, SUNSCREEN), code('BAD_NONCE_LENGTH'));
  });
});

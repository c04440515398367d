import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { cryptoReady } from '../src/sodium.js';
import { headerMask } from '../src/header-protection.js';
import { fromHex, toHex } from '../src/bytes.js';

before(cryptoReady);

// RFC 9001 Appendix A.5 (ChaCha20-Poly1305 short header): hp key, sample and the 5-byte mask.
test('header protection - matches the RFC 9001 A.5 ChaCha20 mask', () => {
  const hp = fromHex('25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4');
  const sample = fromHex('5e5cd55c41f69080575d7999c25a5bfb');
  assert.equal(toHex(headerMask(hp, sample).subarray(0, 5)), 'aefefe7d03');
});

test('header protection - a sample whose counter has the top bit set works and ignores only that bit', () => {
  const hp = new Uint8Array(32).fill(3);
  const high = fromHex('ffffffff0102030405060708090a0b0c');
  const low = fromHex('ffffff7f0102030405060708090a0b0c');
  assert.equal(toHex(headerMask(hp, high)), toHex(headerMask(hp, low)));
});

test('header protection - depends on key and every sample byte', () => {
  const hp = new Uint8Array(32).fill(7);
  const sample = new Uint8Array(16);
  const base = toHex(headerMask(hp, sample));
  for (let i = 0; i < 16; i++) {
    const s = sample.slice();
    s[i] = 1;
    assert.notEqual(toHex(headerMask(hp, s)), base, `sample byte ${i}`);
  }
  assert.notEqual(toHex(headerMask(new Uint8Array(32).fill(8), sample)), base);
});

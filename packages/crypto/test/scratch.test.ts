// Tests for scratch.ts: the reused-memory primitives give the JS wrappers' bytes exactly,
// write nothing when authentication fails, and read keys at an offset.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, toHex } from '../src/bytes.js';
import { chachaOpen, chachaSeal } from '../src/aead.js';
import { headerMask } from '../src/header-protection.js';
import { addInboundLayer, addInboundLayerInto, peelOutbound, peelOutboundInto, sealOutbound } from '../src/onion.js';

/** The cell geometry @deut/wire gives the tunnel layer (PROTOCOL.md §5.1). */
const MAX_HOPS = 7;
const CELL_BODY_BYTES = 1160;
const CELL_PLAINTEXT_BYTES = CELL_BODY_BYTES - 16 * MAX_HOPS;
import { chachaOpenInto, chachaSealInto, macInto, wipeScratch, xorHeaderMask } from '../src/scratch.js';
import { cryptoReady, sodium } from '../src/sodium.js';

before(cryptoReady);

test('scratch - ChaCha20-Poly1305 into a buffer equals chachaSeal, at any offset and length, and opens back', () => {
  for (const length of [0, 1, 63, 64, 65, 1176]) {
    const key = randomBytes(32);
    const plaintext = randomBytes(length);
    const ad = randomBytes(8);
    const counter = 2 ** 40 + length;
    const out = new Uint8Array(length + 16 + 5);
    chachaSealInto(key, counter, plaintext, ad, out, 5);
    assert.equal(toHex(out.subarray(5)), toHex(chachaSeal(key, counter, plaintext, ad)));
    const opened = new Uint8Array(length);
    assert.ok(chachaOpenInto(key, counter, out.subarray(5), ad, opened, 0));
    assert.equal(toHex(opened), toHex(chachaOpen(key, counter, out.subarray(5), ad)!));
  }
});

test('scratch - a forged ChaCha20-Poly1305 message opens to false and writes nothing', () => {
  const key = randomBytes(32);
  const sealed = chachaSeal(key, 7, randomBytes(100), new Uint8Array(8));
  sealed[50]! ^= 1;
  const out = new Uint8Array(100).fill(0xaa);
  assert.equal(chachaOpenInto(key, 7, sealed, new Uint8Array(8), out, 0), false);
  assert.ok(out.every((b) => b === 0xaa));
  assert.equal(chachaOpenInto(key, 7, new Uint8Array(15), new Uint8Array(8), out, 0), false);
});

test('scratch - header mask XORed in place equals headerMask', () => {
  for (let i = 0; i < 20; i++) {
    const hp = randomBytes(32);
    const sample = randomBytes(16);
    const target = randomBytes(8);
    const expected = headerMask(hp, sample).map((m, j) => m ^ target[j]!);
    xorHeaderMask(hp, sample, target, 0);
    assert.equal(toHex(target), toHex(expected));
  }
});

test('scratch - Poly1305 into a buffer equals crypto_onetimeauth, key read at an offset', () => {
  const keys = randomBytes(64);
  const message = randomBytes(1144);
  const out = new Uint8Array(16);
  macInto(keys, 32, message, out, 0);
  assert.equal(toHex(out), toHex(sodium().crypto_onetimeauth(message, keys.subarray(32))));
});

test('scratch - onion layers into a buffer, with keys at an offset, equal the allocating functions', () => {
  const keys = randomBytes(64);
  const outbound = keys.subarray(0, 32);
  const inbound = keys.subarray(32);
  const body = sealOutbound([{ key: outbound, v: 5 }, { key: randomBytes(32), v: 9 }], randomBytes(CELL_PLAINTEXT_BYTES), MAX_HOPS);
  const out = new Uint8Array(CELL_BODY_BYTES + 13);
  assert.ok(peelOutboundInto(keys, 5, body, out, 13, 0));
  assert.equal(toHex(out.subarray(13)), toHex(peelOutbound(outbound, 5, body)!));
  const tampered = body.slice();
  tampered[700]! ^= 1;
  const untouched = new Uint8Array(CELL_BODY_BYTES).fill(3);
  assert.equal(peelOutboundInto(keys, 5, tampered, untouched, 0, 0), false);
  assert.ok(untouched.every((b) => b === 3));
  addInboundLayerInto(keys, 77, body, out, 13, 32);
  assert.equal(toHex(out.subarray(13)), toHex(addInboundLayer(inbound, 77, body)));
  assert.throws(() => peelOutboundInto(keys, 5, body, out, 13, 40), /layer key/);
});

test('scratch - wipe clears the block and later calls still work', () => {
  wipeScratch();
  const key = randomBytes(32);
  const out = new Uint8Array(26);
  chachaSealInto(key, 1, randomBytes(10), new Uint8Array(0), out, 0);
  assert.ok(chachaOpenInto(key, 1, out, new Uint8Array(0), new Uint8Array(10), 0));
});

// Tests of node ids, keys and the XOR metric (src/id.ts).
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cryptoReady, hash32 } from '@deut/crypto';
import {
  bucketIndex,
  compareDistance,
  idFromHex,
  idToHex,
  keyFromBytes,
  nodeIdFromPublicKey,
  randomIdInBucket,
  xorDistance,
} from '../src/id.js';

const T = { timeout: 20_000 };
const id = fc.uint8Array({ minLength: 32, maxLength: 32 });

function bigOf(bytes: Uint8Array): bigint {
  return BigInt('0x' + Buffer.from(bytes).toString('hex'));
}

before(() => cryptoReady());

test('id - node id is the labelled hash of the public key, distinct from a key of the same bytes', T, () => {
  const pk = new Uint8Array(32).fill(7);
  const nodeId = nodeIdFromPublicKey(pk);
  assert.equal(nodeId.length, 32);
  assert.deepEqual(nodeId, nodeIdFromPublicKey(pk.slice()));
  assert.notDeepEqual(nodeId, hash32(pk));
  assert.notDeepEqual(nodeId, keyFromBytes(pk));
  assert.throws(() => nodeIdFromPublicKey(new Uint8Array(31)), { code: 'BAD_KEY_LENGTH' });
});

test('id - hex round trip and refusal of wrong lengths', T, () => {
  fc.assert(fc.property(id, (a) => assert.deepEqual(idFromHex(idToHex(a)), a)));
  assert.throws(() => idFromHex('00'.repeat(31)), { code: 'BAD_ID_LENGTH' });
  assert.throws(() => idToHex(new Uint8Array(33)), { code: 'BAD_ID_LENGTH' });
  assert.throws(() => idFromHex('zz'.repeat(32)), { code: 'BAD_HEX' });
});

test('id - xor distance is zero to itself, symmetric and agrees with integer xor', T, () => {
  fc.assert(
    fc.property(id, id, (a, b) => {
      assert.equal(bigOf(xorDistance(a, a)), 0n);
      assert.deepEqual(xorDistance(a, b), xorDistance(b, a));
      assert.equal(bigOf(xorDistance(a, b)), bigOf(a) ^ bigOf(b));
    }),
  );
});

test('id - xor distance satisfies the triangle inequality', T, () => {
  fc.assert(
    fc.property(id, id, id, (a, b, c) => {
      assert.ok(bigOf(xorDistance(a, c)) <= bigOf(xorDistance(a, b)) + bigOf(xorDistance(b, c)));
    }),
  );
});

test('id - compareDistance orders exactly as the integer distances', T, () => {
  fc.assert(
    fc.property(id, id, id, (t, a, b) => {
      const da = bigOf(a) ^ bigOf(t);
      const db = bigOf(b) ^ bigOf(t);
      assert.equal(compareDistance(t, a, b), da < db ? -1 : da > db ? 1 : 0);
      assert.equal(compareDistance(t, b, a), -compareDistance(t, a, b) || 0);
    }),
  );
});

test('id - bucketIndex is floor(log2(distance)), symmetric, undefined only for equal ids', T, () => {
  fc.assert(
    fc.property(id, id, (a, b) => {
      const d = bigOf(a) ^ bigOf(b);
      const index = bucketIndex(a, b);
      assert.equal(index, bucketIndex(b, a));
      if (d === 0n) assert.equal(index, undefined);
      else assert.equal(index, d.toString(2).length - 1);
    }),
  );
  const self = new Uint8Array(32);
  const top = new Uint8Array(32);
  top[0] = 0x80;
  const bottom = new Uint8Array(32);
  bottom[31] = 1;
  assert.equal(bucketIndex(self, top), 255);
  assert.equal(bucketIndex(self, bottom), 0);
});

test('id - ids in a lower bucket of a target are closer to it than ids in a higher one', T, () => {
  fc.assert(
    fc.property(id, id, id, (t, a, b) => {
      const ia = bucketIndex(t, a);
      const ib = bucketIndex(t, b);
      if (ia !== undefined && ib !== undefined && ia < ib) assert.equal(compareDistance(t, a, b), -1);
    }),
  );
});

test('id - randomIdInBucket lands in the asked bucket and refuses bad indices', T, () => {
  fc.assert(
    fc.property(id, fc.integer({ min: 0, max: 255 }), (self, index) => {
      assert.equal(bucketIndex(self, randomIdInBucket(self, index)), index);
    }),
  );
  assert.throws(() => randomIdInBucket(new Uint8Array(32), 256), { code: 'BAD_BUCKET' });
  assert.throws(() => randomIdInBucket(new Uint8Array(32), -1), { code: 'BAD_BUCKET' });
});

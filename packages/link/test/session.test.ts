// LinkSession datagrams (PROTOCOL.md §3.4) are built on reused libsodium memory; this checks
// them byte for byte against the construction written with the allocating wrappers.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chachaSeal, cryptoReady, headerMask, randomBytes, toHex } from '@deut/crypto';
import { LinkSession } from '../src/session.js';

before(cryptoReady);

function pair(): [LinkSession, LinkSession] {
  const keys = { sendKey: randomBytes(32), sendHp: randomBytes(32), receiveKey: randomBytes(32), receiveHp: randomBytes(32) };
  const mirror = { sendKey: keys.receiveKey, sendHp: keys.receiveHp, receiveKey: keys.sendKey, receiveHp: keys.sendHp };
  return [new LinkSession(keys, 'a', randomBytes(32), false, 1, 0), new LinkSession(mirror, 'b', randomBytes(32), false, 1, 0)];
}

test('link session - datagram = masked LE64 counter ‖ ChaCha20-Poly1305(frame, ad = counter), byte for byte', () => {
  const keys = { sendKey: randomBytes(32), sendHp: randomBytes(32), receiveKey: randomBytes(32), receiveHp: randomBytes(32) };
  const session = new LinkSession(keys, 'a', randomBytes(32), false, 1, 0);
  for (let counter = 0; counter < 4; counter++) {
    const frame = randomBytes(1176);
    const datagram = session.seal(frame);
    const header = new Uint8Array(8);
    new DataView(header.buffer).setUint32(0, counter, true);
    const expected = new Uint8Array(1200);
    expected.set(chachaSeal(keys.sendKey, counter, frame, header), 8);
    const mask = headerMask(keys.sendHp, expected.subarray(8, 24));
    for (let i = 0; i < 8; i++) expected[i] = header[i]! ^ mask[i]!;
    assert.equal(toHex(datagram), toHex(expected));
  }
});

test('link session - open decrypts in place, refuses a replay and leaves a forged datagram as it came', () => {
  const [a, b] = pair();
  const frame = randomBytes(1176);
  const datagram = a.seal(frame);
  const copy = datagram.slice();
  const opened = b.open(datagram);
  assert.ok(opened instanceof Uint8Array);
  assert.equal(toHex(opened), toHex(frame));
  assert.equal(opened.buffer, datagram.buffer, 'the frame is a view of the datagram');
  assert.equal(b.open(copy.slice()), 'replay');
  const forged = a.seal(frame);
  forged[600]! ^= 1;
  const before = forged.slice();
  assert.equal(b.open(forged), 'decrypt');
  assert.equal(toHex(forged), toHex(before));
  assert.equal(b.received, 1);
});

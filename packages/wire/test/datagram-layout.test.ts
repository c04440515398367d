/** The link datagram layouts of PROTOCOL.md §3.1, §3.3 and §3.4: where each field's view falls. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as wire from '../src/index.js';

const datagram = Uint8Array.from({ length: wire.DATAGRAM_BYTES }, (_, i) => i & 0xff);
const span = (view: Uint8Array): [number, number] => [view.byteOffset, view.byteOffset + view.length];

test('datagram layout - handshake fields: representative first, mac2 then mac1 last', () => {
  assert.deepEqual(span(wire.representativeField(datagram)), [0, 32]);
  assert.deepEqual(span(wire.mac1Input(datagram)), [0, 1184]);
  assert.deepEqual(span(wire.mac1Field(datagram)), [1184, 1200]);
  assert.deepEqual(span(wire.mac2Input(datagram)), [0, 1168]);
  assert.deepEqual(span(wire.mac2Field(datagram)), [1168, 1184]);
  assert.deepEqual(span(wire.cookieReplyNonce(datagram)), [0, 24]);
  assert.deepEqual(span(wire.cookieReplySealed(datagram)), [24, 56]);
  assert.ok(wire.MSG2_NOISE_BYTES <= wire.MAC2_OFFSET, 'the Noise bytes never reach the MACs');
});

test('datagram layout - data fields: counter, sample, ciphertext, frame', () => {
  assert.deepEqual(span(wire.linkCounterField(datagram)), [0, 8]);
  assert.deepEqual(span(wire.linkSample(datagram)), [8, 24]);
  assert.deepEqual(span(wire.linkCiphertext(datagram)), [8, 1200]);
  assert.deepEqual(span(wire.linkFrameOf(datagram)), [8, 8 + wire.LINK_FRAME_BYTES]);
});

test('datagram layout - the counter is LE64, and 2^53 or more reads as -1', () => {
  const header = new Uint8Array(8);
  for (const counter of [0, 1, 0xff, 0x1234_5678, 0xffff_ffff, 0x1_0000_0000, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER]) {
    wire.writeLinkCounter(header, counter);
    const view = new DataView(header.buffer);
    assert.equal(view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32, counter);
    assert.equal(wire.readLinkCounter(header), counter);
  }
  header.set([0, 0, 0, 0, 0, 0, 0x20, 0]);
  assert.equal(wire.readLinkCounter(header), -1);
  header.fill(0xff);
  assert.equal(wire.readLinkCounter(header), -1);
});

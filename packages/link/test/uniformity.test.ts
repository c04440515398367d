import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cryptoReady, generateKeyPair } from '@deut/crypto';
import { DATAGRAM_BYTES } from '@deut/wire';
import { CHI_SQUARE_255_P001, byteChiSquare, holdEventLoopOpen, createNetwork, startNode, until, type TestNode } from './helpers.js';

await cryptoReady();
after(holdEventLoopOpen());

test('link - every datagram of a session is 1200 bytes of uniformly random-looking bytes', { timeout: 120_000 }, async () => {
  const network = createNetwork('memory');
  const wire: Array<{ data: Uint8Array; handshake: boolean }> = [];
  let handshakePhase = true;
  const stopTap = network.memory!.tap((event) => wire.push({ data: event.data.slice(), handshake: handshakePhase }));
  const responder = await startNode(network);
  const initiators: TestNode[] = [];
  try {
    // 150 handshakes (msg1, msg2, msg3 and the confirming keepalive each), then bulk data.
    for (let i = 0; i < 150; i++) {
      const node = await startNode(network, { identity: generateKeyPair() });
      initiators.push(node);
      await node.link.connect(responder.link.address);
    }
    handshakePhase = false;
    const sender = initiators[0]!;
    for (let i = 0; i < 2000; i++) sender.link.send(responder.link.address, new Uint8Array(i % 1000).fill(0x41));
    await until(() => responder.received.length === 2000);

    assert.ok(wire.length >= 150 * 4 + 2000);
    assert.ok(wire.every((w) => w.data.length === DATAGRAM_BYTES), 'one size for every datagram');

    const handshakes = wire.filter((w) => w.handshake).map((w) => w.data);
    const data = wire.filter((w) => !w.handshake).map((w) => w.data);
    const chiHandshake = byteChiSquare(handshakes);
    const chiData = byteChiSquare(data);
    assert.ok(chiHandshake < CHI_SQUARE_255_P001, `handshake bytes chi-square ${chiHandshake.toFixed(1)}`);
    assert.ok(chiData < CHI_SQUARE_255_P001, `data bytes chi-square ${chiData.toFixed(1)} (payloads were all 0x41)`);

    // Masked counters: the first 8 bytes of data datagrams.
    const headers = data.map((d) => d.subarray(0, 8));
    const chiHeaders = byteChiSquare(headers);
    assert.ok(chiHeaders < CHI_SQUARE_255_P001, `data header chi-square ${chiHeaders.toFixed(1)}`);
    // Power check: the same statistic on the unmasked counters is far off, so the test can fail.
    const plainCounters = headers.map((_, i) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint32(0, i, true);
      return b;
    });
    assert.ok(byteChiSquare(plainCounters) > 10 * CHI_SQUARE_255_P001);

    // Elligator: the byte holding the top bits of msg1's representative is not biased.
    // Raw X25519 public keys would have bit 7 of byte 31 always clear.
    const msg1TopBits = handshakes.filter((_, i) => i % 4 === 0).map((d) => d[31]! >> 6);
    const ones = msg1TopBits.reduce((n, bits) => n + (bits >> 1), 0);
    assert.ok(ones > 40 && ones < 110, `top bit set in ${ones}/150 representatives`);
  } finally {
    stopTap();
    await Promise.all([responder, ...initiators].map((n) => n.link.close()));
    await network.close();
  }
});

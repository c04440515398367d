/**
 * Issue #8, handshake and build-request CPU floods (docs/PROTOCOL.md §3.3 "Under load", §4.2
 * step 0): at most one key exchange per admitted request; under load a stateless cookie must
 * be echoed from the source address before any Diffie-Hellman; per-source and global limits;
 * a legitimate peer still gets through. Everything runs on the in-memory network with a
 * ManualClock, so token buckets refill only when a test says so.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type UdpAddress, type CounterSnapshot } from '@deut/common';
import { cryptoReady, generateKeyPair } from '@deut/crypto';
import { InitiatorHandshake, Link, type LinkCounter } from '@deut/link';
import { DeutNode } from '@deut/node';
import { SpyingSocket, createEngineMesh, withDeadline } from '@deut/testkit';
import { MemoryNetwork } from '@deut/transport';
import { DATAGRAM_BYTES } from '@deut/wire';
import type { TunnelCounter } from '@deut/tunnel';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const PAYLOAD = { minVersion: 1, maxVersion: 1, ephemeralIdentity: true } as const;
const spoofed = (i: number): UdpAddress => ({ host: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 4000 + (i % 1000) });
const counter = (link: Link, name: LinkCounter): number => link.stats().counters[name] ?? 0;

async function settle(network: MemoryNetwork): Promise<void> {
  for (let i = 0; i < 8; i++) {
    await network.idle();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Pearson chi-square of byte values against uniform. */
function byteChiSquare(chunks: readonly Uint8Array[]): number {
  const counts = new Array<number>(256).fill(0);
  let total = 0;
  for (const chunk of chunks) {
    for (const byte of chunk) counts[byte]!++;
    total += chunk.length;
  }
  const expected = total / 256;
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
}

test('admission - a msg1 flood from spoofed sources gets cookies, not key exchanges, past the budget; a cookie works only from its own address; a legit peer still connects', { timeout: 30_000 }, async () => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 3, clock });
  const bSocket = new SpyingSocket(network.bind({ host: '127.0.7.1', port: 7000 }));
  const budget = 20;
  const b = await Link.create({ socket: bSocket, identity: generateKeyPair(), clock, handshakeRateGlobal: { perSecond: 10, burst: budget } });
  const a = await Link.create({ socket: network.bind({ host: '127.0.7.2', port: 7000 }), identity: generateKeyPair(), clock });
  const cSocket = network.bind({ host: '127.0.7.3', port: 7000 });
  try {
    // 500 fresh msg1 from 500 spoofed sources: the budget gets key exchanges, the rest cookies.
    const flood = 500;
    for (let i = 0; i < flood; i++) bSocket.inject(new InitiatorHandshake(generateKeyPair(), PAYLOAD).msg1, spoofed(i));
    assert.equal(counter(b, 'handshakes-responded'), budget, 'key exchanges stop at the global budget');
    assert.equal(counter(b, 'cookies-sent'), flood - budget, 'every other msg1 got a cookie');
    assert.equal(b.stats().pendingHandshakes, budget, 'cookies leave no half-open state');
    for (let i = 0; i < flood; i++) {
      const sent = bSocket.sentTo(spoofed(i));
      assert.equal(sent.datagrams, 1, `source ${i}: one answer`);
      assert.ok(sent.bytes <= bSocket.receivedFrom(spoofed(i)).bytes, `source ${i}: no more bytes out than in`);
    }

    // A cookie fetched by C at its own address does not open the door for another address.
    const c = new InitiatorHandshake(generateKeyPair(), PAYLOAD);
    const cookieReply = new Promise<Uint8Array>((resolve) => cSocket.onMessage((data) => resolve(data)));
    cSocket.send(c.msg1, b.address);
    await settle(network);
    const reply = await withDeadline(cookieReply, 5_000, 'the cookie reply');
    assert.equal(reply.length, DATAGRAM_BYTES, 'a cookie reply is one 1200-byte datagram');
    const cookie = c.openCookieReply(reply);
    assert.ok(cookie !== null, 'C opens the cookie meant for it');
    const withCookie = c.msg1WithCookie(cookie).msg1;
    const responded = counter(b, 'handshakes-responded');
    bSocket.inject(withCookie, spoofed(9999));
    assert.equal(counter(b, 'handshakes-responded'), responded, 'a cookie echoed from another address buys no key exchange');
    cSocket.send(withCookie, b.address);
    await settle(network);
    assert.equal(counter(b, 'handshakes-responded'), responded + 1, 'the cookie works from the address it was made for');
    assert.equal(counter(b, 'handshakes-cookie-admitted'), 1);
    // The same msg1 again: answered from the stored msg2, no second key exchange.
    for (let i = 0; i < 50; i++) cSocket.send(withCookie, b.address);
    await settle(network);
    assert.equal(counter(b, 'handshakes-responded'), responded + 1, 'one key exchange per admitted request');

    // A legitimate peer, with the node still under load, connects through the cookie exchange.
    const connecting = a.connect(b.address);
    await settle(network);
    const info = await withDeadline(connecting, 5_000, 'the legit handshake');
    assert.deepEqual(info.publicKey, b.publicKey);
    assert.equal(counter(a, 'cookies-received'), 1);
    assert.equal(counter(b, 'handshakes-cookie-admitted'), 2);
    assert.ok(b.sessions().some((s) => s.confirmed), 'the responder has the confirmed session');
  } finally {
    await Promise.all([a.close(), b.close(), cSocket.close()]);
    await network.close();
  }
});

test('admission - cookie replies are 1200 bytes that look uniformly random', { timeout: 30_000 }, async () => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 4, clock });
  const b = await Link.create({
    socket: network.bind({ host: '127.0.7.1', port: 7000 }),
    identity: generateKeyPair(),
    clock,
    handshakeRateGlobal: { perSecond: 1, burst: 1 },
    handshakeRatePerSource: { perSecond: 1, burst: 1000 },
  });
  const prober = network.bind({ host: '127.0.7.9', port: 7000 });
  const replies: Uint8Array[] = [];
  prober.onMessage((data) => replies.push(data.slice()));
  try {
    for (let i = 0; i < 201; i++) prober.send(new InitiatorHandshake(generateKeyPair(), PAYLOAD).msg1, b.address);
    await settle(network);
    assert.equal(replies.length, 201);
    const cookies = replies.slice(1); // the first msg1 was within the budget and got a msg2
    assert.ok(cookies.every((r) => r.length === DATAGRAM_BYTES));
    const chi = byteChiSquare(cookies);
    // 255 degrees of freedom, p = 0.001.
    assert.ok(chi < 330.52, `cookie replies' bytes are not uniform: chi-square ${chi.toFixed(1)}`);
    const firstBytes = new Set(cookies.map((r) => Buffer.from(r.subarray(0, 4)).toString('hex')));
    assert.equal(firstBytes.size, cookies.length, 'no constant header');
  } finally {
    await Promise.all([b.close(), prober.close()]);
    await network.close();
  }
});

test('admission - a build-request flood from one neighbour costs one key exchange per admitted request and none past its rate; another neighbour still builds', { timeout: 60_000 }, async () => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 5, clock });
  const mesh = await createEngineMesh({ shared: { network, clock } });
  let relay: DeutNode | undefined;
  try {
    relay = await DeutNode.start({
      listen: { host: '127.0.6.1', port: 0 },
      sockets: { bind: (address) => Promise.resolve(network.bind(address)) },
      clock,
      allowPrivateExits: true,
      identity: generateKeyPair(),
      buildRatePerNeighbour: { perSecond: 3, burst: 90 },
    });
    const r = relay;
    const target = { address: r.address, publicKey: r.publicKey };
    const flooder = await mesh.add('X');
    const master = await mesh.add('M');
    const tunnels = (): CounterSnapshot<TunnelCounter> => r.stats().tunnels.counters;
    // Links first: a link queues only 64 payloads while its handshake runs.
    for (const node of [flooder, master]) {
      const linking = node.link.connect(r.address);
      await mesh.settle();
      await withDeadline(linking, 5_000, 'a link to the relay');
    }
    const flood = 300;
    const floods = Array.from({ length: flood }, () => flooder.engine.build({ mode: 'master', hops: [target], timeoutMs: 2_000 }).then(() => true, () => false));
    await mesh.settle();
    assert.equal(tunnels()['build-key-exchanges'], 90, 'key exchanges stop at the per-neighbour burst (Tor: 90)');
    assert.equal(tunnels()['drop:build-rate-limited'], flood - 90, 'the rest is dropped before any cryptography');
    assert.equal(r.stats().tunnels.endpoints, 90, 'one tunnel per admitted request');

    // Another neighbour builds at its own rate.
    const building = Promise.all(Array.from({ length: 20 }, () => master.engine.build({ mode: 'master', hops: [target], timeoutMs: 2_000 }).then(() => true, () => false)));
    await mesh.settle();
    const legit = await withDeadline(building, 5_000, 'the legit builds');
    assert.equal(legit.filter(Boolean).length, 20, 'every legit build succeeds during the flood');
    await mesh.advance(2_500);
    const flooded = await Promise.all(floods);
    assert.equal(flooded.filter(Boolean).length, 90, 'the flooder got exactly its burst');
    assert.equal(tunnels()['build-key-exchanges'], 110, 'one key exchange per admitted request, none for dropped ones');
  } finally {
    await mesh.close();
    await relay?.close();
    await network.close();
  }
});

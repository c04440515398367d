import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock, addressKey, silentLogger } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes, mac16 } from '@deut/crypto';
import { openSocketCount } from '@deut/transport';
import { DATAGRAM_BYTES, mac1Field, mac1Input, representativeField } from '@deut/wire';
import { HANDSHAKE_ATTEMPTS, HANDSHAKE_RETRANSMIT_SPAN_MS, KnownPeers, handshakeRetryDelayMs, type Link, type LinkCounter } from '../src/index.js';
import { InitiatorHandshake } from '../src/handshake.js';
import { ControlledSocket, advanceClock, collectGarbage, createNetwork, holdEventLoopOpen, withClockedPair, withConnectedPair, flush, startNode, until, type TestNode, type TransportName } from './helpers.js';
import { openMac1Key } from '../src/mac-keys.js';

await cryptoReady();
after(holdEventLoopOpen());

const payload = (i: number): Uint8Array => {
  const p = new Uint8Array(4 + (i % 900));
  new DataView(p.buffer).setUint32(0, i);
  return p;
};
const idOf = (p: Uint8Array): number => new DataView(p.buffer, p.byteOffset).getUint32(0);

async function closeAll(...nodes: TestNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.link.close()));
}

for (const transport of ['memory', 'udp'] as TransportName[]) {
  describe(`link over ${transport}`, () => {
    test(`link - two nodes handshake and exchange 10,000 datagrams (${transport})`, { timeout: 60_000 }, async () => {
      const network = createNetwork(transport);
      const a = await startNode(network);
      const b = await startNode(network);
      try {
        const info = await a.link.connect(b.link.address);
        assert.deepEqual(info.publicKey, b.identity.publicKey);
        // Bounded window of outstanding datagrams, like any sane UDP sender on loopback.
        const total = 10_000;
        const window = 64;
        b.link.onPayload((p, from) => {
          b.received.push({ payload: p, from: from.address });
          b.link.send(from.address, p);
        });
        let sent = 0;
        while (a.received.length < total) {
          while (sent < total && sent - a.received.length < window) a.link.send(b.link.address, payload(sent++));
          await new Promise((resolve) => setImmediate(resolve));
        }
        assert.equal(b.received.length, total);
        const ids = new Set(a.received.map((r) => idOf(r.payload)));
        assert.equal(ids.size, total, 'every datagram echoed exactly once');
        for (const r of a.received.slice(0, 50)) assert.deepEqual(r.payload, payload(idOf(r.payload)));
        const sa = a.link.sessions();
        const sb = b.link.sessions();
        assert.equal(sa.length, 1);
        assert.equal(sb.length, 1);
        assert.equal(sa[0]?.sessionId, sb[0]?.sessionId, 'both ends print the same session id');
        assert.match(sa[0]?.sessionId ?? '', /^[0-9a-f]{32}$/);
        assert.equal(a.link.stats().counters['drop:decrypt'] ?? 0, 0);
      } finally {
        await closeAll(a, b);
        await network.close();
      }
    });

    test(`link - both sides pin each other on first use (${transport})`, { timeout: 20_000 }, async () => {
      const network = createNetwork(transport);
      const a = await startNode(network);
      const b = await startNode(network);
      try {
        await a.link.connect(b.link.address);
        await until(() => b.link.sessions().length === 1);
        assert.deepEqual(a.knownPeers.get(addressKey(b.link.address)), b.identity.publicKey);
        assert.deepEqual(b.knownPeers.get(addressKey(a.link.address)), a.identity.publicKey);
      } finally {
        await closeAll(a, b);
        await network.close();
      }
    });
  });
}

describe('link security', () => {
  test('link - man in the middle: session ids differ, and a pinned key makes the handshake fail', { timeout: 20_000 }, async () => {
    const network = createNetwork('memory');
    const a = await startNode(network);
    const mallory = await startNode(network);
    const b = await startNode(network);
    try {
      // Mallory answers at the address A believes is B's and relays payloads to the real B.
      mallory.link.onPayload((p, from) => {
        if (addressKey(from.address) === addressKey(a.link.address)) mallory.link.send(b.link.address, p);
        else mallory.link.send(a.link.address, p);
      });
      b.link.onPayload((p, from) => b.link.send(from.address, p));
      a.link.send(mallory.link.address, new TextEncoder().encode('hello'));
      await until(() => a.received.length === 1, 5000, 'relayed echo');
      const aSession = a.link.sessions()[0];
      const bSession = b.link.sessions()[0];
      assert.ok(aSession && bSession);
      assert.notEqual(aSession.sessionId, bSession.sessionId, 'operators comparing session ids see the attack');

      // A node that pinned B's real key for that address refuses Mallory's.
      const pinned = KnownPeers.inMemory();
      pinned.pin(addressKey(mallory.link.address), b.identity.publicKey);
      const c = await startNode(network, { knownPeers: pinned });
      try {
        const mismatches: unknown[] = [];
        c.link.on('pin-mismatch', (event) => mismatches.push(event));
        await assert.rejects(c.link.connect(mallory.link.address), { code: 'PIN_MISMATCH' });
        assert.equal(mismatches.length, 1);
        assert.equal(c.link.stats().counters['drop:pin-mismatch'], 1);
        assert.equal(c.link.sessions().length, 0);
      } finally {
        await c.link.close();
      }
    } finally {
      await closeAll(a, mallory, b);
      await network.close();
    }
  });

  test('link - replayed, reordered, duplicated, bit-flipped and truncated datagrams', { timeout: 20_000 }, async () => {
    await withConnectedPair(async (a, b) => {
    b.socket.holding = true;
    for (let i = 0; i < 40; i++) a.link.send(b.link.address, payload(i));
    await until(() => b.socket.held.length === 40);
    b.socket.holding = false;
    const held = b.socket.held.splice(0).map((h) => h.data);
    const from = a.link.address;
    const before = b.link.stats().counters;
    const count = (k: LinkCounter): number => (b.link.stats().counters[k] ?? 0) - (before[k] ?? 0);

    const flipped = held[8]!.slice();
    flipped[600]! ^= 0x01;
    b.socket.deliver(flipped, from); // before the genuine one: must not poison the window
    b.socket.deliver(held[9]!.subarray(0, 1199), from); // truncated
    b.socket.deliver(new Uint8Array([...held[10]!, 0]), from); // oversized
    // A handler owns the bytes it is given (the link decrypts in place), so every delivery
    // gets its own copy, as a duplicating network would give it.
    const order = [...held.keys()].reverse(); // fully reordered, within the window
    for (const i of order) b.socket.deliver(held[i]!.slice(), from);
    b.socket.deliver(held[3]!.slice(), from); // duplicates
    b.socket.deliver(held[5]!.slice(), from);
    b.socket.deliver(held[39]!.slice(), from); // replay of the newest

    const ids = b.received.map((r) => idOf(r.payload)).sort((x, y) => x - y);
    assert.deepEqual(ids, [...Array(40).keys()], 'each genuine datagram delivered exactly once');
    assert.equal(count('drop:replay'), 3);
    assert.equal(count('drop:decrypt'), 1);
    assert.equal(count('drop:size'), 2);
    assert.equal(count('payloads-in'), 40);
    });
  });

  test('link - datagrams older than the replay window are refused', { timeout: 30_000 }, async () => {
    await withConnectedPair(async (a, b) => {
    b.socket.holding = true;
    a.link.send(b.link.address, payload(0));
    await until(() => b.socket.held.length === 1);
    const old = b.socket.held.splice(0);
    b.socket.holding = false;
    for (let i = 1; i <= 4200; i++) a.link.send(b.link.address, payload(i));
    await until(() => b.received.length === 4200);
    b.socket.deliver(old[0]!.data, a.link.address);
    assert.equal(b.received.length, 4200);
    assert.equal(b.link.stats().counters['drop:replay'], 1);
    });
  });

  test('link - a first-contact msg1 carrying a low-order key is dropped and counted, not logged as our error', async () => {
    await withConnectedPair(async (_a, b) => {
      const msg1 = randomBytes(DATAGRAM_BYTES);
      representativeField(msg1).fill(0);
      mac1Field(msg1).set(mac16(openMac1Key(), mac1Input(msg1)));
      b.socket.deliver(msg1, { host: '10.9.9.9', port: 9 });
      await flush();
      const counters = b.link.stats().counters;
      assert.equal(counters['drop:low-order-key'], 1);
      assert.equal(counters['drop:internal-error'] ?? 0, 0);
      assert.equal(b.socket.sent.length, 0, 'no answer');
    });
  });

  test('link - 100,000 random datagrams: no exception, no reply, no state, bounded heap', { timeout: 120_000 }, async () => {
    await withConnectedPair(async (a, b) => {
    b.socket.recording = true;
    const peersBefore = b.link.stats().peers;
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;
    const junk = randomBytes(DATAGRAM_BYTES * 64);
    for (let i = 0; i < 100_000; i++) {
      const size = i % 10 === 0 ? (i * 7919) % 1500 : DATAGRAM_BYTES;
      const offset = (i * 131) % (junk.length - size);
      const data = junk.subarray(offset, offset + size);
      // A third from the peer with a live session (exercises trial decryption), the rest from strangers.
      const from = i % 3 === 0 ? a.link.address : { host: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 1 + (i % 65535) };
      b.socket.deliver(data, from);
    }
    await flush();
    collectGarbage();
    const grown = process.memoryUsage().heapUsed - heapBefore;
    const stats = b.link.stats();
    assert.equal(b.socket.sent.length, 0, 'random input is never answered');
    assert.equal(stats.peers, peersBefore, 'random input creates no peer state');
    assert.equal(stats.pendingHandshakes, 0);
    assert.equal(stats.counters['drop:internal-error'] ?? 0, 0);
    const drops = (stats.counters['drop:size'] ?? 0) + (stats.counters['drop:decrypt'] ?? 0) + (stats.counters['drop:replay'] ?? 0) + (stats.counters['drop:unrecognized'] ?? 0);
    assert.equal(drops, 100_000, 'every junk datagram counted under a reason');
    assert.ok(grown < 8 * 1024 * 1024, `heap grew by ${grown} bytes`);
    // The genuine session still works.
    a.link.send(b.link.address, payload(1));
    await until(() => b.received.length === 1);
    });
  });

  test('link - handshake messages to strangers are never larger than what they answer', { timeout: 20_000 }, async () => {
    const network = createNetwork('memory');
    const a = await startNode(network);
    const b = await startNode(network);
    try {
      b.socket.recording = true;
      a.socket.recording = true;
      await a.link.connect(b.link.address);
      await until(() => b.link.sessions().length === 1);
      // Everything B sent before A proved itself (msg3) answers one datagram of the same size.
      const all = [...a.socket.sent, ...b.socket.sent];
      assert.ok(all.every((d) => d.data.length === DATAGRAM_BYTES));
      assert.equal(b.socket.sent.length, 2, 'msg2 and the confirming keepalive');
      assert.equal(a.socket.sent.length, 2, 'msg1 and msg3');
    } finally {
      await closeAll(a, b);
      await network.close();
    }
  });

  test('link - msg1 floods are rate limited per source and create bounded state', { timeout: 30_000 }, async () => {
    const network = createNetwork('memory');
    const b = await startNode(network, { handshakeRatePerSource: { perSecond: 1, burst: 5 } });
    const attackers: TestNode[] = [];
    try {
      b.socket.recording = true;
      for (let i = 0; i < 3; i++) attackers.push(await startNode(network));
      // Each attacker's msg1 is genuine; replaying it from its address 50 times costs B one DH.
      for (const attacker of attackers) {
        attacker.socket.recording = true;
        attacker.link.send(b.link.address, payload(1));
        await until(() => attacker.socket.sent.length === 1);
      }
      await until(() => b.link.stats().pendingHandshakes === 0 && b.link.sessions().length === 3);
      const before = b.link.stats().counters['handshakes-responded'] ?? 0;
      // Fresh msg1s from one source: only the burst gets through.
      const flooder = attackers[0]!;
      for (let i = 0; i < 40; i++) {
        const hs = new InitiatorHandshake(generateKeyPair(), { minVersion: 1, maxVersion: 1, ephemeralIdentity: true });
        b.socket.deliver(hs.msg1, flooder.link.address);
      }
      const responded = (b.link.stats().counters['handshakes-responded'] ?? 0) - before;
      assert.ok(responded <= 5, `responded to ${responded} of 40 msg1 from one source`);
      assert.ok((b.link.stats().counters['drop:rate-limited'] ?? 0) >= 35);
      assert.ok(b.link.stats().pendingHandshakes <= 1, 'one half-open handshake per source');
    } finally {
      await closeAll(b, ...attackers);
      await network.close();
    }
  });
});

describe('link lifecycle', () => {
  test('link - handshakes complete over a network that loses 20% of datagrams', { timeout: 30_000 }, async () => {
    const clock = new ManualClock();
    const network = createNetwork('memory', { clock, seed: 7 });
    network.memory?.setConditions({ loss: 0.2 });
    const a = await startNode(network, { clock });
    const b = await startNode(network, { clock });
    try {
      let connected = 0;
      for (let i = 0; i < 20; i++) {
        const c = await startNode(network, { clock });
        let done = false;
        c.link.connect(b.link.address).then(() => (done = true), () => (done = true));
        for (let step = 0; step < 400 && !done; step++) {
          clock.advance(250);
          await flush();
        }
        if (c.link.sessions().some((s) => s.confirmed)) connected++;
        await c.link.close();
      }
      assert.ok(connected >= 19, `${connected}/20 links came up through 20% loss`);
      assert.ok((b.link.stats().counters['handshake-retransmit-answered'] ?? 0) + (b.link.stats().counters['handshakes-responded'] ?? 0) > 20);
    } finally {
      await closeAll(a, b);
      await network.close();
    }
  });

  test('link - a lost confirmation: msg3 retransmitted after the responder\'s half-open window is still answered, and the link comes up', { timeout: 20_000 }, async () => {
    // Seen in a 12-relayer mesh at 10% loss: the responder's keepalive confirming msg3 was
    // lost, the next two msg3 copies too, and the third (7 s on) met a responder that had
    // forgotten how to answer it after 5 s. The initiator, which sends nothing on an
    // unconfirmed session, retransmitted msg3 into silence until its connect failed at 31 s.
    await withClockedPair(async (a, b, clock) => {
      a.socket.holding = true;
      let up = false;
      a.link.connect(b.link.address).then(() => (up = true), () => undefined);
      await until(() => a.socket.held.length === 1, 5_000, 'msg2 at A');
      a.socket.deliver(a.socket.held.shift()!.data, b.link.address); // msg2: A sends msg3
      await until(() => a.socket.held.length === 1, 5_000, 'B\'s confirming keepalive');
      a.socket.held.splice(0); // lost
      assert.equal(b.link.sessions().filter((s) => s.confirmed).length, 1, 'B has the session');
      b.socket.holding = true; // A's msg3 copies at +1 s and +3 s are lost too
      await advanceClock(clock, 6_000);
      assert.equal(b.socket.held.length, 2, 'two msg3 copies were lost');
      assert.equal(up, false);
      b.socket.held.splice(0);
      b.socket.holding = false;
      a.socket.holding = false;
      await advanceClock(clock, 2_000, () => up);
      assert.ok(up, 'the copy sent 7 s on was answered and the link came up');
      assert.ok((b.link.stats().counters['handshake-retransmit-answered'] ?? 0) >= 1);
    });
  });

  test('link - a lost msg2: the responder answers msg1 again and keeps its half-open state for msg3 from then on', { timeout: 20_000 }, async () => {
    // The same mesh, the other stage: msg1 arrived, msg2 was lost twice, and msg3 came more
    // than 5 s after msg1's first arrival: the responder had already forgotten the handshake.
    await withClockedPair(async (a, b, clock) => {
      a.socket.holding = true; // every msg2 is held back from A
      let up = false;
      a.link.connect(b.link.address).then(() => (up = true), () => undefined);
      await advanceClock(clock, 5_500);
      assert.equal(a.socket.held.length, 3, 'msg2 at once, then again for the copies of msg1 at +1 s and +3 s');
      assert.equal(b.link.stats().counters['handshake-retransmit-answered'], 2);
      // The last msg2 arrives now, 5.5 s after B first heard msg1: A sends msg3.
      a.socket.holding = false;
      a.socket.deliver(a.socket.held.pop()!.data, b.link.address);
      a.socket.held.splice(0);
      await advanceClock(clock, 1_000, () => up);
      assert.ok(up, `msg3 found the handshake still open and the link came up: A ${JSON.stringify(a.link.stats().counters)} B ${JSON.stringify(b.link.stats().counters)}`);
      assert.equal(b.link.stats().counters['handshake-pending-expired'] ?? 0, 0);
    });
  });

  test('link - an unreachable peer fails connect after the retries and counts the dropped queue', { timeout: 20_000 }, async () => {
    const clock = new ManualClock();
    const network = createNetwork('memory', { clock });
    const a = await startNode(network, { clock });
    try {
      const events: unknown[] = [];
      a.link.on('unreachable', (e) => events.push(e));
      const nowhere = { host: '127.0.0.99', port: 7000 };
      a.link.send(nowhere, payload(1));
      a.link.send(nowhere, payload(2));
      const connecting = a.link.connect(nowhere);
      const rejected = assert.rejects(connecting, { code: 'LINK_UNREACHABLE' });
      for (let i = 0; i < 200; i++) {
        clock.advance(250);
        await flush();
      }
      await rejected;
      assert.equal(events.length, 1);
      assert.equal(a.link.stats().counters['drop:queue-dropped'], 2);
      assert.equal(a.link.stats().counters['handshake-retransmits'], 5);
      assert.equal(a.link.stats().peers, 0, 'state for the dead peer is freed');
    } finally {
      await a.link.close();
      await network.close();
    }
  });

  test('link - liveness: a needed peer that stays silent gets keepalives and answers them; a dead one is reported unreachable about a minute later (§3.8)', { timeout: 30_000 }, async () => {
    const clock = new ManualClock();
    const network = createNetwork('memory', { clock });
    const a = await startNode(network, { clock });
    const b = await startNode(network, { clock });
    try {
      const lost: string[] = [];
      a.link.on('unreachable', (e) => lost.push(addressKey(e.address)));
      await a.link.connect(b.link.address);
      await flush();
      const counter = (n: TestNode, name: LinkCounter): number => n.link.stats().counters[name] ?? 0;
      /** A calls heartbeat(B) once a second, as the tunnel engine does for its neighbours. */
      const run = async (seconds: number, until?: () => boolean): Promise<number> => {
        for (let s = 1; s <= seconds; s++) {
          for (let q = 0; q < 4; q++) {
            clock.advance(250);
            await flush();
          }
          a.link.heartbeat(b.link.address);
          await flush();
          if (until?.() === true) return s;
        }
        return seconds;
      };
      // B is alive but has nothing to say (it does not even heartbeat A): five minutes of
      // silence are bridged by keepalives it answers, with no handshake and no loss reported.
      await run(300);
      assert.deepEqual(lost, []);
      assert.ok(counter(a, 'liveness-keepalives') >= 25, `A sent ${counter(a, 'liveness-keepalives')} keepalives in 300 s`);
      assert.ok(counter(b, 'keepalives-out') >= counter(a, 'liveness-keepalives') - 1, 'B answered each keepalive');
      assert.equal(counter(a, 'liveness-handshakes'), 0, 'a live peer is never suspected');
      // A peer that is not needed gets nothing: no heartbeat call, no keepalive from B to A.
      assert.equal(counter(b, 'liveness-keepalives'), 0);

      // B dies without a word: A's heartbeats find out, through a failed handshake.
      await b.link.close();
      const tookSeconds = await run(120, () => lost.length > 0);
      assert.deepEqual(lost, [addressKey(b.link.address)]);
      assert.equal(counter(a, 'liveness-handshakes'), 1, JSON.stringify({ tookSeconds, a: a.link.stats().counters }));
      // 30 s of silence, then the handshake's six attempts over 31 s.
      assert.ok(tookSeconds <= 65, `unreachable after ${tookSeconds} s of death (liveness timeout plus the handshake retries)`);
    } finally {
      await closeAll(a, b);
      await network.close();
    }
  });

  test('link - a caller naming a bound peer with another key is refused, and the link survives three rekeys', { timeout: 60_000 }, async () => {
    // The attack: a build whose next hop is (A's address, a random key), or a peer-exchange
    // entry saying the same. Adopting that key as "expected" broke R's link to A at its next
    // rekey (both ends refused the real key as a pin mismatch).
    const clock = new ManualClock();
    const network = createNetwork('memory', { clock });
    const r = await startNode(network, { clock });
    const a = await startNode(network, { clock });
    try {
      await r.link.connect(a.link.address);
      await flush();
      const forged = generateKeyPair().publicKey;
      await assert.rejects(r.link.connect(a.link.address, { expectedKey: forged }), { code: 'KEY_MISMATCH' });
      r.link.send(a.link.address, payload(0), { expectedKey: forged });
      assert.equal(r.link.stats().counters['drop:expected-key-mismatch'], 2, 'both requests refused and counted');
      let sent = 0;
      const ids = new Set<string>();
      // 6.5 simulated minutes of traffic both ways: three rekeys at REKEY_AFTER_MS.
      for (let second = 0; second < 390; second++) {
        r.link.send(a.link.address, payload(++sent));
        a.link.send(r.link.address, payload(++sent));
        clock.advance(1000);
        await flush();
        for (const s of r.link.sessions()) if (s.confirmed) ids.add(s.sessionId);
      }
      await flush(20);
      assert.equal(r.received.length + a.received.length, sent, 'every datagram arrived, and the one sent with the forged key did not');
      assert.ok(ids.size >= 4, `three rekeys happened (${ids.size} sessions)`);
      for (const node of [r, a]) assert.equal(node.link.stats().counters['drop:pin-mismatch'] ?? 0, 0, 'no side refused the real key');
    } finally {
      await closeAll(r, a);
      await network.close();
    }
  });

  test('link - rekey under steady traffic loses nothing and yields a new session id', { timeout: 30_000 }, async () => {
    const clock = new ManualClock();
    const network = createNetwork('memory', { clock });
    const a = await startNode(network, { clock });
    const b = await startNode(network, { clock });
    try {
      await a.link.connect(b.link.address);
      await flush();
      const firstId = a.link.sessions()[0]?.sessionId;
      let sent = 0;
      // 4 minutes of traffic, 10 datagrams every simulated second: crosses two rekeys.
      for (let second = 0; second < 240; second++) {
        for (let i = 0; i < 10; i++) a.link.send(b.link.address, payload(sent++));
        b.link.send(a.link.address, payload(sent++));
        clock.advance(1000);
        await flush();
      }
      await flush(20);
      const aToB = b.received.length;
      const bToA = a.received.length;
      assert.equal(aToB + bToA, sent, 'no datagram lost across rekeys');
      assert.ok((a.link.stats().counters['rekeys'] ?? 0) + (b.link.stats().counters['rekeys'] ?? 0) >= 1);
      const ids = new Set(a.link.sessions().map((s) => s.sessionId));
      assert.ok(!ids.has(firstId ?? ''), 'the first session expired');
      const current = a.link.sessions()[0];
      assert.ok(current && b.link.sessions().some((s) => s.sessionId === current.sessionId));
    } finally {
      await closeAll(a, b);
      await network.close();
    }
  });

  test('link - a node that refuses first contact is silent to strangers but accepts its key holders', { timeout: 20_000 }, async () => {
    const network = createNetwork('memory');
    const b = await startNode(network, { acceptFirstContact: false });
    const clock = new ManualClock();
    const stranger = await startNode(network, { clock });
    try {
      b.socket.recording = true;
      stranger.link.send(b.link.address, payload(1));
      await flush();
      assert.equal(b.socket.sent.length, 0, 'no reply to a prober without the key');
      assert.equal(b.link.stats().counters['drop:unrecognized'], 1);
      const known = KnownPeers.inMemory();
      known.pin(addressKey(b.link.address), b.identity.publicKey);
      const friend = await startNode(network, { knownPeers: known });
      try {
        await friend.link.connect(b.link.address);
      } finally {
        await friend.link.close();
      }
    } finally {
      await closeAll(b, stranger);
      await network.close();
    }
  });

  test('link - an ephemeral identity is accepted but never pinned', { timeout: 20_000 }, async () => {
    const network = createNetwork('memory');
    const relay = await startNode(network);
    const master = await startNode(network, { ephemeralIdentity: true });
    try {
      await master.link.connect(relay.link.address);
      await until(() => relay.link.sessions().length === 1);
      assert.equal(relay.knownPeers.size, 0, 'the relay did not pin the master');
      assert.equal(master.knownPeers.size, 1, 'the master pinned the relay');
    } finally {
      await closeAll(relay, master);
      await network.close();
    }
  });

  test('link - close releases the socket and fails pending connects', { timeout: 20_000 }, async () => {
    const network = createNetwork('udp');
    const a = await startNode(network);
    const before = openSocketCount();
    const pending = a.link.connect({ host: '127.0.0.1', port: 9 });
    await a.link.close();
    await assert.rejects(pending, { code: 'LINK_CLOSED' });
    assert.equal(openSocketCount(), before - 1);
    assert.throws(() => a.link.send({ host: '127.0.0.1', port: 9 }, payload(1)), { code: 'LINK_CLOSED' });
    await a.link.close();
  });
});

describe('known peers file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'deut-known-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('known peers - reload forgets pins removed from the file and keeps those not written yet; writes are batched', () => {
    const file = join(dir, 'reloaded');
    const key = (n: number): Uint8Array => new Uint8Array(32).fill(n);
    writeFileSync(file, `10.0.0.1:1 ${Buffer.from(key(1)).toString('base64')}\n10.0.0.2:1 ${Buffer.from(key(2)).toString('base64')}\n`);
    const store = KnownPeers.load(file);
    assert.equal(store.pin('10.0.0.3:1', key(3)), true);
    assert.doesNotMatch(readFileSync(file, 'utf8'), /10\.0\.0\.3/, 'a pin is written at the next flush, not at once');
    // An operator removes a pin with another process (deut pins remove).
    KnownPeers.load(file).forget('10.0.0.1:1');
    assert.equal(store.reload(), 2);
    assert.equal(store.get('10.0.0.1:1'), undefined, 'the removed pin is gone');
    assert.deepEqual(store.get('10.0.0.3:1'), key(3), 'the unwritten pin stays');
    store.flush();
    const text = readFileSync(file, 'utf8');
    assert.doesNotMatch(text, /10\.0\.0\.1:1/, 'and is not written back');
    assert.match(text, /10\.0\.0\.2:1/);
    assert.match(text, /10\.0\.0\.3:1/);
  });

  test('known peers - pins persist across loads and a changed key is refused after restart', { timeout: 20_000 }, async () => {
    const file = join(dir, 'known_peers');
    const network = createNetwork('memory');
    const relayIdentity = generateKeyPair();
    const relay = await startNode(network, { identity: relayIdentity });
    let master: TestNode | undefined;
    let impostor: Link | undefined;
    try {
      master = await startNode(network, { knownPeers: KnownPeers.load(file) });
      await master.link.connect(relay.link.address);
      await master.link.close();
      const text = readFileSync(file, 'utf8');
      assert.match(text, new RegExp(`${addressKey(relay.link.address).replace(/[.[\]]/g, '\\$&')} ${Buffer.from(relayIdentity.publicKey).toString('hex')}$`, 'm'), 'the pin is written in hex, as the CLI prints keys');
      const reloaded = KnownPeers.load(file);
      assert.deepEqual(reloaded.get(addressKey(relay.link.address)), relayIdentity.publicKey);

      // The relay "restarts" with a new key on the same address.
      const address = relay.link.address;
      await relay.link.close();
      const impostorNode = await startNode({ bind: () => bindAgain(network, address) });
      impostor = impostorNode.link;
      const warnings: string[] = [];
      master = await startNode(network, { knownPeers: KnownPeers.load(file), logger: { ...silentLogger, warn: (message: string) => warnings.push(message) } });
      await assert.rejects(master.link.connect(address), { code: 'PIN_MISMATCH' });
      // The operator is told which peer, where its pin is, and how to drop it.
      const key = addressKey(address);
      assert.ok(
        warnings.some((w) => w.includes(`peer ${key} offered a key other than its pin (${file}:2)`) && w.includes(`deut pins remove ${key} --known-peers ${file}`)),
        JSON.stringify(warnings),
      );
    } finally {
      await master?.link.close();
      await impostor?.close();
      await relay.link.close();
      await network.close();
    }
  });

  test('known peers - a malformed file is a clear config error', () => {
    const file = join(dir, 'bad');
    writeFileSync(file, '127.0.0.1:7000 not-a-key\n');
    assert.throws(() => KnownPeers.load(file), { code: 'KNOWN_PEERS_MALFORMED', message: /bad:1/ });
  });
});

function bindAgain(network: ReturnType<typeof createNetwork>, address: { host: string; port: number }): Promise<ControlledSocket> {
  if (network.memory === undefined) throw new Error('memory network expected');
  return Promise.resolve(new ControlledSocket(network.memory.bind(address)));
}

test('link - handshake retransmissions wait 1, 2, 4, 8, 8 s, and a responder answers them for the whole 31 s span', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(handshakeRetryDelayMs), [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
  assert.equal(HANDSHAKE_ATTEMPTS, 6);
  // The last transmission goes out 23 s after the first; one more wait covers its arrival.
  assert.equal(HANDSHAKE_RETRANSMIT_SPAN_MS, 31_000);
});

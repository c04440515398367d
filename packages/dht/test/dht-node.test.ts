// Tests of DHT calls, lookups and nodes (src/rpc.ts, src/lookup.ts, src/dht-node.ts) over
// an in-memory hub with a global view, and over real UDP sockets on loopback.
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { ManualClock, addressKey, type UdpAddress } from '@deut/common';
import { cryptoReady, generateKeyPair, keyPairFromPrivate, randomBytes, toHex, type KeyPair } from '@deut/crypto';
import { DHT_MAX_DATAGRAM_BYTES, decodeDhtDatagram, encodeDhtDatagram } from '@deut/wire';
import { channelFromSocket, type DatagramChannel } from '../src/channel.js';
import { formatDhtContact, parseDhtContact } from '../src/contact-string.js';
import { DhtNode, type DhtNodeOptions } from '../src/dht-node.js';
import { compareDistance, keyFromBytes, nodeIdFromPublicKey } from '../src/id.js';
import { MAX_OTHER_ADDRESSES, iterativeLookup, type LookupCandidate } from '../src/lookup.js';
import { DhtRpc } from '../src/rpc.js';
import { testSeed, type Seeded } from './seeded.js';

// Library timers are unref'd (they must never keep a daemon alive); the tests wait on them.
let holdEventLoopOpen: ReturnType<typeof setInterval> | undefined;
before(async () => {
  await cryptoReady();
  holdEventLoopOpen = setInterval(() => undefined, 1_000);
});
after(() => clearInterval(holdEventLoopOpen));

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const fromText = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A datagram hub: every channel gets an address; delivery is async and may drop. */
class Hub {
  /** Seeded: loss and node keys (so ids and the topology) replay from the seed. */
  constructor(readonly random: Seeded) {}
  readonly #handlers = new Map<string, (data: Uint8Array, from: UdpAddress) => void>();
  #next = 1;
  loss = 0;
  delivered = 0;
  /** Every datagram, for assertions about who saw what. */
  readonly log: Array<{ from: string; to: string; data: Uint8Array }> = [];
  /** Called before delivery; returning false drops the datagram. */
  filter: (from: UdpAddress, to: UdpAddress, data: Uint8Array) => boolean = () => true;

  channel(address: UdpAddress = { host: `10.0.${this.#next >> 8}.${this.#next++ & 255}`, port: 4000 }): DatagramChannel & { address: UdpAddress } {
    const key = addressKey(address);
    return {
      address,
      send: (to, data) => {
        const copy = data.slice();
        this.log.push({ from: key, to: addressKey(to), data: copy });
        if (this.log.length > 100_000) this.log.splice(0, 50_000);
        if (this.random.next() < this.loss || !this.filter(address, to, copy)) return;
        setImmediate(() => {
          const handler = this.#handlers.get(addressKey(to));
          if (handler === undefined) return;
          this.delivered++;
          handler(copy, address);
        });
      },
      onDatagram: (handler) => void this.#handlers.set(key, handler),
      close: () => void this.#handlers.delete(key),
    };
  }

  /** Injects a datagram as if from `from`. */
  inject(from: UdpAddress, to: UdpAddress, data: Uint8Array): void {
    this.#handlers.get(addressKey(to))?.(data, from);
  }
}

interface SimNode {
  readonly dht: DhtNode;
  readonly identity: KeyPair;
  readonly address: UdpAddress;
}

function startNode(hub: Hub, bootstrap: SimNode[], options: Partial<DhtNodeOptions> = {}): SimNode {
  const identity = keyPairFromPrivate(hub.random.bytes(32));
  const channel = hub.channel();
  const dht = new DhtNode({
    identity,
    channel,
    bootstrap: bootstrap.map((b) => ({ publicKey: b.identity.publicKey, address: b.address })),
    rpc: { attempts: 2 },
    operationTimeoutMs: 20_000,
    ...options,
  });
  return { dht, identity, address: channel.address };
}

async function network(hub: Hub, size: number, options: Partial<DhtNodeOptions> = {}): Promise<SimNode[]> {
  const first = startNode(hub, [], options);
  const nodes = [first];
  for (let i = 1; i < size; i++) {
    const node = startNode(hub, [first], options);
    nodes.push(node);
    await node.dht.join();
  }
  return nodes;
}

function trueClosest(nodes: readonly SimNode[], target: Uint8Array, k: number): string[] {
  return nodes
    .map((n) => n.dht.id)
    .sort((a, b) => compareDistance(target, a, b))
    .slice(0, k)
    .map(toHex);
}

function closeAll(nodes: readonly SimNode[]): void {
  for (const n of nodes) n.dht.close();
}

// ---- RPC ----------------------------------------------------------------------------------

test('rpc - a call is answered under the callee key; a call to the wrong key gets no answer', { timeout: 20_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const [a, b] = [hub.channel(), hub.channel()];
  const [ka, kb] = [generateKeyPair(), generateKeyPair()];
  const rpcA = new DhtRpc({ identity: ka, channel: a, attempts: 1 });
  const rpcB = new DhtRpc({ identity: kb, channel: b });
  const seenBy: string[] = [];
  rpcB.handle((body, from) => {
    seenBy.push(toHex(from.publicKey));
    return body.type === 'ping' ? { type: 'pong' } : undefined;
  });
  try {
    const reply = await rpcA.call({ publicKey: kb.publicKey, address: b.address }, { type: 'ping' });
    assert.equal(reply.body.type, 'pong');
    assert.equal(toHex(reply.from.id), toHex(nodeIdFromPublicKey(kb.publicKey)));
    assert.deepEqual(seenBy, [toHex(ka.publicKey)], 'the callee learned the caller key, authenticated');
    // Addressed to another key, the request cannot be opened: dropped, unanswered.
    await assert.rejects(rpcA.call({ publicKey: generateKeyPair().publicKey, address: b.address }, { type: 'ping' }), { code: 'CALL_TIMEOUT' });
    assert.equal(rpcB.stats().counters['drop:request-unauthenticated'], 1);
    assert.equal(seenBy.length, 1);
  } finally {
    rpcA.close();
    rpcB.close();
  }
});

test('rpc - copies and retries are answered once from the cache; a forged answer does not spoil the call', { timeout: 20_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const [a, b] = [hub.channel(), hub.channel()];
  const [ka, kb] = [generateKeyPair(), generateKeyPair()];
  const rpcA = new DhtRpc({ identity: ka, channel: a, attempts: 3 });
  const rpcB = new DhtRpc({ identity: kb, channel: b });
  let served = 0;
  rpcB.handle(() => {
    served++;
    return { type: 'pong' };
  });
  // Every request reaches B twice (a fan-out copy), and B's answers to the first send are
  // lost, which forces a re-send. Before the real answer, a forgery with the right rpc id arrives.
  let answersDropped = 0;
  hub.filter = (from, to, data) => {
    const d = decodeDhtDatagram(data);
    if (d.kind === 'request' && addressKey(to) === addressKey(b.address)) setImmediate(() => hub.inject(from, to, data));
    if (d.kind === 'response' && answersDropped < 2) {
      // Both answers to the first send (original and copy) are lost.
      if (answersDropped++ === 0) {
        const forged = encodeDhtDatagram({ kind: 'response', rpcId: d.rpcId, message: randomBytes(d.message.length) });
        setImmediate(() => hub.inject(b.address, a.address, forged));
      }
      return false;
    }
    return true;
  };
  try {
    const reply = await rpcA.call({ publicKey: kb.publicKey, address: b.address }, { type: 'ping' });
    assert.equal(reply.body.type, 'pong');
    assert.equal(served, 1, 'the handler ran once for all copies and retries');
    const statsA = rpcA.stats().counters;
    const statsB = rpcB.stats().counters;
    assert.ok((statsA.resends ?? 0) >= 1, 'the lost answer was recovered by a re-send');
    assert.equal(statsA['drop:answer-unauthenticated'], 1, 'the forgery was refused');
    assert.ok((statsB['answers-from-cache'] ?? 0) >= 2, 'the copy and the re-send were answered from the cache');
  } finally {
    rpcA.close();
    rpcB.close();
  }
});

test('rpc - garbage, truncated and oversized datagrams are dropped and counted, never answered', { timeout: 20_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const b = hub.channel();
  const kb = generateKeyPair();
  const rpcB = new DhtRpc({ identity: kb, channel: b, perSourceLimit: { perSecond: 1e6, burst: 1e6 }, globalLimit: { perSecond: 1e6, burst: 1e6 } });
  let handled = 0;
  rpcB.handle(() => {
    handled++;
    return { type: 'pong' };
  });
  const attacker = hub.channel();
  let answers = 0;
  hub.filter = (from) => {
    if (addressKey(from) === addressKey(b.address)) answers++;
    return true;
  };
  try {
    const valid = encodeDhtDatagram({ kind: 'request', rpcId: randomBytes(8), message: randomBytes(200) });
    const samples = [
      new Uint8Array(0),
      Uint8Array.of(0xd1),
      randomBytes(50),
      valid.subarray(0, 40),
      valid, // well-formed header, unauthenticated body
      Uint8Array.from([...valid.subarray(0, 10), ...randomBytes(DHT_MAX_DATAGRAM_BYTES)]),
      encodeDhtDatagram({ kind: 'response', rpcId: randomBytes(8), message: randomBytes(60) }),
    ];
    for (let i = 0; i < 2_000; i++) hub.inject(attacker.address, b.address, samples[i % samples.length]!);
    await new Promise((r) => setImmediate(r));
    assert.equal(handled, 0);
    assert.equal(answers, 0, 'silence: no reply to anything unauthenticated');
    const drops = Object.entries(rpcB.stats().counters).filter(([name]) => name.startsWith('drop:'));
    assert.equal(drops.reduce((n, [, v]) => n + (v ?? 0), 0), 2_000, `every datagram counted as a drop: ${JSON.stringify(drops)}`);
    assert.ok(drops.some(([name]) => name === 'drop:request-unauthenticated'));
    assert.ok(drops.some(([name]) => name === 'drop:answer-unmatched'));
    assert.ok(drops.some(([name]) => name.startsWith('drop:datagram-bad')));
  } finally {
    rpcB.close();
  }
});

test('rpc - requests over the per-source limit are dropped before any key exchange', { timeout: 20_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const [a, b] = [hub.channel(), hub.channel()];
  const kb = generateKeyPair();
  const rpcA = new DhtRpc({ identity: generateKeyPair(), channel: a, attempts: 1, maxPending: 10_000 });
  const rpcB = new DhtRpc({ identity: kb, channel: b, perSourceLimit: { perSecond: 1, burst: 20 } });
  rpcB.handle(() => ({ type: 'pong' }));
  try {
    const results = await Promise.allSettled(Array.from({ length: 60 }, () => rpcA.call({ publicKey: kb.publicKey, address: b.address }, { type: 'ping' })));
    const answered = results.filter((r) => r.status === 'fulfilled').length;
    assert.ok(answered >= 20 && answered <= 22, `the burst of 20 (and what refilled meanwhile) passed: ${answered}`);
    assert.equal(rpcB.stats().counters['drop:rate-source'], 60 - answered);
  } finally {
    rpcA.close();
    rpcB.close();
  }
});

// ---- lookups ------------------------------------------------------------------------------

/** `count` lookup candidates with fresh keys, at ports 1000.. of `host` (for lookups against a simulated network). */
function simulatedCandidates(count: number, host: string, random: Seeded): LookupCandidate[] {
  return Array.from({ length: count }, (_, i) => {
    const publicKey = random.bytes(32);
    return { id: nodeIdFromPublicKey(publicKey), publicKey, address: { host, port: 1000 + i } };
  });
}

test('lookup - converges to the true k closest of a simulated network, around dead nodes', { timeout: 20_000 }, async (t: TestContext) => {
  // 300 nodes, each knowing 30 random others plus its 8 nearest: answers are computed from
  // that static graph, and a tenth of the nodes never answer. The graph is sparser than a
  // routing table (no bucket holds k contacts), so once in about 1,500 lookups no node the
  // lookup asks names one of the 20 closest (DEUT_TEST_SEED=78, round 8: the lookup asked
  // the 20 closest it heard of, all answered, none named the one at rank 13). The lookup is
  // right, the graph cannot show it more; a fixed seed keeps the test exact, and any other
  // replays with DEUT_TEST_SEED.
  const random = testSeed(t, 1);
  const nodes = simulatedCandidates(300, '10.9.0.1', random);
  const dead = new Set(nodes.slice(0, 30).map((n) => toHex(n.id)));
  const knows = new Map<string, LookupCandidate[]>();
  for (const n of nodes) {
    const near = [...nodes].sort((x, y) => compareDistance(n.id, x.id, y.id)).slice(1, 9);
    const others = Array.from({ length: 30 }, () => nodes[random.index(nodes.length)]!);
    knows.set(toHex(n.id), [...near, ...others]);
  }
  for (let round = 0; round < 10; round++) {
    const target = random.bytes(32);
    const result = await iterativeLookup({
      target,
      seeds: nodes.slice(30 + round * 3, 33 + round * 3),
      k: 20,
      ask: async (node) => {
        await new Promise((r) => setImmediate(r));
        if (dead.has(toHex(node.id))) throw new Error('timeout');
        const known = knows.get(toHex(node.id))!;
        return { kind: 'nodes', contacts: [...known].sort((x, y) => compareDistance(target, x.id, y.id)).slice(0, 20) };
      },
    });
    const alive = nodes.filter((n) => !dead.has(toHex(n.id)));
    const truth = alive.sort((x, y) => compareDistance(target, x.id, y.id)).slice(0, 20).map((n) => toHex(n.id));
    assert.deepEqual(result.closest.map((n) => toHex(n.id)), truth, `round ${round}: exactly the 20 closest live nodes`);
    assert.ok(result.asked < 150, `a lookup asks a fraction of the network: ${result.asked}`);
  }
});

test('lookup - a node that failed at one address is asked again where others report it, at most MAX_OTHER_ADDRESSES more times', { timeout: 20_000 }, async (t: TestContext) => {
  const random = testSeed(t);
  const nodes = simulatedCandidates(30, '10.9.0.3', random);
  const target = random.bytes(32);
  const sorted = [...nodes].sort((x, y) => compareDistance(target, x.id, y.id));
  const moved = sorted[0]!;
  const movedHex = toHex(moved.id);
  const at = (port: number): LookupCandidate => ({ ...moved, address: { host: '10.9.0.4', port } });
  const run = async (answersAt: number | undefined, reportedAt: readonly number[]): Promise<{ closest: LookupCandidate[]; asks: string[] }> => {
    const asks: string[] = [];
    const result = await iterativeLookup({
      target,
      // We know `moved` at its old address, where it no longer answers.
      seeds: sorted.slice(0, 5),
      k: 5,
      ask: async (node) => {
        // The others answer slowly: the lookup is still running when the moved node answers
        // on the side (it never waits for such calls).
        if (toHex(node.id) !== movedHex) {
          await new Promise((r) => setTimeout(r, 20));
          return { kind: 'nodes', contacts: [...sorted.slice(0, 8), ...reportedAt.map(at)] };
        }
        await new Promise((r) => setImmediate(r));
        asks.push(addressKey(node.address));
        if (node.address.port !== answersAt) throw new Error('timeout');
        return { kind: 'nodes', contacts: sorted.slice(0, 8) };
      },
    });
    return { closest: result.closest, asks };
  };

  // Others know where it went: it is asked there once, answers, and is in the result at that address.
  const found = await run(7000, [7000]);
  assert.deepEqual(found.asks, [addressKey(moved.address), '10.9.0.4:7000']);
  const inResult = found.closest.find((c) => toHex(c.id) === movedHex);
  assert.equal(inResult === undefined ? 'missing' : addressKey(inResult.address), '10.9.0.4:7000');
  assert.deepEqual(found.closest.map((c) => toHex(c.id)), sorted.slice(0, 5).map((c) => toHex(c.id)));

  // Liars name it at many addresses where it never answers: the extra calls stay bounded.
  const lied = await run(undefined, [7001, 7002, 7003, 7004, 7005]);
  assert.equal(lied.asks.length, 1 + MAX_OTHER_ADDRESSES, `asked at ${lied.asks.join(', ')}`);
  assert.ok(!lied.closest.some((c) => toHex(c.id) === movedHex));
  assert.deepEqual(lied.closest.map((c) => toHex(c.id)), sorted.slice(1, 6).map((c) => toHex(c.id)));

  // Without any other address it costs one call, as before.
  assert.deepEqual((await run(undefined, [])).asks, [addressKey(moved.address)]);
});

// ---- nodes --------------------------------------------------------------------------------

test('dht - 30 nodes: every value put is found by every node, and findNode returns the true k closest', { timeout: 120_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const nodes = await network(hub, 30);
  try {
    for (const [i, n] of nodes.entries()) {
      const result = await n.dht.put(`key-${i}`, text(`value-${i}`));
      assert.ok(result.stored >= Math.min(20, nodes.length - 1) - 2, `put ${i} reached the closest nodes: ${JSON.stringify(result)}`);
    }
    let asked = 0;
    for (const [i, n] of nodes.entries()) {
      for (const j of [(i + 1) % nodes.length, (i + 7) % nodes.length, (i + 13) % nodes.length]) {
        const got = await n.dht.get(`key-${j}`);
        assert.deepEqual(got.values.map(fromText), [`value-${j}`], `node ${i} finds key-${j}`);
        asked += got.asked;
      }
    }
    for (const n of nodes.slice(0, 5)) {
      const target = hub.random.bytes(32);
      const found = await n.dht.findNode(target);
      const truth = trueClosest(nodes.filter((m) => m !== n), target, 20);
      assert.deepEqual(found.map((c) => toHex(c.id)), truth);
    }
    t.diagnostic(`calls per get: ${(asked / (nodes.length * 3)).toFixed(2)}; contacts per table: ${nodes.map((n) => n.dht.table.size).join(',')}`);
  } finally {
    closeAll(nodes);
  }
});

test('dht - a get whose calls failed looks once more before it answers nothing; a get that reached everyone does not', { timeout: 60_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const nodes = await network(hub, 6);
  try {
    const put = await nodes[1]!.dht.put('held', text('the value'));
    assert.ok(put.stored >= 4);
    // Joined after the put, so the value is not in its own store.
    const asker = startNode(hub, [nodes[0]!]);
    nodes.push(asker);
    await asker.dht.join();
    const retried = (): number => asker.dht.stats().counters['gets-retried'] ?? 0;
    // Everything the asker sends is lost until its get decides to look again: its first
    // lookup fails every call (as on a path that is down for a moment), the second reaches.
    hub.filter = (from) => addressKey(from) !== addressKey(asker.address) || retried() > 0;
    const got = await asker.dht.get('held');
    assert.equal(retried(), 1, 'one more lookup after the failed one');
    assert.deepEqual(got.values.map(fromText), ['the value']);
    // A key nobody stored, with every call answered: "nothing" is the answer, at once.
    hub.filter = () => true;
    const missing = await asker.dht.get('never stored');
    assert.deepEqual(missing.values, []);
    assert.equal(retried(), 1, 'no second lookup when every call was answered');
  } finally {
    closeAll(nodes);
  }
});

test('dht - a contact address moves only after the peer answers there; a replayed request cannot hijack it', { timeout: 30_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const [a, b] = await network(hub, 2);
  assert.ok(a && b);
  try {
    assert.equal(addressKey(b.dht.table.get(a.dht.id)!.address), addressKey(a.address), 'b knows a at its address');
    // An attacker records a's requests to b and replays them from its own address.
    const recorded = hub.log.filter((l) => l.from === addressKey(a.address) && l.to === addressKey(b.address) && decodeDhtDatagram(l.data).kind === 'request');
    assert.ok(recorded.length > 0);
    const attacker = hub.channel();
    const answeredToAttacker: string[] = [];
    hub.filter = (from, to) => {
      if (addressKey(to) === addressKey(attacker.address)) answeredToAttacker.push(addressKey(from));
      return true;
    };
    for (const r of recorded) hub.inject(attacker.address, b.address, r.data);
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(addressKey(b.dht.table.get(a.dht.id)!.address), addressKey(a.address), 'the contact did not move to the attacker');
    // A request verifies a new address with a PING only when it left room for one (a replayed
    // PING does not: PROTOCOL.md §11.2); either way the contact stays where it was proven.
    const counters = b.dht.stats().counters;
    assert.ok((counters.verifications ?? 0) + (counters['verifications-skipped'] ?? 0) >= 1, 'b saw a request from a new address');
    assert.ok(answeredToAttacker.length >= 1, 'the replay was answered at the claimed address, no larger than itself');

    // a itself moves (its tunnels rotated): it re-announces, b verifies, the contact moves.
    const moved = hub.channel();
    const a2 = new DhtNode({ identity: a.identity, channel: moved, bootstrap: [{ publicKey: b.identity.publicKey, address: b.address }] });
    a.dht.close();
    try {
      await a2.announce();
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(addressKey(b.dht.table.get(a.dht.id)!.address), addressKey(moved.address), 'after verification the contact moved');
      assert.ok(b.dht.table.stats()['address-changed']! >= 1);
    } finally {
      a2.close();
    }
  } finally {
    hub.filter = () => true;
    a.dht.close();
    b.dht.close();
  }
});

test('dht - a node holding a dead address for a peer finds it at the address its neighbours verified, and moves its contact there', { timeout: 30_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const [a, b, c] = await network(hub, 3);
  assert.ok(a && b && c);
  // a moves (every tunnel it had went at once) and re-announces; b hears nothing of it.
  const moved = hub.channel();
  const cutOff = (x: UdpAddress, y: UdpAddress): boolean => [x, y].some((v) => addressKey(v) === addressKey(moved.address)) && [x, y].some((v) => addressKey(v) === addressKey(b.address));
  hub.filter = (from, to) => !cutOff(from, to);
  a.dht.close();
  const a2 = new DhtNode({ identity: a.identity, channel: moved, bootstrap: [{ publicKey: c.identity.publicKey, address: c.address }], rpc: { attempts: 2 } });
  try {
    assert.ok((await a2.announce()) >= 1, 'c heard the announce');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(addressKey(c.dht.table.get(a.dht.id)!.address), addressKey(moved.address), 'c verified the new address');
    assert.equal(addressKey(b.dht.table.get(a.dht.id)!.address), addressKey(a.address), 'b still holds the dead one');
    hub.filter = () => true;

    // b's lookup fails at the dead address and learns the new one from c; a answers there
    // (on the side: the lookup may end first), and b moves its contact on that answer.
    await b.dht.findNode(a.dht.id);
    const deadline = Date.now() + 10_000;
    while (addressKey(b.dht.table.get(a.dht.id)!.address) !== addressKey(moved.address)) {
      assert.ok(Date.now() < deadline, 'b moved its contact for a to where a answered');
      await new Promise((r) => setTimeout(r, 20));
    }
    const found = await b.dht.findNode(a.dht.id);
    const aAt = found.find((x) => toHex(x.id) === toHex(a.dht.id));
    assert.equal(aAt === undefined ? 'not found' : addressKey(aAt.address), addressKey(moved.address), 'the next lookup finds a there');
  } finally {
    hub.filter = () => true;
    a2.close();
    closeAll([b, c]);
  }
});

test('dht - STORE replays are stale, skewed clocks are refused, floods are rate limited and bounded', { timeout: 30_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const [a, b] = await network(hub, 2, { storeLimit: { perSecond: 1, burst: 30 }, store: { perPublisherKeys: 10, maxBytes: 64 * 1024 } });
  assert.ok(a && b);
  const target = { publicKey: b.identity.publicKey, address: b.address };
  const store = async (key: Uint8Array, timestampMs: number, value = text('v')): Promise<string> => {
    const reply = await a.dht.rpc.call(target, { type: 'store', key, timestampMs, ttlSeconds: 60, value });
    assert.equal(reply.body.type, 'stored');
    return reply.body.type === 'stored' ? reply.body.result : '';
  };
  try {
    const key = keyFromBytes(text('k'));
    const now = Date.now();
    assert.equal(await store(key, now), 'stored');
    assert.equal(await store(key, now), 'stale', 'the same STORE again (a replay) is refused');
    assert.equal(await store(key, now - 1), 'stale', 'an older STORE cannot bring back an older value');
    assert.equal(await store(key, now + 1, text('newer')), 'stored');
    assert.equal(await store(keyFromBytes(text('k2')), now - 6 * 60_000), 'skew');
    assert.equal(await store(keyFromBytes(text('k3')), now + 6 * 60_000), 'skew');
    // Quota: ten keys per publisher.
    const results: string[] = [];
    for (let i = 0; i < 30; i++) results.push(await store(keyFromBytes(text(`q${i}`)), now));
    assert.ok(results.includes('quota'), `the per-publisher quota was reached: ${results.join(',')}`);
    assert.ok(results.includes('rate-limited'), 'the STORE flood hit the rate limit');
    const stats = b.dht.store.stats();
    assert.ok(stats.keys <= 10 && stats.bytes <= 64 * 1024, `the store stayed within its caps: ${JSON.stringify(stats)}`);
    // Oversized values cannot even be encoded, so cannot be sent: the wire refuses them.
    assert.throws(() => a.dht.rpc.call(target, { type: 'store', key, timestampMs: now, ttlSeconds: 60, value: new Uint8Array(1001) }), { code: 'BAD_LENGTH' });
  } finally {
    a.dht.close();
    b.dht.close();
  }
});

test('dht - a NODES answer with forged and duplicate contacts leaves the lookup bounded and correct', { timeout: 30_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const nodes = await network(hub, 12);
  // A malicious node answers every FIND_NODE with 20 fresh random keys at dead addresses.
  const evilKeys = generateKeyPair();
  const evil = hub.channel();
  const evilRpc = new DhtRpc({ identity: evilKeys, channel: evil });
  evilRpc.handle(() => ({
    type: 'nodes',
    contacts: Array.from({ length: 20 }, (_, i) => ({ publicKey: generateKeyPair().publicKey, address: { host: '10.99.0.1', port: 1 + i } })),
  }));
  try {
    const asker = nodes[0]!;
    // The asker learns the evil node by hearing from it.
    await asker.dht.ping({ publicKey: evilKeys.publicKey, address: evil.address });
    const target = randomBytes(32);
    const found = await asker.dht.findNode(target, { timeoutMs: 25_000 });
    const truth = trueClosest(nodes.filter((n) => n !== asker), target, 11);
    const foundHex = found.map((c) => toHex(c.id));
    for (const id of truth) assert.ok(foundHex.includes(id), 'every honest node is still found');
    assert.ok(found.length <= 20);
    assert.ok(asker.dht.table.size <= 12, 'forged contacts never entered the routing table');
  } finally {
    evilRpc.close();
    closeAll(nodes);
  }
});

test('dht - 10% loss: puts and gets still succeed through retries', { timeout: 120_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const nodes = await network(hub, 10);
  hub.loss = 0.1;
  try {
    await Promise.all(nodes.map((n, i) => n.dht.put(`lossy-${i}`, text(`v${i}`))));
    const got = await Promise.all(nodes.map((_, i) => nodes[(i + 5) % 10]!.dht.get(`lossy-${i}`)));
    got.forEach((g, i) => assert.deepEqual(g.values.map(fromText), [`v${i}`]));
    const resends = nodes.reduce((n, x) => n + (x.dht.rpc.stats().counters.resends ?? 0), 0);
    assert.ok(resends > 0, 'losses were recovered by re-sends');
  } finally {
    closeAll(nodes);
  }
});

// ---- plain UDP ------------------------------------------------------------------------------

const sockets: dgram.Socket[] = [];
after(() => {
  for (const s of sockets) s.close();
});

test('dht - 12 nodes over real UDP sockets on loopback', { timeout: 60_000 }, async () => {
  const nodes: SimNode[] = [];
  try {
    for (let i = 0; i < 12; i++) {
      const socket = dgram.createSocket('udp4');
      sockets.push(socket);
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      const identity = generateKeyPair();
      const address = { host: '127.0.0.1', port: socket.address().port };
      const first = nodes[0];
      const dht = new DhtNode({
        identity,
        channel: channelFromSocket(socket),
        bootstrap: first === undefined ? [] : [{ publicKey: first.identity.publicKey, address: first.address }],
      });
      nodes.push({ dht, identity, address });
      if (i > 0) await dht.join();
    }
    await nodes[3]!.dht.put('udp-key', text('over udp'));
    for (const n of nodes) assert.deepEqual((await n.dht.get('udp-key')).values.map(fromText), ['over udp']);
    assert.ok(nodes.every((n) => n.dht.table.size >= 10), 'every node knows nearly everyone');
  } finally {
    closeAll(nodes);
  }
});

test('dht - a VALUES answer fits one 1,200-byte datagram, newest values first', { timeout: 30_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const nodes = await network(hub, 4);
  const [holder, ...publishers] = nodes as [SimNode, ...SimNode[]];
  const target = { publicKey: holder.identity.publicKey, address: holder.address };
  const key = keyFromBytes(text('shared'));
  const ask = async (): Promise<number> => {
    const reply = await publishers[0]!.dht.rpc.call(target, { type: 'find-value', key });
    assert.equal(reply.body.type, 'values');
    return reply.body.type === 'values' ? reply.body.values.length : 0;
  };
  try {
    for (const [i, p] of publishers.entries()) {
      const reply = await p.dht.rpc.call(target, { type: 'store', key, timestampMs: Date.now(), ttlSeconds: 60, value: new Uint8Array(30).fill(i) });
      assert.deepEqual(reply.body, { type: 'stored', result: 'stored' });
    }
    assert.equal(await ask(), 3, 'three small values fit together');
    for (const p of publishers) await p.dht.rpc.call(target, { type: 'store', key, timestampMs: Date.now() + 1, ttlSeconds: 60, value: new Uint8Array(600) });
    assert.equal(await ask(), 1, 'of three 600-byte values only one fits');
    const answers = hub.log.filter((l) => l.from === addressKey(holder.address) && decodeDhtDatagram(l.data).kind === 'response');
    assert.ok(answers.every((l) => l.data.length <= 1_200), `every answer fits: ${Math.max(...answers.map((l) => l.data.length))} bytes at most`);
  } finally {
    closeAll(nodes);
  }
});

test('contact strings - round trip, and one clear error per mistake', () => {
  const node = { publicKey: generateKeyPair().publicKey, address: { host: '::1', port: 7000 } };
  const text = formatDhtContact(node);
  assert.match(text, /^[0-9a-f]{64}@\[::1\]:7000$/);
  const parsed = parseDhtContact(text);
  assert.equal(toHex(parsed.publicKey), toHex(node.publicKey));
  assert.deepEqual(parsed.address, node.address);
  for (const bad of ['127.0.0.1:1', `${'ab'.repeat(31)}@127.0.0.1:1`, `${'zz'.repeat(32)}@127.0.0.1:1`, `${'ab'.repeat(32)}@localhost:1`, `${'ab'.repeat(32)}@127.0.0.1:99999`]) {
    assert.throws(() => parseDhtContact(bad), { code: 'BAD_CONTACT' }, bad);
  }
});

test('lookup - a silent node stops holding its slot after stallAfterMs, so the lookup does not wait out its retries', { timeout: 20_000 }, async (t: TestContext) => {
  const random = testSeed(t);
  const nodes = simulatedCandidates(40, '10.9.0.2', random);
  const target = random.bytes(32);
  const sorted = [...nodes].sort((x, y) => compareDistance(target, x.id, y.id));
  // The three closest never answer; the others know everybody.
  const silent = new Set(sorted.slice(0, 3).map((n) => toHex(n.id)));
  const pendingForever: Array<() => void> = [];
  const run = (stallAfterMs: number | undefined): Promise<unknown> =>
    iterativeLookup({
      target,
      seeds: sorted.slice(0, 6),
      k: 5,
      ...(stallAfterMs === undefined ? {} : { stallAfterMs }),
      signal: AbortSignal.timeout(3_000),
      ask: (node) =>
        silent.has(toHex(node.id))
          ? new Promise((_, reject) => pendingForever.push(() => reject(new Error('gone'))))
          : Promise.resolve({ kind: 'nodes', contacts: sorted.slice(0, 20) }),
    });
  // Without stalls, three silent calls fill alpha = 3 and the lookup waits until its deadline.
  await assert.rejects(run(undefined), { code: 'LOOKUP_TIMEOUT' });
  // With stalls it moves on, and ends when the silent calls finally fail.
  const result = run(50);
  setTimeout(() => pendingForever.forEach((fail) => fail()), 300);
  const done = (await result) as { closest: LookupCandidate[]; failed: number };
  assert.deepEqual(done.closest.map((n) => toHex(n.id)), sorted.slice(3, 8).map((n) => toHex(n.id)));
  assert.equal(done.failed, 3);
});

test('dht - upkeep: values expire, the publisher republishes, idle buckets are refreshed, silent nodes are marked stale', { timeout: 60_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const clock = new ManualClock(Date.now());
  // Upkeep runs only when the test calls maintain(): advancing the clock by an hour would
  // otherwise run sixty timed rounds on every node at once.
  const nodes = await network(hub, 8, { clock, republishIntervalMs: 60 * 60_000, refreshIntervalMs: 60 * 60_000, maintenanceIntervalMs: 7 * 24 * 60 * 60_000 });
  const [publisher, asker] = nodes as [SimNode, SimNode, ...SimNode[]];
  try {
    await publisher.dht.put('long', text('lives'), { ttlMs: 3 * 60 * 60_000 });
    await publisher.dht.put('short', text('dies'), { ttlMs: 10_000 });
    const holdersOf = (key: string): number => nodes.filter((n) => n !== publisher && n.dht.store.get(keyFromBytes(text(key)), clock.now()).length > 0).length;
    assert.equal(holdersOf('short'), 7);

    // Expiry: eleven seconds on, every holder's upkeep drops the short-lived value.
    clock.advance(11_000);
    for (const n of nodes) n.dht.maintain();
    assert.equal(nodes.reduce((sum, n) => sum + n.dht.store.stats().keys, 0), 8, 'only the long-lived value is left, at all 8 nodes');
    assert.deepEqual((await asker.dht.get('short')).values, []);

    // Republish: after the interval the publisher stores again, with a newer timestamp.
    const storedAt = (n: SimNode): number => n.dht.store.get(keyFromBytes(text('long')), clock.now())[0]!.storedAt;
    const before = storedAt(asker);
    clock.advance(61 * 60_000);
    publisher.dht.maintain();
    await waitFor(() => storedAt(asker) > before);
    assert.equal(publisher.dht.stats().counters.republishes, 1);
    assert.deepEqual((await asker.dht.get('long')).values.map(fromText), ['lives']);

    // Refresh: every bucket in use went untouched for over an hour.
    const refreshesBefore = asker.dht.stats().counters.refreshes ?? 0;
    clock.advance(61 * 60_000);
    asker.dht.maintain();
    assert.ok((asker.dht.stats().counters.refreshes ?? 0) > refreshesBefore, 'stale buckets were refreshed');

    // A node that stops answering is marked stale after two failed calls; with no
    // replacement waiting for its bucket (8 nodes fill no bucket) it stays, so that our own
    // timeouts can never empty the table (routing-table.test covers eviction with one).
    const silent = nodes[5]!;
    silent.dht.close();
    hub.filter = (_from, to) => addressKey(to) !== addressKey(silent.address);
    assert.ok(asker.dht.table.get(silent.dht.id) !== undefined);
    const failing = [asker.dht.ping({ publicKey: silent.identity.publicKey, address: silent.address }), asker.dht.ping({ publicKey: silent.identity.publicKey, address: silent.address })];
    for (let i = 0; i < 40 && asker.dht.rpc.stats().pending > 0; i++) {
      clock.advance(1_000);
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(await Promise.all(failing), [false, false]);
    // (The pings are not the only calls to fail: upkeep asks the silent node too.)
    assert.ok((asker.dht.table.get(silent.dht.id)?.failures ?? 0) >= 2, 'stale after two failed calls');
    assert.ok((asker.dht.table.stats()['stale-kept'] ?? 0) >= 1, 'kept: no replacement waits');
  } finally {
    hub.filter = () => true;
    closeAll(nodes);
  }
});

test('dht - operations honour AbortSignal and their timeout', { timeout: 30_000 }, async (t: TestContext) => {
  const hub = new Hub(testSeed(t));
  const nodes = await network(hub, 4);
  const asker = nodes[1]!;
  try {
    await assert.rejects(asker.dht.get('x', { signal: AbortSignal.abort() }), { code: 'ABORTED' });
    // Nobody answers any more: the lookup ends by the caller's signal, or by its own timeout.
    hub.filter = () => false;
    const controller = new AbortController();
    const pending = asker.dht.findNode(randomBytes(32), { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(pending, { code: 'ABORTED' });
    await assert.rejects(asker.dht.get('y', { timeoutMs: 100 }), { code: 'LOOKUP_TIMEOUT' });
    await assert.rejects(asker.dht.put('z', text('v'), { timeoutMs: 100 }), { code: 'LOOKUP_TIMEOUT' });
  } finally {
    hub.filter = () => true;
    closeAll(nodes);
  }
});

async function waitFor(predicate: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

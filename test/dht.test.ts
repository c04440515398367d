/**
 * The DHT through deut tunnels (PROTOCOL.md §11), and the same DHT code over
 * plain UDP for comparison: whole networks of masters that put and get through their
 * tunnels, what DHT peers see of each other, churn, tunnel rotation, and hostile input.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { addressKey } from '@deut/common';
import { cryptoReady, generateKeyPair, NoiseHandshake, randomBytes, toHex, type KeyPair } from '@deut/crypto';
import { channelFromSocket, compareDistance, DhtNode, DhtRpc, nodeIdFromPublicKey, type RemoteNode } from '@deut/dht';
import { DeutNode } from '@deut/node';
import { createTestnet, dhtContactOf, joinDht, withDeadline, type Testnet } from '@deut/testkit';
import { DHT_MAX_DATAGRAM_BYTES, dhtPrologue, encodeDhtDatagram } from '@deut/wire';
import { simulatedTestnet } from './sim-clock.js';

// Library timers are unref'd; the tests wait on them.
let holdEventLoopOpen: ReturnType<typeof setInterval> | undefined;
before(async () => {
  await cryptoReady();
  holdEventLoopOpen = setInterval(() => undefined, 1_000);
});
after(() => clearInterval(holdEventLoopOpen));

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const fromText = (b: Uint8Array): string => new TextDecoder().decode(b);

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Runs `work` on every item, `concurrency` at a time. */
async function inBatches<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Whatever runs the DHT: a tunnelled master or a plain UDP node. */
interface Participant {
  readonly dht: DhtNode;
}

interface Figures {
  readonly medianGetMs: number;
  readonly callsPerGet: number;
  readonly callsPerFindNode: number;
}

/**
 * Every node puts one value; every node gets every other node's value; findNode from a few
 * nodes returns exactly the k closest ids of the whole network.
 */
async function putGetAndFind(nodes: readonly Participant[], label: string): Promise<Figures> {
  // A few operations at a time: the whole network shares this process's two cores, and a
  // thousand calls at once would only measure the queue in front of them.
  await inBatches(nodes.map((n, i) => [n, i] as const), 5, async ([n, i]) => {
    const result = await n.dht.put(`${label}-${i}`, text(`value of ${i}`));
    assert.ok(result.stored >= 10, `put ${i} stored at ${result.stored} of ${result.asked} nodes (${JSON.stringify(result.refused)})`);
  });
  let calls = 0;
  let gets = 0;
  const pairs = nodes.flatMap((n, i) => nodes.map((_, j) => [n, i, j] as const)).filter(([, i, j]) => i !== j);
  await inBatches(pairs, 10, async ([n, i, j]) => {
    const got = await n.dht.get(`${label}-${j}`);
    calls += got.asked;
    gets++;
    assert.deepEqual(got.values.map(fromText), [`value of ${j}`], `node ${i} finds the value of node ${j}`);
  });
  // Latency one lookup at a time (the gets above run 49 at once and queue on the CPU).
  const durations: number[] = [];
  for (let s = 0; s < 100; s++) {
    const i = s % nodes.length;
    const j = (i + 1 + ((s * 7) % (nodes.length - 1))) % nodes.length;
    const started = performance.now();
    const got = await nodes[i]!.dht.get(`${label}-${j}`);
    durations.push(performance.now() - started);
    assert.deepEqual(got.values.map(fromText), [`value of ${j}`]);
  }
  const ids = nodes.map((n) => n.dht.id);
  let findCalls = 0;
  for (const n of nodes.slice(0, 10)) {
    const target = randomBytes(32);
    const before = n.dht.rpc.stats().counters.calls ?? 0;
    const found = await n.dht.findNode(target);
    findCalls += (n.dht.rpc.stats().counters.calls ?? 0) - before;
    const truth = ids
      .filter((id) => toHex(id) !== toHex(n.dht.id))
      .sort((a, b) => compareDistance(target, a, b))
      .slice(0, 20)
      .map(toHex);
    assert.deepEqual(found.map((c) => toHex(c.id)), truth, 'findNode converges to the true k closest');
  }
  return { medianGetMs: median(durations), callsPerGet: calls / gets, callsPerFindNode: findCalls / 10 };
}

function masterNodes(net: Testnet): DeutNode[] {
  return net.masters.map((m) => m.node);
}

// ---- 50 nodes, through tunnels and over plain UDP -----------------------------------------

test('dht over tunnels - 50 masters: every value is found by every other node, findNode finds the true k closest, peers see only endpoints', { timeout: 600_000 }, async (t: TestContext) => {
  // Simulated time (sim-clock.ts): in one process of 62 nodes next to another busy test
  // file, real timers fired by a starved CPU once emptied gets; here only lost datagrams can.
  const sim = await simulatedTestnet({ relays: 12, masters: 50, tunnels: 3, master: { dht: true } });
  const net = sim.net;
  const masters = masterNodes(net);
  const masterHosts = new Set(net.masters.map((m) => m.node.address.host));
  const heardFrom = new Set<string>();
  for (const m of masters) m.dht.rpc.observer = (_data, from) => void heardFrom.add(from.host);
  try {
    const joinStarted = performance.now();
    await joinDht(masters, { concurrency: 5, timeoutMs: 120_000 });
    const joinMs = performance.now() - joinStarted;
    const figures = await putGetAndFind(masters, 'tunnels');
    // What the peers saw: the hosts every datagram came from, and every address in every
    // routing table, are relayers' (endpoints), never a master's node address.
    const relayHosts = new Set(net.relays.map((r) => r.node.address.host));
    assert.ok(heardFrom.size > 0);
    for (const host of heardFrom) {
      assert.ok(!masterHosts.has(host), `a DHT peer heard from a master's own address ${host}`);
      assert.ok(relayHosts.has(host), `${host} is an endpoint host`);
    }
    let contacts = 0;
    for (const m of masters) {
      for (const c of m.dht.table.contacts()) {
        contacts++;
        assert.ok(!masterHosts.has(c.address.host), 'no routing table holds a master address');
      }
    }
    const endpointKeys = new Set(masters.flatMap((m) => m.tunnels.list().map((x) => addressKey(x.endpoint))));
    const current = masters.flatMap((m) => m.dht.table.contacts()).filter((c) => endpointKeys.has(addressKey(c.address))).length;
    assert.ok(current > contacts * 0.9, `contacts point at live endpoints: ${current} of ${contacts}`);
    t.diagnostic(
      `tunnels: join ${(joinMs / 1000).toFixed(1)} s for 49 nodes; median get ${figures.medianGetMs.toFixed(1)} ms, ` +
        `${figures.callsPerGet.toFixed(2)} calls per get, ${figures.callsPerFindNode.toFixed(1)} calls per findNode; ` +
        `${contacts} contacts in 50 tables; ${heardFrom.size} distinct source hosts seen`,
    );
  } finally {
    await sim.close();
  }
});

const udpSockets: dgram.Socket[] = [];
after(() => {
  for (const s of udpSockets) s.close();
});

async function udpNode(bootstrap: RemoteNode[] = []): Promise<Participant & { contact: RemoteNode; identity: KeyPair }> {
  const socket = dgram.createSocket('udp4');
  udpSockets.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const identity = generateKeyPair();
  const dht = new DhtNode({ identity, channel: channelFromSocket(socket), bootstrap });
  return { dht, identity, contact: { publicKey: identity.publicKey, address: { host: '127.0.0.1', port: socket.address().port } } };
}

test('dht over plain UDP - the same 50-node test with the same DHT code', { timeout: 300_000 }, async (t: TestContext) => {
  const first = await udpNode();
  const nodes = [first];
  try {
    for (let i = 1; i < 50; i += 5) {
      const batch = await Promise.all(Array.from({ length: Math.min(5, 50 - i) }, () => udpNode([first.contact])));
      nodes.push(...batch);
      await Promise.all(batch.map((n) => n.dht.join()));
    }
    const figures = await putGetAndFind(nodes, 'udp');
    t.diagnostic(`plain UDP: median get ${figures.medianGetMs.toFixed(1)} ms, ${figures.callsPerGet.toFixed(2)} calls per get, ${figures.callsPerFindNode.toFixed(1)} calls per findNode`);
  } finally {
    for (const n of nodes) n.dht.close();
  }
});

// ---- churn and rotation -------------------------------------------------------------------

test('dht over tunnels - churn: 20% of nodes leave and 20% join; values stored before still resolve', { timeout: 600_000 }, async () => {
  const sim = await simulatedTestnet({ relays: 10, masters: 20, tunnels: 3, master: { dht: true } });
  const net = sim.net;
  const masters = masterNodes(net);
  const extra: DeutNode[] = [];
  try {
    await joinDht(masters, { concurrency: 5 });
    await inBatches(masters.map((m, i) => [m, i] as const), 5, async ([m, i]) => void (await m.dht.put(`churn-${i}`, text(`v${i}`))));
    // Four leave (closed: their endpoints vanish, nobody is told), four new ones join.
    const leaving = masters.slice(16);
    await Promise.all(leaving.map((m) => m.close()));
    for (let i = 0; i < 4; i++) {
      const node = (await net.addMaster()).node;
      extra.push(node);
      await withDeadline(node.dht.join({ via: [dhtContactOf(masters[0]!)] }), 60_000, 'new master join');
    }
    const staying = [...masters.slice(0, 16), ...extra];
    // Values put by nodes that left live on at the k closest; every key must resolve.
    for (const [i, n] of staying.entries()) {
      const keys = [(i + 1) % 16, 16 + (i % 4)];
      for (const k of keys) {
        const got = await n.dht.get(`churn-${k}`);
        assert.deepEqual(got.values.map(fromText), [`v${k}`], `after churn, node ${i} finds churn-${k}`);
      }
    }
  } finally {
    await sim.close();
  }
});

test('dht over tunnels - tunnels rotate during lookups and no lookup is lost', { timeout: 600_000 }, async (t: TestContext) => {
  // Lifetimes of 6 s (replacement 3 s before expiry, draining 1.5 s before): in 18 s every
  // tunnel of every master rotates about three times while gets run without pause.
  const sim = await simulatedTestnet({
    relays: 10,
    masters: 12,
    tunnels: 3,
    master: { dht: true, tunnelLifetimeMs: 6_000, tunnelRotateBeforeMs: 3_000, tunnelDrainBeforeMs: 1_500 },
  });
  const { net, pump } = sim;
  const masters = masterNodes(net);
  try {
    await joinDht(masters, { concurrency: 4 });
    await inBatches(masters.map((m, i) => [m, i] as const), 5, async ([m, i]) => void (await m.dht.put(`rotating-${i}`, text(`r${i}`))));
    const endpointsBefore = new Set(masters.flatMap((m) => m.tunnels.list().map((x) => addressKey(x.endpoint))));
    // 18 simulated seconds, each master starting a get every 150 ms of it (about as many
    // gets as the real-clock version managed: the clock only moves while nothing is in flight).
    const until = pump.clock.now() + 18_000;
    let gets = 0;
    const failures: string[] = [];
    await Promise.all(
      masters.map(async (m, i) => {
        while (pump.clock.now() < until) {
          const k = (i + 1 + (gets % 11)) % masters.length;
          gets++;
          try {
            const got = await m.dht.get(`rotating-${k}`, { timeoutMs: 20_000 });
            if (got.values.map(fromText).join() !== `r${k}`) failures.push(`node ${i} got ${got.values.map(fromText).join()} for rotating-${k}`);
          } catch (error) {
            failures.push(`node ${i} rotating-${k}: ${String(error)}`);
          }
          await pump.sleep(150);
        }
      }),
    );
    const endpointsAfter = new Set(masters.flatMap((m) => m.tunnels.list().map((x) => addressKey(x.endpoint))));
    const survivors = [...endpointsAfter].filter((e) => endpointsBefore.has(e)).length;
    assert.equal(survivors, 0, 'every tunnel rotated during the run');
    assert.deepEqual(failures, [], `every one of ${gets} gets succeeded`);
    const announces = masters.reduce((n, m) => n + (m.dht.stats().counters.announces ?? 0), 0);
    assert.ok(announces >= masters.length, `masters re-announced after rotating: ${announces}`);
    t.diagnostic(`${gets} gets during rotation, none lost; ${announces} re-announces`);
  } finally {
    await sim.close();
  }
});

// ---- hostile input ------------------------------------------------------------------------

test('dht over tunnels - garbage, wrong id lengths, huge node lists and STORE floods are refused, counted and bounded', { timeout: 300_000 }, async () => {
  // Real loopback sockets: the attacker is a plain UDP socket outside deut.
  const net = await createTestnet({ relays: 8, masters: 2, tunnels: 3, transport: 'udp', master: { dht: true } });
  const [victim, asker] = masterNodes(net) as [DeutNode, DeutNode];
  const attackerSocket = dgram.createSocket('udp4');
  try {
    await joinDht([victim, asker]);
    await new Promise<void>((resolve) => attackerSocket.bind(0, '127.0.3.9', resolve));
    const target = dhtContactOf(victim);
    const send = (bytes: Uint8Array): void => attackerSocket.send(bytes, target.address.port, target.address.host);
    const attacker = generateKeyPair();
    /** A request that authenticates (valid IK message 1) around an arbitrary body. */
    const sealed = (body: Uint8Array): Uint8Array => {
      const rpcId = randomBytes(8);
      const hs = new NoiseHandshake({ pattern: 'IK', initiator: true, prologue: dhtPrologue(rpcId), staticKeyPair: attacker, remoteStaticKey: target.publicKey });
      return encodeDhtDatagram({ kind: 'request', rpcId, message: hs.writeMessage(body) });
    };
    const wrongIdLength = Uint8Array.from([0x02, ...randomBytes(31)]);
    const longId = Uint8Array.from([0x03, ...randomBytes(33)]);
    const hugeList = Uint8Array.from([0x82, 21, ...randomBytes(21 * 51)]);
    const rpcBefore = victim.dht.rpc.stats().counters;
    for (let i = 0; i < 300; i++) {
      send(randomBytes(1 + (i % 1400)));
      if (i % 3 === 0) send(sealed(wrongIdLength));
      if (i % 3 === 1) send(sealed(longId));
      if (i % 3 === 2) send(Uint8Array.from([0xd1, 0x01, ...randomBytes(8), ...randomBytes(DHT_MAX_DATAGRAM_BYTES)]).subarray(0, 9_000));
      // 150 datagrams/s: under the endpoint's inbound cap, so the DHT sees them all.
      if (i % 15 === 14) await new Promise((r) => setTimeout(r, 200));
    }
    // A STORE flood from one authenticated publisher with an address of its own (through
    // tunnels, the flooder's own endpoints would cap it first: exit rate limits).
    const flooderSocket = dgram.createSocket('udp4');
    udpSockets.push(flooderSocket);
    await new Promise<void>((resolve) => flooderSocket.bind(0, '127.0.3.11', resolve));
    const flooder = new DhtRpc({ identity: generateKeyPair(), channel: channelFromSocket(flooderSocket), attempts: 1 });
    // Paced at 150/s too, under the endpoint's own inbound cap (200/s per tunnel).
    await new Promise((r) => setTimeout(r, 1_000));
    const flood: Array<Promise<string>> = [];
    for (let i = 0; i < 600; i++) {
      flood.push(
        flooder.call(target, { type: 'store', key: randomBytes(32), timestampMs: Date.now(), ttlSeconds: 600, value: randomBytes(900) }).then(
          (r) => (r.body.type === 'stored' ? r.body.result : 'other'),
          () => 'no-answer',
        ),
      );
      if (i % 30 === 29) await new Promise((r) => setTimeout(r, 200));
    }
    const results = await withDeadline(Promise.all(flood), 120_000, 'the STORE flood');
    flooder.close();
    const byResult = new Map<string, number>();
    for (const r of results) byResult.set(r, (byResult.get(r) ?? 0) + 1);
    const summary = `${JSON.stringify([...byResult])}; victim rpc ${JSON.stringify(victim.dht.stats().rpc.counters)}, node ${JSON.stringify(victim.stats().counters ?? {})}`;
    assert.equal(byResult.get('stored'), 100, `exactly the per-publisher quota was stored: ${summary}`);
    assert.ok((byResult.get('quota') ?? 0) > 0 && (byResult.get('rate-limited') ?? 0) > 0, `the flood hit the quota and the rate limit: ${summary}`);
    const stats = victim.dht.stats();
    assert.ok(stats.store.keys <= 100, 'store bounded by the quota');
    const after = stats.rpc.counters;
    const grew = (name: string): number => (after[name] ?? 0) - (rpcBefore[name] ?? 0);
    // A short id is cut short; a long one has a non-zero byte where padding must be zero (PROTOCOL.md §11.3).
    assert.ok(grew('drop:request-body-bad_length') + grew('drop:request-body-bad_padding') >= 150, 'wrong id lengths were counted');
    assert.ok(grew('drop:datagram-bad_length') + grew('drop:datagram-bad_version') + grew('drop:request-unauthenticated') >= 250, 'garbage was counted');
    assert.ok(stats.rpc.cachedAnswerBytes <= 4 * 1024 * 1024);
    assert.ok(stats.contacts <= 2, 'no garbage became a contact');

    // A huge node list, authenticated but over the cap, fails the call and is counted.
    const liar = generateKeyPair();
    const liarSocket = dgram.createSocket('udp4');
    udpSockets.push(liarSocket);
    await new Promise<void>((resolve) => liarSocket.bind(0, '127.0.3.10', resolve));
    liarSocket.on('message', (msg, rinfo) => {
      const hs = new NoiseHandshake({ pattern: 'IK', initiator: false, prologue: dhtPrologue(msg.subarray(2, 10)), staticKeyPair: liar });
      hs.readMessage(msg.subarray(10));
      liarSocket.send(encodeDhtDatagram({ kind: 'response', rpcId: msg.subarray(2, 10), message: hs.writeMessage(hugeList) }), rinfo.port, rinfo.address);
    });
    const liarContact = { publicKey: liar.publicKey, address: { host: '127.0.3.10', port: liarSocket.address().port } };
    await assert.rejects(asker.dht.rpc.call(liarContact, { type: 'find-node', target: randomBytes(32) }), { code: 'TOO_MANY' });
    assert.ok((asker.dht.rpc.stats().counters['drop:answer-body-too_many'] ?? 0) >= 1);
    assert.equal(asker.dht.table.get(nodeIdFromPublicKey(liar.publicKey)), undefined, 'the liar did not become a contact');
    // The victim still works.
    await asker.dht.put('after-the-attack', text('fine'));
    assert.deepEqual((await victim.dht.get('after-the-attack')).values.map(fromText), ['fine']);
  } finally {
    attackerSocket.close();
    await net.close();
  }
});

test('dht option - needs the master role; node.dht without it is a clear error', { timeout: 30_000 }, async () => {
  await assert.rejects(DeutNode.start({ dht: true, master: false }), { code: 'DHT_NEEDS_MASTER' });
  const relay = await DeutNode.start({ relay: true });
  try {
    assert.throws(() => relay.dht, { code: 'DHT_OFF' });
  } finally {
    await relay.close();
  }
  await assert.rejects(DeutNode.start({ tunnels: 1, dht: { bootstrap: ['not-a-contact'] } }), { code: 'BAD_CONTACT' });
});

/**
 * Hardening, garbage, truncated and oversized datagrams (issue #8; docs/PROTOCOL.md §3.5,
 * §5, §7): every socket handler of a running mesh (node link ports, endpoint ports, a
 * master's DHT behind its endpoints, a public DHT port) takes arbitrary, truncated,
 * oversized and mutated datagrams without a handler ever throwing, counts them as drops,
 * and keeps working; and 1,000,000 datagrams at a running node leave no crash and a flat
 * heap after GC. The decoders themselves are fuzzed one by one in
 * packages/wire/test/codecs.test.ts, which also checks that it covers every decoder.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import fc from 'fast-check';
import { addressKey, type UdpAddress, type CounterSnapshot, sumCounters } from '@deut/common';
import { cryptoReady, generateKeyPair } from '@deut/crypto';
import { DhtNode } from '@deut/dht';
import { DeutNode, type DeutNodeOptions } from '@deut/node';
import { until, withDeadline } from '@deut/testkit';
import { MemoryNetwork, type DatagramSocket } from '@deut/transport';
import { heapAfterGc, mib, slope } from './hardening-heap.js';
import { assertProperty } from './assert-property.js';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const encoder = new TextEncoder();

/** A socket of the in-memory network, whose `receive` is what the network itself calls. */
type ReceivingSocket = DatagramSocket & { receive(data: Uint8Array, from: UdpAddress): void };

interface Port {
  readonly what: string;
  readonly socket: ReceivingSocket;
}

interface FuzzMesh {
  readonly network: MemoryNetwork;
  readonly nodes: Array<{ name: string; node: DeutNode; sockets: ReceivingSocket[] }>;
  readonly dht: DhtNode;
  readonly dhtSocket: ReceivingSocket;
  /** Every port a stranger can reach. */
  ports(): Port[];
  /** Real datagrams seen on the wire, to mutate. */
  readonly captured: Uint8Array[];
  /** A request from master A answered by master B through both pools. */
  roundTrip(label: string): Promise<void>;
  close(): Promise<void>;
}

/** Three relays, two masters (B runs the DHT through its tunnels), and a public DHT node. */
async function createFuzzMesh(): Promise<FuzzMesh> {
  const network = new MemoryNetwork({ seed: 11 });
  const nodes: FuzzMesh['nodes'] = [];
  const captured: Uint8Array[] = [];
  const stopTap = network.tap((event) => {
    if (captured.length < 400 && event.fate === 'delivered') captured.push(event.data.slice());
  });
  const start = async (name: string, host: string, options: Partial<DeutNodeOptions>): Promise<DeutNode> => {
    const sockets: ReceivingSocket[] = [];
    const node = await DeutNode.start({
      listen: { host, port: 0 },
      sockets: { bind: (address) => Promise.resolve(record(sockets, network.bind(address))) },
      allowPrivateExits: true,
      allowSameSubnet: true,
      ...options,
    });
    nodes.push({ name, node, sockets });
    return node;
  };
  const bootstrap = await start('R1', '127.0.6.1', { relay: true });
  await start('R2', '127.0.6.2', { relay: true, bootstrap: [bootstrap.address] });
  await start('R3', '127.0.6.3', { relay: true, bootstrap: [bootstrap.address] });
  await until(() => bootstrap.stats().peers >= 2, 10_000, 'relays announced');
  const a = await start('A', '127.0.7.1', { relay: false, tunnels: 2, hops: 2, bootstrap: [bootstrap.address] });
  const b = await start('B', '127.0.7.2', { relay: false, tunnels: 2, hops: 2, dht: true, bootstrap: [bootstrap.address] });
  await withDeadline(Promise.all([a.tunnels.ready(2), b.tunnels.ready(2)]), 30_000, 'pools ready');
  b.handle((payload) => payload);
  const dhtSocket = record([], network.bind({ host: '127.0.8.1', port: 6881 }));
  const dht = new DhtNode({
    identity: generateKeyPair(),
    channel: { send: (to, data) => dhtSocket.send(data, to), onDatagram: (handler) => dhtSocket.onMessage(handler), close: () => undefined },
  });
  const mesh: FuzzMesh = {
    network,
    nodes,
    dht,
    dhtSocket,
    captured,
    ports: () => [
      ...nodes.flatMap(({ name, node, sockets }) =>
        sockets.filter((s) => !isClosed(s)).map((socket) => ({ what: addressKey(socket.local) === addressKey(node.address) ? `${name} node port` : `${name} endpoint port`, socket })),
      ),
      { what: 'public DHT port', socket: dhtSocket },
    ],
    roundTrip: async (label) => {
      const to = b.tunnels.list().map((t) => t.endpoint);
      const reply = await withDeadline(a.request(to, encoder.encode(label), { timeoutMs: 10_000 }), 15_000, label);
      assert.equal(new TextDecoder().decode(reply), label, `${label}: the mesh still carries requests`);
    },
    close: async () => {
      dht.close();
      await Promise.allSettled(nodes.map(({ node }) => node.close()));
      await dhtSocket.close();
      await network.close();
    },
  };
  // Some traffic of every kind (cells, envelopes, DHT through tunnels) to capture.
  for (let i = 0; i < 5; i++) await mesh.roundTrip(`capture ${i}`);
  stopTap();
  return mesh;
}

function record(into: ReceivingSocket[], socket: DatagramSocket): ReceivingSocket {
  assert.equal(typeof (socket as Partial<ReceivingSocket>).receive, 'function', 'an in-memory socket');
  const receiving = socket as ReceivingSocket;
  into.push(receiving);
  return receiving;
}

const closedSockets = new WeakSet<DatagramSocket>();
const isClosed = (socket: DatagramSocket): boolean => closedSockets.has(socket);

const handlerErrors = (mesh: FuzzMesh): number =>
  [...mesh.nodes.flatMap((n) => n.sockets), mesh.dhtSocket].reduce((sum, s) => sum + s.stats.handlerErrors, 0);

/** Drops counted anywhere in the mesh (link, tunnel engine, exits, node, DHT). */
function drops(mesh: FuzzMesh): number {
  let total = 0;
  const add = (counters: CounterSnapshot<string> | undefined): void => {
    if (counters !== undefined) total += sumCounters(counters, 'drop');
  };
  for (const { node } of mesh.nodes) {
    const s = node.stats();
    add(s.link.counters);
    add(s.tunnels.counters);
    add(s.exits.counters);
    add(s.counters);
  }
  add(mesh.dht.stats().rpc.counters);
  return total;
}

/** Garbage of every shape: empty, short, around the one datagram size, oversized, mutated real ones. */
function datagramArb(captured: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.uint8Array({ minLength: 1190, maxLength: 1210 }),
    fc.tuple(fc.integer({ min: 1211, max: 65_507 }), fc.uint8Array({ minLength: 1, maxLength: 32 })).map(([n, head]) => {
      const big = new Uint8Array(n).fill(0xa5);
      big.set(head);
      return big;
    }),
    fc
      .tuple(fc.nat(captured.length - 1), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), fc.option(fc.nat()))
      .map(([i, flips, keep]) => {
        const copy = captured[i]!.slice();
        for (const [at, mask] of flips) copy[at % copy.length]! ^= mask;
        return keep === null ? copy : copy.slice(0, keep % (copy.length + 1));
      }),
  );
}

test('hardening fuzz - garbage, truncated, oversized and mutated datagrams at every port never throw out of a handler', { timeout: 120_000 }, async (t: TestContext) => {
  const mesh = await createFuzzMesh();
  const stranger = mesh.network.bind({ host: '127.0.9.9', port: 9999 });
  try {
    t.diagnostic(`${mesh.captured.length} real datagrams captured to mutate`);
    assert.ok(mesh.captured.length > 50, 'real datagrams were captured to mutate');
    const ports = mesh.ports();
    assert.ok(ports.filter((p) => p.what.includes('endpoint port')).length >= 4, 'the relays host endpoint ports');
    const dropsBefore = drops(mesh);
    await assertProperty(
      fc.asyncProperty(fc.nat(ports.length - 1), datagramArb(mesh.captured), async (target, datagram) => {
        const port = ports[target]!;
        const errorsBefore = handlerErrors(mesh);
        stranger.send(datagram, port.socket.local);
        await mesh.network.idle();
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(handlerErrors(mesh), errorsBefore, `${port.what}: no handler threw on ${datagram.length} bytes`);
      }),
      { numRuns: 3000 },
    );
    assert.equal(handlerErrors(mesh), 0);
    const counted = drops(mesh) - dropsBefore;
    t.diagnostic(`${counted} drops counted for 3000 hostile datagrams`);
    assert.ok(counted > 1000, 'hostile datagrams are counted as drops by reason');
    await mesh.roundTrip('still working after the fuzz');
  } finally {
    await stranger.close();
    await mesh.close();
  }
});

test('hardening fuzz - 1,000,000 datagrams at a running node: no crash, no handler error, heap flat after GC', { timeout: 180_000 }, async (t: TestContext) => {
  const mesh = await createFuzzMesh();
  try {
    // The target: a relay that hosts endpoint ports, with its node port; and the public DHT port.
    const target = mesh.nodes.filter((n) => n.name.startsWith('R')).sort((x, y) => y.sockets.length - x.sockets.length)[0]!;
    const targets = [...target.sockets, mesh.dhtSocket];
    assert.ok(target.sockets.length >= 2, `${target.name} hosts at least one endpoint port`);
    // A pool of hostile datagrams: random at the one link size, short, oversized, and real
    // datagrams with bytes flipped; sent from random (spoofed) sources.
    const pool: Uint8Array[] = [];
    for (let i = 0; i < 2048; i++) {
      const kind = i % 4;
      if (kind === 0) pool.push(randomFillSync(new Uint8Array(1200)));
      else if (kind === 1) pool.push(randomFillSync(new Uint8Array(i % 97)));
      else if (kind === 2) pool.push(randomFillSync(new Uint8Array(1201 + ((i * 131) % 8000))));
      else {
        const copy = mesh.captured[i % mesh.captured.length]!.slice();
        copy[(i * 7) % copy.length]! ^= 1 + (i % 255);
        pool.push(copy);
      }
    }
    const sourceBytes = randomFillSync(new Uint8Array(4 * 4096));
    const source = (i: number): UdpAddress => {
      const j = (i % 4096) * 4;
      return { host: `10.${sourceBytes[j]}.${sourceBytes[j + 1]}.${sourceBytes[j + 2]}`, port: 1024 + ((i * 7919) % 60_000) };
    };
    const total = Number(process.env['DEUT_FUZZ_TOTAL'] ?? 1_000_000);
    const sampleEvery = 100_000;
    const batch = 5_000;
    const xs: number[] = [];
    const heaps: number[] = [];
    const baseline = { transit: target.node.stats().tunnels.transit };
    heaps.push(await heapAfterGc());
    xs.push(0);
    for (let sent = 0; sent < total; ) {
      for (let i = 0; i < batch; i++, sent++) {
        // Half at the node port, the rest spread over its endpoint ports and the DHT port.
        const to = sent % 2 === 0 ? targets[0]! : targets[1 + ((sent >> 1) % (targets.length - 1))]!;
        to.receive(pool[sent % pool.length]!.slice(), source(sent));
      }
      await new Promise((resolve) => setImmediate(resolve));
      if (sent % sampleEvery === 0) {
        await mesh.network.idle();
        heaps.push(await heapAfterGc());
        xs.push(sent);
      }
    }
    assert.equal(handlerErrors(mesh), 0, 'no handler threw');
    const received = targets.reduce((sum, s) => sum + s.stats.received, 0);
    assert.ok(received >= total, `every datagram reached a handler (${received})`);
    // Ignore the first 200k (caches, JIT and the pools' own bookkeeping warming up); fit the rest.
    const perMillion = slope(xs.slice(2), heaps.slice(2)) * 1_000_000;
    t.diagnostic(`heap after GC: ${heaps.map(mib).join(', ')}; slope ${mib(perMillion)} per million datagrams`);
    const link = target.node.stats().link;
    t.diagnostic(`link drops: ${JSON.stringify(Object.fromEntries(Object.entries(link.counters).filter(([k]) => k.startsWith('drop'))))}`);
    // Any state kept per datagram or per source would be >= 50 bytes each: 50 MB per million.
    // (A 3,000,000 run plateaus at +1.8 MiB over the start, most of it in the first 200k.)
    assert.ok(perMillion < 3 * 1024 * 1024, `heap slope ${mib(perMillion)} per million datagrams is flat`);
    assert.ok(heaps.at(-1)! - heaps[2]! < 4 * 1024 * 1024, `heap after the run within 4 MiB of after the first 200k (${mib(heaps.at(-1)! - heaps[2]!)})`);
    assert.ok(link.peers <= mesh.nodes.length - 1, `link state only for the mesh's own nodes (${link.peers} peers)`);
    assert.equal(link.pendingHandshakes, 0, 'no half-open handshakes left');
    assert.equal(target.node.stats().tunnels.transit, baseline.transit, 'no tunnel state for strangers');
    await mesh.roundTrip('still working after a million datagrams');
  } finally {
    await mesh.close();
  }
});

/**
 * Row 6, DHT: median lookup (get) latency and RPC calls per lookup in one mesh, through
 * tunnels against the same DHT code over plain UDP sockets (as test/dht.test.ts sets both
 * up). Both networks run in this process over real loopback UDP; lookups of the two
 * alternate, one at a time, so both see the same machine.
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { generateKeyPair } from '@deut/crypto';
import { channelFromSocket, DhtNode, type RemoteNode } from '@deut/dht';
import { createTestnet, joinDht } from '@deut/testkit';
import { alternate, median } from './stats.js';
import { makeRow, type RowResult } from './table.js';
import type { BenchConfig } from './config.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Runs `work` on every item, `concurrency` at a time. */
async function inBatches<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** `lookups` gets, one at a time, of other nodes' values: median ms and calls per get. */
async function lookups(nodes: readonly DhtNode[], label: string, count: number, offset: number): Promise<{ ms: number; calls: number }> {
  const durations: number[] = [];
  let calls = 0;
  for (let s = 0; s < count; s++) {
    const i = (s * 13 + offset) % nodes.length;
    const j = (i + 1 + ((s * 7 + offset) % (nodes.length - 1))) % nodes.length;
    const node = nodes[i]!;
    const before = node.rpc.stats().counters.calls ?? 0;
    const started = performance.now();
    const got = await node.get(`${label}-${j}`);
    durations.push(performance.now() - started);
    calls += (node.rpc.stats().counters.calls ?? 0) - before;
    if (got.values.length !== 1) throw new Error(`${label}: node ${i} did not find the value of node ${j}`);
  }
  return { ms: median(durations), calls: calls / count };
}

/** Row 6 at one mesh size (100 nodes, 20 in a quick run). */
export async function dhtRow(config: BenchConfig): Promise<RowResult[]> {
  const size = config.quick ? 20 : 100;
  const perRun = config.quick ? 20 : 100;
  const started = performance.now();
  const net = await createTestnet({ transport: 'udp', relays: 12, masters: size, tunnels: 3, master: { dht: true } });
  const sockets: dgram.Socket[] = [];
  const plain: DhtNode[] = [];
  try {
    const masters = net.masters.map((m) => m.node);
    await joinDht(masters, { concurrency: 5, timeoutMs: 120_000 });
    config.log(`row 6: ${size} masters joined through tunnels in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    const udpNode = async (bootstrap: RemoteNode[]): Promise<{ dht: DhtNode; contact: RemoteNode }> => {
      const socket = dgram.createSocket('udp4');
      sockets.push(socket);
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
      const identity = generateKeyPair();
      const dht = new DhtNode({ identity, channel: channelFromSocket(socket), bootstrap });
      plain.push(dht);
      return { dht, contact: { publicKey: identity.publicKey, address: { host: '127.0.0.1', port: socket.address().port } } };
    };
    const first = await udpNode([]);
    for (let i = 1; i < size; i += 5) {
      const batch = await Promise.all(Array.from({ length: Math.min(5, size - i) }, () => udpNode([first.contact])));
      await Promise.all(batch.map((n) => n.dht.join()));
    }
    const tunnelled = masters.map((m) => m.dht);
    await inBatches(tunnelled.map((d, i) => [d, i] as const), 5, async ([d, i]) => void (await d.put(`t-${i}`, text(`value ${i}`))));
    await inBatches(plain.map((d, i) => [d, i] as const), 5, async ([d, i]) => void (await d.put(`u-${i}`, text(`value ${i}`))));
    const callsT: number[] = [];
    const callsU: number[] = [];
    let run = 0;
    const result = await alternate(
      config.runs,
      async () => {
        const r = await lookups(tunnelled, 't', perRun, run++);
        callsT.push(r.calls);
        return r.ms;
      },
      async () => {
        const r = await lookups(plain, 'u', perRun, run++);
        callsU.push(r.calls);
        return r.ms;
      },
    );
    config.log(`row 6 done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
    return [
      makeRow({
        row: 6,
        name: 'DHT lookup median',
        size: `${size} nodes`,
        unit: 'ms',
        deut: result.a,
        baselineName: 'same DHT over plain UDP',
        baseline: result.b,
        goal: { on: 'ratio', op: '<=', target: 4 },
        note: `${perRun} gets per run, one at a time; masters have 3 tunnels of 3 hops over 12 relayers, all in one process on loopback UDP`,
      }),
      makeRow({
        row: 6,
        name: 'DHT RPC calls per lookup',
        size: `${size} nodes`,
        unit: 'calls',
        deut: callsT,
        baselineName: 'same DHT over plain UDP',
        baseline: callsU,
        note: 'each call is one request and one answer datagram',
      }),
    ];
  } finally {
    for (const d of plain) d.close();
    for (const s of sockets) s.close();
    await net.close();
  }
}

/** What the DHT test files share: a whole network's put, get and findNode, and small helpers. */
import assert from 'node:assert/strict';
import { randomBytes, toHex } from '@deut/crypto';
import { compareDistance, type DhtNode } from '@deut/dht';
import type { DeutNode } from '@deut/node';
import type { Testnet } from '@deut/testkit';

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const fromText = (b: Uint8Array): string => new TextDecoder().decode(b);

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Runs `work` on every item, `concurrency` at a time. */
export async function inBatches<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Whatever runs the DHT: a tunnelled master or a plain UDP node. */
export interface Participant {
  readonly dht: DhtNode;
}

export interface Figures {
  readonly medianGetMs: number;
  readonly callsPerGet: number;
  readonly callsPerFindNode: number;
}

/**
 * Every node puts one value; every node gets every other node's value; findNode from a few
 * nodes returns exactly the k closest ids of the whole network.
 */
export async function putGetAndFind(nodes: readonly Participant[], label: string): Promise<Figures> {
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

export function masterNodes(net: Testnet): DeutNode[] {
  return net.masters.map((m) => m.node);
}

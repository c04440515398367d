/**
 * DHT helpers for testnets whose masters run with `dht: true`: the contact of a master
 * (its DHT key at one of its endpoints) and a join of many masters through one of them.
 */
import type { RemoteNode } from '@deut/dht';
import type { DeutNode } from '@deut/node';
import { withDeadline } from './testnet.js';

/** The DHT contact of a master: its DHT key at the endpoint of its first tunnel. */
export function dhtContactOf(node: DeutNode): RemoteNode {
  const endpoint = node.tunnels.list()[0]?.endpoint;
  if (endpoint === undefined) throw new Error('dhtContactOf: the node has no tunnel yet');
  return { publicKey: node.dht.publicKey, address: endpoint };
}

/**
 * Joins every node but the first to the DHT through the first, `concurrency` at a time (a
 * real network grows one node at a time; all at once, every node would bootstrap from a
 * network that does not exist yet).
 */
export async function joinDht(nodes: readonly DeutNode[], options: { concurrency?: number; timeoutMs?: number } = {}): Promise<void> {
  const [first, ...rest] = nodes;
  if (first === undefined) return;
  const via = [dhtContactOf(first)];
  const concurrency = options.concurrency ?? 4;
  for (let i = 0; i < rest.length; i += concurrency) {
    await withDeadline(
      Promise.all(rest.slice(i, i + concurrency).map((node) => node.dht.join({ via }))),
      options.timeoutMs ?? 60_000,
      `DHT join of nodes ${i + 1}..${Math.min(i + concurrency, rest.length)}`,
    );
  }
}

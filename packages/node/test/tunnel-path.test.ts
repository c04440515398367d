/**
 * `tunnels.list()` shows each tunnel's path and age (for `deut tunnels`): the path must be
 * the hops the build really went through, in order, and in relayer mode only the first hop,
 * the rest marked unknown.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey } from '@deut/common';
import { cryptoReady } from '@deut/crypto';
import { decodeTunnelMessage } from '@deut/wire';
import type { PathSelection } from '@deut/tunnel';
import { withTestnet, type DeutNode, type Testnet, type TunnelInfo } from '../src/index.js';

await cryptoReady();

/**
 * Who sent a build request to whom, as the nodes' link observers saw it: with one master
 * keeping one tunnel on a lossless network, the chain from the master is that tunnel's path.
 */
function buildEdges(net: Testnet): Set<string> {
  const edges = new Set<string>();
  for (const n of net.nodes) {
    for (const event of n.seen) {
      if (event.direction !== 'out') continue;
      let type: string;
      try {
        type = decodeTunnelMessage(event.payload).type;
      } catch {
        continue; // peer exchange
      }
      if (type === 'build-request' || type === 'build-request-relayer') edges.add(`${addressKey(n.node.address)} > ${addressKey(event.peer)}`);
    }
  }
  return edges;
}

/** The one master of `net` and its one tunnel, three hops long, whose path `mode` picked. */
async function onlyTunnel(net: Testnet, mode: PathSelection): Promise<{ master: DeutNode; tunnel: TunnelInfo }> {
  const master = net.masters[0]!.node;
  await master.tunnels.ready(1);
  const tunnels = master.tunnels.list();
  assert.equal(tunnels.length, 1);
  const tunnel = tunnels[0]!;
  assert.equal(tunnel.mode, mode);
  assert.equal(tunnel.path.length, 3);
  return { master, tunnel };
}

test('node - tunnels.list() gives the path, first hop to endpoint, and the age', { timeout: 60_000 }, async () => {
  await withTestnet({ relays: 6, masters: 1, tunnels: 1, master: { hops: 3 }, observe: true, tunnelsTimeoutMs: 50_000 }, async (net) => {
    const { master, tunnel } = await onlyTunnel(net, 'master');
    const hops = tunnel.path.map((hop) => {
      assert.ok(hop !== undefined, 'a master that picked the path knows every hop');
      const node = net.byAddress(hop.address);
      assert.ok(node !== undefined && node.role === 'relay', `${addressKey(hop.address)} is a relayer of the testnet`);
      assert.deepEqual(hop.publicKey, node.node.publicKey);
      return addressKey(hop.address);
    });
    assert.equal(new Set(hops).size, 3);
    const edges = buildEdges(net);
    const chain = [addressKey(master.address), ...hops];
    for (let i = 1; i < chain.length; i++) assert.ok(edges.has(`${chain[i - 1]} > ${chain[i]}`), `the build went ${chain[i - 1]} > ${chain[i]} (saw ${[...edges].join(', ')})`);
    const last = net.byAddress(tunnel.path[2]!.address)!;
    assert.ok(last.sockets.some((s) => addressKey(s.local) === addressKey(tunnel.endpoint)), 'the last hop holds the endpoint port');
    assert.ok(tunnel.ageMs >= 0);
    assert.ok(tunnel.createdAt < tunnel.expiresAt);
  });
});

test('node - in relayer path mode, tunnels.list() knows the first hop and marks the rest unknown', { timeout: 60_000 }, async () => {
  await withTestnet({ relays: 6, masters: 1, tunnels: 1, master: { hops: 3, pathSelection: 'relayer' }, observe: true, tunnelsTimeoutMs: 50_000 }, async (net) => {
    const { master, tunnel } = await onlyTunnel(net, 'relayer');
    const first = tunnel.path[0];
    assert.ok(first !== undefined);
    assert.equal(net.byAddress(first.address)?.role, 'relay');
    assert.ok(buildEdges(net).has(`${addressKey(master.address)} > ${addressKey(first.address)}`), 'the build went to the first hop');
    assert.deepEqual(tunnel.path.slice(1), [undefined, undefined]);
  });
});

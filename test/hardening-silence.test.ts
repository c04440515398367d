/**
 * Issue #8, silence to probes (docs/PROTOCOL.md §3.5, §11.2): random or malformed datagrams
 * to any UDP port of a node — the node port, every endpoint port, a master's DHT (over its
 * endpoints) and a public DHT port — get no reply at all and leave no state behind. The
 * control port is TCP and out of scope.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { UdpAddress } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { DhtNode } from '@deut/dht';
import { InitiatorHandshake } from '@deut/link';
import type { DeutNode } from '@deut/node';
import { SpyingSocket, withTestnet } from '@deut/testkit';
import type { MemoryNetwork } from '@deut/transport';
import { DATAGRAM_BYTES, DHT_VERSION } from '@deut/wire';
import { type CounterSnapshot } from '@deut/common';
import { sumCounters } from '@deut/common';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

async function settle(network: MemoryNetwork): Promise<void> {
  for (let i = 0; i < 8; i++) {
    await network.idle();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Probes of one kind: random bytes of every size around the interesting ones, and near-misses. */
function probes(count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const msg1 = new InitiatorHandshake(generateKeyPair(), { minVersion: 1, maxVersion: 1, ephemeralIdentity: true }, generateKeyPair().publicKey).msg1;
  for (let i = 0; i < count; i++) {
    switch (i % 6) {
      case 0:
        out.push(randomBytes(DATAGRAM_BYTES));
        break;
      case 1:
        out.push(randomBytes(1 + ((i * 7919) % 1500)));
        break;
      case 2: {
        // A msg1 keyed to someone else's key, with one byte changed: mac1 fails.
        const near = msg1.slice();
        near[i % DATAGRAM_BYTES]! ^= 1 + (i % 255);
        out.push(near);
        break;
      }
      case 3:
        out.push(Uint8Array.of(DHT_VERSION, 1, ...randomBytes(8 + 97 + (i % 500))));
        break;
      case 4:
        out.push(Uint8Array.of(DHT_VERSION, 2, ...randomBytes(8 + 49 + (i % 500))));
        break;
      default:
        out.push(Uint8Array.of(1, 1, ...randomBytes(i % 64))); // an envelope-shaped prefix
    }
  }
  return out;
}

/**
 * The state a probe could grow: table sizes of every layer of a node. (Link peers and
 * sessions are left out: peer exchange adds them in the background; a probe could add one
 * only as a half-open handshake, which pendingHandshakes counts.)
 */
function stateOf(node: DeutNode): Record<string, number> {
  const s = node.stats();
  return {
    pendingHandshakes: s.link.pendingHandshakes,
    transit: s.tunnels.transit,
    pendingBuilds: s.tunnels.pendingBuilds,
    replayCache: s.tunnels.replayCache,
    ports: s.exits.ports,
    partials: s.exits.reassembly.partials,
    pendingMessages: s.messages?.pending ?? 0,
  };
}

test('silence - random and malformed datagrams to the node port, endpoint ports, a master\'s DHT and a public DHT port get no reply and leave no state', { timeout: 120_000 }, async (t) => {
  await withTestnet({ relays: 4, masters: 1, tunnels: 2, master: { hops: 1, dht: true } }, async (net) => {
    const network = net.network!;
    const master = net.masters[0]!.node;
    const publicSocket = network.bind({ host: '127.0.3.20', port: 6881 });
    const publicDht = new DhtNode({ identity: generateKeyPair(), channel: { send: (to, data) => publicSocket.send(data, to), onDatagram: (h) => publicSocket.onMessage(h), close: () => undefined } });
    const prober = new SpyingSocket(network.bind({ host: '127.0.3.9', port: 5353 }));
    const heard: UdpAddress[] = [];
    prober.onMessage((_data, from) => void heard.push(from));
    try {
      const targets: Array<{ what: string; address: UdpAddress }> = [
        ...net.relays.map((r, i) => ({ what: `relay ${i} node port`, address: r.node.address })),
        { what: 'master node port', address: master.address },
        ...master.tunnels.list().map((tunnel, i) => ({ what: `endpoint ${i}`, address: tunnel.endpoint })),
        { what: 'public DHT port', address: publicSocket.local },
      ];
      const before = net.nodes.map((n) => stateOf(n.node));
      const dhtBefore = { master: master.dht.stats(), public: publicDht.stats() };
      const batch = probes(600);
      for (const target of targets) {
        // Endpoints in rounds, under their inbound cap (200/s per tunnel), so the DHT behind them sees every probe.
        const round = target.what.startsWith('endpoint') ? 100 : batch.length;
        for (let i = 0; i < batch.length; i += round) {
          for (const probe of batch.slice(i, i + round)) prober.send(probe, target.address);
          await settle(network);
          if (round < batch.length) await new Promise((resolve) => setTimeout(resolve, 520));
        }
      }
      await settle(network);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await settle(network);
      assert.deepEqual(heard, [], 'not one datagram came back to the prober');
      for (const [i, node] of net.nodes.entries()) {
        assert.deepEqual(stateOf(node.node), before[i], `node ${i}: no state from probes`);
        assert.ok(!node.node.link.sessions().some((session) => session.address.host === prober.local.host), `node ${i}: no session with the prober`);
      }
      const dhtAfter = { master: master.dht.stats(), public: publicDht.stats() };
      for (const side of ['master', 'public'] as const) {
        assert.equal(dhtAfter[side].contacts, dhtBefore[side].contacts, `${side} DHT: no contact from probes`);
        assert.equal(dhtAfter[side].rpc.cachedAnswers, dhtBefore[side].rpc.cachedAnswers, `${side} DHT: nothing answered`);
        assert.equal(dhtAfter[side].rpc.pending, dhtBefore[side].rpc.pending, `${side} DHT: no call started`);
      }
      const drops = (counters: CounterSnapshot<string>): number => sumCounters(counters, 'drop:');
      const relayDrops = net.relays.reduce((sum, r) => sum + drops(r.node.stats().link.counters), 0);
      assert.ok(relayDrops >= 4 * batch.length, `every probe at a node port was counted as a drop (${relayDrops})`);
      assert.ok(drops(dhtAfter.public.rpc.counters) >= batch.length / 3, 'the public DHT counted the DHT-shaped probes');
      t.diagnostic(`${targets.length} ports probed with ${batch.length} datagrams each: 0 replies`);
    } finally {
      publicDht.close();
      await prober.close();
      await publicSocket.close();
    }
  });
});

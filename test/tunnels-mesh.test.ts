/**
 * Integration tests of the tunnel layer on a whole testnet (docs/PROTOCOL.md §4-§7,
 * SECURITY.md §1): pools of hundreds of tunnels in both path modes, messages
 * between masters, datagrams to a plain UDP server, what each party of a tunnel sees,
 * the endpoint's exit policy and rate caps, and teardown hop by hop. One test, two
 * networks: what can run over both the in-memory network and loopback UDP does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { addressKey, type UdpAddress } from '@deut/common';
import type { LinkPayloadEvent } from '@deut/link';
import type { DatagramInfo, DeutNode, EndpointExitsCounter, EndpointExitsDropReason } from '@deut/node';
import { until, withDeadline, withTestnet, type Testnet, type TestnetNode } from '@deut/testkit';
import { openSocketCount } from '@deut/transport';
import type { TunnelCounter } from '@deut/tunnel';
import { DATAGRAM_BYTES, decodeTunnelMessage, isPeerExchange, type TunnelMessage } from '@deut/wire';

type Transport = 'memory' | 'udp';
const TRANSPORTS: readonly Transport[] = ['memory', 'udp'];
const HOPS = 3;

// ---- helpers ------------------------------------------------------------------------------

/** Polls `predicate` until it holds or `ms` pass; returns whether it held (the caller asserts). */
async function settle(predicate: () => boolean, ms: number): Promise<boolean> {
  try {
    await until(predicate, ms);
    return true;
  } catch {
    return predicate();
  }
}

/** Sum of `f` over the relays. */
function sumRelays(net: Testnet, f: (node: DeutNode) => number): number {
  return net.relays.reduce((sum, r) => sum + f(r.node), 0);
}

/** A counter of a relay's endpoint exits (absent counters are 0). */
function exitCounter(node: DeutNode, name: EndpointExitsCounter): number {
  return node.stats().exits.counters[name] ?? 0;
}

/** A counter of a node's tunnel engine (absent counters are 0). */
function engineCounter(node: DeutNode, name: TunnelCounter): number {
  return node.stats().tunnels.counters[name] ?? 0;
}

/** The relay whose node runs on `host` (every testnet node has a host of its own). */
function relayOnHost(net: Testnet, host: string): TestnetNode | undefined {
  return net.relays.find((r) => r.node.address.host === host);
}

/** Datagrams (not deut messages) a master receives. */
function collectDatagrams(node: DeutNode): Array<{ data: Uint8Array; from: UdpAddress; info: DatagramInfo }> {
  const items: Array<{ data: Uint8Array; from: UdpAddress; info: DatagramInfo }> = [];
  node.on('datagram', (data, from, info) => items.push({ data, from, info }));
  return items;
}

/** EXIT_REFUSED reports a master receives. */
function collectRefusals(node: DeutNode): Array<{ tunnel: number; reason: number }> {
  const items: Array<{ tunnel: number; reason: number }> = [];
  node.on('exit-refused', (info) => items.push(info));
  return items;
}

/** Asserts byte equality without dumping kilobytes into the failure message. */
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.length);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.length);
  let firstDifference = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      firstDifference = i;
      break;
    }
  }
  assert.equal(firstDifference, -1, `${what}: first differing byte`);
}

/** A payload of `length` bytes that starts with its index, so it can be told apart. */
function tagged(index: number, length: number): Uint8Array {
  const bytes = randomBytes(Math.max(length, 4));
  bytes.writeUInt32BE(index, 0);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

function tagOf(data: Uint8Array): number {
  return Buffer.from(data.buffer, data.byteOffset, data.length).readUInt32BE(0);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

// ---- what a party sees: chains of link ids from the observers ---------------------------

/** A tunnel-layer payload an observer saw, decoded. */
interface Observed {
  readonly direction: 'in' | 'out';
  readonly peer: string;
  readonly message: TunnelMessage;
  readonly payload: Uint8Array;
}

/** Decodes every tunnel-layer payload of a node's observer log; peer exchange is skipped. */
function decodeSeen(seen: readonly LinkPayloadEvent[]): Observed[] {
  const out: Observed[] = [];
  for (const event of seen) {
    if (isPeerExchange(event.payload)) continue;
    // Throws (and fails the test) on a payload that is neither peer exchange nor a tunnel message.
    out.push({ direction: event.direction, peer: addressKey(event.peer), message: decodeTunnelMessage(event.payload), payload: event.payload });
  }
  return out;
}

const linkKey = (peer: string, id: number): string => `${peer}|${id}`;

/**
 * What a node did with the cells it received, from its own observer log. A relay handles a
 * cell synchronously, so the cell it forwards is the very next payload it sends; a cell
 * that is not followed by a forwarded cell of the same direction ended here (endpoint).
 */
interface Forwarding {
  /** (previous hop, id) of an outbound cell → (next hop, id) it was forwarded on. */
  readonly outbound: Map<string, string>;
  /** (next hop, id) of an inbound cell → (previous hop, id) it was forwarded on. */
  readonly inbound: Map<string, string>;
  /** (previous hop, id) of outbound cells that ended here. */
  readonly ended: Set<string>;
  /** Links that were forwarded to two different places, or both forwarded and ended. */
  readonly inconsistent: string[];
}

function forwarding(events: readonly Observed[]): Forwarding {
  const result: Forwarding = { outbound: new Map(), inbound: new Map(), ended: new Set(), inconsistent: [] };
  const record = (map: Map<string, string>, from: string, to: string): void => {
    const known = map.get(from);
    if (known !== undefined && known !== to) result.inconsistent.push(`${from} → ${known} and ${to}`);
    map.set(from, to);
  };
  events.forEach((event, i) => {
    const type = event.message.type;
    if (event.direction !== 'in' || (type !== 'cell-out' && type !== 'cell-in')) return;
    const from = linkKey(event.peer, event.message.tunnelId);
    const next = events[i + 1];
    const forwarded = next !== undefined && next.direction === 'out' && next.message.type === type ? linkKey(next.peer, next.message.tunnelId) : undefined;
    if (type === 'cell-in') {
      if (forwarded !== undefined) record(result.inbound, from, forwarded);
      return;
    }
    if (forwarded === undefined) result.ended.add(from);
    else record(result.outbound, from, forwarded);
  });
  for (const from of result.ended) if (result.outbound.has(from)) result.inconsistent.push(`${from} both forwarded and ended`);
  return result;
}

/** One hop of a tunnel as reconstructed from the observers. */
interface ChainHop {
  readonly node: TestnetNode;
  /** Previous node's address key and the link id on that link. */
  readonly prev: string;
  readonly prevId: number;
  /** Next node's address key and link id (absent at the endpoint). */
  readonly next?: string;
  readonly nextId?: number;
}

/** Follows one of the master's tunnels from its first link (first hop, id) to its endpoint. */
function followChain(net: Testnet, fw: ReadonlyMap<TestnetNode, Forwarding>, master: string, firstHop: string, firstId: number): ChainHop[] {
  const chain: ChainHop[] = [];
  let prev = master;
  let prevId = firstId;
  let current = firstHop;
  for (let guard = 0; guard < 8; guard++) {
    const node = net.nodes.find((n) => addressKey(n.node.address) === current);
    assert.ok(node, `hop ${chain.length} (${current}) is a testnet node`);
    const table = fw.get(node);
    assert.ok(table);
    const from = linkKey(prev, prevId);
    const to = table.outbound.get(from);
    if (to === undefined) {
      assert.ok(table.ended.has(from), `cells of link ${from} neither forwarded nor ended at ${current}`);
      chain.push({ node, prev, prevId });
      return chain;
    }
    const [next = '', nextIdText = ''] = to.split('|');
    chain.push({ node, prev, prevId, next, nextId: Number(nextIdText) });
    prev = current;
    prevId = Number(nextIdText);
    current = next;
  }
  assert.fail(`tunnel from ${firstHop}|${firstId} has more than 7 hops`);
}

/** Every 8-byte window of `bytes` as a u64. */
function windows(bytes: Uint8Array): bigint[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: bigint[] = [];
  for (let i = 0; i + 8 <= bytes.length; i++) out.push(view.getBigUint64(i));
  return out;
}

// ---- 1. pools of 200 tunnels --------------------------------------------------------------

for (const transport of TRANSPORTS) {
  for (const mode of ['master', 'relayer'] as const) {
    test(`tunnel mesh - a master builds 200 tunnels through a 20-relay testnet (${mode} mode, ${transport})`, { timeout: 90_000 }, async () => {
      await withTestnet({ transport, relays: 20, masters: 1, tunnels: 200, waitForTunnels: false, master: { pathSelection: mode } }, async (net) => {
        const master = net.masters[0]!.node;
        const started = performance.now();
        await withDeadline(master.tunnels.ready(200), 60_000, '200 tunnels');
        const elapsedMs = performance.now() - started;

        const list = master.tunnels.list();
        assert.ok(list.length >= 200, `${list.length} tunnels listed`);
        assert.equal(new Set(list.map((t) => t.id)).size, list.length, 'tunnel ids are distinct');
        assert.equal(new Set(list.map((t) => addressKey(t.endpoint))).size, list.length, 'every tunnel has an endpoint port of its own');
        const perRelay = new Map<TestnetNode, number>();
        for (const tunnel of list) {
          assert.equal(tunnel.hops, HOPS, `tunnel ${tunnel.id} has the default hop count`);
          const relay = relayOnHost(net, tunnel.endpoint.host);
          assert.ok(relay, `endpoint ${addressKey(tunnel.endpoint)} is on a relay`);
          assert.notEqual(tunnel.endpoint.port, relay.node.address.port, 'the endpoint port is not the relay node port');
          perRelay.set(relay, (perRelay.get(relay) ?? 0) + 1);
        }

        // Failed builds leave pending hop state until their TunnelDestroy arrives: let it settle.
        const n = list.length;
        const consistent = (): boolean =>
          sumRelays(net, (r) => r.stats().tunnels.endpoints) === n &&
          sumRelays(net, (r) => r.stats().tunnels.relaying) === (HOPS - 1) * n &&
          net.relays.every((r) => r.node.stats().tunnels.endpoints === (perRelay.get(r) ?? 0) && r.node.stats().exits.ports === (perRelay.get(r) ?? 0));
        await settle(consistent, 10_000);
        assert.equal(sumRelays(net, (r) => r.stats().tunnels.endpoints), n, 'endpoints across relays = tunnels');
        assert.equal(sumRelays(net, (r) => r.stats().tunnels.relaying), (HOPS - 1) * n, 'relaying entries across relays = (hops - 1) × tunnels');
        assert.equal(sumRelays(net, (r) => r.stats().tunnels.transit), HOPS * n, 'transit entries across relays = hops × tunnels');
        for (const relay of net.relays) {
          const stats = relay.node.stats();
          assert.equal(stats.tunnels.endpoints, perRelay.get(relay) ?? 0, `${addressKey(relay.node.address)}: endpoint entries = tunnels listed with an endpoint there`);
          assert.equal(stats.exits.ports, perRelay.get(relay) ?? 0, `${addressKey(relay.node.address)}: endpoint ports held = its endpoint entries`);
        }
        assert.equal(master.stats().tunnels.owned, n, 'the master engine owns every listed tunnel');
        assert.equal(master.stats().tunnels.transit, 0, 'a master that does not relay carries nobody');
        // A build over a node's rate limit is dropped unread (allowBuildFrom), never refused:
        // a DeutNode's admit() refuses only as 'overloaded', so build-refused-rate-limited stays 0.
        const rateLimited = sumRelays(net, (r) => engineCounter(r, 'drop:build-rate-limited'));
        assert.equal(rateLimited, 0, 'default build rate limits were never hit');

        const pool = master.stats().pool?.counters ?? {};
        const rate = (n / elapsedMs) * 1000;
        console.log(
          `tunnel mesh: ${transport}, ${mode} mode: ${n} tunnels of ${HOPS} hops in ${elapsedMs.toFixed(0)} ms = ${rate.toFixed(0)} builds/s ` +
            `(builds started ${pool['builds-started'] ?? 0}, failed ${pool['builds-failed'] ?? 0})`,
        );
      });
    });
  }
}

// ---- 2. request and response ------------------------------------------------------------

for (const transport of TRANSPORTS) {
  test(`tunnel mesh - request and response between two masters (${transport})`, { timeout: 60_000 }, async () => {
    await withTestnet({ transport, relays: 12, masters: 2, tunnels: 20 }, async (net) => {
      const a = net.masters[0]!.node;
      const b = net.masters[1]!.node;
      const prefix = new TextEncoder().encode('echo from b: ');
      const served: UdpAddress[] = [];
      b.handle((payload, from) => {
        served.push(from);
        return concat(prefix, payload);
      });
      const endpoints = b.tunnels.list().map((t) => t.endpoint);
      assert.ok(endpoints.length >= 20, `b has ${endpoints.length} endpoints`);

      // One after another, to measure round trips; sizes up to ~6 KB (several cells each way).
      const rtts: number[] = [];
      for (let i = 0; i < 20; i++) {
        const payload = tagged(i, 16 + i * 300);
        const t0 = performance.now();
        const reply = await a.request(endpoints[i]!, payload, { timeoutMs: 10_000 });
        rtts.push(performance.now() - t0);
        assertSameBytes(reply, concat(prefix, payload), `reply ${i}`);
      }
      // Then all at once, to the same 20 endpoints.
      const payloads = Array.from({ length: 20 }, (_, i) => tagged(100 + i, 200));
      const replies = await Promise.all(payloads.map((p, i) => a.request(endpoints[i]!, p, { timeoutMs: 10_000 })));
      replies.forEach((reply, i) => assertSameBytes(reply, concat(prefix, payloads[i]!), `concurrent reply ${i}`));

      assert.equal(served.length, 40, 'the handler ran once per request, although each went through 2 tunnels');
      const aEndpoints = new Set(a.tunnels.list().map((t) => addressKey(t.endpoint)));
      for (const from of served) {
        assert.ok(aEndpoints.has(addressKey(from)), `b was asked from ${addressKey(from)}, one of a's endpoints`);
        assert.notEqual(from.host, a.address.host, "b never sees a's own address");
      }
      console.log(`tunnel mesh: ${transport}: request RTT through 2 × ${HOPS}-hop tunnels: median ${median(rtts).toFixed(1)} ms, max ${Math.max(...rtts).toFixed(1)} ms`);
    });
  });
}

// ---- 3. datagrams to a plain UDP server ---------------------------------------------------

for (const transport of TRANSPORTS) {
  test(`tunnel mesh - send to a plain UDP echo server returns the echo through the tunnel (${transport})`, { timeout: 60_000 }, async () => {
    await withTestnet({ transport, relays: 10, masters: 1, tunnels: 8 }, async (net) => {
      const master = net.masters[0]!.node;
      const echo = await net.echoServer();
      const inbox = collectDatagrams(master);
      const tunnels = new Map(master.tunnels.list().map((t) => [t.id, t]));
      const endpointKeys = new Set([...tunnels.values()].map((t) => addressKey(t.endpoint)));

      const payloads = Array.from({ length: 20 }, (_, i) => tagged(i, 40 + i * 97));
      for (const payload of payloads) await master.send(echo.address, payload);
      await until(() => inbox.length >= payloads.length, 10_000, '20 echoes');
      assert.equal(inbox.length, payloads.length, 'one echo per datagram');
      assert.equal(new Set(inbox.map((d) => tagOf(d.data))).size, payloads.length, 'every datagram came back');
      for (const { data, from, info } of inbox) {
        const i = tagOf(data);
        assertSameBytes(data, payloads[i]!, `echo ${i}`);
        assert.equal(addressKey(from), addressKey(echo.address), 'the echo comes from the echo server');
        const tunnel = tunnels.get(info.tunnel);
        assert.ok(tunnel, `echo ${i} came back through a pooled tunnel`);
        assert.equal(addressKey(info.endpoint), addressKey(tunnel.endpoint), 'info.endpoint is that tunnel’s endpoint');
        // The echo server answered the port the datagram left from: the same tunnel's endpoint.
        const sent = echo.received.find((r) => r.data.length === data.length && tagOf(r.data) === i);
        assert.ok(sent);
        assert.equal(addressKey(sent.from), addressKey(info.endpoint), `echo ${i} returned through the tunnel it left by`);
      }
      for (const { from } of echo.received) {
        assert.ok(endpointKeys.has(addressKey(from)), `echo server saw ${addressKey(from)}, an endpoint of the master`);
        assert.notEqual(addressKey(from), addressKey(master.address), "the echo server never sees the master's node port");
        assert.notEqual(from.host, master.address.host, "the echo server never sees the master's host");
      }

      // A 40,000-byte datagram: 40 fragments out, reassembled at the endpoint, 40 back.
      const big = tagged(0xb16, 40_000);
      await master.send(echo.address, big);
      await until(() => inbox.some((d) => d.data.length === big.length), 10_000, 'the 40,000-byte echo');
      const echoed = inbox.find((d) => d.data.length === big.length)!;
      assertSameBytes(echoed.data, big, '40,000-byte echo');
      const arrived = echo.received.find((r) => r.data.length === big.length);
      assert.ok(arrived, 'the echo server received it as one datagram');
      assertSameBytes(arrived.data, big, '40,000 bytes at the echo server');
      assert.ok(endpointKeys.has(addressKey(arrived.from)));
    });
  });
}

// ---- 4. what each party sees --------------------------------------------------------------

test('tunnel mesh - what each party sees', { timeout: 60_000 }, async () => {
  const tunnelCount = 10;
  await withTestnet(
    { transport: 'memory', relays: 12, masters: 1, tunnels: tunnelCount, observe: true, waitForTunnels: false, master: { hops: HOPS, probeIntervalMs: 250 } },
    async (net) => {
      const network = net.network!;
      const masterNode = net.masters[0]!;
      const master = masterNode.node;
      const masterKey = addressKey(master.address);
      const nodePorts = new Set(net.nodes.map((n) => addressKey(n.node.address)));
      const echo = await net.echoServer();
      const echoKey = addressKey(echo.address);

      // The wire, from (nearly) the first build on.
      let nodeDatagrams = 0;
      const wrongSize: string[] = [];
      const strayNodePort: string[] = [];
      const toEcho: UdpAddress[] = [];
      network.tap((event) => {
        const from = addressKey(event.from);
        const to = addressKey(event.to);
        if (nodePorts.has(from) || nodePorts.has(to)) {
          nodeDatagrams++;
          if (event.data.length !== DATAGRAM_BYTES) wrongSize.push(`${from} → ${to}: ${event.data.length} bytes`);
          if (!nodePorts.has(from) || !nodePorts.has(to)) strayNodePort.push(`${from} → ${to}`);
        }
        if (to === echoKey) toEcho.push(event.from);
      });

      await withDeadline(master.tunnels.ready(tunnelCount), 30_000, 'tunnels');
      const list = master.tunnels.list();
      const inbox = collectDatagrams(master);
      for (let i = 0; i < 40; i++) await master.send(echo.address, tagged(i, 2_500));
      // Probes (every ~250 ms) put cells both ways through every tunnel.
      const masterLinks = (direction: 'in' | 'out'): Set<string> => {
        const keys = new Set<string>();
        for (const e of decodeSeen(masterNode.seen)) {
          if (e.direction === direction && (e.message.type === 'cell-out' || e.message.type === 'cell-in')) keys.add(linkKey(e.peer, e.message.tunnelId));
        }
        return keys;
      };
      await until(() => inbox.length >= 40 && masterLinks('out').size >= list.length && masterLinks('in').size >= list.length, 15_000, 'cells through every tunnel');
      await network.idle();

      const decoded = new Map(net.nodes.map((n) => [n, decodeSeen(n.seen)]));
      const fw = new Map(net.nodes.map((n) => [n, forwarding(decoded.get(n)!)]));
      for (const relay of net.relays) assert.deepEqual(fw.get(relay)!.inconsistent, [], `${addressKey(relay.node.address)} forwards each link to one place`);
      for (const reason of ['cell-unknown-tunnel', 'cell-not-ready', 'cell-replay', 'cell-bad-tag'] as const) {
        assert.equal(sumRelays(net, (r) => engineCounter(r, `drop:${reason}`)), 0, `no relay dropped a cell (${reason}) on a clean network`);
      }

      // Chains: the master's first links, followed relay by relay to the endpoints.
      const firstLinks = new Map<string, { peer: string; id: number }>();
      for (const e of decoded.get(masterNode)!) {
        if (e.direction === 'out' && e.message.type === 'cell-out') firstLinks.set(linkKey(e.peer, e.message.tunnelId), { peer: e.peer, id: e.message.tunnelId });
      }
      assert.equal(firstLinks.size, list.length, 'one first link per tunnel carried cells');
      const chains = [...firstLinks.values()].map(({ peer, id }) => followChain(net, fw, masterKey, peer, id));
      const endpointHosts = chains.map((c) => c.at(-1)!.node.node.address.host).sort();
      assert.deepEqual(endpointHosts, list.map((t) => t.endpoint.host).sort(), 'the chains end at the listed endpoints');

      for (const chain of chains) {
        const where = chain.map((h) => addressKey(h.node.node.address)).join(' → ');
        assert.equal(chain.length, HOPS, `${where}: ${HOPS} hops`);
        assert.equal(new Set(chain.map((h) => h.node)).size, HOPS, `${where}: distinct nodes`);
        assert.ok(chain.every((h) => h.node.role === 'relay'), `${where}: only relays carry it`);
        chain.forEach((hop, i) => {
          const self = addressKey(hop.node.node.address);
          const table = fw.get(hop.node)!;
          if (i > 0) assert.notEqual(hop.prev, masterKey, `${where}: hop ${i} never has the master as neighbour`);
          if (hop.next !== undefined && hop.nextId !== undefined) {
            // Inbound cells of this tunnel go back to exactly the neighbour outbound ones came from.
            assert.equal(table.inbound.get(linkKey(hop.next, hop.nextId)), linkKey(hop.prev, hop.prevId), `${where}: hop ${i} sends inbound cells to its previous hop only`);
            assert.notEqual(hop.nextId, hop.prevId, `${where}: hop ${i} uses different link ids on its two links`);
            assert.equal(chain[i + 1]!.prev, self);
          }
        });
        const endpoint = chain.at(-1)!;
        assert.notEqual(endpoint.prev, masterKey, `${where}: the endpoint's upstream neighbour is not the master`);
        const endpointEvents = decoded.get(endpoint.node)!.filter((e) => (e.message.type === 'cell-out' || e.message.type === 'cell-in') && e.message.tunnelId === endpoint.prevId && e.peer === endpoint.prev);
        assert.ok(endpointEvents.some((e) => e.direction === 'in') && endpointEvents.some((e) => e.direction === 'out'), `${where}: the endpoint carried cells both ways`);
        const endpointPeers = new Set(decoded.get(endpoint.node)!.filter((e) => (e.message.type === 'cell-out' || e.message.type === 'cell-in') && e.message.tunnelId === endpoint.prevId).map((e) => e.peer));
        assert.ok(!endpointPeers.has(masterKey), `${where}: the endpoint exchanged this tunnel's cells with the master's address`);
      }

      // No 8-byte run of anything a relay received (cells, builds, responses) in what it sent.
      const busiest = [...net.relays].sort((x, y) => decoded.get(y)!.length - decoded.get(x)!.length)[0]!;
      const events = decoded.get(busiest)!.filter((e) => e.message.type !== 'destroy-out' && e.message.type !== 'destroy-in');
      const incoming = events.filter((e) => e.direction === 'in').slice(0, 250);
      const outgoing = events.filter((e) => e.direction === 'out').slice(0, 250);
      assert.ok(incoming.some((e) => e.message.type === 'cell-out') && outgoing.some((e) => e.message.type === 'cell-out'), 'the busiest relay forwarded cells');
      const seen = new Set<bigint>();
      for (const e of incoming) for (const w of windows(e.payload)) seen.add(w);
      let compared = 0;
      const shared: string[] = [];
      for (const e of outgoing) {
        for (const w of windows(e.payload)) {
          compared++;
          if (seen.has(w)) shared.push(`${e.message.type}: ${w.toString(16)}`);
        }
      }
      assert.deepEqual(shared.slice(0, 5), [], `no 8-byte run of ${incoming.length} received payloads appears in ${outgoing.length} sent ones (${compared} windows)`);

      // The echo server, and the wire.
      assert.ok(echo.received.length >= 40);
      for (const { from } of echo.received) assert.notEqual(from.host, master.address.host, "the echo server never sees the master's host");
      assert.ok(toEcho.every((from) => !nodePorts.has(addressKey(from))), 'endpoints send from their endpoint ports, never from a node port');
      // At least the echo traffic: 40 datagrams of 3 cells, out and back over every link.
      assert.ok(nodeDatagrams >= 40 * 3 * 2 * HOPS, `${nodeDatagrams} datagrams between node ports observed`);
      assert.deepEqual(wrongSize.slice(0, 5), [], `every datagram on a node port is ${DATAGRAM_BYTES} bytes`);
      assert.deepEqual(strayNodePort.slice(0, 5), [], 'node ports exchange datagrams only with node ports');
    },
  );
});

// ---- 5. exit policy -------------------------------------------------------------------------

test('tunnel mesh - endpoint refuses loopback and private destinations unless allowed', { timeout: 60_000 }, async () => {
  const refusedBy = async (net: Testnet, to: UdpAddress, counter: EndpointExitsDropReason): Promise<void> => {
    const master = net.masters[0]!.node;
    const tunnel = master.tunnels.list()[0]!;
    const endpoint = relayOnHost(net, tunnel.endpoint.host)!.node;
    const refusals = collectRefusals(master);
    const before = exitCounter(endpoint, `drop:${counter}`);
    await master.send(to, tagged(1, 100));
    await until(() => refusals.length > 0, 10_000, `EXIT_REFUSED for ${addressKey(to)}`);
    assert.deepEqual(refusals, [{ tunnel: tunnel.id, reason: 1 }], `${addressKey(to)} refused by policy (reason 1) through the one tunnel`);
    assert.equal(exitCounter(endpoint, `drop:${counter}`), before + 1, `the endpoint counts drop:${counter}`);
    master.removeAllListeners('exit-refused');
  };

  // Relays that refuse private exits (the default outside test meshes).
  await withTestnet({ relays: 6, masters: 1, tunnels: 1, relay: { allowPrivateExits: false } }, async (net) => {
    const echo = await net.echoServer();
    await refusedBy(net, echo.address, 'exit-loopback');
    await refusedBy(net, { host: '127.0.0.1', port: 53 }, 'exit-loopback');
    await refusedBy(net, { host: '10.1.2.3', port: 9 }, 'exit-private');
    await refusedBy(net, { host: '192.168.1.1', port: 53 }, 'exit-private');
    await refusedBy(net, { host: '169.254.1.1', port: 9 }, 'exit-link-local');
    await net.network!.idle();
    assert.equal(echo.received.length, 0, 'the echo server received nothing');
    assert.equal(sumRelays(net, (r) => exitCounter(r, 'datagrams-exited')), 0, 'no endpoint sent anything');
  });

  // The testnet default allows private exits: loopback goes out, but multicast and the
  // endpoint's own node port stay refused.
  await withTestnet({ relays: 6, masters: 1, tunnels: 1 }, async (net) => {
    const master = net.masters[0]!.node;
    const echo = await net.echoServer();
    const inbox = collectDatagrams(master);
    await master.send(echo.address, tagged(7, 100));
    await until(() => inbox.length === 1, 10_000, 'the echo');
    assert.equal(echo.received.length, 1);
    await refusedBy(net, { host: '224.0.0.1', port: 9 }, 'exit-multicast');
    const endpointRelay = relayOnHost(net, master.tunnels.list()[0]!.endpoint.host)!.node;
    await refusedBy(net, endpointRelay.address, 'exit-own-address');
    assert.equal(echo.received.length, 1);
  });
});

// ---- 6. exit rate caps ----------------------------------------------------------------------

test('tunnel mesh - endpoint rate caps hold', { timeout: 60_000 }, async () => {
  const perSecond = 5;
  const burst = 10;
  const total = 50;
  const exit = { perTunnel: { packets: { perSecond, burst }, bytes: { perSecond: 1e6, burst: 1e6 } } };
  await withTestnet({ relays: 6, masters: 1, tunnels: 1, relay: { exit } }, async (net) => {
    const master = net.masters[0]!.node;
    const tunnel = master.tunnels.list()[0]!;
    const endpoint = relayOnHost(net, tunnel.endpoint.host)!.node;
    const echo = await net.echoServer();
    const refusals = collectRefusals(master);

    const started = performance.now();
    await Promise.all(Array.from({ length: total }, (_, i) => master.send(echo.address, tagged(i, 64))));
    await until(() => echo.received.length + refusals.length >= total, 10_000, 'every datagram sent or refused');
    const elapsedS = (performance.now() - started) / 1000;
    await net.network!.idle();

    // A token bucket lets through its burst plus what refills while the burst lasts.
    const allowed = burst + Math.ceil(perSecond * elapsedS);
    assert.ok(echo.received.length >= burst, `the burst of ${burst} goes out (${echo.received.length})`);
    assert.ok(echo.received.length <= allowed, `${echo.received.length} sent, at most ${allowed} allowed in ${elapsedS.toFixed(3)} s`);
    assert.equal(echo.received.length + refusals.length, total, 'every datagram either went out or was reported refused');
    assert.ok(refusals.every((r) => r.reason === 2 && r.tunnel === tunnel.id), 'refusals are rate refusals (reason 2) for the one tunnel');
    assert.equal(exitCounter(endpoint, 'drop:exit-rate'), refusals.length, 'the endpoint counts each refusal');
    assert.equal(exitCounter(endpoint, 'datagrams-exited'), echo.received.length, 'the endpoint counts what it sent');
    assert.ok(echo.received.every((r) => addressKey(r.from) === addressKey(tunnel.endpoint)), 'all from the one endpoint');
  });
});

// ---- 7. teardown ----------------------------------------------------------------------------

for (const transport of TRANSPORTS) {
  test(`tunnel mesh - close releases every hop's state and every endpoint port (${transport})`, { timeout: 60_000 }, async () => {
    await withTestnet({ transport, relays: 10, masters: 2, tunnels: 8 }, async (net) => {
      const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
      const echo = await net.echoServer();
      const inbox = collectDatagrams(a);
      b.handle((payload) => payload);
      for (let i = 0; i < 10; i++) await a.send(echo.address, tagged(i, 3_000));
      await until(() => inbox.length === 10, 10_000, 'echoes');
      const request = tagged(1, 500);
      assertSameBytes(await a.request(b.tunnels.list()[0]!.endpoint, request), request, 'a request answered through the tunnels');

      const tunnels = a.tunnels.list().length + b.tunnels.list().length;
      const relayState = (): { transit: number; ports: number } => ({
        transit: sumRelays(net, (r) => r.stats().tunnels.transit),
        ports: sumRelays(net, (r) => r.stats().exits.ports),
      });
      await settle(() => relayState().transit === HOPS * tunnels, 10_000);
      assert.deepEqual(relayState(), { transit: HOPS * tunnels, ports: tunnels }, 'before: every hop of every tunnel, one port per endpoint');
      const destroysBefore = sumRelays(net, (r) => engineCounter(r, 'destroys-received'));
      const socketsBefore = transport === 'udp' ? openSocketCount() : net.network!.openSockets;

      await Promise.all(net.masters.map((m) => m.node.close()));
      await settle(() => relayState().transit === 0 && relayState().ports === 0, 10_000);
      assert.deepEqual(relayState(), { transit: 0, ports: 0 }, 'after: no hop state and no endpoint port left');
      assert.equal(sumRelays(net, (r) => engineCounter(r, 'destroys-received')) - destroysBefore, HOPS * tunnels, 'each hop of each tunnel got one TunnelDestroy (not an expiry)');
      assert.equal(sumRelays(net, (r) => exitCounter(r, 'ports-closed')), sumRelays(net, (r) => exitCounter(r, 'ports-opened')), 'every port opened was closed');
      // Sockets: the masters' node ports and every endpoint port are gone; relays and the echo server remain.
      const socketsNow = (): number => (transport === 'udp' ? openSocketCount() : net.network!.openSockets);
      await settle(() => socketsNow() === socketsBefore - tunnels - 2, 5_000);
      assert.equal(socketsNow(), socketsBefore - tunnels - 2, 'the endpoint ports and both master ports are closed');
    });
  });
}

// ---- relayer mode: a hop with nobody to extend to -------------------------------------------

// In relayer mode a hop whose peer table offers no next hop refuses the build with
// 'next-hop-unreachable', and counts it like every other refusal (a regression test: this
// refusal once went uncounted).
test('tunnel mesh - a relayer-mode hop with no next hop refuses the build, keeps no state and counts the refusal', { timeout: 30_000 }, async () => {
  // Two relayers and three hops: the second hop may pick neither its previous hop nor itself.
  await withTestnet({ relays: 2, masters: 1, tunnels: 1, waitForTunnels: false, master: { pathSelection: 'relayer', hops: HOPS } }, async (net) => {
    const master = net.masters[0]!.node;
    await until(() => engineCounter(master, 'builds-failed-next-hop-unreachable') >= 1, 10_000, 'a refused build');
    assert.equal(master.tunnels.list().length, 0, 'no tunnel can be built');
    await settle(() => sumRelays(net, (r) => r.stats().tunnels.transit) === 0, 5_000);
    assert.equal(sumRelays(net, (r) => r.stats().tunnels.transit), 0, 'the refused builds left no hop state');
    const refusedAtMaster = engineCounter(master, 'builds-failed-next-hop-unreachable');
    const countedByHops = sumRelays(net, (r) => engineCounter(r, 'build-refused-next-hop-unreachable'));
    assert.ok(countedByHops >= refusedAtMaster, `hops counted ${countedByHops} of the ${refusedAtMaster} refusals the master received`);
  });
});

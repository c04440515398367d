/**
 * Integration tests of the tunnel layer under faults (docs/PROTOCOL.md §4-§8; SECURITY.md §1
 * tampering and loss): replies matched across tunnels, fan-out dedup, uniform tunnel
 * choice, loss/duplication/reordering, a relayer killed mid-run, rotation, tampered and
 * replayed cells and builds, refused and timed-out builds, and the one-hop-per-subnet rule.
 *
 * Meshes of DeutNodes come from createTestnet on the in-memory network (real clock, bounded
 * by short lifetimes and probe intervals). Tampering, refusal and hop timeouts use a small
 * mesh of Link + TunnelEngine on a ManualClock (testkit's createEngineMesh), where the test
 * holds each node's link handler and so can hand a hop exactly the bytes a malicious
 * neighbour could send over its authenticated link.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DeutError, addressKey, type CounterSnapshot, sumCounters } from '@deut/common';
import { cryptoReady, randomBytes } from '@deut/crypto';
import type { LinkPeer } from '@deut/link';
import { DeutNode, PeerTable, subnetGroup, type DeutNodeOptions } from '@deut/node';
import { createEngineMesh, createTestnet, tamperOnce, until, withDeadline, type EngineMesh, type EngineMeshNode, type Testnet, type TestnetNode } from '@deut/testkit';
import type { MemoryNetwork, WireEvent } from '@deut/transport';
import { BUILD_HOP_TIMEOUT_MS, BuildError, type RefusalReason, type TunnelCounter } from '@deut/tunnel';
import { CELL_BYTES, CELL_HEADER_BYTES, CELL_PLAINTEXT_BYTES, TUNNEL_MESSAGE_TYPES, decodeEnvelope, type Envelope } from '@deut/wire';
import { simulatedTestnet } from './sim-clock.js';

await cryptoReady();

// The product's timers are unref'd: keep the process alive while a test awaits them.
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

// ---- helpers ------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);
const text = (data: Uint8Array): string => decoder.decode(data);
const hex = (data: Uint8Array): string => Buffer.from(data).toString('hex');
const counter = <K extends string>(counters: CounterSnapshot<K> | undefined, name: NoInfer<K>): number => counters?.[name] ?? 0;

/** Pearson's statistic of `counts` against a uniform distribution over its cells. */
function chiSquareUniform(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, observed) => sum + (observed - expected) ** 2 / expected, 0);
}

/** χ² critical value for 19 degrees of freedom at p = 0.001. */
const CHI2_19_P001 = 43.82;

/** A message envelope seen on the wire between two endpoint ports. */
interface WireEnvelope {
  readonly from: string;
  readonly to: string;
  readonly envelope: Envelope;
}

/**
 * Records every envelope delivered between the given endpoint ports (node ports carry
 * only link datagrams and are never in these sets). Returns the record and an unsubscribe.
 */
function tapEnvelopes(network: MemoryNetwork, endpoints: ReadonlySet<string>): { seen: WireEnvelope[]; stop: () => void } {
  const seen: WireEnvelope[] = [];
  const stop = network.tap((event: WireEvent) => {
    if (event.fate !== 'delivered' && event.fate !== 'duplicated') return;
    const from = addressKey(event.from);
    const to = addressKey(event.to);
    if (!endpoints.has(from) || !endpoints.has(to)) return;
    const envelope = decodeEnvelope(event.data.slice());
    seen.push({ from, to, envelope });
  });
  return { seen, stop };
}

const endpointKeys = (node: DeutNode): Set<string> => new Set(node.tunnels.list().map((t) => addressKey(t.endpoint)));

/** Starts one more node on a testnet's in-memory network, bootstrapped like the others. */
async function startExtraNode(net: Testnet, host: string, options: Partial<DeutNodeOptions>): Promise<DeutNode> {
  const network = net.network;
  assert.ok(network !== undefined, 'the testnet runs on the in-memory network');
  return DeutNode.start({
    listen: { host, port: 0 },
    bootstrap: [net.bootstrap],
    sockets: { bind: (address) => Promise.resolve(network.bind(address)) },
    allowPrivateExits: true,
    allowSameSubnet: true,
    ...options,
  });
}

/** A request handler that echoes and counts calls per payload. */
function countingEcho(node: DeutNode): Map<string, number> {
  const calls = new Map<string, number>();
  node.handle((payload) => {
    const key = text(payload);
    calls.set(key, (calls.get(key) ?? 0) + 1);
    return bytes(`re:${key}`);
  });
  return calls;
}

// ---- a hand-built mesh of links and tunnel engines (@deut/testkit's createEngineMesh) --------

const CELL_OUT = TUNNEL_MESSAGE_TYPES['cell-out'];
const CELL_IN = TUNNEL_MESSAGE_TYPES['cell-in'];
const BUILD_REQUEST = TUNNEL_MESSAGE_TYPES['build-request'];

/** A copy of `payload` with bit 0 of byte `offset` flipped. */
function flipped(payload: Uint8Array, offset: number): Uint8Array {
  const copy = payload.slice();
  copy[offset]! ^= 0x01;
  return copy;
}

/** The last payload of `type` that `node` received from `from`. */
function lastReceived(node: EngineMeshNode, type: number, from: EngineMeshNode): { payload: Uint8Array; from: LinkPeer } {
  const found = node.inbox.filter((e) => e.payload[0] === type && addressKey(e.from.address) === addressKey(from.candidate.address)).at(-1);
  assert.ok(found !== undefined, `${node.name} received a payload of type ${type} from ${from.name}`);
  return { payload: found.payload.slice(), from: found.from };
}

const totalTransit = (mesh: EngineMesh): number => mesh.nodes.reduce((sum, n) => sum + n.engine.stats().transit, 0);

// ---- messaging ------------------------------------------------------------------------------

test('messaging - a reply arriving through a different tunnel than the request is matched', { timeout: 60_000 }, async (t: TestContext) => {
  const net = await createTestnet({ relays: 12, masters: 2, tunnels: 8, master: { fanout: 1 } });
  const [a, b] = net.masters.map((m) => m.node) as [DeutNode, DeutNode];
  const network = net.network!;
  const aEndpoints = endpointKeys(a);
  const bEndpoints = [...b.tunnels.list().map((x) => x.endpoint)];
  const tap = tapEnvelopes(network, new Set([...aEndpoints, ...bEndpoints.map(addressKey)]));
  try {
    countingEcho(b);
    const total = 50;
    const replies: string[] = [];
    for (let i = 0; i < total; i++) {
      const reply = await a.request(bEndpoints[i % bEndpoints.length]!, bytes(`m${i}`), { timeoutMs: 10_000, attemptTimeoutMs: 5_000 });
      replies.push(text(reply));
    }
    assert.deepEqual(replies, Array.from({ length: total }, (_, i) => `re:m${i}`));

    // Pair each request with its response by message id, as they crossed between endpoints.
    const requests = new Map<string, WireEnvelope[]>();
    const responses = new Map<string, WireEnvelope[]>();
    for (const seen of tap.seen) {
      const table = seen.envelope.kind === 'request' ? requests : responses;
      const id = hex(seen.envelope.messageId);
      table.set(id, [...(table.get(id) ?? []), seen]);
    }
    assert.equal(requests.size, total);
    let crossed = 0;
    for (const [id, [request, ...extraRequests]] of requests) {
      const [response, ...extraResponses] = responses.get(id) ?? [];
      assert.ok(request !== undefined && response !== undefined, 'every request was answered');
      assert.equal(extraRequests.length + extraResponses.length, 0, 'fan-out 1 on a perfect wire: one copy each way');
      // The requester's tunnel that carried the request is the one whose endpoint sent it.
      assert.ok(aEndpoints.has(request.from), 'the request left through one of the requester\'s tunnels');
      assert.ok(aEndpoints.has(response.to), 'the reply arrived at one of the requester\'s endpoints');
      assert.ok(request.envelope.replyTo.some((r) => addressKey(r) === response.to), 'the reply went to an address the request named');
      if (response.to !== request.from) crossed++;
    }
    t.diagnostic(`${crossed} of ${total} replies arrived through a different tunnel than their request`);
    assert.ok(crossed >= 1, 'some reply came back through another tunnel');
    const counters = a.stats().messages?.counters;
    assert.equal(counter(counters, 'responses'), total, 'every reply matched its pending request');
    assert.equal(counter(counters, 'responses-unmatched'), 0);
    assert.equal(counter(counters, 'retries'), 0, 'no request needed a second attempt');
  } finally {
    tap.stop();
    await net.close();
  }
});

test('messaging - fan-out duplicates are delivered once', { timeout: 60_000 }, async (t: TestContext) => {
  const net = await createTestnet({ relays: 12, masters: 2, tunnels: 8 });
  const [a, b] = net.masters.map((m) => m.node) as [DeutNode, DeutNode];
  const aEndpoints = endpointKeys(a);
  const bEndpointList = b.tunnels.list().map((x) => x.endpoint);
  const bEndpoints = new Set(bEndpointList.map(addressKey));
  const tap = tapEnvelopes(net.network!, new Set([...aEndpoints, ...bEndpoints]));
  try {
    const calls = countingEcho(b);
    const total = 100;
    const resolutions = new Map<string, number>();
    await withDeadline(
      Promise.all(
        Array.from({ length: total }, async (_, i) => {
          const reply = await a.request(bEndpointList[i % bEndpointList.length]!, bytes(`d${i}`), { timeoutMs: 10_000, attemptTimeoutMs: 5_000 });
          resolutions.set(text(reply), (resolutions.get(text(reply)) ?? 0) + 1);
        }),
      ),
      30_000,
      'requests to resolve',
    );
    for (let i = 0; i < total; i++) {
      assert.equal(calls.get(`d${i}`), 1, `the handler ran once for request ${i}`);
      assert.equal(resolutions.get(`re:d${i}`), 1, `request ${i} resolved once with its own reply`);
    }
    // Two copies of every request reached the server, from two different tunnels.
    const copies = new Map<string, Set<string>>();
    let requestCopies = 0;
    let responseCopies = 0;
    for (const seen of tap.seen) {
      if (seen.envelope.kind === 'request' && bEndpoints.has(seen.to)) {
        requestCopies++;
        const id = hex(seen.envelope.messageId);
        copies.set(id, (copies.get(id) ?? new Set()).add(seen.from));
      } else if (seen.envelope.kind === 'response' && aEndpoints.has(seen.to)) {
        responseCopies++;
      }
    }
    assert.equal(copies.size, total);
    for (const sources of copies.values()) assert.equal(sources.size, 2, 'each request left through two distinct tunnels');
    assert.equal(requestCopies, 2 * total);
    const server = b.stats().messages?.counters;
    assert.equal(counter(server, 'requests-served'), total);
    assert.equal(counter(server, 'duplicates-dropped'), total, 'the second copy of each request was dropped by the server');
    const client = a.stats().messages?.counters;
    assert.equal(counter(client, 'responses'), total);
    assert.ok(counter(client, 'duplicates-dropped') > 0, 'the requester dropped duplicate replies');
    assert.equal(counter(client, 'duplicates-dropped'), responseCopies - total, 'every reply copy but the first was dropped');
    t.diagnostic(`${requestCopies} request copies, ${responseCopies} reply copies for ${total} requests`);
  } finally {
    tap.stop();
    await net.close();
  }
});

test('messaging - a retried request is answered at the reply addresses the retry names', { timeout: 60_000 }, async (t: TestContext) => {
  // PROTOCOL.md §7: a retry goes out with fresh reply addresses because the old ones may be
  // gone. Here the endpoint ports the first attempt named vanish just as it reaches the
  // server, so only an answer sent to a retry's addresses can complete the request.
  const net = await createTestnet({ relays: 12, masters: 2, tunnels: 8 });
  const [a, b] = net.masters.map((m) => m.node) as [DeutNode, DeutNode];
  const network = net.network!;
  const aEndpoints = endpointKeys(a);
  const bEndpointList = b.tunnels.list().map((x) => x.endpoint);
  const bEndpoints = new Set(bEndpointList.map(addressKey));
  const sockets = new Map(net.relays.flatMap((r) => r.sockets.map((s) => [addressKey(s.local), s] as const)));
  let killed: string[] = [];
  const stopKilling = network.tap((event) => {
    if (killed.length > 0 || event.fate !== 'delivered' || !bEndpoints.has(addressKey(event.to)) || !aEndpoints.has(addressKey(event.from))) return;
    const envelope = decodeEnvelope(event.data.slice());
    if (envelope.kind !== 'request') return;
    killed = envelope.replyTo.map(addressKey);
    for (const key of killed) sockets.get(key)?.kill();
  });
  const tap = tapEnvelopes(network, new Set([...aEndpoints, ...bEndpoints]));
  try {
    const calls = countingEcho(b);
    const reply = await withDeadline(a.request(bEndpointList[0]!, bytes('again'), { timeoutMs: 15_000, attemptTimeoutMs: 300 }), 20_000, 'the request');
    assert.equal(text(reply), 're:again');
    assert.equal(killed.length, 2, 'the first attempt named two reply addresses, now dead');
    assert.equal(calls.get('again'), 1);
    assert.ok(counter(a.stats().messages?.counters, 'retries') >= 1);
    const answeredAt = tap.seen.filter((s) => s.envelope.kind === 'response').map((s) => s.to);
    assert.ok(answeredAt.some((to) => !killed.includes(to)), 'the server answered at an address a retry named');
    t.diagnostic(`responses sent to ${JSON.stringify(answeredAt)}; dead: ${JSON.stringify(killed)}`);
  } finally {
    stopKilling();
    tap.stop();
    await net.close();
  }
});

test('messaging - tunnels are chosen uniformly', { timeout: 90_000 }, async (t: TestContext) => {
  const tunnels = 20;
  const net = await createTestnet({ relays: 12, masters: 2, tunnels });
  const [a, b] = net.masters.map((m) => m.node) as [DeutNode, DeutNode];
  const aEndpoints = [...endpointKeys(a)];
  assert.equal(aEndpoints.length, tunnels);
  const bEndpointList = b.tunnels.list().map((x) => x.endpoint);
  const tap = tapEnvelopes(net.network!, new Set([...aEndpoints, ...bEndpointList.map(addressKey)]));
  try {
    // One-way datagrams: the echo server sees which endpoint (so which tunnel) each came from.
    const echo = await net.echoServer();
    const sends = 4_000;
    for (let i = 0; i < sends; i++) await a.send(echo.address, bytes(`u${i}`));
    await until(() => echo.received.length >= sends, 30_000, 'every datagram at the echo server');
    const bySource = new Map<string, number>();
    for (const r of echo.received) bySource.set(addressKey(r.from), (bySource.get(addressKey(r.from)) ?? 0) + 1);
    assert.deepEqual([...bySource.keys()].sort(), [...aEndpoints].sort(), 'datagrams left through the pool\'s tunnels only');
    const sendCounts = aEndpoints.map((e) => bySource.get(e) ?? 0);
    assert.equal(sendCounts.reduce((x, y) => x + y, 0), sends);
    const sendStatistic = chiSquareUniform(sendCounts);

    // Requests: 1,000 with fan-out 2, counted as copies leaving the requester's endpoints.
    // The count assumes no retries: a batch of 100 can take over the adaptive first wait
    // (1 s before any probe answered) on a loaded machine, so the wait here is generous.
    countingEcho(b);
    const requests = 1_000;
    for (let batch = 0; batch < requests; batch += 100) {
      await withDeadline(
        Promise.all(Array.from({ length: 100 }, (_, i) => a.request(bEndpointList[(batch + i) % bEndpointList.length]!, bytes(`q${batch + i}`), { attemptTimeoutMs: 10_000, timeoutMs: 25_000 }))),
        30_000,
        'a batch of requests',
      );
    }
    const copies = new Map<string, number>();
    for (const seen of tap.seen) if (seen.envelope.kind === 'request') copies.set(seen.from, (copies.get(seen.from) ?? 0) + 1);
    const requestCounts = aEndpoints.map((e) => copies.get(e) ?? 0);
    assert.equal(requestCounts.reduce((x, y) => x + y, 0), 2 * requests);
    const requestStatistic = chiSquareUniform(requestCounts);

    // Power: the same statistic on plausible biased pickers exceeds the critical value.
    const share = (weights: number[]): number[] => {
      const sum = weights.reduce((x, y) => x + y, 0);
      return weights.map((w) => Math.round((sends * w) / sum));
    };
    const neverLast = share(Array.from({ length: tunnels }, (_, i) => (i === tunnels - 1 ? 0 : 1)));
    const oneFavourite = share(Array.from({ length: tunnels }, (_, i) => (i === 0 ? 1.6 : 1)));
    const halfDouble = share(Array.from({ length: tunnels }, (_, i) => (i < tunnels / 2 ? 1.25 : 1)));
    t.diagnostic(`χ² sends ${sendStatistic.toFixed(2)}, requests ${requestStatistic.toFixed(2)} (critical ${CHI2_19_P001}); ` + `biased: never-last ${chiSquareUniform(neverLast).toFixed(1)}, one-favourite ${chiSquareUniform(oneFavourite).toFixed(1)}, half-1.25x ${chiSquareUniform(halfDouble).toFixed(1)}`);
    for (const biased of [neverLast, oneFavourite, halfDouble]) assert.ok(chiSquareUniform(biased) > CHI2_19_P001, `the test detects the bias ${JSON.stringify(biased)}`);
    assert.ok(sendStatistic < CHI2_19_P001, `one-way sends are uniform over tunnels: χ² = ${sendStatistic.toFixed(2)}, counts ${JSON.stringify(sendCounts)}`);
    assert.ok(requestStatistic < CHI2_19_P001, `request copies are uniform over tunnels: χ² = ${requestStatistic.toFixed(2)}, counts ${JSON.stringify(requestCounts)}`);
  } finally {
    tap.stop();
    await net.close();
  }
});

test('messaging - 1,000 requests complete exactly once over 10% loss, 5% duplication and reordering', { timeout: 240_000 }, async (t: TestContext) => {
  // Everything is built under these conditions: handshakes, peer exchange, tunnels, and
  // the masters run with their defaults (fan-out 2, probing on). Over ~7 lossy datagrams
  // each way a copy arrives with p = 0.9^7 ≈ 0.48, so an attempt fails about half the time:
  // what makes every request complete within its 10 s deadline is the number of attempts
  // the RTT-adaptive retry schedule fits in, and probes that count traffic as proof of life.
  // Simulated time (sim-clock.ts): every retry, probe and deadline below is on a clock that
  // moves only while no datagram is in flight, so a busy CPU cannot fail a request.
  const sim = await simulatedTestnet({
    relays: 12,
    masters: 2,
    tunnels: 8,
    conditions: { loss: 0.1, duplicate: 0.05, reorder: 0.05 },
    master: {},
    // A 3-hop build crosses 6 lossy links and succeeds about half the time, and failed builds
    // blame their hops: filling 16 tunnels once took over 60 s in CI. A bound, not a goal.
    tunnelsTimeoutMs: 150_000,
  });
  const net = sim.net;
  const [a, b] = net.masters.map((m) => m.node) as [DeutNode, DeutNode];
  try {
    const calls = countingEcho(b);
    const total = 1_000;
    const failures: unknown[] = [];
    const wrong: string[] = [];
    const bEndpoints = b.tunnels.list().map((x) => x.endpoint);
    // A window of 100 requests in flight rather than batches: a batch waits for its
    // unluckiest request (several lossy attempts), a window starts the next one at once.
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < total; i = next++) {
        // Every one of B's endpoints, a different one first each time, as a DHT contact lists
        // them: at this loss B's pool may lose a tunnel to a run of missed probes, and a
        // request pinned to that one endpoint could never be answered.
        const to = bEndpoints.map((_, k) => bEndpoints[(i + k) % bEndpoints.length]!);
        try {
          const reply = await a.request(to, bytes(`l${i}`), { timeoutMs: 60_000, attemptTimeoutMs: 250 });
          if (text(reply) !== `re:l${i}`) wrong.push(`${i}: ${text(reply)}`);
        } catch (error) {
          failures.push({ request: i, to: addressKey(to[0]!), error });
        }
      }
    };
    await withDeadline(Promise.all(Array.from({ length: 100 }, worker)), 180_000, 'every request');
    const serverEndpointsNow = b.tunnels.list().map((x) => addressKey(x.endpoint));
    assert.deepEqual(failures, [], `every request resolved (server endpoints now ${JSON.stringify(serverEndpointsNow)}, server pool ${JSON.stringify(b.stats().pool?.counters)})`);
    assert.deepEqual(wrong, [], 'every reply is the reply to its own request');
    assert.equal(calls.size, total);
    const repeated = [...calls].filter(([, n]) => n !== 1);
    assert.deepEqual(repeated, [], 'the handler ran exactly once per request');
    const client = a.stats().messages?.counters;
    const server = b.stats().messages?.counters;
    const wire = net.network!.stats;
    assert.equal(counter(client, 'responses'), total);
    assert.equal(counter(server, 'requests-served'), total);
    assert.ok(wire.lost > 0 && wire.duplicated > 0 && wire.reordered > 0, 'the faults happened');
    assert.ok(counter(client, 'retries') > 0, 'some requests needed retries');
    // At ~50% probe loss three misses in a row are common; a pool that has probed enough to
    // measure it must have raised its threshold. (Traffic counts as proof of life, so a busy
    // pool may send too few probes to measure anything: that one keeps its prior.)
    const measured = [a, b].filter((node) => counter(node.stats().pool?.counters, 'probes-sent') >= 20);
    assert.ok(measured.length > 0, 'at least one pool probed enough to measure the loss');
    for (const node of measured) assert.ok((node.stats().pool?.failuresBeforeDead ?? 0) >= 5, `death threshold raised under loss: ${node.stats().pool?.failuresBeforeDead}`);
    assert.ok(counter(server, 'duplicates-dropped') > 0, 'the server saw duplicate requests and did not serve them twice');
    t.diagnostic(
      `retries ${counter(client, 'retries')}, request copies ${counter(client, 'request-copies-sent')}, ` +
        `duplicate replies dropped ${counter(client, 'duplicates-dropped')}, duplicate requests dropped ${counter(server, 'duplicates-dropped')}; ` +
        `wire: lost ${wire.lost}, duplicated ${wire.duplicated}, reordered ${wire.reordered}; ` +
        `requester pool ${JSON.stringify(a.stats().pool)}, server pool ${JSON.stringify(b.stats().pool)}`,
    );
  } finally {
    await sim.close();
  }
});

// ---- pool -----------------------------------------------------------------------------------

test('pool - a relayer killed mid-run is detected, tunnels are rebuilt, and every request completes', { timeout: 90_000 }, async (t: TestContext) => {
  const target = 8;
  // Simulated time (sim-clock.ts): traffic, probes, the kill's detection and the rebuilds
  // all run on a clock that moves only while no datagram is in flight.
  const sim = await simulatedTestnet({ relays: 12, masters: 1, tunnels: target, master: { probeIntervalMs: 500 } });
  const { net, pump } = sim;
  const clock = pump.clock;
  const a = net.masters[0]!.node;
  // The server uses one-hop tunnels, so its paths are known and the victim can be kept off
  // them: what dies is on the requester's side only.
  let b: DeutNode | undefined;
  let ticking = false;
  let ticker: Promise<void> | undefined;
  try {
    b = await startExtraNode(net, '127.0.2.2', { relay: false, tunnels: 3, hops: 1, clock });
    await withDeadline(b.tunnels.ready(3), 30_000, 'the server\'s tunnels');
    const calls = countingEcho(b);
    const bEndpoints = b.tunnels.list().map((x) => x.endpoint);
    const serverHosts = new Set(bEndpoints.map((e) => e.host));
    // The victim: of the relayers the server does not use, the one that carries most of the
    // requester's tunnels (only the requester's tunnels cross it, so its transit count is
    // how many will die).
    const victim: TestnetNode = net.relays
      .filter((r) => !serverHosts.has(r.node.address.host))
      .sort((x, y) => y.node.stats().tunnels.transit - x.node.stats().tunnels.transit)[0]!;
    const victimHost = victim.node.address.host;
    const doomed = victim.node.stats().tunnels.transit;
    assert.ok(doomed >= 2, '24 hops over at most 12 relayers: some relayer carries two tunnels');
    const idsBefore = new Set(a.tunnels.list().map((x) => x.id));

    const failures: unknown[] = [];
    const failedAt: string[] = [];
    const wrong: string[] = [];
    const pending: Array<Promise<void>> = [];
    let issued = 0;
    let killedAt = 0;
    const issue = (): void => {
      const i = issued++;
      const issuedAt = clock.now();
      pending.push(
        // Every endpoint of the server, a different one first each time, as a DHT contact
        // lists them: under CPU load the server's pool once lost a tunnel to missed probes,
        // and a request pinned to that one endpoint could never be answered (CI, 14 attempts).
        a.request(bEndpoints.map((_, k) => bEndpoints[(i + k) % bEndpoints.length]!), bytes(`k${i}`), { timeoutMs: 30_000 }).then(
          (reply) => void (text(reply) === `re:k${i}` || wrong.push(`${i}: ${text(reply)}`)),
          (error: unknown) => {
            failures.push(error);
            failedAt.push(`k${i} issued ${killedAt === 0 ? 'before the kill' : `${issuedAt - killedAt} ms after the kill`}`);
          },
        ),
      );
    };
    // Four requests every 20 simulated ms.
    ticking = true;
    ticker = (async () => {
      while (ticking) {
        for (let k = 0; k < 4; k++) issue();
        await pump.sleep(20);
      }
    })();
    await pump.until(() => issued >= 100, 10_000, 'traffic before the kill');
    net.kill(victim);
    killedAt = clock.now();
    // Dead by probes, or lost by a teardown (counted per DESTROY reason as tunnels-lost-<reason>).
    const lostTunnels = (): number =>
      (a.stats().pool?.counters['tunnels-dead'] ?? 0) + sumCounters(a.stats().pool?.counters ?? {}, 'tunnels-lost');
    await pump.until(() => lostTunnels() >= doomed && (a.stats().pool?.usable ?? 0) >= target, 45_000, 'the pool to drop the dead tunnels and refill');
    const recoveryMs = clock.now() - killedAt;
    const issuedAtRecovery = issued;
    await pump.until(() => issued >= issuedAtRecovery + 100, 10_000, 'traffic after recovery');
    ticking = false;
    await ticker;
    await withDeadline(Promise.all(pending), 45_000, 'every request to settle');

    if (failures.length > 0) {
      // What the two masters and the relayers counted, to tell a lost request from a lost reply.
      const drops = (node: DeutNode): CounterSnapshot<string> =>
        Object.fromEntries(
          [node.stats().tunnels.counters, node.stats().exits.counters]
            .flatMap((c) => Object.entries(c))
            .filter(([name]) => name.startsWith('drop')),
        );
      t.diagnostic(`${failedAt.length} failed, the first: ${failedAt.slice(0, 20).join('; ')}`);
      t.diagnostic(`requester messages ${JSON.stringify(a.stats().messages?.counters)}; pool ${JSON.stringify(a.stats().pool?.counters)}`);
      t.diagnostic(`server messages ${JSON.stringify(b.stats().messages?.counters)}; endpoints ${JSON.stringify(bEndpoints.map(addressKey))}`);
      for (const relay of net.relays) if (relay !== victim) t.diagnostic(`relay ${relay.node.address.host} drops ${JSON.stringify(drops(relay.node))}`);
    }
    assert.deepEqual(failures, [], `every request resolved (server pool ${JSON.stringify(b.stats().pool?.counters)})`);
    assert.deepEqual(wrong, []);
    assert.equal(calls.size, issued);
    assert.deepEqual([...calls].filter(([, n]) => n !== 1), [], 'the handler ran exactly once per request');
    assert.equal(lostTunnels(), doomed, 'exactly the tunnels through the dead relayer were declared dead');
    const now = a.tunnels.list();
    assert.ok(now.filter((x) => !x.draining).length >= target, 'the pool is back to its target');
    assert.ok(now.every((x) => x.endpoint.host !== victimHost), 'no tunnel ends at the dead relayer');
    assert.ok(now.filter((x) => !idsBefore.has(x.id)).length >= doomed, 'replacements were built after the kill');
    await pump.until(() => a.tunnels.list().every((x) => x.rttMs !== undefined), 15_000, 'every tunnel to answer a probe');
    const counters = a.stats().messages?.counters;
    assert.ok(counter(counters, 'retries') > 0, 'requests caught on dead tunnels were retried through others');
    t.diagnostic(`${doomed} tunnels crossed the victim; recovered ${recoveryMs} simulated ms after the kill; ${issued} requests, retries ${counter(counters, 'retries')}; pool ${JSON.stringify(a.stats().pool?.counters)}`);
  } finally {
    ticking = false;
    await ticker;
    await b?.close();
    await sim.close();
  }
});

test('pool - rotation under steady traffic loses nothing', { timeout: 90_000 }, async (t: TestContext) => {
  // Lifetime 6 s: replacements are built 3 s before expiry and a tunnel takes no new
  // messages 1.5 s before it (the pool's rotation windows, scaled down as options). Each
  // datagram takes 20 ms, so a round trip (14 datagrams) takes about 300 ms: a message sent
  // through a tunnel in its last moments would find its hops gone.
  const target = 6;
  // Simulated time (sim-clock.ts): lifetimes, rotation windows, link delay and traffic all
  // run on a clock that moves only while no datagram is due at once.
  const sim = await simulatedTestnet({
    relays: 10,
    masters: 2,
    tunnels: target,
    conditions: { delayMs: 20 },
    master: { tunnelLifetimeMs: 6_000, tunnelRotateBeforeMs: 3_000, tunnelDrainBeforeMs: 1_500 },
  });
  const { net, pump } = sim;
  const [a, b] = net.masters.map((m) => m.node) as [DeutNode, DeutNode];
  let ticking = false;
  let ticker: Promise<void> | undefined;
  let sampler: Promise<void> | undefined;
  try {
    const calls = countingEcho(b);
    const firstA = new Set(a.tunnels.list().map((x) => x.id));
    const firstB = new Set(b.tunnels.list().map((x) => x.id));
    let fewestUsable = Infinity;
    ticking = true;
    // Every 10 simulated ms.
    sampler = (async () => {
      while (ticking) {
        fewestUsable = Math.min(fewestUsable, a.stats().pool?.usable ?? 0, b.stats().pool?.usable ?? 0);
        await pump.sleep(10);
      }
    })();
    const failures: unknown[] = [];
    const wrong: string[] = [];
    const pending: Array<Promise<void>> = [];
    let issued = 0;
    let starved = 0;
    // Four requests every 20 simulated ms.
    const tick = (): void => {
      const targets = b.tunnels.list().filter((x) => !x.draining);
      if (targets.length === 0) return void starved++;
      for (let k = 0; k < 4; k++) {
        const i = issued++;
        pending.push(
          a.request(targets[i % targets.length]!.endpoint, bytes(`r${i}`), { timeoutMs: 20_000, attemptTimeoutMs: 2_000 }).then(
            (reply) => void (text(reply) === `re:r${i}` || wrong.push(`${i}: ${text(reply)}`)),
            (error: unknown) => void failures.push(error),
          ),
        );
      }
    };
    ticker = (async () => {
      while (ticking) {
        tick();
        await pump.sleep(20);
      }
    })();
    const rotated = (node: DeutNode, first: Set<number>): boolean => node.tunnels.list().every((x) => !first.has(x.id));
    await pump.until(() => rotated(a, firstA) && rotated(b, firstB), 30_000, 'every first-generation tunnel to expire');
    const secondA = new Set(a.tunnels.list().map((x) => x.id));
    const secondB = new Set(b.tunnels.list().map((x) => x.id));
    await pump.until(() => rotated(a, secondA) && rotated(b, secondB), 30_000, 'every second-generation tunnel to expire');
    const issuedAtRotation = issued;
    await pump.until(() => issued >= issuedAtRotation + 150, 10_000, 'traffic after the rotation');
    ticking = false;
    await Promise.all([ticker, sampler]);
    await withDeadline(Promise.all(pending), 30_000, 'every request to settle');

    assert.deepEqual(failures, [], 'every request resolved');
    assert.deepEqual(wrong, []);
    assert.deepEqual([...calls].filter(([, n]) => n !== 1), [], 'the handler ran exactly once per request');
    const client = a.stats().messages?.counters;
    assert.equal(counter(client, 'retries'), 0, 'no message was lost at rotation: no request needed a retry');
    assert.equal(counter(b.stats().messages?.counters, 'drop:no-tunnel-for-reply'), 0);
    assert.ok(fewestUsable >= target, `the pools never fell below their target (fewest usable: ${fewestUsable})`);
    assert.equal(starved, 0, 'the server always had an endpoint to address');
    for (const [node, first] of [[a, firstA], [b, firstB]] as const) {
      const ids = node.tunnels.list().map((x) => x.id);
      assert.ok(ids.length >= target);
      assert.deepEqual(ids.filter((id) => first.has(id)), [], 'tunnel ids after rotation are all new');
      assert.ok(counter(node.stats().pool?.counters, 'builds-succeeded') >= 3 * target, 'two generations were replaced');
    }
    t.diagnostic(`${issued} requests across two rotations; fewest usable tunnels ${fewestUsable}; requester pool ${JSON.stringify(a.stats().pool?.counters)}`);
  } finally {
    ticking = false;
    await Promise.all([ticker, sampler]);
    await sim.close();
  }
});

test('pool - a tunnel lifetime shorter than the rotation windows neither builds without bound nor leaves the pool unusable', { timeout: 30_000 }, async (t: TestContext) => {
  // 20 s tunnels with the default windows (replace 60 s ahead, drain 30 s ahead). Refusing
  // the options at start is a fine answer; accepting them must still give a usable pool of
  // about `target` tunnels.
  const target = 4;
  const net = await createTestnet({ relays: 8, masters: 0 });
  let master: DeutNode | undefined;
  try {
    const started = await startExtraNode(net, '127.0.2.1', { relay: false, tunnels: target, tunnelLifetimeMs: 20_000 }).then(
      (node) => node,
      (error: unknown) => error,
    );
    if (!(started instanceof DeutNode)) {
      assert.ok(started instanceof DeutError && started.kind === 'config', `refused as a configuration error: ${String(started)}`);
      return;
    }
    master = started;
    const node = master;
    const builds = (): number => counter(node.stats().pool?.counters, 'builds-started');
    await until(() => node.tunnels.list().length >= target, 10_000, 'the first tunnels');
    await until(() => builds() >= 3 * target, 1_000, 'a build storm').catch(() => undefined);
    t.diagnostic(`pool ${JSON.stringify(node.stats().pool)}`);
    assert.ok(builds() < 3 * target, `tunnels that live 20 s are not rebuilt at once: ${builds()} builds started for a target of ${target}`);
    assert.ok((node.stats().pool?.usable ?? 0) >= 1, 'the pool has usable tunnels');
  } finally {
    await master?.close();
    await net.close();
  }
});

// ---- tunnel security ---------------------------------------------------------------------------

test('tunnel security - a tampered cell, a replayed cell and a replayed build request are dropped and counted', { timeout: 60_000 }, async () => {
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2', 'R3'] });
  const [M, R1, R2, R3] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode, EngineMeshNode];
  const path = [R1, R2, R3];
  const plaintext = (): Uint8Array => randomBytes(CELL_PLAINTEXT_BYTES);
  try {
    const tunnel = await mesh.build(M, path);
    const p0 = plaintext();
    assert.ok(M.engine.send(tunnel, p0));
    await mesh.settle();
    assert.deepEqual(R3.endpointFrames, [p0], 'an untouched cell reaches the endpoint');

    // Replayed cells, outbound: at a relay and at the endpoint.
    const relayed = R2.count('cells-relayed');
    const cellAtR2 = lastReceived(R2, CELL_OUT, R1);
    R2.engine.handle(cellAtR2.payload, cellAtR2.from);
    assert.equal(R2.count('drop:cell-replay'), 1);
    assert.equal(R2.count('cells-relayed'), relayed, 'the replay was not forwarded');
    const cellAtR3 = lastReceived(R3, CELL_OUT, R2);
    R3.engine.handle(cellAtR3.payload, cellAtR3.from);
    assert.equal(R3.count('drop:cell-replay'), 1);
    await mesh.settle();
    assert.equal(R3.endpointFrames.length, 1, 'the endpoint delivered the cell once');

    // Replayed build requests: the same bytes, then the same records under a fresh link id.
    const transitR2 = R2.engine.stats().transit;
    const forwarded = R2.count('builds-forwarded');
    const buildAtR2 = lastReceived(R2, BUILD_REQUEST, R1);
    R2.engine.handle(buildAtR2.payload, buildAtR2.from);
    assert.equal(R2.count('drop:build-duplicate-id'), 1);
    const freshId = buildAtR2.payload.slice();
    freshId[1]! ^= 0xff;
    R2.engine.handle(freshId, buildAtR2.from);
    assert.equal(R2.count('drop:build-replay'), 1, 'the ephemeral key was seen before');
    const buildAtR1 = lastReceived(R1, BUILD_REQUEST, M);
    const freshAtR1 = buildAtR1.payload.slice();
    freshAtR1[4]! ^= 0x80;
    R1.engine.handle(freshAtR1, buildAtR1.from);
    assert.equal(R1.count('drop:build-replay'), 1);
    await mesh.settle();
    assert.equal(R2.engine.stats().transit, transitR2, 'a replayed build leaves no state');
    assert.equal(R2.count('builds-forwarded'), forwarded, 'a replayed build is not forwarded');
    assert.equal(R3.inbox.filter((e) => e.payload[0] === BUILD_REQUEST).length, 1);

    // Inbound: intact, replayed at a relay and at the master, tampered on the way.
    const endpoint = R3.endpoints[0]!;
    const q0 = plaintext();
    assert.ok(R3.engine.sendFromEndpoint(endpoint, q0));
    await mesh.settle();
    assert.deepEqual(M.ownFrames.map((f) => f.plaintext), [q0]);
    const inAtR2 = lastReceived(R2, CELL_IN, R3);
    R2.engine.handle(inAtR2.payload, inAtR2.from);
    assert.equal(R2.count('drop:cell-replay'), 2);
    const inAtM = lastReceived(M, CELL_IN, R1);
    M.engine.handle(inAtM.payload, inAtM.from);
    assert.equal(M.count('drop:cell-replay'), 1);
    const relayedByR1 = R1.count('cells-relayed');
    tamperOnce(R1, CELL_IN, R2, (payload) => flipped(payload, CELL_HEADER_BYTES + 700));
    assert.ok(R3.engine.sendFromEndpoint(endpoint, plaintext()));
    await mesh.settle();
    assert.equal(R1.count('cells-relayed'), relayedByR1 + 1, 'a relay cannot tell an inbound cell was altered');
    assert.equal(M.count('drop:cell-bad-tag'), 1, 'the master detects it');
    assert.deepEqual(M.ownFrames.map((f) => f.plaintext), [q0], 'the application never sees altered data');
    // A tampered tunnel is not used again (PROTOCOL.md §5.2): the master tears it down.
    await mesh.settle();
    assert.ok(M.ownClosed.some((c) => c.tunnel === tunnel), 'the master gave up the tampered tunnel');
    assert.equal(R3.engine.sendFromEndpoint(endpoint, plaintext()), false, 'the endpoint freed it too');
    assert.equal(totalTransit(mesh), 0);

    // Outbound tampering: a flipped bit anywhere in the body is caught by the next hop,
    // which tears the tunnel down both ways; a flipped tunnel id matches no tunnel.
    const cases: Array<{ what: string; at: EngineMeshNode; from: EngineMeshNode; offset: number; drop: TunnelCounter; tornDown: boolean }> = [
      { what: 'last body byte, M→R1', at: R1, from: M, offset: CELL_BYTES - 1, drop: 'drop:cell-bad-tag', tornDown: true },
      { what: 'middle of the body, R1→R2', at: R2, from: R1, offset: CELL_HEADER_BYTES + 580, drop: 'drop:cell-bad-tag', tornDown: true },
      { what: 'first tag byte, R2→endpoint', at: R3, from: R2, offset: CELL_HEADER_BYTES, drop: 'drop:cell-bad-tag', tornDown: true },
      { what: 'sequence value, R1→R2', at: R2, from: R1, offset: CELL_HEADER_BYTES - 1, drop: 'drop:cell-bad-tag', tornDown: true },
      { what: 'tunnel id, R1→R2', at: R2, from: R1, offset: 4, drop: 'drop:cell-unknown-tunnel', tornDown: false },
    ];
    for (const c of cases) {
      const fresh = await mesh.build(M, path);
      const dropsBefore = c.at.count(c.drop);
      const framesBefore: number = R3.endpointFrames.length;
      const closedBefore = R3.closedEndpoints.length;
      tamperOnce(c.at, CELL_OUT, c.from, (payload) => flipped(payload, c.offset));
      assert.ok(M.engine.send(fresh, plaintext()));
      await mesh.settle();
      assert.equal(c.at.count(c.drop), dropsBefore + 1, `${c.what}: ${c.at.name} counts ${c.drop}`);
      assert.equal(R3.endpointFrames.length, framesBefore, `${c.what}: nothing reached the endpoint`);
      if (c.tornDown) {
        assert.equal(totalTransit(mesh), 0, `${c.what}: every hop freed the tunnel`);
        assert.ok(M.ownClosed.some((c) => c.tunnel === fresh), `${c.what}: the master learned the tunnel is gone`);
        assert.equal(R3.closedEndpoints.length, closedBefore + 1, `${c.what}: the endpoint released its port`);
        assert.equal(M.engine.send(fresh, plaintext()), false);
      } else {
        const intact = plaintext();
        assert.ok(M.engine.send(fresh, intact));
        await mesh.settle();
        assert.deepEqual(R3.endpointFrames.at(-1), intact, `${c.what}: the tunnel itself is unharmed`);
        M.engine.destroy(fresh);
        await mesh.settle();
      }
    }

    // A build request replayed after its tunnel is gone is still refused.
    R2.engine.handle(buildAtR2.payload, buildAtR2.from);
    assert.equal(R2.count('drop:build-replay'), 2);
    await mesh.settle();
    assert.equal(totalTransit(mesh), 0);
  } finally {
    await mesh.close();
  }
  assert.equal(mesh.clock.pending, 0, 'no timer outlives the closed mesh');
});

// ---- tunnel build ------------------------------------------------------------------------------

test('tunnel build - a refusing hop is named and the build is retried on another path', { timeout: 60_000 }, async (t: TestContext) => {
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'X', 'R3'] });
  const [M, R1, X, R3] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode, EngineMeshNode];
  try {
    const cases: Array<{ path: EngineMeshNode[]; hop: number; reason: RefusalReason; setUp: () => void }> = [
      { path: [X, R1, R3], hop: 0, reason: 'overloaded', setUp: () => (X.refuse = 'overloaded') },
      { path: [R1, X, R3], hop: 1, reason: 'overloaded', setUp: () => (X.refuse = 'overloaded') },
      { path: [R1, R3, X], hop: 2, reason: 'overloaded', setUp: () => (X.refuse = 'overloaded') },
      {
        path: [R1, R3, X],
        hop: 2,
        reason: 'exit-policy',
        setUp: () => {
          X.refuse = undefined;
          X.openEndpoint = () => Promise.resolve('exit-policy');
        },
      },
    ];
    for (const c of cases) {
      c.setUp();
      const seenBefore = c.path.map((n) => n.inbox.filter((e) => e.payload[0] === BUILD_REQUEST).length);
      const failed = M.count(`builds-failed-${c.reason}`);
      await assert.rejects(mesh.build(M, c.path), (error: unknown) => {
        assert.ok(error instanceof BuildError);
        assert.equal(error.failure.hop, c.hop);
        assert.equal(error.failure.reason, c.reason);
        return true;
      });
      assert.equal(M.count(`builds-failed-${c.reason}`), failed + 1);
      await mesh.settle();
      assert.equal(totalTransit(mesh), 0, `hop ${c.hop} refusing: every hop freed its part`);
      c.path.forEach((n, i) => {
        const seen = n.inbox.filter((e) => e.payload[0] === BUILD_REQUEST).length - seenBefore[i]!;
        assert.equal(seen, i <= c.hop ? 1 : 0, `only hops up to the refusing one saw the request (${n.name})`);
      });
    }
  } finally {
    await mesh.close();
  }

  // With a pool: three relayers and one that refuses everything (its transit cap is 0).
  const net = await createTestnet({ relays: 3, masters: 0 });
  let refuser: DeutNode | undefined;
  let master: DeutNode | undefined;
  try {
    refuser = await startExtraNode(net, '127.0.1.9', { relay: true, maxTransit: 0 });
    const bootstrap = net.relays[0]!.node;
    await until(() => bootstrap.stats().peers >= 3, 10_000, 'the refuser to announce itself');
    const target = 8;
    master = await startExtraNode(net, '127.0.2.1', { relay: false, tunnels: target });
    await until(() => master!.stats().peers >= 4, 10_000, 'the master to learn every relayer');
    const noPathBefore = counter(master.stats().pool?.counters, 'builds-no-path');
    await withDeadline(master.tunnels.ready(target), 30_000, 'the pool to fill around the refuser');
    const pool = master.stats().pool?.counters;
    const refused = counter(refuser.stats().tunnels.counters, 'build-refused-transit-cap');
    assert.ok(refused >= 1, 'the refuser was asked');
    assert.equal(counter(master.stats().tunnels.counters, 'builds-failed-overloaded'), refused, 'each refusal was read as "overloaded"');
    assert.equal(counter(pool, 'builds-failed'), refused, 'the refusals were the only failures');
    // Every path is three of the four relayers. Blaming only the refusing hop leaves the
    // three good ones pickable; blaming the whole path would leave no path at all.
    assert.equal(counter(pool, 'builds-no-path'), noPathBefore, 'the hops that accepted were not blamed');
    assert.equal(counter(pool, 'builds-through-avoided'), 0, 'no path needed a blamed relayer');
    assert.ok(refused <= target, 'after its refusals the refuser was left out of new paths');
    assert.equal(refuser.stats().tunnels.transit, 0);
    assert.ok(master.tunnels.list().every((x) => x.endpoint.host !== '127.0.1.9'));
    t.diagnostic(`refusals ${refused}; pool ${JSON.stringify(pool)}`);
  } finally {
    await master?.close();
    await refuser?.close();
    await net.close();
  }
});

test('tunnel build - a build to a dead hop times out and the partial state is freed', { timeout: 60_000 }, async () => {
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2', 'R3'] });
  const [M, R1, R2, R3] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode, EngineMeshNode];
  const path = [R1, R2, R3];
  try {
    // Links come up while R2 is alive; then R2 dies without a word.
    M.engine.destroy(await mesh.build(M, path));
    await mesh.settle();
    assert.equal(totalTransit(mesh), 0);
    R2.socket.kill();

    // The master gives up at its timeout and its DESTROY frees the first hop at once.
    const first = M.engine.build({ mode: 'master', hops: path.map((h) => h.candidate), timeoutMs: 3_000 });
    const firstOutcome = first.then(
      () => assert.fail('a build through a dead hop succeeded'),
      (error: unknown) => error,
    );
    await mesh.settle();
    assert.equal(R1.engine.stats().transit, 1, 'the first hop holds a pending entry');
    await mesh.advance(3_000);
    const error = await withDeadline(firstOutcome, 5_000, 'the build to time out');
    assert.ok(error instanceof BuildError);
    assert.equal(error.failure.reason, 'timeout');
    assert.equal(M.count('builds-timed-out'), 1);
    assert.equal(R1.engine.stats().transit, 0, 'the master\'s DESTROY freed the first hop');
    assert.equal(R1.count('destroys-received'), 2);

    // When that DESTROY is lost, the hop frees its pending entry itself after BUILD_HOP_TIMEOUT_MS.
    const second = M.engine.build({ mode: 'master', hops: path.map((h) => h.candidate), timeoutMs: 3_000 });
    const secondOutcome = second.then(
      () => assert.fail('a build through a dead hop succeeded'),
      (e: unknown) => e,
    );
    await mesh.settle();
    assert.equal(R1.engine.stats().transit, 1);
    mesh.network.partition(M.host, R1.host);
    const secondError = await (async () => {
      await mesh.advance(3_000);
      return withDeadline(secondOutcome, 5_000, 'the second build to time out');
    })();
    assert.ok(secondError instanceof BuildError && secondError.failure.reason === 'timeout');
    assert.equal(R1.engine.stats().transit, 1, 'the DESTROY was lost: the entry is still there');
    await mesh.advance(BUILD_HOP_TIMEOUT_MS - 3_000 - 250);
    assert.equal(R1.engine.stats().transit, 1, 'not freed before BUILD_HOP_TIMEOUT_MS');
    await mesh.advance(1_500);
    assert.equal(R1.engine.stats().transit, 0, 'freed by its own timer');
    assert.equal(R1.count('transit-build-expired'), 1);
    assert.equal(R3.engine.stats().transit, 0, 'nothing ever reached the hop after the dead one');
  } finally {
    await mesh.close();
  }
  assert.equal(mesh.clock.pending, 0, 'no timer outlives the closed mesh');
});

test('tunnel teardown - a relayer that dies silently: its neighbours on both sides free the tunnel state within about a minute, not at expiry, and the master hears of it; live idle neighbours keep theirs', { timeout: 120_000 }, async (t: TestContext) => {
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2', 'R3'] });
  const [M, R1, R2, R3] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode, EngineMeshNode];
  try {
    const tunnel = await mesh.build(M, [R1, R2, R3]);
    assert.deepEqual([R1, R2, R3].map((r) => r.engine.stats().transit), [1, 1, 1]);
    // Five idle minutes (no cell at all): the links stay up on keepalives alone.
    await mesh.advance(300_000);
    assert.deepEqual([R1, R2, R3].map((r) => r.engine.stats().transit), [1, 1, 1], 'idle live tunnels are kept');
    assert.equal(M.ownClosed.length, 0);
    assert.ok(counter(R3.link.stats().counters, 'liveness-keepalives') > 0, 'the idle hops kept their links alive');

    // R2 dies without a word, mid-lifetime. Nothing flows: only liveness can tell.
    R2.socket.kill();
    const diedAt = mesh.clock.now();
    let freedAfter: number | undefined;
    for (let s = 0; s < 120 && freedAfter === undefined; s++) {
      await mesh.advance(1_000);
      if (R1.engine.stats().transit === 0 && R3.engine.stats().transit === 0) freedAfter = mesh.clock.now() - diedAt;
    }
    assert.ok(freedAfter !== undefined && freedAfter <= 70_000, `R1 and R3 freed the tunnel ${freedAfter} ms after R2 died (its lifetime is 600,000 ms)`);
    assert.deepEqual([R1.count('neighbours-lost'), R3.count('neighbours-lost')], [1, 1], 'each found out through its link to R2');
    assert.deepEqual(R3.closedEndpoints.map((c) => c.reason), ['neighbour-lost'], 'the endpoint port was closed');
    await mesh.settle();
    assert.deepEqual(M.ownClosed.map((c) => c.tunnel.localId), [tunnel.localId], 'R1 told the master (DESTROY_IN) that its tunnel is gone');
    t.diagnostic(`neighbours of the dead relayer freed its tunnel ${(freedAfter / 1000).toFixed(1)} s after it died (lifetime 600 s)`);
  } finally {
    await mesh.close();
  }
});

test('tunnel build - no two hops in one /16 unless the testnet flag allows it', { timeout: 60_000 }, async () => {
  const now = (): number => 0;
  const peerKey = (n: number): Uint8Array => new Uint8Array(32).fill(n % 256);
  // Hosts from a handful of /16s, so that collisions are common.
  const ipv4 = fc.tuple(fc.integer({ min: 10, max: 13 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 })).map((parts) => parts.join('.'));
  fc.assert(
    fc.property(
      fc.uniqueArray(ipv4, { minLength: 0, maxLength: 40 }),
      fc.integer({ min: 1, max: 7 }),
      fc.array(fc.nat(), { maxLength: 5 }),
      (hosts, count, excludeIndexes) => {
        const table = new PeerTable('127.0.0.1:1', now);
        hosts.forEach((host, i) => table.add({ host, port: 7000 }, peerKey(i)));
        const exclude = new Set(excludeIndexes.filter((i) => i < hosts.length).map((i) => `${hosts[i]!}:7000`));
        const eligible = hosts.filter((h) => !exclude.has(`${h}:7000`));
        const groups = new Set(eligible.map(subnetGroup));

        const strict = table.pick(count, { exclude, sameSubnet: false });
        const strictGroups = strict.map((p) => subnetGroup(p.address.host));
        assert.equal(new Set(strictGroups).size, strict.length, 'no two picks share a /16');
        assert.equal(strict.length, Math.min(count, groups.size), 'as many as the /16s allow');
        assert.ok(strict.every((p) => !exclude.has(p.key)));
        assert.equal(new Set(strict.map((p) => p.key)).size, strict.length);

        const loose = table.pick(count, { exclude, sameSubnet: true });
        assert.equal(loose.length, Math.min(count, eligible.length), 'with the flag, /16s do not limit the path');
        assert.ok(loose.every((p) => !exclude.has(p.key)));
      },
    ),
    { numRuns: 500 },
  );
  // subnetGroup itself is the /16.
  assert.equal(subnetGroup('10.1.2.3'), subnetGroup('10.1.200.9'));
  assert.notEqual(subnetGroup('10.1.2.3'), subnetGroup('10.2.2.3'));
  // The flag does allow it: relayers all in one /16 give full paths with it and one hop without.
  const oneSubnet = new PeerTable('127.0.0.1:1', now);
  for (let i = 1; i <= 5; i++) oneSubnet.add({ host: `127.0.1.${i}`, port: 7000 }, peerKey(i));
  assert.equal(oneSubnet.pick(3, { sameSubnet: true }).length, 3);
  assert.equal(oneSubnet.pick(3, { sameSubnet: false }).length, 1);

  // Wired through the node: a master without the flag on a loopback mesh (one /16) finds no path.
  const net = await createTestnet({ relays: 4, masters: 0 });
  let master: DeutNode | undefined;
  try {
    master = await startExtraNode(net, '127.0.2.1', { relay: false, tunnels: 2, allowSameSubnet: false });
    await until(() => master!.stats().peers >= 4, 10_000, 'the master to learn every relayer');
    await until(() => counter(master!.stats().pool?.counters, 'builds-no-path') >= 3, 10_000, 'the pool to try and fail to find paths');
    assert.equal(counter(master.stats().pool?.counters, 'builds-started'), 0, 'no path with two hops in 127.0/16 was ever tried');
    assert.equal(master.tunnels.list().length, 0);
  } finally {
    await master?.close();
    await net.close();
  }
});

test('tunnel build - no two hops in one IPv6 /32 whatever the spelling of the address', { timeout: 10_000 }, () => {
  // PROTOCOL.md §4.2: no two hops in one IPv4 /16 (IPv6 /32). These pairs share their first
  // 32 bits; RFC 5952 text (what formatIp and the kernel produce) spells the second group
  // differently when it is zero, and user-given bootstrap addresses come in any spelling.
  const pairs: Array<[string, string]> = [
    ['2001::1', '2001:0:1::2'],
    ['2001:db8::1', '2001:DB8::2'],
    ['2001:db8::1', '2001:0db8:0:0:1::1'],
  ];
  const failures: string[] = [];
  for (const [x, y] of pairs) {
    const table = new PeerTable('[::1]:1', () => 0);
    table.add({ host: x, port: 7000 }, new Uint8Array(32).fill(1));
    table.add({ host: y, port: 7000 }, new Uint8Array(32).fill(2));
    const picked = table.pick(2, { sameSubnet: false });
    if (picked.length !== 1) failures.push(`${x} and ${y} (subnetGroup: '${subnetGroup(x)}' vs '${subnetGroup(y)}') were both picked`);
  }
  assert.deepEqual(failures, [], 'hops in one /32 were picked together');
});

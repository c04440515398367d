/**
 * Hardening, long run (issue #8): 30 minutes of a mesh's life on a fake clock, in well under
 * a minute of real time. Two masters talk through pools whose tunnels live 60 s (about 30
 * generations of rotation, every build and teardown included), strangers throw junk at
 * every node port all along, and a relayer dies half way. The heap, sampled after full GCs
 * once a simulated minute, has a slope of about zero over the second half; every table
 * (transit tunnels, endpoint ports, link peers and sessions, replay caches, reassembly,
 * pending requests, timers, sockets) is no larger at the end than at the half-time steady
 * state; and after close, no timer and no socket is left.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { ManualClock } from '@deut/common';
import { cryptoReady } from '@deut/crypto';
import { createTestnet, type Testnet } from '@deut/testkit';
import { heapAfterGc, mib, objectCounts, slope } from './hardening-heap.js';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

// DEUT_SOAK_MINUTES runs it longer by hand (90 minutes take about a minute).
const SIMULATED_MS = Number(process.env['DEUT_SOAK_MINUTES'] ?? 30) * 60_000;
const STEP_MS = 1_000;
const encoder = new TextEncoder();

/** Every table of every node that could grow, summed over the mesh, plus timers and sockets. */
function tables(net: Testnet, clock: ManualClock): Record<string, number> {
  const out: Record<string, number> = { timers: clock.pending, sockets: net.network!.openSockets };
  const add = (name: string, value: number | undefined): void => void (out[name] = (out[name] ?? 0) + (value ?? 0));
  for (const { node } of net.nodes) {
    const s = node.stats();
    add('linkPeers', s.link.peers);
    add('linkSessions', s.link.sessions);
    add('pendingHandshakes', s.link.pendingHandshakes);
    add('transit', s.tunnels.transit);
    add('owned', s.tunnels.owned);
    add('pendingBuilds', s.tunnels.pendingBuilds);
    add('replayCache', s.tunnels.replayCache);
    add('endpointPorts', s.exits.ports);
    add('exitPartials', s.exits.reassembly.partials);
    add('pendingRequests', s.messages?.pending);
    add('rememberedMessages', s.messages?.remembered);
    add('poolTunnels', s.pool?.tunnels);
  }
  return out;
}

test('hardening soak - 30 simulated minutes of churn and junk: heap slope ~0, tables and handles steady, nothing left after close', { timeout: 120_000 }, async (t: TestContext) => {
  const clock = new ManualClock(Date.now());
  // While the testnet starts (it polls on the real clock), let simulated time flow.
  const driver = setInterval(() => clock.advance(50), 1);
  let net: Testnet;
  try {
    net = await createTestnet({
      relays: 8,
      masters: 2,
      tunnels: 3,
      clock,
      master: { hops: 2, tunnelLifetimeMs: 60_000, tunnelRotateBeforeMs: 20_000, tunnelDrainBeforeMs: 10_000, probeIntervalMs: 5_000, probeTimeoutMs: 2_000, buildTimeoutMs: 5_000 },
    });
  } finally {
    clearInterval(driver);
  }
  const network = net.network!;
  const [a, b] = net.masters.map((m) => m.node);
  assert.ok(a !== undefined && b !== undefined);
  b.handle((payload) => payload);
  const stranger = network.bind({ host: '127.0.9.7', port: 9 });
  const junk = randomFillSync(new Uint8Array(1200));
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 2; i++) {
      await network.idle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  let answered = 0;
  let failed = 0;
  const xs: number[] = [];
  const heaps: number[] = [];
  let half: Record<string, number> | undefined;
  let halfObjects = new Map<string, number>();
  const started = Date.now();
  try {
    for (let at = 0; at < SIMULATED_MS; at += STEP_MS) {
      // A request every simulated second, answered through the tunnels.
      if (at % 1_000 === 0) {
        const to = b.tunnels.list().map((x) => x.endpoint);
        if (to.length > 0) a.request(to, encoder.encode(`t${at}`), { timeoutMs: 10_000 }).then(() => answered++, () => failed++);
      }
      // Junk of every size at every node port.
      for (const [i, n] of net.nodes.entries()) stranger.send(junk.subarray(0, (at / STEP_MS + i * 97) % 1300), n.node.address);
      if (at === SIMULATED_MS / 2 - 60_000) net.kill(net.relays.at(-1)!);
      clock.advance(STEP_MS);
      await settle();
      if (at % 60_000 === 0) {
        heaps.push(await heapAfterGc());
        xs.push(at / 60_000);
      }
      if (at === SIMULATED_MS / 2) {
        half = tables(net, clock);
        halfObjects = await objectCounts();
      }
    }
    await settle();
    const end = tables(net, clock);
    const endObjects = await objectCounts();
    const grown = [...endObjects].map(([name, n]) => [name, n - (halfObjects.get(name) ?? 0)] as const).sort((x, y) => y[1] - x[1]);
    t.diagnostic(`objects grown most over the second half: ${grown.slice(0, 6).map(([n, d]) => `${n} ${d > 0 ? '+' : ''}${d}`).join(', ')}`);
    const secondHalf = Math.floor(heaps.length / 2);
    const perMinute = slope(xs.slice(secondHalf), heaps.slice(secondHalf));
    t.diagnostic(`real time ${((Date.now() - started) / 1000).toFixed(1)} s for ${SIMULATED_MS / 60_000} simulated minutes; ${answered} answered, ${failed} failed`);
    t.diagnostic(`heap after GC per minute: ${heaps.map(mib).join(', ')}`);
    t.diagnostic(`second-half slope ${(perMinute / 1024).toFixed(1)} KiB per simulated minute`);
    t.diagnostic(`tables at half time ${JSON.stringify(half)}; at the end ${JSON.stringify(end)}`);
    const builds = (a.stats().pool?.counters['builds-succeeded'] ?? a.stats().tunnels.counters['builds-succeeded'] ?? 0);
    assert.ok(builds >= 40, `the pool churned (${builds} builds)`);
    assert.ok(answered > 0.9 * (SIMULATED_MS / 1_000) - 30, `requests kept being answered (${answered}, ${failed} failed)`);
    // ~0: under 32 KiB per simulated minute (measured 5-25 with code spaces left out; what
    // remains is V8's own bookkeeping, and the object counts below are the precise check).
    assert.ok(Math.abs(perMinute) < 32 * 1024, `heap slope ${(perMinute / 1024).toFixed(1)} KiB per simulated minute`);
    // An honest mesh never fails a tag: the teardown on a bad tag costs nothing in normal use.
    const badTags = net.nodes.reduce((n, { node }) => n + (node.stats().tunnels.counters['drop:cell-bad-tag'] ?? 0) + (node.stats().tunnels.counters['tunnels-torn-down-bad-cell'] ?? 0), 0);
    assert.equal(badTags, 0, 'no bad tag in an honest mesh');
    assert.ok(half !== undefined);
    // One object kept per build (~100 over 15 minutes) or per request (~900) would show here.
    for (const [name, delta] of grown) assert.ok(delta < 80, `${delta} more ${name} objects at the end than at half time`);
    for (const [name, value] of Object.entries(end)) {
      // Steady state: at most the half-time level plus one pool's worth of rotation overlap.
      assert.ok(value <= Math.max(half[name]! * 1.5, half[name]! + 12), `${name}: ${value} at the end vs ${half[name]} at half time`);
    }
  } finally {
    await stranger.close();
    await net.close();
  }
  assert.equal(network.openSockets, 0, 'every socket closed');
  assert.equal(clock.pending, 0, 'no timer left');
});

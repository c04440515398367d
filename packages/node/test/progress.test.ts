/**
 * Start-up progress ("bootstrapped N%") and the heartbeat, on an in-memory testnet driven by
 * a ManualClock: every milestone of a master's and a relayer's plan is passed once, in plan
 * order, up to 100 %; the heartbeat fires at its period and counts only what happened since
 * the previous one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '@deut/common';
import { cryptoReady } from '@deut/crypto';
import type { MemoryNetwork } from '@deut/transport';
import { Progress, createTestnet, joinDht, progressPlan, type Heartbeat, type ProgressMilestone, type Testnet, type TestnetOptions } from '../src/index.js';

await cryptoReady();

/**
 * Simulated time as test/sim-clock.ts drives it: the clock moves a step only while the
 * in-memory network is idle, so no timeout fires because the CPU was busy.
 */
async function simulated(options: Omit<TestnetOptions, 'clock'>, body: (net: Testnet, clock: ManualClock, until: (what: string, ms: number, predicate: () => boolean) => Promise<void>) => Promise<void>): Promise<void> {
  const clock = new ManualClock(Date.now());
  let network: MemoryNetwork | undefined;
  let running = true;
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const pump = (async () => {
    while (running) {
      await network?.idle();
      await turn();
      await network?.idle();
      await turn();
      if (running) clock.advance(10);
    }
  })();
  const until = async (what: string, ms: number, predicate: () => boolean): Promise<void> => {
    const deadline = clock.now() + ms;
    while (!predicate()) {
      if (clock.now() > deadline) throw new Error(`timed out after ${ms} simulated ms waiting for ${what}`);
      await new Promise((resolve) => void clock.setTimeout(() => resolve(undefined), 10));
    }
  };
  let net: Testnet | undefined;
  try {
    net = await createTestnet({ ...options, clock });
    network = net.network;
    await body(net, clock, until);
  } finally {
    await net?.close();
    running = false;
    await pump;
  }
}

const phases = (passed: readonly ProgressMilestone[]): string[] => passed.map((m) => `${m.percent}% ${m.phase}`);

test('progress: a DHT master passes every milestone once, in order, to 100 %; a relayer too', { timeout: 120_000 }, async () => {
  await simulated({ relays: 8, masters: 2, tunnels: 3, waitForTunnels: false, master: { hops: 3, dht: true } }, async (net, _clock, until) => {
    const [first, second] = net.masters.map((m) => m.node);
    const events: ProgressMilestone[] = [];
    second!.on('progress', (m) => events.push(m));
    await until('the pools', 60_000, () => net.masters.every((m) => m.node.progress().passed.some((p) => p.phase === 'pool-full')));
    // The second master names no DHT bootstrap of its own: joining through the first is
    // what a --dht-bootstrap does at start.
    assert.equal(second!.progress().done, false, 'a DHT master is not done before its routing table has a contact');
    await joinDht([first!, second!]);
    await until('100 %', 60_000, () => net.masters.every((m) => m.node.progress().done));

    const master = second!.progress();
    const plan = progressPlan({ master: true, dht: true, bootstrap: true });
    assert.deepEqual(phases(master.passed), ['5% bound', '20% peers-known', '40% peers-verified', '60% first-tunnel', '80% pool-full', '90% dht-joined', '100% done']);
    assert.deepEqual(phases(master.passed), plan.map((s) => `${s.percent}% ${s.phase}`));
    assert.equal(master.percent, 100);
    assert.equal(master.phase, 'done');
    assert.deepEqual(master.next, []);
    for (let i = 1; i < master.passed.length; i++) assert.ok(master.passed[i]!.atMs >= master.passed[i - 1]!.atMs, 'times never go back');
    // 'bound' is passed inside start(), before a listener can exist; every later one is an event.
    assert.deepEqual(phases(events), phases(master.passed.slice(1)));

    const relay = net.relays[1]!.node.progress();
    assert.deepEqual(phases(relay.passed), ['10% bound', '50% peers-known', '100% done']);
    // The first relayer is everyone's bootstrap and has none itself: nobody to hear from.
    assert.deepEqual(phases(net.relays[0]!.node.progress().passed), ['10% bound', '100% done']);
  });
});

test('progress: a master without the DHT skips that milestone', { timeout: 120_000 }, async () => {
  await simulated({ relays: 6, masters: 1, tunnels: 2, waitForTunnels: false, master: { hops: 2 } }, async (net, _clock, until) => {
    const node = net.masters[0]!.node;
    await until('100 %', 60_000, () => node.progress().done);
    const passed = node.progress().passed;
    assert.deepEqual(phases(passed), ['5% bound', '20% peers-known', '40% peers-verified', '60% first-tunnel', '80% pool-full', '100% done']);
  });
});

test('heartbeat: fires every heartbeatIntervalMs of the node clock, with cells and drops since the previous one', { timeout: 120_000 }, async () => {
  const periodMs = 60_000;
  await simulated({ relays: 6, masters: 1, tunnels: 2, master: { hops: 2, heartbeatIntervalMs: periodMs }, relay: { heartbeatIntervalMs: periodMs } }, async (net, clock, until) => {
    const master = net.masters[0]!;
    const beats: Array<{ at: number; beat: Heartbeat; relayedTotal: number }> = [];
    const relayBeats = new Map<number, Array<{ beat: Heartbeat; relayedTotal: number }>>();
    for (const [i, relay] of net.relays.entries()) {
      relayBeats.set(i, []);
      relay.node.on('heartbeat', (beat) => relayBeats.get(i)!.push({ beat, relayedTotal: relay.node.stats().tunnels.counters['cells-relayed'] ?? 0 }));
    }
    master.node.on('heartbeat', (beat) => beats.push({ at: clock.now(), beat, relayedTotal: master.node.stats().tunnels.counters['cells-relayed'] ?? 0 }));
    const echo = await net.echoServer();
    // Traffic in the first two periods, none in the third: the third beat must count none.
    for (let period = 0; period < 3; period++) {
      if (period < 2) for (let i = 0; i < 5; i++) await master.node.send(echo.address, new Uint8Array([period, i]));
      await until(`heartbeat ${period + 1}`, periodMs * 2, () => beats.length > period);
    }
    assert.equal(beats.length, 3);
    for (let i = 1; i < beats.length; i++) assert.equal(beats[i]!.at - beats[i - 1]!.at, periodMs, 'one period between beats');
    for (const { beat } of beats.slice(1)) assert.equal(beat.sinceMs, periodMs);
    assert.equal(beats[1]!.beat.uptimeMs - beats[0]!.beat.uptimeMs, periodMs);
    assert.equal(beats[0]!.beat.tunnels.owned >= 2, true, `${JSON.stringify(beats[0]!.beat.tunnels)}`);
    assert.ok(beats[0]!.beat.peers.verified >= 2);

    // Each relayer's beats: cells since the last beat are the growth of its counter, and the
    // relayers together relayed the traffic of the first two periods (probes run in all three).
    let relayedInFirstTwo = 0;
    for (const list of relayBeats.values()) {
      assert.ok(list.length >= 2, 'every relayer beats too');
      let previous = 0;
      for (const { beat, relayedTotal } of list) {
        assert.equal(beat.cellsRelayed, relayedTotal - previous);
        previous = relayedTotal;
        assert.ok(beat.drops.total >= beat.drops.top.reduce((sum, d) => sum + d.count, 0));
        for (let i = 1; i < beat.drops.top.length; i++) assert.ok(beat.drops.top[i - 1]!.count >= beat.drops.top[i]!.count);
      }
      relayedInFirstTwo += list.slice(0, 2).reduce((sum, { beat }) => sum + beat.cellsRelayed, 0);
    }
    assert.ok(relayedInFirstTwo >= 10, `the relayers relayed the 10 datagrams (${relayedInFirstTwo} cells)`);
    assert.ok(echo.received.length >= 10);
  });
});

test('progress: a later milestone found first passes the earlier ones with it, at the same instant, each once', () => {
  const clock = new ManualClock();
  const seen: ProgressMilestone[] = [];
  const progress = new Progress(progressPlan({ master: true, dht: false, bootstrap: true }), clock, (m) => seen.push(m));
  progress.update((phase) => phase === 'bound');
  clock.advance(1_000);
  progress.update((phase) => phase === 'pool-full');
  assert.deepEqual(phases(seen), ['5% bound', '20% peers-known', '40% peers-verified', '60% first-tunnel', '80% pool-full', '100% done']);
  assert.deepEqual(
    seen.map((m) => m.atMs),
    [0, 1_000, 1_000, 1_000, 1_000, 1_000],
  );
  progress.update(() => true);
  assert.equal(seen.length, 6, 'nothing passes twice');
  assert.equal(progress.snapshot().percent, 100);
});

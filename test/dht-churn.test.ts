/**
 * The DHT through deut tunnels while the network changes (PROTOCOL.md §11): masters leave
 * and join, and tunnels rotate under lookups. On simulated time (sim-clock.ts).
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey } from '@deut/common';
import { cryptoReady } from '@deut/crypto';
import type { DeutNode } from '@deut/node';
import { dhtContactOf, joinDht, withDeadline } from '@deut/testkit';
import { simulatedTestnet } from './sim-clock.js';
import { fromText, inBatches, masterNodes, text } from './dht-helpers.js';

// Library timers are unref'd; the tests wait on them.
let holdEventLoopOpen: ReturnType<typeof setInterval> | undefined;
before(async () => {
  await cryptoReady();
  holdEventLoopOpen = setInterval(() => undefined, 1_000);
});
after(() => clearInterval(holdEventLoopOpen));

// ---- churn and rotation -------------------------------------------------------------------

test('dht over tunnels - churn: 20% of nodes leave and 20% join; values stored before still resolve', { timeout: 600_000 }, async () => {
  const sim = await simulatedTestnet({ relays: 10, masters: 20, tunnels: 3, master: { dht: true } });
  const net = sim.net;
  const masters = masterNodes(net);
  const extra: DeutNode[] = [];
  try {
    await joinDht(masters, { concurrency: 5 });
    await inBatches(masters.map((m, i) => [m, i] as const), 5, async ([m, i]) => void (await m.dht.put(`churn-${i}`, text(`v${i}`))));
    // Four leave (closed: their endpoints vanish, nobody is told), four new ones join.
    const leaving = masters.slice(16);
    await Promise.all(leaving.map((m) => m.close()));
    for (let i = 0; i < 4; i++) {
      const node = (await net.addMaster()).node;
      extra.push(node);
      await withDeadline(node.dht.join({ via: [dhtContactOf(masters[0]!)] }), 60_000, 'new master join');
    }
    const staying = [...masters.slice(0, 16), ...extra];
    // Values put by nodes that left live on at the k closest; every key must resolve.
    for (const [i, n] of staying.entries()) {
      const keys = [(i + 1) % 16, 16 + (i % 4)];
      for (const k of keys) {
        const got = await n.dht.get(`churn-${k}`);
        assert.deepEqual(got.values.map(fromText), [`v${k}`], `after churn, node ${i} finds churn-${k}`);
      }
    }
  } finally {
    await sim.close();
  }
});

test('dht over tunnels - tunnels rotate during lookups and no lookup is lost', { timeout: 600_000 }, async (t: TestContext) => {
  // Lifetimes of 6 s (replacement 3 s before expiry, draining 1.5 s before): in 18 s every
  // tunnel of every master rotates about three times while gets keep running.
  const sim = await simulatedTestnet({
    relays: 10,
    masters: 12,
    tunnels: 3,
    master: { dht: true, tunnelLifetimeMs: 6_000, tunnelRotateBeforeMs: 3_000, tunnelDrainBeforeMs: 1_500 },
  });
  const { net, pump } = sim;
  const masters = masterNodes(net);
  try {
    await joinDht(masters, { concurrency: 4 });
    await inBatches(masters.map((m, i) => [m, i] as const), 5, async ([m, i]) => void (await m.dht.put(`rotating-${i}`, text(`r${i}`))));
    const endpointsBefore = new Set(masters.flatMap((m) => m.tunnels.list().map((x) => addressKey(x.endpoint))));
    // 18 simulated seconds, each master starting a get every 150 ms of it (about as many
    // gets as the real-clock version managed: the clock only moves while nothing is in flight).
    const until = pump.clock.now() + 18_000;
    let gets = 0;
    const failures: string[] = [];
    await Promise.all(
      masters.map(async (m, i) => {
        while (pump.clock.now() < until) {
          const k = (i + 1 + (gets % 11)) % masters.length;
          gets++;
          try {
            const got = await m.dht.get(`rotating-${k}`, { timeoutMs: 20_000 });
            if (got.values.map(fromText).join() !== `r${k}`) failures.push(`node ${i} got ${got.values.map(fromText).join()} for rotating-${k}`);
          } catch (error) {
            failures.push(`node ${i} rotating-${k}: ${String(error)}`);
          }
          await pump.sleep(150);
        }
      }),
    );
    const endpointsAfter = new Set(masters.flatMap((m) => m.tunnels.list().map((x) => addressKey(x.endpoint))));
    const survivors = [...endpointsAfter].filter((e) => endpointsBefore.has(e)).length;
    assert.equal(survivors, 0, 'every tunnel rotated during the run');
    assert.deepEqual(failures, [], `every one of ${gets} gets succeeded`);
    const announces = masters.reduce((n, m) => n + (m.dht.stats().counters.announces ?? 0), 0);
    assert.ok(announces >= masters.length, `masters re-announced after rotating: ${announces}`);
    t.diagnostic(`${gets} gets during rotation, none lost; ${announces} re-announces`);
  } finally {
    await sim.close();
  }
});

/**
 * A master cut off the network long enough to lose every tunnel, then put back: the other
 * nodes must learn its new endpoints. The in-process twin of scenario (c) of
 * netns-faults.test.ts, where CI once saw B never find A again: A's re-announce ran while it
 * had no tunnels, reached nobody, and nothing tried again after the heal.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey } from '@deut/common';
import { cryptoReady, toHex } from '@deut/crypto';
import type { DhtNodeCounter } from '@deut/dht';
import type { DeutNode } from '@deut/node';
import { dhtContactOf, joinDht, withDeadline } from '@deut/testkit';
import { simulatedTestnet } from './sim-clock.js';

// Library timers are unref'd; the test waits on them.
let holdEventLoopOpen: ReturnType<typeof setInterval> | undefined;
before(async () => {
  await cryptoReady();
  holdEventLoopOpen = setInterval(() => undefined, 1_000);
});
after(() => clearInterval(holdEventLoopOpen));

const endpointsOf = (node: DeutNode): string[] => node.tunnels.list().map((t) => addressKey(t.endpoint));

test('dht over tunnels - a master that lost every tunnel in a partition is found at its new endpoints after the heal', { timeout: 180_000 }, async (t: TestContext) => {
  // Simulated time (sim-clock.ts): the partition, the probes that find the tunnels dead and
  // the re-announce all run on a clock that moves only when the network is idle.
  const sim = await simulatedTestnet({
    relays: 8,
    masters: 4,
    tunnels: 3,
    // Probes every 500 ms: the partition kills A's tunnels in seconds, not minutes.
    master: { dht: true, hops: 2, probeIntervalMs: 500, probeTimeoutMs: 400, buildTimeoutMs: 1_500 },
  });
  const { net, pump } = sim;
  try {
    const masters = net.masters.map((m) => m.node);
    const [aEntry] = net.masters;
    const [a, b] = masters as [DeutNode, DeutNode];
    await joinDht(masters);
    // A is the node the others joined through, so only their verified requests fill its
    // table; under load those can fail, and with an empty table A has nobody to announce
    // to (CI once waited 60 s for an announce that never ran). A joins through B itself.
    await withDeadline(a.dht.join({ via: [dhtContactOf(b)] }), 60_000, 'A\'s own join');
    assert.ok(a.dht.table.size > 0, 'A knows someone to announce to');
    const before = endpointsOf(a);
    const counter = (name: DhtNodeCounter): number => a.dht.stats().counters[name] ?? 0;
    const unansweredBefore = counter('announces-unanswered');

    net.partition(aEntry!);
    // Every tunnel A had is gone, and it has tried to re-announce through nothing.
    await pump.until(() => a.tunnels.list().every((x) => !before.includes(addressKey(x.endpoint))), 60_000, 'A to drop every tunnel it had');
    await pump.until(() => counter('announces-unanswered') > unansweredBefore, 60_000, 'an announce that reached nobody');
    const unansweredDuring = counter('announces-unanswered') - unansweredBefore;

    net.heal(aEntry!);
    const healedAt = pump.clock.now();
    await withDeadline(a.tunnels.ready(3), 60_000, 'A\'s pool after the heal');
    assert.equal(endpointsOf(a).filter((e) => before.includes(e)).length, 0, 'A\'s endpoints are all new');

    // B looks A up: only A itself answering at a current endpoint proves the re-announce.
    const aId = toHex(a.dht.id);
    let seen = '';
    const deadline = pump.clock.now() + 30_000;
    for (;;) {
      const found = await b.dht.findNode(a.dht.id, { timeoutMs: 10_000 }).catch(() => []);
      const aAt = found.find((c) => toHex(c.id) === aId);
      seen = aAt === undefined ? 'A not among the answers' : `A at ${addressKey(aAt.address)}`;
      if (aAt !== undefined && endpointsOf(a).includes(addressKey(aAt.address))) break;
      assert.ok(pump.clock.now() < deadline, `B finds A at one of A's current endpoints within 30 s of its pool filling (${seen}; A's endpoints ${endpointsOf(a).join(', ')})`);
      await pump.sleep(250);
    }
    t.diagnostic(
      `${unansweredDuring} announce(s) reached nobody during the partition; after the heal B found A at a current endpoint in ${((pump.clock.now() - healedAt) / 1000).toFixed(1)} simulated s ` +
        `(${counter('announces')} announces in all, ${counter('announces-unanswered')} unanswered)`,
    );
  } finally {
    await sim.close();
  }
});

/**
 * Conditions that stop a node from doing its job must not leave the operator guessing: each
 * gets one warning naming the cause and what to do, and a counter (the pool's own no-path
 * warnings are tested in detail in pool-pick.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock, silentLogger } from '@deut/common';
import { cryptoReady } from '@deut/crypto';
import { MemoryNetwork } from '@deut/transport';
import { BOOTSTRAP_WARN_EVERY_MS, DeutNode } from '../src/index.js';

await cryptoReady();

/** Lets timers and promises run for `ms` of manual time. */
async function run(clock: ManualClock, ms: number): Promise<void> {
  for (let elapsed = 0; elapsed < ms; elapsed += 250) {
    clock.advance(250);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('node - a bootstrap that never answers is named in one warning per period, with what to check, and counted', { timeout: 30_000 }, async () => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 1, clock });
  const warnings: string[] = [];
  const logger = { ...silentLogger, warn: (message: string) => warnings.push(message) };
  // Nobody listens at the bootstrap address.
  const node = await DeutNode.start({
    listen: { host: '127.0.4.1', port: 0 },
    bootstrap: [{ host: '127.0.4.9', port: 7500 }],
    sockets: { bind: (address) => Promise.resolve(network.bind(address)) },
    tunnels: 1,
    clock,
    logger,
  });
  try {
    await run(clock, 60_000);
    const about = warnings.filter((w) => w.startsWith('peer exchange: bootstrap'));
    assert.equal(about.length, 1, `one warning so far: ${JSON.stringify(warnings)}`);
    assert.match(about[0]!, /bootstrap 1 of 1 \(--bootstrap 127\.0\.4\.9:7500\) does not answer \(LINK_UNREACHABLE\): check that a deut relayer runs there/);
    const unanswered = node.stats().counters['bootstrap-unanswered'] ?? 0;
    assert.ok(unanswered >= 1, 'counted');
    assert.ok(warnings.some((w) => /^pool: no tunnel for \d+ s: 0 verified relayers known/.test(w)), 'the pool says it has no path, too');
    await run(clock, BOOTSTRAP_WARN_EVERY_MS);
    assert.equal(warnings.filter((w) => w.startsWith('peer exchange: bootstrap')).length, 2, 'said again after the period, not on every retry');
    assert.ok((node.stats().counters['bootstrap-unanswered'] ?? 0) > unanswered + 2, 'every unanswered attempt counted');
  } finally {
    await node.close();
    await network.close();
  }
});

/** Messaging details that the mesh and fault suites do not pin down. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestnet } from '@deut/testkit';

test('messaging - a request to several endpoints of a peer fails over from a dead one', { timeout: 60_000 }, async () => {
  const net = await createTestnet({ relays: 6, masters: 2, tunnels: 3, master: { fanout: 1 } });
  const keep = setInterval(() => undefined, 1000);
  try {
    const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
    let served = 0;
    b.handle((payload) => {
      served++;
      return payload;
    });
    const live = b.tunnels.list()[0]!.endpoint;
    const dead = { host: '127.0.9.9', port: 9 };
    const reply = await a.request([dead, live], new TextEncoder().encode('still there?'), { attemptTimeoutMs: 300, timeoutMs: 10_000 });
    assert.equal(new TextDecoder().decode(reply), 'still there?');
    assert.equal(served, 1);
    assert.ok((a.stats().messages?.counters['retries'] ?? 0) >= 1, 'the first attempt went to the dead address');
    await assert.rejects(a.request([], new Uint8Array(1)), RangeError);
  } finally {
    clearInterval(keep);
    await net.close();
  }
});

test('messaging - an aborted request rejects at once and leaves nothing pending', { timeout: 60_000 }, async () => {
  const net = await createTestnet({ relays: 6, masters: 2, tunnels: 2 });
  try {
    const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
    b.handle(() => new Promise<Uint8Array>(() => undefined));
    const controller = new AbortController();
    const pending = a.request(b.tunnels.list()[0]!.endpoint, new Uint8Array(1), { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(pending, { code: 'ABORTED' });
    assert.equal(a.stats().messages?.pending, 0);
  } finally {
    await net.close();
  }
});

test('messaging - unanswered requests retry within the retry budget, not without bound', { timeout: 60_000 }, async (t) => {
  // 100 requests to a master that never answers, each retried every 100 ms growing ×1.5 for
  // 4 s: 7 retries each, 700 in all, without a budget. The budget allows one per request
  // plus 10/s over its 10 s window, and the test ends within one window of its start.
  const budget = { ratio: 1, minPerSecond: 10, windowMs: 10_000 };
  const net = await createTestnet({ relays: 6, masters: 2, tunnels: 3, master: { retryBudget: budget } });
  const keep = setInterval(() => undefined, 1000);
  try {
    const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
    b.handle(() => undefined);
    const to = b.tunnels.list().map((x) => x.endpoint);
    const requests = 100;
    const startedAt = Date.now();
    const outcomes = await Promise.allSettled(
      Array.from({ length: requests }, (_, i) => a.request(to, new TextEncoder().encode(`q${i}`), { attemptTimeoutMs: 100, timeoutMs: 4_000 })),
    );
    const elapsedMs = Date.now() - startedAt;
    assert.ok(elapsedMs < budget.windowMs - 1_000, `the requests ran within one budget window (${elapsedMs} ms)`);
    assert.ok(outcomes.every((o) => o.status === 'rejected' && (o.reason as { code?: string }).code === 'REQUEST_TIMEOUT'), 'every request timed out at its deadline');
    const counters = a.stats().messages?.counters ?? {};
    const retries = counters['retries'] ?? 0;
    const allowed = budget.ratio * requests + (budget.minPerSecond * budget.windowMs) / 1000;
    t.diagnostic(`retries ${retries} (allowed ${allowed}), deferred ${counters['retries-deferred'] ?? 0}, copies ${counters['request-copies-sent'] ?? 0}, served ${b.stats().messages?.counters['requests-served'] ?? 0}`);
    assert.ok(retries <= allowed, `${retries} retries, at most ${allowed} allowed`);
    assert.ok(retries >= allowed / 2, 'the budget was used, not skipped');
    assert.ok((counters['retries-deferred'] ?? 0) > 0, 'retries beyond the budget waited');
    assert.ok((counters['request-copies-sent'] ?? 0) <= 2 * (requests + allowed), 'copies: fan-out 2 per attempt');
    assert.equal(b.stats().messages?.counters['requests-served'], requests, 'every request reached the server once, retries deduplicated');
  } finally {
    clearInterval(keep);
    await net.close();
  }
});

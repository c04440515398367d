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

test('messaging - at most maxRetriesInFlight retries are outstanding; the rest wait in line until their deadline', { timeout: 60_000 }, async (t) => {
  // 100 requests to a master that never answers, each retried after 100 ms, then ×1.5 per
  // attempt, for 4 s: without a limit all 100 would have a retry out at once.
  const maxRetriesInFlight = 10;
  const net = await createTestnet({ relays: 6, masters: 2, tunnels: 3, master: { maxRetriesInFlight } });
  const keep = setInterval(() => undefined, 1000);
  try {
    const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
    b.handle(() => undefined);
    const to = b.tunnels.list().map((x) => x.endpoint);
    const requests = 100;
    const outcomes = await Promise.allSettled(
      Array.from({ length: requests }, (_, i) => a.request(to, new TextEncoder().encode(`q${i}`), { attemptTimeoutMs: 100, timeoutMs: 4_000 })),
    );
    assert.ok(outcomes.every((o) => o.status === 'rejected' && (o.reason as { code?: string }).code === 'REQUEST_TIMEOUT'), 'every request timed out at its deadline');
    const stats = a.stats().messages!;
    const counters = stats.counters;
    t.diagnostic(`retries ${counters['retries'] ?? 0}, waited in line ${counters['retries-deferred'] ?? 0}, most in flight ${stats.retries.peak}, copies ${counters['request-copies-sent'] ?? 0}`);
    assert.equal(stats.retries.peak, maxRetriesInFlight, 'the limit was reached and never passed');
    assert.ok((counters['retries-deferred'] ?? 0) > 0, 'retries beyond the limit waited');
    assert.ok((counters['retries'] ?? 0) > maxRetriesInFlight, 'slots were handed on as retries timed out');
    assert.deepEqual({ inFlight: stats.retries.inFlight, queued: stats.retries.queued }, { inFlight: 0, queued: 0 }, 'every slot and place in line was given back');
    assert.equal(stats.pending, 0);
    assert.equal(b.stats().messages?.counters['requests-served'], requests, 'every request reached the server once, retries deduplicated');
  } finally {
    clearInterval(keep);
    await net.close();
  }
});

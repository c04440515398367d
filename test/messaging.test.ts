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

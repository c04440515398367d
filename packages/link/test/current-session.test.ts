/**
 * `sessions()` marks the session the link sends on: `deut status` shows it, and an operator
 * compares it at both ends to rule out a man in the middle, so with two or three sessions
 * per peer kept across rekeys, exactly one must be marked, and both ends must mark the same.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey } from '@deut/common';
import { cryptoReady } from '@deut/crypto';
import { REKEY_AFTER_MS } from '../src/index.js';
import { advanceClock, holdEventLoopOpen, withClockedPair, type TestNode } from './helpers.js';

await cryptoReady();
after(holdEventLoopOpen());

/** The sessions `node` holds with `peer`, and which of them are marked current. */
function toward(node: TestNode, peer: TestNode): { all: string[]; current: string[] } {
  const key = addressKey(peer.link.address);
  const sessions = node.link.sessions().filter((s) => addressKey(s.address) === key);
  return { all: sessions.map((s) => s.sessionId), current: sessions.filter((s) => s.current).map((s) => s.sessionId) };
}

/** Moves the clock on by `ms` a second at a time, sending from `senders` each second and checking one current session per peer. */
async function traffic(clock: Parameters<Parameters<typeof withClockedPair>[0]>[2], a: TestNode, b: TestNode, senders: readonly TestNode[], ms: number, ids: Set<string>): Promise<number> {
  let most = 0;
  for (let passed = 0; passed < ms; passed += 1_000) {
    for (const sender of senders) sender.link.send((sender === a ? b : a).link.address, new Uint8Array([1]));
    await advanceClock(clock, 1_000);
    for (const [node, peer] of [[a, b], [b, a]] as const) {
      const view = toward(node, peer);
      for (const id of view.all) ids.add(id);
      most = Math.max(most, view.all.length);
      assert.equal(view.current.length, 1, `one current session of ${view.all.length}, at ${passed} ms`);
    }
  }
  return most;
}

test('link - exactly one session per peer is current, also after rekeys, and the other end holds it', { timeout: 30_000 }, async () => {
  await withClockedPair(async (a, b, clock) => {
    const info = await a.link.connect(b.link.address);
    assert.equal(info.current, true, 'the session connect() resolves with is the one sent on');
    const ids = new Set<string>([info.sessionId]);
    await traffic(clock, a, b, [a], 1_000, ids);
    assert.deepEqual(toward(a, b).current, [info.sessionId]);
    assert.deepEqual(toward(b, a).current, [info.sessionId], 'B confirmed and sends on it once a payload arrived');

    // A alone sends, so A alone rekeys: afterwards both ends send on A's new session.
    const most = await traffic(clock, a, b, [a], REKEY_AFTER_MS + 5_000, ids);
    assert.ok(most > 1, 'the rekey left an older session kept for receiving');
    assert.equal(ids.size, 2, 'one rekey');
    assert.deepEqual(toward(a, b).current, toward(b, a).current);
    assert.notEqual(toward(a, b).current[0], info.sessionId);
    assert.equal(toward(a, b).current[0], toward(a, b).all[0], 'the current session is the newest');

    // Both send, so both rekey at once: each end sends on the session the other started
    // (the newest it confirmed), so the ids marked differ, but each end holds the other's.
    await traffic(clock, a, b, [a, b], REKEY_AFTER_MS + 5_000, ids);
    assert.ok(ids.size >= 3, `a second rekey happened (${ids.size} session ids seen)`);
    const atA = toward(a, b);
    const atB = toward(b, a);
    assert.ok(atB.all.includes(atA.current[0]!), 'B holds the session A sends on');
    assert.ok(atA.all.includes(atB.current[0]!), 'A holds the session B sends on');
  });
});

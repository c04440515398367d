// Tests of the Kademlia routing table (src/routing-table.ts).
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '@deut/common';
import { cryptoReady, randomBytes } from '@deut/crypto';
import { bucketIndex, compareDistance, idToHex, nodeIdFromPublicKey } from '../src/id.js';
import type { ContactInfo } from '../src/routing-table.js';
import { K_BUCKET_SIZE, REPLACEMENT_CACHE_SIZE, RoutingTable } from '../src/routing-table.js';

const T = { timeout: 30_000 };
let port = 1000;

function contactOf(publicKey: Uint8Array): ContactInfo {
  return { id: nodeIdFromPublicKey(publicKey), publicKey, address: { host: '10.0.0.1', port: port++ } };
}

function randomContact(): ContactInfo {
  return contactOf(randomBytes(32));
}

/** A fresh contact that falls in bucket `index` of `self` (only high buckets are practical). */
function contactInBucket(self: Uint8Array, index: number): ContactInfo {
  for (;;) {
    const c = randomContact();
    if (bucketIndex(self, c.id) === index) return c;
  }
}

function hexes(list: readonly { id: Uint8Array }[]): string[] {
  return list.map((c) => idToHex(c.id));
}

/** A table whose bucket 255 is full of `k` contacts, seen one ms apart (oldest first). */
function fullBucket(k = 4): { table: RoutingTable; clock: ManualClock; inBucket: ContactInfo[] } {
  const clock = new ManualClock(0);
  const table = new RoutingTable(randomContact().id, { k, clock });
  const inBucket: ContactInfo[] = [];
  for (let i = 0; i < k; i++) {
    const c = contactInBucket(table.self, 255);
    assert.equal(table.seen(c).kind, 'added');
    inBucket.push(c);
    clock.advance(1);
  }
  return { table, clock, inBucket };
}

before(() => cryptoReady());

test('routing table - refuses self, wrong lengths and ids not derived from the key, and counts them', T, () => {
  const me = randomContact();
  const table = new RoutingTable(me.id);
  const other = randomContact();
  assert.deepEqual(table.seen(me), { kind: 'rejected', reason: 'self' });
  assert.deepEqual(table.seen({ ...other, id: other.id.subarray(1) }), { kind: 'rejected', reason: 'bad-id' });
  assert.deepEqual(table.seen({ ...other, publicKey: new Uint8Array(33) }), { kind: 'rejected', reason: 'bad-key' });
  assert.deepEqual(table.seen({ ...other, id: randomBytes(32) }), { kind: 'rejected', reason: 'id-mismatch' });
  assert.equal(table.size, 0);
  const stats = table.stats();
  assert.equal(stats['rejected-self'], 1);
  assert.equal(stats['rejected-bad-id'], 1);
  assert.equal(stats['rejected-bad-key'], 1);
  assert.equal(stats['rejected-id-mismatch'], 1);
  assert.throws(() => new RoutingTable(new Uint8Array(31)), { code: 'BAD_ID_LENGTH' });
});

test('routing table - a seen contact moves to the most-recently-seen end', T, () => {
  const { table, clock, inBucket } = fullBucket(3);
  const [a, b, c] = inBucket as [ContactInfo, ContactInfo, ContactInfo];
  clock.advance(10);
  assert.equal(table.seen(a).kind, 'updated');
  assert.equal(table.get(a.id)?.lastSeen, clock.now());
  // The full bucket now asks to ping b, the least recently seen.
  const r = table.seen(contactInBucket(table.self, 255));
  assert.equal(r.kind, 'ping');
  assert.deepEqual(r.kind === 'ping' && hexes([r.ping]), hexes([b]));
  assert.deepEqual(hexes(table.contacts()), hexes([b, c, a]));
});

test('routing table - a rotated contact keeps its place in the table with its new address', T, () => {
  const table = new RoutingTable(randomContact().id);
  const c = randomContact();
  table.seen(c);
  const moved = { ...c, address: { host: '192.0.2.9', port: 4242 } };
  const r = table.seen(moved);
  assert.equal(r.kind, 'updated');
  assert.equal(r.kind === 'updated' && r.addressChanged, true);
  assert.deepEqual(table.get(c.id)?.address, { host: '192.0.2.9', port: 4242 });
  assert.equal(table.size, 1);
  const again = table.seen(moved);
  assert.equal(again.kind === 'updated' && again.addressChanged, false);
  assert.equal(table.stats()['address-changed'], 1);
});

test('routing table - full bucket, oldest answers the ping: it stays and the newcomer waits in the cache', T, () => {
  const { table, inBucket } = fullBucket(4);
  const newcomer = contactInBucket(table.self, 255);
  const r = table.seen(newcomer);
  assert.equal(r.kind, 'ping');
  assert.equal(r.kind === 'ping' && idToHex(r.ping.id), idToHex(inBucket[0]!.id));
  assert.equal(table.get(newcomer.id), undefined);
  assert.equal(table.cachedSize, 1);
  table.pingAnswered(inBucket[0]!.id);
  assert.deepEqual(hexes(table.contacts()), hexes([...inBucket.slice(1), inBucket[0]!]));
  assert.equal(table.get(newcomer.id), undefined);
  assert.equal(table.cachedSize, 1);
});

test('routing table - full bucket, oldest fails the ping: it is evicted and the newcomer promoted', T, () => {
  const { table, inBucket } = fullBucket(4);
  const newcomer = contactInBucket(table.self, 255);
  table.seen(newcomer);
  table.pingFailed(inBucket[0]!.id);
  assert.equal(table.get(inBucket[0]!.id), undefined);
  assert.ok(table.get(newcomer.id) !== undefined);
  assert.equal(table.size, 4);
  assert.equal(table.cachedSize, 0);
  assert.equal(table.stats().evicted, 1);
  assert.equal(table.stats().promoted, 1);
});

test('routing table - the freshest replacement is promoted and the cache keeps only the newest', T, () => {
  const { table, inBucket } = fullBucket(2);
  const waiting = Array.from({ length: REPLACEMENT_CACHE_SIZE + 2 }, () => contactInBucket(table.self, 255));
  for (const c of waiting) table.seen(c);
  assert.equal(table.cachedSize, REPLACEMENT_CACHE_SIZE);
  table.pingFailed(inBucket[0]!.id);
  assert.ok(table.get(waiting.at(-1)!.id) !== undefined);
  assert.equal(table.cachedSize, REPLACEMENT_CACHE_SIZE - 1);
});

test('routing table - a contact is evicted after two consecutive RPC failures, and an answer resets the count', T, () => {
  const { table, inBucket } = fullBucket(2);
  const newcomer = contactInBucket(table.self, 255);
  table.seen(newcomer);
  const victim = inBucket[1]!;
  table.failed(victim.id);
  assert.equal(table.get(victim.id)?.failures, 1);
  table.seen(victim);
  assert.equal(table.get(victim.id)?.failures, 0);
  table.failed(victim.id);
  table.failed(victim.id);
  assert.equal(table.get(victim.id), undefined);
  assert.ok(table.get(newcomer.id) !== undefined);
});

test('routing table - a failing contact with no replacement waiting stays, stale; it goes once one is', T, () => {
  const { table, inBucket } = fullBucket(2);
  const victim = inBucket[1]!;
  // Our own timeouts (a starved process, a dead uplink) must not empty the table.
  for (let i = 0; i < 5; i++) table.failed(victim.id);
  assert.equal(table.get(victim.id)?.failures, 5, 'kept, its failures counted');
  assert.equal(table.size, inBucket.length);
  assert.equal(table.stats()['stale-kept'], 4);
  const newcomer = contactInBucket(table.self, 255);
  table.seen(newcomer);
  table.failed(victim.id);
  assert.equal(table.get(victim.id), undefined, 'evicted once a replacement waits');
  assert.ok(table.get(newcomer.id) !== undefined, 'and the replacement promoted');
});

test('routing table - closest equals the brute-force k closest for random tables and targets', T, () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 200 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 0, max: 40 }),
      fc.integer({ min: 0, max: 5 }),
      (keys, target, k, count, excluded) => {
        const table = new RoutingTable(nodeIdFromPublicKey(new Uint8Array(32).fill(1)), { k });
        for (const key of keys) table.seen(contactOf(key));
        const all = table.contacts();
        const exclude = new Set(hexes(all.slice(0, excluded)));
        const expected = all
          .filter((c) => !exclude.has(idToHex(c.id)))
          .sort((a, b) => compareDistance(target, a.id, b.id))
          .slice(0, count);
        assert.deepEqual(hexes(table.closest(target, count, exclude)), hexes(expected));
        // A target equal to self, and one inside the table, take the other branches.
        const inside = all[0]?.id ?? target;
        for (const t of [table.self, inside]) {
          const want = [...all].sort((a, b) => compareDistance(t, a.id, b.id)).slice(0, count);
          assert.deepEqual(hexes(table.closest(t, count)), hexes(want));
        }
      },
    ),
    { numRuns: 60 },
  );
});

test('routing table - never exceeds its bounds under 100k random inserts and failures', { timeout: 60_000 }, () => {
  const clock = new ManualClock(0);
  const table = new RoutingTable(randomContact().id, { clock });
  const known: Uint8Array[] = [];
  for (let i = 0; i < 100_000; i++) {
    const r = table.seen(randomContact());
    if (r.kind === 'ping') {
      if (i % 2 === 0) table.pingFailed(r.ping.id);
      else table.pingAnswered(r.ping.id);
    }
    if (r.kind === 'added') known.push(r.contact.id);
    if (i % 7 === 0 && known.length > 0) table.failed(known[i % known.length]!);
    clock.advance(1);
  }
  assert.ok(table.size <= 256 * K_BUCKET_SIZE);
  assert.ok(table.cachedSize <= 256 * REPLACEMENT_CACHE_SIZE);
  const perBucket = new Map<number, number>();
  for (const c of table.contacts()) {
    const b = bucketIndex(table.self, c.id)!;
    perBucket.set(b, (perBucket.get(b) ?? 0) + 1);
  }
  for (const n of perBucket.values()) assert.ok(n <= K_BUCKET_SIZE);
  assert.equal(new Set(hexes(table.contacts())).size, table.size);
  assert.equal(table.get(table.self), undefined);
});

test('routing table - buckets untouched for an hour need a refresh, and a lookup touches one', T, () => {
  const clock = new ManualClock(0);
  const table = new RoutingTable(randomContact().id, { clock });
  assert.deepEqual(table.bucketsNeedingRefresh(clock.now()), []);
  const c = contactInBucket(table.self, 254);
  table.seen(c);
  clock.advance(60 * 60 * 1000);
  const due = table.bucketsNeedingRefresh(clock.now());
  assert.deepEqual(due, [254, 255]);
  table.touch(contactInBucket(table.self, 255).id);
  assert.deepEqual(table.bucketsNeedingRefresh(clock.now()), [254]);
  table.seen(c);
  assert.deepEqual(table.bucketsNeedingRefresh(clock.now()), []);
});

test('routing table - remove drops a contact without promoting, get and failed ignore unknown ids', T, () => {
  const { table, inBucket } = fullBucket(2);
  table.seen(contactInBucket(table.self, 255));
  assert.equal(table.remove(inBucket[0]!.id), true);
  assert.equal(table.size, 1);
  assert.equal(table.cachedSize, 1);
  assert.equal(table.remove(inBucket[0]!.id), false);
  table.failed(new Uint8Array(5));
  assert.equal(table.get(new Uint8Array(5)), undefined);
  assert.deepEqual(table.closest(new Uint8Array(5)), []);
});

test('routing table - a cached contact seen again once its bucket has room moves out of the cache', T, () => {
  const { table, inBucket } = fullBucket(2);
  const newcomer = contactInBucket(table.self, 255);
  table.seen(newcomer);
  table.seen(newcomer);
  assert.equal(table.cachedSize, 1);
  table.remove(inBucket[0]!.id);
  assert.equal(table.seen(newcomer).kind, 'added');
  assert.equal(table.cachedSize, 0);
  assert.equal(table.size, 2);
});

test('routing table - stats keep the cached counter apart from the replacement cache size', T, () => {
  const { table, inBucket } = fullBucket(2);
  for (let i = 0; i < 3; i++) table.seen(contactInBucket(table.self, 255));
  table.pingFailed(inBucket[0]!.id);
  const stats = table.stats();
  assert.equal(stats.cached, 3, 'three contacts went to the replacement cache');
  assert.equal(stats.promoted, 1);
  assert.equal(stats['cached-size'], 2, 'one of them left it for the bucket');
  assert.equal(stats.size, 2);
});

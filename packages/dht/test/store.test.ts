// Tests of the bounded DHT value store (src/store.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, sumCounters } from '@deut/common';
import { ENTRY_OVERHEAD_BYTES, MAX_TTL_MS, ValueStore } from '../src/store.js';

const T = { timeout: 20_000 };
const HOUR = 60 * 60 * 1000;

function key(n: number): Uint8Array {
  const k = new Uint8Array(32);
  new DataView(k.buffer).setUint32(0, n);
  return k;
}

const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill);

test('store - stores and returns a value until its TTL runs out', T, () => {
  const clock = new ManualClock(0);
  const store = new ValueStore();
  assert.equal(store.put(key(1), bytes(10), { publisher: 'p', ttlMs: HOUR, now: clock.now() }), 'stored');
  assert.deepEqual(store.get(key(1), clock.now()).map((v) => v.value), [bytes(10)]);
  clock.advance(HOUR - 1);
  assert.equal(store.get(key(1), clock.now()).length, 1);
  clock.advance(1);
  assert.deepEqual(store.get(key(1), clock.now()), []);
  assert.equal(store.sweep(clock.now()), 1);
  assert.deepEqual(store.stats(), { keys: 0, entries: 0, bytes: 0, counters: { stored: 1, expired: 1 } });
});

test('store - a newer put by the same publisher replaces, other publishers add alongside', T, () => {
  const store = new ValueStore();
  store.put(key(1), bytes(5, 1), { publisher: 'a', ttlMs: HOUR, now: 0 });
  store.put(key(1), bytes(7, 2), { publisher: 'a', ttlMs: HOUR, now: 1 });
  store.put(key(1), bytes(3, 3), { publisher: 'b', ttlMs: HOUR, now: 2 });
  const got = store.get(key(1), 3);
  assert.deepEqual(got.map((v) => [v.publisher, v.value]), [['b', bytes(3, 3)], ['a', bytes(7, 2)]]);
  const stats = store.stats();
  assert.equal(stats.entries, 2);
  assert.equal(stats.bytes, 10 + 2 * ENTRY_OVERHEAD_BYTES);
  assert.equal(stats.counters.replaced, 1);
});

test('store - oversized values, bad TTLs and wrong key lengths are refused and counted', T, () => {
  const store = new ValueStore({ maxValueBytes: 100 });
  assert.equal(store.put(key(1), bytes(101), { publisher: 'p', ttlMs: HOUR, now: 0 }), 'too-large');
  assert.equal(store.put(key(1), bytes(100), { publisher: 'p', ttlMs: MAX_TTL_MS + 1, now: 0 }), 'ttl');
  assert.equal(store.put(key(1), bytes(100), { publisher: 'p', ttlMs: 0, now: 0 }), 'ttl');
  assert.equal(store.put(key(1), bytes(100), { publisher: 'p', ttlMs: NaN, now: 0 }), 'ttl');
  assert.equal(store.put(new Uint8Array(31), bytes(1), { publisher: 'p', ttlMs: HOUR, now: 0 }), 'bad-key');
  assert.equal(store.put(key(1), bytes(100), { publisher: 'p', ttlMs: MAX_TTL_MS, now: 0 }), 'stored');
  assert.deepEqual(store.stats().counters, {
    'refused-too-large': 1,
    'refused-ttl': 3,
    'refused-bad-key': 1,
    stored: 1,
  });
});

test('store - the per-publisher quota refuses a publisher without touching others', T, () => {
  const store = new ValueStore({ perPublisherKeys: 3 });
  for (let i = 0; i < 3; i++) assert.equal(store.put(key(i), bytes(1), { publisher: 'greedy', ttlMs: HOUR, now: 0 }), 'stored');
  assert.equal(store.put(key(9), bytes(1), { publisher: 'greedy', ttlMs: HOUR, now: 0 }), 'quota');
  assert.equal(store.put(key(0), bytes(2), { publisher: 'greedy', ttlMs: HOUR, now: 0 }), 'stored');
  assert.equal(store.put(key(9), bytes(1), { publisher: 'modest', ttlMs: HOUR, now: 0 }), 'stored');
  assert.equal(store.stats().counters['refused-quota'], 1);
  // The quota frees up as the publisher's values expire.
  assert.equal(store.put(key(9), bytes(1), { publisher: 'greedy', ttlMs: HOUR, now: HOUR }), 'stored');
});

test('store - maxKeys, per-key publishers and maxBytes refuse when full, after expired entries are swept', T, () => {
  const keys = new ValueStore({ maxKeys: 2 });
  keys.put(key(1), bytes(1), { publisher: 'a', ttlMs: 10, now: 0 });
  keys.put(key(2), bytes(1), { publisher: 'a', ttlMs: HOUR, now: 0 });
  assert.equal(keys.put(key(3), bytes(1), { publisher: 'b', ttlMs: HOUR, now: 5 }), 'full');
  assert.equal(keys.put(key(3), bytes(1), { publisher: 'b', ttlMs: HOUR, now: 10 }), 'stored');
  assert.equal(keys.stats().counters.expired, 1);

  const perKey = new ValueStore({ maxValuesPerKey: 2 });
  perKey.put(key(1), bytes(1), { publisher: 'a', ttlMs: HOUR, now: 0 });
  perKey.put(key(1), bytes(1), { publisher: 'b', ttlMs: HOUR, now: 0 });
  assert.equal(perKey.put(key(1), bytes(1), { publisher: 'c', ttlMs: HOUR, now: 0 }), 'full');
  assert.equal(perKey.put(key(1), bytes(9), { publisher: 'b', ttlMs: HOUR, now: 0 }), 'stored');

  const size = new ValueStore({ maxBytes: 2 * (100 + ENTRY_OVERHEAD_BYTES) });
  size.put(key(1), bytes(100), { publisher: 'a', ttlMs: HOUR, now: 0 });
  size.put(key(2), bytes(100), { publisher: 'b', ttlMs: HOUR, now: 0 });
  assert.equal(size.put(key(3), bytes(1), { publisher: 'c', ttlMs: HOUR, now: 0 }), 'full');
  assert.equal(size.put(key(2), bytes(101), { publisher: 'b', ttlMs: HOUR, now: 0 }), 'full');
  assert.equal(size.stats().counters['refused-full'], 2);
  assert.equal(size.get(key(2), 0)[0]?.value.length, 100);
});

test('store - only this node\'s values are due for republish, hourly, until they expire', T, () => {
  const clock = new ManualClock(0);
  const store = new ValueStore({ localPublisher: 'me' });
  store.put(key(1), bytes(1), { publisher: 'me', ttlMs: 3 * HOUR, now: clock.now() });
  store.put(key(2), bytes(1), { publisher: 'other', ttlMs: 3 * HOUR, now: clock.now() });
  assert.deepEqual(store.republishDue(clock.now()), []);
  clock.advance(HOUR);
  const due = store.republishDue(clock.now());
  assert.deepEqual(due.map((v) => v.key), [key(1)]);
  assert.equal(due[0]!.expiresAt - clock.now(), 2 * HOUR);
  store.markRepublished(key(1), clock.now());
  assert.deepEqual(store.republishDue(clock.now()), []);
  clock.advance(2 * HOUR);
  assert.deepEqual(store.republishDue(clock.now()), []);
  assert.deepEqual(new ValueStore().republishDue(clock.now()), []);
});

test('store - a flood of random puts never exceeds its bounds and every put is accounted', T, () => {
  const limits = { maxKeys: 50, maxBytes: 20_000, perPublisherKeys: 10, maxValuesPerKey: 3, maxValueBytes: 300 };
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          k: fc.integer({ min: 0, max: 80 }),
          publisher: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'),
          size: fc.integer({ min: 0, max: 400 }),
          ttlMs: fc.integer({ min: -10, max: 2000 }),
          dt: fc.integer({ min: 0, max: 50 }),
        }),
        { maxLength: 400 },
      ),
      (puts) => {
        const store = new ValueStore({ ...limits, maxTtlMs: 1500 });
        let now = 0;
        for (const p of puts) {
          now += p.dt;
          store.put(key(p.k), bytes(p.size), { publisher: p.publisher, ttlMs: p.ttlMs, now });
          const s = store.stats();
          assert.ok(s.keys <= limits.maxKeys);
          assert.ok(s.bytes <= limits.maxBytes);
          assert.ok(s.entries <= limits.maxKeys * limits.maxValuesPerKey);
        }
        const c = store.stats().counters;
        const total = sumCounters(c) - (c.expired ?? 0);
        assert.equal(total, puts.length);
      },
    ),
    { numRuns: 50 },
  );
});

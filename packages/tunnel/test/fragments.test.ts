/** Tests of datagram fragmentation and bounded reassembly (PROTOCOL.md §6). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock, seededRandom } from '@deut/common';
import type { UdpAddress } from '@deut/common';
import { MAX_DATAGRAM_BYTES, MAX_FRAGMENTS, MAX_FRAGMENT_DATA, decodeCellFrame, encodeCellFrame } from '@deut/wire';
import type { DatagramFrame } from '@deut/wire';
import {
  MAX_PARTIAL_DATAGRAMS,
  PARTIAL_OVERHEAD_BYTES,
  REASSEMBLY_BYTES,
  REASSEMBLY_TIMEOUT_MS,
  Reassembler,
  fragmentDatagram,
} from '../src/fragments.js';
import type { ReassembledDatagram, ReassemblerOptions } from '../src/fragments.js';

const DEST: UdpAddress = { host: '203.0.113.5', port: 53 };
const OTHER: UdpAddress = { host: '2001:db8::1', port: 53 };

/** Deterministic bytes and shuffles, so a failure replays. */
const prng = seededRandom;

function randomBytes(length: number, random: () => number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

function reassembler(overrides: Partial<ReassemblerOptions> = {}): { clock: ManualClock; r: Reassembler; drops: string[] } {
  const clock = new ManualClock();
  const drops: string[] = [];
  const r = new Reassembler({ clock, onDrop: (reason) => drops.push(reason), ...overrides });
  return { clock, r, drops };
}

/** Feeds every frame; returns the datagrams completed along the way. */
function feed(r: Reassembler, key: string, frames: readonly DatagramFrame[]): ReassembledDatagram[] {
  const out: ReassembledDatagram[] = [];
  for (const frame of frames) {
    const done = r.add(key, frame);
    if (done !== undefined) out.push(done);
  }
  return out;
}

/** A fragment of `count` at `index` with the right size for its position. */
function fragment(datagramId: number, index: number, count: number, fill = 0, address: UdpAddress = DEST): DatagramFrame {
  const length = index === count - 1 ? 1 : MAX_FRAGMENT_DATA;
  return { type: 'datagram', datagramId, index, count, address, data: new Uint8Array(length).fill(fill) };
}

test('fragmentDatagram - every fragment but the last is full, an empty datagram is one empty fragment', () => {
  const cases: [number, number[]][] = [
    [0, [0]],
    [1, [1]],
    [1019, [1019]],
    [1020, [1020]],
    [1021, [1020, 1]],
    [4096, [1020, 1020, 1020, 1020, 16]],
    [MAX_DATAGRAM_BYTES, [...new Array<number>(MAX_FRAGMENTS - 1).fill(MAX_FRAGMENT_DATA), 227]],
  ];
  for (const [size, lengths] of cases) {
    const frames = fragmentDatagram(7, DEST, new Uint8Array(size));
    assert.deepEqual(frames.map((f) => f.data.length), lengths, `size ${size}`);
    frames.forEach((f, i) => {
      assert.equal(f.index, i);
      assert.equal(f.count, lengths.length);
      assert.equal(f.datagramId, 7);
      assert.deepEqual(f.address, DEST);
    });
  }
});

test('fragmentDatagram - refuses a datagram over 65,507 bytes and an id that is not a u32', () => {
  assert.throws(() => fragmentDatagram(1, DEST, new Uint8Array(MAX_DATAGRAM_BYTES + 1)), RangeError);
  assert.throws(() => fragmentDatagram(-1, DEST, new Uint8Array(1)), RangeError);
  assert.throws(() => fragmentDatagram(2 ** 32, DEST, new Uint8Array(1)), RangeError);
  assert.throws(() => fragmentDatagram(1.5, DEST, new Uint8Array(1)), RangeError);
});

test('fragmentDatagram - fragments survive the cell frame codec', () => {
  const data = randomBytes(3000, prng(1));
  const frames = fragmentDatagram(0xffffffff, OTHER, data).map((f) => decodeCellFrame(encodeCellFrame(f)));
  const { r } = reassembler();
  const done = feed(r, 't', frames.map((f) => (f.type === 'datagram' ? f : assert.fail('not a datagram frame'))));
  assert.equal(done.length, 1);
  assert.deepEqual(done[0]?.data, data);
  assert.deepEqual(done[0]?.address, OTHER);
});

test('reassembler - round trip of 0..65,507 bytes in random order with duplicates', () => {
  const random = prng(42);
  const sizes = [0, 1, 1019, 1020, 1021, 4096, MAX_DATAGRAM_BYTES];
  const { r } = reassembler();
  let duplicates = 0;
  sizes.forEach((size, id) => {
    const data = randomBytes(size, random);
    const frames = fragmentDatagram(id, DEST, data);
    const order = shuffle([...frames, ...frames.filter(() => random() < 0.5)], random);
    const done = feed(r, 'tunnel', order);
    assert.equal(done.length, 1, `size ${size}`);
    assert.deepEqual(done[0]?.data, data, `size ${size}`);
    assert.deepEqual(done[0]?.address, DEST);
    duplicates += order.length - frames.length;
    assert.equal(r.stats().counters['duplicate-fragment'] ?? 0, duplicates, `size ${size}`);
  });
  const stats = r.stats();
  assert.equal(stats.partials, 0);
  assert.equal(stats.bytes, 0);
  assert.equal(stats.counters['completed'], sizes.length);
});

test('reassembler - a fragment buffer reused by the caller does not corrupt the datagram', () => {
  const data = randomBytes(2500, prng(3));
  const { r } = reassembler();
  const scratch = new Uint8Array(MAX_FRAGMENT_DATA);
  let done: ReassembledDatagram | undefined;
  for (const frame of fragmentDatagram(1, DEST, data)) {
    scratch.set(frame.data);
    done = r.add('t', { ...frame, data: scratch.subarray(0, frame.data.length) });
    scratch.fill(0xee);
  }
  assert.deepEqual(done?.data, data);
});

test('reassembler - the same id under different keys is two datagrams', () => {
  const { r } = reassembler();
  const a = fragmentDatagram(5, DEST, new Uint8Array(1500).fill(1));
  const b = fragmentDatagram(5, DEST, new Uint8Array(1500).fill(2));
  assert.equal(r.add('a', a[0] as DatagramFrame), undefined);
  assert.equal(r.add('b', b[1] as DatagramFrame), undefined);
  assert.deepEqual(r.add('a', a[1] as DatagramFrame)?.data, new Uint8Array(1500).fill(1));
  assert.deepEqual(r.add('b', b[0] as DatagramFrame)?.data, new Uint8Array(1500).fill(2));
});

test('reassembler - refuses fragments that disagree on count or address', () => {
  const { r, drops } = reassembler();
  assert.equal(r.add('t', fragment(1, 0, 3)), undefined);
  assert.equal(r.add('t', fragment(1, 1, 4)), undefined);
  assert.equal(r.add('t', fragment(1, 2, 3, 0, OTHER)), undefined);
  assert.equal(r.add('t', { ...fragment(1, 2, 3), address: { host: DEST.host, port: 54 } }), undefined);
  assert.deepEqual(drops, ['count-mismatch', 'address-mismatch', 'address-mismatch']);
  assert.equal(r.add('t', fragment(1, 1, 3)), undefined);
  const done = r.add('t', fragment(1, 2, 3));
  assert.equal(done?.data.length, 2 * MAX_FRAGMENT_DATA + 1);
  assert.deepEqual(done?.address, DEST);
});

test('reassembler - refuses short non-last, empty last and oversized fragments', () => {
  const { r } = reassembler();
  assert.equal(r.add('t', { ...fragment(1, 0, 2), data: new Uint8Array(MAX_FRAGMENT_DATA - 1) }), undefined);
  assert.equal(r.add('t', { ...fragment(2, 1, 2), data: new Uint8Array(0) }), undefined);
  const tooLong = MAX_DATAGRAM_BYTES - (MAX_FRAGMENTS - 1) * MAX_FRAGMENT_DATA + 1;
  assert.equal(r.add('t', { ...fragment(3, MAX_FRAGMENTS - 1, MAX_FRAGMENTS), data: new Uint8Array(tooLong) }), undefined);
  assert.equal(r.add('t', { ...fragment(4, 2, 2) }), undefined);
  assert.equal(r.add('t', { ...fragment(5, 0, MAX_FRAGMENTS + 1) }), undefined);
  assert.equal(r.add('t', { ...fragment(6, 0, 1), data: new Uint8Array(MAX_FRAGMENT_DATA + 1) }), undefined);
  const { counters, partials, bytes } = r.stats();
  assert.deepEqual(counters, { 'short-fragment': 1, 'empty-fragment': 1, 'too-large': 1, 'bad-fragment': 3 });
  assert.equal(partials, 0);
  assert.equal(bytes, 0);
});

test('reassembler - a completed datagram is not completed again by a late duplicate', () => {
  const { r, clock } = reassembler();
  const frames = fragmentDatagram(9, DEST, new Uint8Array(2100));
  const single = fragmentDatagram(10, DEST, new Uint8Array(10));
  assert.equal(feed(r, 't', frames).length, 1);
  assert.equal(feed(r, 't', single).length, 1);
  assert.equal(feed(r, 't', [...frames, ...single]).length, 0);
  assert.equal(r.stats().partials, 0, 'a late fragment opens no partial');
  assert.equal(r.stats().counters['duplicate-fragment'], 4);
  clock.advance(REASSEMBLY_TIMEOUT_MS);
  assert.equal(feed(r, 't', frames).length, 1, 'after the timeout the id is free again');
});

test('reassembler - the record of completed ids is bounded', () => {
  const { r } = reassembler({ maxRecentCompletions: 10 });
  for (let id = 0; id < 100; id++) assert.ok(r.add('t', fragment(id, 0, 1)));
  assert.equal(r.add('t', fragment(99, 0, 1)), undefined);
  assert.ok(r.add('t', fragment(0, 0, 1)), 'the oldest completion was forgotten');
});

test('reassembler - expires partials after the timeout, lazily and by sweep', () => {
  const { r, clock, drops } = reassembler();
  r.add('t', fragment(1, 0, 2));
  clock.advance(REASSEMBLY_TIMEOUT_MS - 1);
  r.add('t', fragment(2, 0, 2));
  assert.equal(r.sweep(), 0);
  assert.equal(r.stats().partials, 2);
  clock.advance(1);
  assert.equal(r.add('t', fragment(1, 1, 2)), undefined, 'datagram 1 expired before its last fragment');
  assert.deepEqual(drops, ['expired']);
  assert.equal(r.stats().partials, 2, 'the late fragment opened a partial of its own');
  clock.advance(REASSEMBLY_TIMEOUT_MS);
  assert.equal(r.sweep(), 2);
  assert.deepEqual(r.stats().partials, 0);
  assert.equal(r.stats().bytes, 0);
  assert.equal(r.stats().counters['expired'], 3);
});

test('reassembler - expiry counts from the first fragment, however the partial is fed', () => {
  const { r, clock } = reassembler();
  for (let index = 0; index < 10; index++) {
    r.add('t', fragment(1, index, MAX_FRAGMENTS));
    clock.advance(REASSEMBLY_TIMEOUT_MS / 10);
  }
  assert.equal(r.sweep(), 1);
});

test('reassembler - a key holds 16 partials, its least recently extended evicted first', () => {
  const { r } = reassembler();
  for (let id = 0; id < MAX_PARTIAL_DATAGRAMS; id++) r.add('t', fragment(id, 0, 3));
  r.add('t', fragment(0, 1, 3));
  r.add('other', fragment(100, 0, 3));
  r.add('t', fragment(16, 0, 3));
  assert.equal(r.stats().partials, MAX_PARTIAL_DATAGRAMS + 1);
  assert.equal(r.stats().counters['evicted'], 1);
  assert.equal(r.add('t', fragment(1, 1, 3)), undefined);
  assert.equal(r.add('t', fragment(1, 2, 3)), undefined, 'datagram 1 was evicted');
  assert.ok(r.add('t', fragment(0, 2, 3)), 'datagram 0, extended recently, was kept');
  assert.ok(r.add('other', fragment(100, 1, 3)) === undefined && r.add('other', fragment(100, 2, 3)), 'other keys untouched');
});

test('reassembler - forget drops everything held for a key', () => {
  const { r } = reassembler();
  r.add('a', fragment(1, 0, 2));
  r.add('a', fragment(2, 0, 2));
  r.add('b', fragment(1, 0, 2));
  r.add('a', fragment(3, 0, 1));
  r.forget('a');
  const { partials, bytes } = r.stats();
  assert.equal(partials, 1);
  assert.equal(bytes, PARTIAL_OVERHEAD_BYTES + MAX_FRAGMENT_DATA);
  assert.ok(r.add('a', fragment(3, 0, 1)), 'completion records of the key are gone too');
  assert.equal(r.add('a', fragment(1, 1, 2)), undefined, 'partials of the key are gone');
  assert.ok(r.add('b', fragment(1, 1, 2)));
});

test('reassembler - rejects options that are not positive integers', () => {
  const clock = new ManualClock();
  assert.throws(() => new Reassembler({ clock, maxBytes: 0 }), { code: 'BAD_OPTION' });
  assert.throws(() => new Reassembler({ clock, maxPartialPerKey: 1.5 }), { code: 'BAD_OPTION' });
  assert.throws(() => new Reassembler({ clock, timeoutMs: -1 }), { code: 'BAD_OPTION' });
});

/**
 * The hardening acceptance test: fragments of 100k never-completed messages stay within a
 * byte cap, oldest evicted, a legit 64 KiB message still reassembles.
 */
test('reassembler - 100k never-completed datagrams stay under the byte cap, a legit 65,507-byte one (the largest, "64 KiB") still reassembles', () => {
  const { r } = reassembler();
  const legit = randomBytes(MAX_DATAGRAM_BYTES, prng(7));
  const legitFrames = shuffle(fragmentDatagram(0xabcdef, DEST, legit), prng(8));
  const junk = new Uint8Array(MAX_FRAGMENT_DATA).fill(0x55);
  const flood = (id: number): DatagramFrame => ({ type: 'datagram', datagramId: id, index: 0, count: 2 + (id % 64), address: OTHER, data: junk });
  const FLOOD = 100_000;
  const LEGIT_FROM = 60_000;
  const done: ReassembledDatagram[] = [];
  let maxBytes = 0;
  let next = 0;
  for (let id = 0; id < FLOOD; id++) {
    // Spread over many tunnels, so the node-wide byte cap is what binds, not the per-key one.
    assert.equal(r.add(`flood-${id % 1000}`, flood(id)), undefined);
    if (id >= LEGIT_FROM && id % 10 === 0 && next < legitFrames.length) {
      const result = r.add('legit', legitFrames[next++] as DatagramFrame);
      if (result !== undefined) done.push(result);
    }
    maxBytes = Math.max(maxBytes, r.stats().bytes);
  }
  assert.equal(next, legitFrames.length);
  assert.equal(done.length, 1);
  assert.deepEqual(done[0]?.data, legit);
  assert.deepEqual(done[0]?.address, DEST);

  const stats = r.stats();
  assert.ok(maxBytes <= REASSEMBLY_BYTES, `held ${maxBytes} bytes`);
  const perPartial = PARTIAL_OVERHEAD_BYTES + MAX_FRAGMENT_DATA;
  assert.equal(stats.partials, Math.floor(REASSEMBLY_BYTES / perPartial));
  assert.equal(stats.bytes, stats.partials * perPartial);
  assert.equal(stats.counters['evicted'], FLOOD - stats.partials);

  // Oldest evicted: the first flood datagram is gone, the newest is still held.
  const finish = (id: number): number => {
    const frames = [];
    for (let index = 1; index < 2 + (id % 64); index++) frames.push(fragment(id, index, 2 + (id % 64), 0, OTHER));
    return feed(r, `flood-${id % 1000}`, frames).length;
  };
  assert.equal(finish(0), 0);
  assert.equal(finish(FLOOD - 1), 1);
});

test('reassembler - a legit datagram survives a flood on its own tunnel when its fragments arrive close together', () => {
  const { r } = reassembler();
  const legit = randomBytes(MAX_DATAGRAM_BYTES, prng(9));
  const junk = new Uint8Array(MAX_FRAGMENT_DATA);
  const done: ReassembledDatagram[] = [];
  let id = 1;
  for (const frame of fragmentDatagram(0, DEST, legit)) {
    // Fewer new partials between two of its fragments than the key holds.
    for (let i = 0; i < MAX_PARTIAL_DATAGRAMS - 2; i++) r.add('t', { type: 'datagram', datagramId: id++, index: 0, count: 2, address: DEST, data: junk });
    const result = r.add('t', frame);
    if (result !== undefined) done.push(result);
  }
  assert.equal(done.length, 1);
  assert.deepEqual(done[0]?.data, legit);
  const floodPartials = id - 1;
  assert.equal(r.stats().partials, MAX_PARTIAL_DATAGRAMS - 1, 'the key stayed full of flood');
  assert.equal(r.stats().counters['evicted'], floodPartials - (MAX_PARTIAL_DATAGRAMS - 1));
});

test('reassembler - any order with duplicates yields the datagram exactly once (property)', () => {
  const scenario = fc
    .oneof(fc.integer({ min: 0, max: 3 * MAX_FRAGMENT_DATA }), fc.integer({ min: 0, max: MAX_DATAGRAM_BYTES }))
    .chain((length) => {
      const count = Math.max(1, Math.ceil(length / MAX_FRAGMENT_DATA));
      return fc.record({
        id: fc.nat({ max: 0xffffffff }),
        data: fc.uint8Array({ minLength: length, maxLength: length }),
        order: fc.array(fc.nat(), { minLength: count, maxLength: count }),
        duplicates: fc.array(fc.tuple(fc.nat({ max: count - 1 }), fc.nat()), { maxLength: 2 * count }),
      });
    });
  fc.assert(
    fc.property(scenario, ({ id, data, order, duplicates }) => {
      const frames = fragmentDatagram(id, DEST, data);
      const deliveries = [
        ...frames.map((frame, i) => ({ frame, at: order[i] ?? 0 })),
        ...duplicates.map(([i, at]) => ({ frame: frames[i] as DatagramFrame, at })),
      ].sort((a, b) => a.at - b.at);
      const { r } = reassembler();
      const done = feed(r, 'k', deliveries.map((d) => d.frame));
      assert.equal(done.length, 1);
      assert.deepEqual(done[0]?.data, data);
      assert.deepEqual(done[0]?.address, DEST);
      assert.equal(r.stats().partials, 0);
      assert.equal(r.stats().bytes, 0);
    }),
    { numRuns: 200 },
  );
});

test('reassembler - arbitrary fragments never throw and never exceed the caps (property)', () => {
  const frameArb = fc.record({
    key: fc.constantFrom('a', 'b', 'c'),
    datagramId: fc.nat({ max: 20 }),
    count: fc.integer({ min: 1, max: 6 }),
    index: fc.nat({ max: 6 }),
    port: fc.constantFrom(53, 54),
    length: fc.constantFrom(0, 1, 500, MAX_FRAGMENT_DATA),
    advance: fc.constantFrom(0, 0, 0, 1000),
  });
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 300 }), (steps) => {
      const maxBytes = 4 * (PARTIAL_OVERHEAD_BYTES + MAX_FRAGMENT_DATA);
      const { r, clock } = reassembler({ maxBytes, maxPartialPerKey: 3 });
      for (const s of steps) {
        clock.advance(s.advance);
        const frame: DatagramFrame = {
          type: 'datagram',
          datagramId: s.datagramId,
          index: s.index,
          count: s.count,
          address: { host: DEST.host, port: s.port },
          data: new Uint8Array(s.length),
        };
        const done = r.add(s.key, frame);
        if (done !== undefined) assert.ok(done.data.length <= 6 * MAX_FRAGMENT_DATA);
        const { bytes, partials } = r.stats();
        assert.ok(bytes <= maxBytes);
        assert.ok(partials <= 9);
      }
      clock.advance(REASSEMBLY_TIMEOUT_MS);
      r.sweep();
      assert.deepEqual([r.stats().partials, r.stats().bytes], [0, 0]);
    }),
    { numRuns: 200 },
  );
});

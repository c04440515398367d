import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ReplayWindow } from '../src/replay-window.js';

test('replay window - accepts each counter once, in any order within the window', () => {
  const w = new ReplayWindow(64);
  for (const c of [5, 3, 9, 4, 0, 8]) assert.equal(w.mark(c), true, `first ${c}`);
  for (const c of [5, 3, 9, 4, 0, 8]) assert.equal(w.mark(c), false, `again ${c}`);
  assert.equal(w.check(6), true);
  assert.equal(w.highest, 9);
});

test('replay window - refuses counters older than the window and slides forward', () => {
  const w = new ReplayWindow(64);
  assert.equal(w.size, 64);
  w.mark(1000);
  assert.equal(w.check(1000 - 64), false, 'exactly size behind is too old');
  assert.equal(w.check(1000 - 63), true);
  w.mark(100_000);
  assert.equal(w.check(1000), false);
  assert.equal(w.check(100_000 - 10), true);
});

test('replay window - refuses negative, fractional and unsafe counters', () => {
  const w = new ReplayWindow(64);
  for (const c of [-1, 1.5, Number.NaN, 2 ** 53]) assert.equal(w.check(c), false);
});

test('replay window - matches a model set over random sequences', () => {
  fc.assert(
    fc.property(fc.array(fc.nat({ max: 600 }), { maxLength: 400 }), (counters) => {
      const w = new ReplayWindow(128);
      const seen = new Set<number>();
      let highest = -1;
      for (const c of counters) {
        const expected = !seen.has(c) && !(highest - c >= w.size);
        assert.equal(w.mark(c), expected, `counter ${c} highest ${highest}`);
        if (expected) {
          seen.add(c);
          highest = Math.max(highest, c);
        }
      }
    }),
  );
});

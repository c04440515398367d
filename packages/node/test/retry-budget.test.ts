/** Tests of the messenger's retry budget (PROTOCOL.md §7). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '@deut/common';
import { RetryBudget } from '../src/retry-budget.js';

/** Spends retries until the budget refuses; returns how many it allowed (at most `cap`). */
function drain(budget: RetryBudget, cap = 100_000): number {
  let allowed = 0;
  while (allowed < cap && budget.tryRetry()) allowed++;
  return allowed;
}

test('retry budget - the floor alone allows minPerSecond × window retries', () => {
  const clock = new ManualClock();
  const budget = new RetryBudget({ ratio: 1, minPerSecond: 10, windowMs: 10_000, clock });
  assert.equal(drain(budget), 100);
  assert.equal(budget.tryRetry(), false);
});

test('retry budget - each request started adds `ratio` retries', () => {
  const clock = new ManualClock();
  const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 0, windowMs: 10_000, clock });
  for (let i = 0; i < 40; i++) budget.requestStarted();
  assert.equal(drain(budget), 20);
  budget.requestStarted();
  budget.requestStarted();
  assert.equal(drain(budget), 1);
});

test('retry budget - requests and retries leave the window after windowMs', () => {
  const clock = new ManualClock();
  const budget = new RetryBudget({ ratio: 1, minPerSecond: 0, windowMs: 10_000, clock });
  for (let i = 0; i < 30; i++) budget.requestStarted();
  assert.equal(drain(budget), 30);
  clock.advance(5_000);
  assert.equal(budget.tryRetry(), false, 'the spent retries still count half a window later');
  for (let i = 0; i < 10; i++) budget.requestStarted();
  assert.equal(drain(budget), 10);
  // The first 30 requests and their 30 retries leave together; the later 10 and 10 stay.
  clock.advance(5_500);
  assert.equal(budget.tryRetry(), false);
  budget.requestStarted();
  assert.equal(drain(budget), 1);
  // A long silence clears everything, including slots whose index comes round again.
  clock.advance(60_000);
  assert.equal(budget.tryRetry(), false);
  budget.requestStarted();
  assert.equal(drain(budget), 1);
});

test('retry budget - in any window, retries never exceed ratio × requests + floor (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ advanceMs: fc.integer({ min: 0, max: 3_000 }), requests: fc.nat(20), retries: fc.nat(40) }), { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 5 }),
      (steps, ratio, minPerSecond) => {
        const windowMs = 10_000;
        const clock = new ManualClock(0);
        const budget = new RetryBudget({ ratio, minPerSecond, windowMs, clock });
        const events: Array<{ at: number; kind: 'request' | 'retry' }> = [];
        for (const step of steps) {
          clock.advance(step.advanceMs);
          for (let i = 0; i < step.requests; i++) {
            budget.requestStarted();
            events.push({ at: clock.now(), kind: 'request' });
          }
          for (let i = 0; i < step.retries; i++) if (budget.tryRetry()) events.push({ at: clock.now(), kind: 'retry' });
        }
        // The budget counts in 1 s slots, so its window at a retry reaches back 9 to 10 s:
        // every retry of the last 9 s counts against the requests of the last 10 s.
        const floor = (minPerSecond * windowMs) / 1000;
        for (const retry of events.filter((e) => e.kind === 'retry')) {
          const since = (from: number, kind: 'request' | 'retry'): number => events.filter((e) => e.kind === kind && e.at > from && e.at <= retry.at).length;
          const retries = since(retry.at - (windowMs - windowMs / 10), 'retry');
          const requests = since(retry.at - windowMs, 'request');
          assert.ok(retries <= ratio * requests + floor, `${retries} retries against ${requests} requests at ${retry.at} ms`);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('retry budget - bad options are refused', () => {
  assert.throws(() => new RetryBudget({ ratio: -1 }), RangeError);
  assert.throws(() => new RetryBudget({ ratio: Number.NaN }), RangeError);
  assert.throws(() => new RetryBudget({ minPerSecond: Number.POSITIVE_INFINITY }), RangeError);
  assert.throws(() => new RetryBudget({ windowMs: 5 }), RangeError);
});

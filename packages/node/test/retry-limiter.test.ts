/** Tests of the messenger's limit on retries in flight (PROTOCOL.md §7). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RetryLimiter } from '../src/retry-limiter.js';

test('retry limiter - runs retries at once up to the limit, then queues them oldest first', () => {
  const limiter = new RetryLimiter(2);
  const ran: string[] = [];
  const retry = (name: string) => () => void ran.push(name);
  assert.equal(limiter.start(retry('a')), true);
  assert.equal(limiter.start(retry('b')), true);
  const c = retry('c');
  assert.equal(limiter.start(c), false);
  assert.equal(limiter.start(retry('d')), false);
  assert.equal(limiter.start(retry('e')), false);
  assert.deepEqual(ran, ['a', 'b']);
  assert.deepEqual(limiter.stats(), { inFlight: 2, queued: 3, peak: 2 });
  limiter.cancel(c);
  limiter.release();
  assert.deepEqual(ran, ['a', 'b', 'd'], 'a cancelled retry never runs; the next in line takes the slot');
  limiter.release();
  limiter.release();
  assert.deepEqual(ran, ['a', 'b', 'd', 'e']);
  assert.deepEqual(limiter.stats(), { inFlight: 1, queued: 0, peak: 2 });
  limiter.release();
  assert.throws(() => limiter.release(), /without a retry in flight/);
  assert.throws(() => new RetryLimiter(0), RangeError);
  assert.throws(() => new RetryLimiter(1.5), RangeError);
});

test('retry limiter - never more in flight than the limit, and every queued retry runs once a slot frees (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 8 }), fc.array(fc.constantFrom('start', 'release', 'cancel'), { maxLength: 200 }), (limit, steps) => {
      const limiter = new RetryLimiter(limit);
      let inFlight = 0;
      const queued: Array<() => void> = [];
      let started = 0;
      let ran = 0;
      for (const step of steps) {
        if (step === 'start') {
          started++;
          const retry = (): void => {
            ran++;
            inFlight++;
            const i = queued.indexOf(retry);
            if (i >= 0) queued.splice(i, 1);
          };
          if (!limiter.start(retry)) queued.push(retry);
        } else if (step === 'release' && inFlight > 0) {
          inFlight--;
          limiter.release();
        } else if (step === 'cancel' && queued.length > 0) {
          limiter.cancel(queued.shift()!);
          started--;
        }
        assert.ok(inFlight <= limit, `${inFlight} in flight over a limit of ${limit}`);
        assert.equal(limiter.stats().inFlight, inFlight);
        assert.equal(limiter.stats().queued, queued.length);
        assert.ok(queued.length === 0 || inFlight === limit, 'nothing waits while a slot is free');
      }
      assert.equal(ran + queued.length, started);
    }),
    { numRuns: 300 },
  );
});

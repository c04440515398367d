import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedRateLimiter, TokenBucket } from '../src/rate-limit.js';

test('token bucket - allows the burst, then the refill rate', () => {
  let now = 0;
  const bucket = new TokenBucket({ perSecond: 3, burst: 90 }, () => now);
  let passed = 0;
  for (let i = 0; i < 200; i++) if (bucket.take()) passed++;
  assert.equal(passed, 90);
  now += 1000;
  passed = 0;
  for (let i = 0; i < 10; i++) if (bucket.take()) passed++;
  assert.equal(passed, 3);
});

test('keyed rate limiter - keys are independent and memory is bounded', () => {
  let now = 0;
  const limiter = new KeyedRateLimiter({ perSecond: 1, burst: 2 }, () => now, 100);
  assert.equal(limiter.take('a'), true);
  assert.equal(limiter.take('a'), true);
  assert.equal(limiter.take('a'), false);
  assert.equal(limiter.take('b'), true);
  for (let i = 0; i < 10_000; i++) limiter.take(`k${i}`);
  assert.ok(limiter.size <= 100);
  now += 5000;
  assert.equal(limiter.take('a'), true);
});

/**
 * How an impairment is spelled for each method: netem's arguments (the kernels of our build
 * machines have no netem, so this is the only check of that path here), the userspace
 * impairer's flags, and the ranges refused before anything runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkImpairment, impairerArgs, netemArgs } from '../src/impairer.js';

test('impairer - netem arguments: delay with jitter, loss, duplicate, and reorder only with a delay', () => {
  assert.deepEqual(netemArgs({ delayMs: 50, jitterMs: 10, loss: 0.1, duplicate: 0.01, reorder: 0.25 }), ['delay', '50ms', '10ms', 'loss', '10.000%', 'duplicate', '1.000%', 'reorder', '25.000%']);
  assert.deepEqual(netemArgs({ loss: 0.2, reorder: 0.5 }), ['loss', '20.000%'], 'netem reorders only delayed packets');
  assert.deepEqual(netemArgs({}), []);
});

test('impairer - userspace impairer flags, seeded by the host unless told', () => {
  assert.deepEqual(impairerArgs({ delayMs: 20, loss: 0.1 }, 7, 3), ['--queue', '7', '--delay-ms', '20', '--jitter-ms', '0', '--loss', '0.1', '--duplicate', '0', '--reorder', '0', '--seed', '3']);
  assert.equal(impairerArgs({ seed: 42 }, 7, 3).at(-1), '42');
});

test('impairer - out-of-range impairments are refused', () => {
  assert.throws(() => checkImpairment({ loss: 1.5 }), RangeError);
  assert.throws(() => checkImpairment({ duplicate: -0.1 }), RangeError);
  assert.throws(() => checkImpairment({ delayMs: 70_000 }), RangeError);
  assert.throws(() => checkImpairment({ delayMs: 5, jitterMs: 10 }), /jitterMs cannot exceed delayMs/);
  assert.throws(() => checkImpairment({ loss: Number.NaN }), RangeError);
  checkImpairment({ delayMs: 50, jitterMs: 10, loss: 0.1, duplicate: 0.01, reorder: 0.05 });
});

/**
 * The benchmark's statistics on fixed inputs (issue #7): medians, percentiles, min..max,
 * paired ratios and which way a goal reads. No timing is measured or asserted here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as StatsModule from '../scripts/bench/stats.js';
import type * as TableModule from '../scripts/bench/table.js';

// scripts/ is its own project; the test loads its compiled output from there.
type Stats = typeof StatsModule;
type Table = typeof TableModule;
const stats = (await import(new URL('../../scripts/dist/bench/stats.js', import.meta.url).href)) as Stats;
const table = (await import(new URL('../../scripts/dist/bench/table.js', import.meta.url).href)) as Table;

test('bench stats - median of odd and even counts, unsorted input left alone', () => {
  const input = [5, 1, 3];
  assert.equal(stats.median(input), 3);
  assert.deepEqual(input, [5, 1, 3]);
  assert.equal(stats.median([4, 1, 3, 2]), 2.5);
  assert.equal(stats.median([7]), 7);
  assert.throws(() => stats.median([]), RangeError);
  assert.throws(() => stats.median([1, Number.NaN]), RangeError);
});

test('bench stats - percentiles interpolate between closest ranks', () => {
  const values = Array.from({ length: 101 }, (_, i) => 100 - i);
  assert.equal(stats.percentile(values, 0), 0);
  assert.equal(stats.percentile(values, 99), 99);
  assert.equal(stats.percentile(values, 100), 100);
  assert.equal(stats.percentile([1, 2], 50), 1.5);
  assert.equal(stats.percentile([10, 20, 30, 40], 75), 32.5);
  assert.throws(() => stats.percentile([1], 101), RangeError);
});

test('bench stats - summary keeps runs in order with min..max', () => {
  const s = stats.summarize([3, 9, 1, 4, 6]);
  assert.deepEqual(s, { median: 4, min: 1, max: 9, runs: [3, 9, 1, 4, 6] });
  assert.equal(stats.formatSummary(s), '4.00 (1.00..9.00)');
  assert.equal(stats.formatNumber(12_345.6), '12,346');
  assert.equal(stats.formatNumber(0.01234), '0.0123');
});

test('bench stats - ratios pair run i with run i and read deut over baseline', () => {
  // Pairing matters: the median of the ratios is not the ratio of the medians.
  const deut = [10, 30, 20];
  const baseline = [20, 30, 80];
  const ratio = stats.pairedRatio(deut, baseline);
  assert.deepEqual(ratio.runs, [0.5, 1, 0.25]);
  assert.equal(ratio.median, 0.5);
  assert.equal(ratio.min, 0.25);
  assert.equal(ratio.max, 1);
  assert.notEqual(ratio.median, stats.median(deut) / stats.median(baseline));
  assert.throws(() => stats.pairedRatio([1, 2], [1]), RangeError);
  assert.throws(() => stats.pairedRatio([1], [0]), RangeError);
});

test('bench stats - goal direction: throughput ratios must reach, latency ratios must stay under', () => {
  const throughput = table.makeRow({ row: 1, name: 'relay', unit: 'cells/s', deut: [70, 60, 80], baseline: [100, 100, 100], goal: { on: 'ratio', op: '>=', target: 0.6 } });
  assert.equal(throughput.ratio?.median, 0.7);
  assert.equal(throughput.met, true);
  const slow = table.makeRow({ row: 1, name: 'relay', unit: 'cells/s', deut: [50, 40, 55], baseline: [100, 100, 100], goal: { on: 'ratio', op: '>=', target: 0.6 } });
  assert.equal(slow.met, false);
  const latency = table.makeRow({ row: 2, name: 'rtt', unit: 'ms', deut: [1.2, 1.4, 1.3], baseline: [1, 1, 1], goal: { on: 'ratio', op: '<=', target: 1.5 } });
  assert.equal(latency.met, true);
  const tooSlow = table.makeRow({ row: 2, name: 'rtt', unit: 'ms', deut: [2, 2, 2], baseline: [1, 1, 1], goal: { on: 'ratio', op: '<=', target: 1.5 } });
  assert.equal(tooSlow.met, false);
  const absolute = table.makeRow({ row: 4, name: 'memory', unit: 'KB', deut: [0.9], goal: { on: 'value', op: '<=', target: 1 } });
  assert.equal(absolute.met, true);
  assert.equal(absolute.ratio, undefined);
  const noGoal = table.makeRow({ row: 5, name: 'bulk', unit: 'MB/s', deut: [3], baseline: [6] });
  assert.equal(noGoal.met, undefined);
});

test('bench stats - alternate swaps who goes first every run', async () => {
  const order: string[] = [];
  const result = await stats.alternate(
    4,
    () => Promise.resolve(order.push('a')),
    () => Promise.resolve(order.push('b')),
  );
  assert.deepEqual(order, ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']);
  assert.equal(result.a.length, 4);
  assert.equal(result.b.length, 4);
});

test('bench table - one line per row with the goal verdict', () => {
  const rows = [
    table.makeRow({ row: 1, name: 'relay', size: '1 tunnels', unit: 'cells/s', deut: [70], baselineName: 'fwd', baseline: [100], goal: { on: 'ratio', op: '>=', target: 0.6 } }),
    table.makeRow({ row: 2, name: 'rtt', unit: 'ms', deut: [3], baseline: [1], goal: { on: 'ratio', op: '<=', target: 1.5 } }),
  ];
  const lines = table.formatTable(rows).split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[2]!, /\| 1 .*relay.*0\.700.*ratio >= 0\.600 met/);
  assert.match(lines[3]!, /\| 2 .*rtt.*3\.00.*ratio <= 1\.50 MISSED/);
});

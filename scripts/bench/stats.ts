/**
 * Statistics of the benchmark (issue #7): every figure is a set of runs, summarised as a
 * median and a min..max range, and compared with a baseline measured in the same run, run
 * for run (alternating), so that a noisy, shared machine slows both sides alike.
 */

/** Median and range of one measured quantity over several runs. */
export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Every run's value, in the order measured. */
  readonly runs: readonly number[];
}

/** Which way a figure is better: throughputs up, latencies and costs down. */
export type Better = 'higher' | 'lower';

/** A goal on a row: on the ratio to the baseline, or on the deut figure itself. */
export interface Goal {
  readonly on: 'ratio' | 'value';
  readonly op: '>=' | '<=';
  readonly target: number;
}

/**
 * The median of `values` (the mean of the middle two for an even count).
 * @throws RangeError for an empty list or a value that is not a finite number
 */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/**
 * The p-th percentile (0..100) by linear interpolation between closest ranks (the
 * "R-7" method of spreadsheets and numpy): p50 of an even count is the mean of the middle two.
 * @throws RangeError for an empty list, a non-finite value or p outside 0..100
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError('percentile of no values');
  if (!(p >= 0 && p <= 100)) throw new RangeError('percentile must be within 0..100');
  for (const v of values) if (!Number.isFinite(v)) throw new RangeError('percentile of a non-finite value');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  const lowValue = sorted[low]!;
  return lowValue + (sorted[high]! - lowValue) * (rank - low);
}

/** Median, min and max of the runs. @throws RangeError as {@link percentile} */
export function summarize(runs: readonly number[]): Summary {
  const med = median(runs);
  return { median: med, min: Math.min(...runs), max: Math.max(...runs), runs: [...runs] };
}

/**
 * deut ÷ baseline for each pair of runs measured together (run i of each side), summarised.
 * The ratio always reads deut over baseline; whether more is better depends on the figure
 * (cells/s: more; latency: less), which the goal carries.
 * @throws RangeError if the lists differ in length, are empty, or a baseline is not positive
 */
export function pairedRatio(deut: readonly number[], baseline: readonly number[]): Summary {
  if (deut.length !== baseline.length) throw new RangeError('ratio of run lists of different lengths');
  const ratios = deut.map((d, i) => {
    const b = baseline[i]!;
    if (!(b > 0)) throw new RangeError('ratio against a baseline that is not positive');
    return d / b;
  });
  return summarize(ratios);
}

/** Whether `value` meets `op target`. */
export function meets(value: number, op: Goal['op'], target: number): boolean {
  return op === '>=' ? value >= target : value <= target;
}

/**
 * Whether a row meets its goal, judged on the median (of the ratio or of the deut value).
 * Undefined when the row has no goal or the figure the goal is on is missing.
 */
export function goalMet(goal: Goal | undefined, value: Summary, ratio: Summary | undefined): boolean | undefined {
  if (goal === undefined) return undefined;
  const figure = goal.on === 'ratio' ? ratio : value;
  if (figure === undefined) return undefined;
  return meets(figure.median, goal.op, goal.target);
}

/**
 * Runs `a` and `b` `runs` times each, alternating and swapping who goes first every run
 * (a b, b a, a b, ...), so a slow phase of a shared machine hits both sides evenly.
 */
export async function alternate(runs: number, a: () => Promise<number>, b: () => Promise<number>): Promise<{ a: number[]; b: number[] }> {
  const out = { a: [] as number[], b: [] as number[] };
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      out.a.push(await a());
      out.b.push(await b());
    } else {
      out.b.push(await b());
      out.a.push(await a());
    }
  }
  return out;
}

/** A number with about 3 significant digits, thousands grouped: 12,300 / 45.6 / 0.123. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}

/** "median (min..max)". */
export function formatSummary(summary: Summary): string {
  return `${formatNumber(summary.median)} (${formatNumber(summary.min)}..${formatNumber(summary.max)})`;
}

/**
 * Results of a benchmark run: one record per printed row, the ratio table, and the JSON file
 * under bench/results/.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatNumber, formatSummary, goalMet, pairedRatio, summarize, type Goal, type Summary } from './stats.js';

/** One line of the table: a deut figure at one size, its baseline and their ratio. */
export interface RowResult {
  /** The row number (1..6). */
  readonly row: number;
  /** What is measured, e.g. "relay cells/s". */
  readonly name: string;
  /** The size this line is at (tunnels carried, hops, ...), or "" for a single size. */
  readonly size: string;
  readonly unit: string;
  readonly deut: Summary;
  /** What the baseline is, e.g. "Node UDP forwarder". */
  readonly baselineName?: string;
  readonly baseline?: Summary;
  /** deut ÷ baseline per pair of runs. */
  readonly ratio?: Summary;
  readonly goal?: Goal;
  readonly met?: boolean;
  /** Anything the figure needs to be read right (loss, what limited it). */
  readonly note?: string;
}

/** Inputs of {@link makeRow}: the raw runs of both sides. */
export interface RowInput {
  readonly row: number;
  readonly name: string;
  readonly size?: string;
  readonly unit: string;
  readonly deut: readonly number[];
  readonly baselineName?: string;
  readonly baseline?: readonly number[];
  readonly goal?: Goal;
  readonly note?: string;
}

/** Summarises the runs, pairs them into ratios and judges the goal. */
export function makeRow(input: RowInput): RowResult {
  const deut = summarize(input.deut);
  const baseline = input.baseline === undefined ? undefined : summarize(input.baseline);
  const ratio = input.baseline === undefined ? undefined : pairedRatio(input.deut, input.baseline);
  const met = goalMet(input.goal, deut, ratio);
  return {
    row: input.row,
    name: input.name,
    size: input.size ?? '',
    unit: input.unit,
    deut,
    ...(input.baselineName !== undefined ? { baselineName: input.baselineName } : {}),
    ...(baseline !== undefined ? { baseline } : {}),
    ...(ratio !== undefined ? { ratio } : {}),
    ...(input.goal !== undefined ? { goal: input.goal } : {}),
    ...(met !== undefined ? { met } : {}),
    ...(input.note !== undefined ? { note: input.note } : {}),
  };
}

function goalText(row: RowResult): string {
  if (row.goal === undefined) return '';
  const on = row.goal.on === 'ratio' ? 'ratio' : row.unit;
  const verdict = row.met === undefined ? '' : row.met ? ' met' : ' MISSED';
  return `${on} ${row.goal.op} ${formatNumber(row.goal.target)}${verdict}`;
}

/** The table as Markdown: medians with min..max over the runs. */
export function formatTable(rows: readonly RowResult[]): string {
  const header = ['#', 'figure', 'size', 'deut', 'baseline', 'ratio deut/baseline', 'goal'];
  const lines = rows.map((r) => [
    String(r.row),
    `${r.name} (${r.unit})`,
    r.size,
    formatSummary(r.deut),
    r.baseline === undefined ? '-' : `${formatSummary(r.baseline)} ${r.baselineName ?? ''}`.trim(),
    r.ratio === undefined ? '-' : formatSummary(r.ratio),
    goalText(r),
  ]);
  const all = [header, ...lines];
  const widths = header.map((_, i) => Math.max(...all.map((l) => l[i]!.length)));
  const fmt = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [fmt(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(fmt)].join('\n');
}

/** What a run wrote: when, how, the rows, and notes per row. */
export interface RunRecord {
  readonly startedAt: string;
  readonly seconds: number;
  readonly quick: boolean;
  readonly runs: number;
  readonly node: string;
  readonly cpus: number;
  readonly rows: readonly RowResult[];
}

/** Writes `<dir>/<iso-time>.json` and `<dir>/latest.json`; returns the first path. */
export async function writeResults(dir: string, record: RunRecord): Promise<string> {
  await mkdir(dir, { recursive: true });
  const text = `${JSON.stringify(record, null, 2)}\n`;
  const path = join(dir, `${record.startedAt.replace(/[:.]/g, '-')}.json`);
  await writeFile(path, text);
  await writeFile(join(dir, 'latest.json'), text);
  return path;
}

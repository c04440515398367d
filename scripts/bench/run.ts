/**
 * `npm run bench`: measures deut against baselines run in alternation with it (issue #7) and
 * prints the ratio table; writes the results to bench/results/<time>.json and latest.json.
 *
 *   npm run bench -- --quick          smoke run, under 2 minutes
 *   npm run bench -- --rows 1,2       only these rows (1 relay, 2 latency, 3 build, 4 memory,
 *                                     5 bulk, 6 DHT; 2 and 5 share their processes)
 *   npm run bench -- --runs 7         alternating runs per figure (default 5)
 *   npm run bench -- --out DIR        results directory (default bench/results)
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { cryptoReady } from '@deut/crypto';
import { buildRow } from './row-build.js';
import { dhtRow } from './row-dht.js';
import { memoryRow } from './row-memory.js';
import { pathRows } from './row-path.js';
import { relayRow } from './row-relay.js';
import { formatTable, writeResults, type RowResult } from './table.js';
import type { BenchConfig } from './config.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('npm run bench --')
  .option('quick', { type: 'boolean', default: false, describe: 'smoke run: small sizes, under 2 minutes' })
  .option('rows', { type: 'string', default: '1,2,3,4,5,6', describe: 'comma-separated rows to run' })
  .option('runs', { type: 'number', describe: 'alternating runs per figure (default 5; 3 with --quick)' })
  .option('out', { type: 'string', default: 'bench/results', describe: 'directory of the JSON results' })
  .strict()
  .parse();

const wanted = new Set(argv.rows.split(',').map((s) => Number(s.trim())));
for (const row of wanted) if (!(row >= 1 && row <= 6)) throw new Error(`no row ${row}: rows are 1..6`);
const runs = argv.runs ?? (argv.quick ? 3 : 5);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');

const began = performance.now();
const startedAt = new Date().toISOString();
const config: BenchConfig = {
  quick: argv.quick,
  runs,
  log: (line) => process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(0).padStart(4)} s] ${line}\n`),
};
await cryptoReady();
const rows: RowResult[] = [];
const plan: Array<[readonly number[], (c: BenchConfig) => Promise<RowResult[]>]> = [
  [[3], buildRow],
  [[1], relayRow],
  [[2, 5], pathRows],
  [[4], memoryRow],
  [[6], dhtRow],
];
for (const [covers, run] of plan) {
  if (!covers.some((r) => wanted.has(r))) continue;
  const got = await run(config);
  rows.push(...got.filter((r) => wanted.has(r.row)));
}
rows.sort((a, b) => a.row - b.row);
const seconds = (performance.now() - began) / 1000;
const table = formatTable(rows);
console.log(table);
for (const r of rows) if (r.note !== undefined) console.log(`- row ${r.row} ${r.name}${r.size === '' ? '' : ` @ ${r.size}`}: ${r.note}`);
const path = await writeResults(argv.out, { startedAt, seconds, quick: argv.quick, runs, node: process.version, cpus: cpus().length, rows });
console.log(`\n${argv.quick ? 'quick' : 'full'} run, ${runs} alternating runs per figure, ${seconds.toFixed(0)} s; results in ${path}`);

/**
 * Rows 2 and 5 over one 3-hop path of separate processes on loopback: request round trips
 * (p50, p99) and one tunnel's bulk throughput with 16 KiB messages (fragmented into cells),
 * against the same traffic through a chain of three no-crypto Node UDP forwarders.
 *
 * deut: master → relay → relay → endpoint → echo (or ack) server, each its own process.
 * baseline: client → forwarder → forwarder → forwarder → the same echo (or ack) server.
 */
import { percentile, alternate } from './stats.js';
import { makeRow, type RowResult } from './table.js';
import { hopOf, startWorker, stopAll, type Worker } from './workers.js';
import type { BenchConfig } from './config.js';

const REQUEST_BYTES = 1_000;
const BULK_MESSAGE_BYTES = 16 * 1024;
const BULK_WINDOW = 8;

interface RttResult {
  ms: number[];
  lost: number;
}

interface BulkResult {
  bytes: number;
  ms: number;
  lost: number;
}

/** Rows 2 (p50, p99) and 5. */
export async function pathRows(config: BenchConfig): Promise<RowResult[]> {
  const requests = config.quick ? 200 : 1_000;
  const messages = config.quick ? 100 : 600;
  const workers: Worker[] = [];
  const start = async (role: string, options: Record<string, unknown> = {}): Promise<Worker> => {
    const worker = await startWorker(role, options);
    workers.push(worker);
    return worker;
  };
  try {
    const echo = await start('echo');
    const acker = await start('echo', { ack: true });
    const hops = [await start('deut'), await start('deut'), await start('deut')];
    const master = await start('master');
    const built = await master.call<{ built: number }>('build', { hops: hops.map(hopOf), count: 1 });
    if (built.built !== 1) throw new Error('the 3-hop tunnel was not built');
    const chain = [await start('forwarder'), await start('forwarder'), await start('forwarder')];
    for (let i = 0; i < 2; i++) await chain[i]!.call('next', { next: chain[i + 1]!.info.address });
    const last = chain[2]!;
    const client = await start('client');
    const via = chain[0]!.info.address;

    // Row 2: warm both paths, then alternate.
    await master.call('rtt', { to: echo.info.address, count: 50, size: REQUEST_BYTES });
    await last.call('next', { next: echo.info.address });
    await client.call('rtt', { via, count: 50, size: REQUEST_BYTES });
    const deutRtt: RttResult[] = [];
    const baseRtt: RttResult[] = [];
    await alternate(
      config.runs,
      async () => {
        deutRtt.push(await master.call<RttResult>('rtt', { to: echo.info.address, count: requests, size: REQUEST_BYTES }));
        return 0;
      },
      async () => {
        baseRtt.push(await client.call<RttResult>('rtt', { via, count: requests, size: REQUEST_BYTES }));
        return 0;
      },
    );
    config.log('row 2 done');
    const lost = (rs: RttResult[]): number => rs.reduce((n, r) => n + r.lost, 0);
    const rows: RowResult[] = [];
    for (const p of [50, 99]) {
      rows.push(
        makeRow({
          row: 2,
          name: `request RTT p${p}`,
          size: '3 hops',
          unit: 'ms',
          deut: deutRtt.map((r) => percentile(r.ms, p)),
          baselineName: '3-forwarder UDP chain',
          baseline: baseRtt.map((r) => percentile(r.ms, p)),
          goal: { on: 'ratio', op: '<=', target: 1.5 },
          note: `${requests} sequential ${REQUEST_BYTES}-byte requests per run to a UDP echo server; lost: deut ${lost(deutRtt)}, chain ${lost(baseRtt)}`,
        }),
      );
    }

    // Row 5: one tunnel's bulk throughput.
    await last.call('next', { next: acker.info.address });
    const deutBulk: BulkResult[] = [];
    const baseBulk: BulkResult[] = [];
    const rate = (r: BulkResult): number => r.bytes / 1e6 / (r.ms / 1000);
    const result = await alternate(
      config.runs,
      async () => {
        const r = await master.call<BulkResult>('bulk', { to: acker.info.address, count: messages, size: BULK_MESSAGE_BYTES, window: BULK_WINDOW });
        deutBulk.push(r);
        return rate(r);
      },
      async () => {
        const r = await client.call<BulkResult>('bulk', { via, count: messages, size: BULK_MESSAGE_BYTES, window: BULK_WINDOW });
        baseBulk.push(r);
        return rate(r);
      },
    );
    config.log('row 5 done');
    const bulkLost = (rs: BulkResult[]): number => rs.reduce((n, r) => n + r.lost, 0);
    rows.push(
      makeRow({
        row: 5,
        name: 'one tunnel bulk',
        size: '16 KiB msgs',
        unit: 'MB/s',
        deut: result.a,
        baselineName: '3-forwarder UDP chain',
        baseline: result.b,
        note: `${messages} messages of 16 KiB per run, ${BULK_WINDOW} unacked at most (deut: 16 cells each); lost: deut ${bulkLost(deutBulk)}, chain ${bulkLost(baseBulk)}`,
      }),
    );
    return rows;
  } finally {
    await stopAll(workers);
  }
}

/**
 * Row 1, relay forwarding: cells per second through one deut relayer process, against a
 * no-crypto Node UDP forwarder written for the benchmark. Both sides get the same sender
 * (ready datagrams sent in bursts, one event-loop turn between bursts), the same 1200-byte
 * datagrams and the same counting sink; only the process in the middle differs.
 *
 * For deut, a master process builds tunnels master → relay → endpoint and seals the cells
 * before the clock starts; then the endpoint process is killed (no DESTROY) and a sink binds
 * its address, so the relay's output is counted without decrypting it, like the forwarder's.
 */
import { parseAddress } from '@deut/common';
import { alternate } from './stats.js';
import { makeRow, type RowResult } from './table.js';
import { hopOf, sleep, startWorker, stopAll, type Worker } from './workers.js';
import type { BenchConfig } from './config.js';

const BURST = 64;

interface SinkReading {
  count: number;
  ms: number;
}

/** Sends `cells` ready datagrams from `sender` and returns what `sink` saw per second. */
async function measure(sender: Worker, sink: Worker, to: string, cells: number, delivered: number[]): Promise<number> {
  await sender.call('prepare', { count: cells, to });
  await sink.call('reset');
  await sender.call('blast', { burst: BURST });
  await sleep(300);
  const reading = await sink.call<SinkReading>('read');
  delivered.push(reading.count / cells);
  if (reading.count < 2 || reading.ms <= 0) return 0;
  return reading.count / (reading.ms / 1000);
}

/** Row 1 at three sizes: tunnels the relay carries, the cells spread over all of them. */
export async function relayRow(config: BenchConfig): Promise<RowResult[]> {
  const sizes = config.quick ? [1, 10, 100] : [1, 100, 1_000];
  const cells = config.quick ? 8_000 : 40_000;
  const rows: RowResult[] = [];
  const baselineWorkers: Worker[] = [];
  try {
    const baselineSink = await startWorker('sink');
    baselineWorkers.push(baselineSink);
    const forwarder = await startWorker('forwarder');
    baselineWorkers.push(forwarder);
    await forwarder.call('next', { next: baselineSink.info.address });
    const client = await startWorker('client');
    baselineWorkers.push(client);
    for (const tunnels of sizes) {
      const workers: Worker[] = [];
      try {
        const relay = await startWorker('deut');
        workers.push(relay);
        const endpoint = await startWorker('deut');
        workers.push(endpoint);
        const master = await startWorker('master');
        workers.push(master);
        const built = await master.call<{ built: number; ms: number }>('build', { hops: [hopOf(relay), hopOf(endpoint)], count: tunnels, concurrency: 32 });
        if (built.built !== tunnels) throw new Error(`only ${built.built} of ${tunnels} tunnels built`);
        const endpointAddress = parseAddress(endpoint.info.address);
        await endpoint.kill('SIGKILL');
        const sink = await startWorker('sink', { host: endpointAddress.host, port: endpointAddress.port });
        workers.push(sink);
        const deutDelivered: number[] = [];
        const baseDelivered: number[] = [];
        const result = await alternate(
          config.runs,
          () => measure(master, sink, sink.info.address, cells, deutDelivered),
          () => measure(client, baselineSink, forwarder.info.address, cells, baseDelivered),
        );
        const pct = (xs: number[]): string => `${Math.round(Math.min(...xs) * 100)}..${Math.round(Math.max(...xs) * 100)}%`;
        config.log(`row 1: ${tunnels} tunnels done (built in ${(built.ms / 1000).toFixed(1)} s)`);
        rows.push(
          makeRow({
            row: 1,
            name: 'relay forwarding',
            size: `${tunnels} tunnels`,
            unit: 'cells/s',
            deut: result.a,
            baselineName: 'UDP forwarder',
            baseline: result.b,
            goal: { on: 'ratio', op: '>=', target: 0.6 },
            note: `${cells} datagrams per run offered in bursts of ${BURST}; delivered: deut ${pct(deutDelivered)}, forwarder ${pct(baseDelivered)}`,
          }),
        );
      } finally {
        await stopAll(workers);
      }
    }
  } finally {
    await stopAll(baselineWorkers);
  }
  return rows;
}

/**
 * Row 4, memory: heap and RSS per tunnel, in the process that carries them, measured after
 * full collections before and after building them. Relayed tunnels: a master process builds
 * master → relay → endpoint and the relay process is measured; endpoint tunnels hold a real
 * UDP port each and the endpoint process is measured. For the largest relayed size the
 * endpoint binds no ports (a stand-in socket), since that many would exceed the descriptor
 * limit and the figure is the relay's. The baseline is read after 200 tunnels, so one-time
 * costs (compiled code, link sessions) are not charged to the tunnels measured; the note of
 * each size gives the slope from the size before, the cost of one more tunnel.
 */
import { makeRow, type RowResult } from './table.js';
import { hopOf, startWorker, stopAll, type Worker } from './workers.js';
import type { BenchConfig } from './config.js';

/** Tunnels built before the baseline reading. */
const WARM_TUNNELS = 200;

interface Memory {
  heapUsed: number;
  arrayBuffers: number;
  rss: number;
  transit: number;
  endpoints: number;
}

interface Point {
  tunnels: number;
  relay: Memory;
  endpoint: Memory;
}

/** Builds up to each size in turn and measures both hop processes at each. */
async function grow(sizes: readonly number[], nullExits: boolean, config: BenchConfig): Promise<{ base: { relay: Memory; endpoint: Memory }; points: Point[] }> {
  const workers: Worker[] = [];
  try {
    const relay = await startWorker('deut');
    workers.push(relay);
    const endpoint = await startWorker('deut', { nullExits });
    workers.push(endpoint);
    const master = await startWorker('master');
    workers.push(master);
    // Some tunnels first, so that link sessions, table growth steps and the optimised code of
    // the build path are in the baseline reading, not charged to the tunnels measured.
    await master.call('build', { hops: [hopOf(relay), hopOf(endpoint)], count: WARM_TUNNELS, concurrency: 64 });
    const base = { relay: await relay.call<Memory>('memory'), endpoint: await endpoint.call<Memory>('memory') };
    const points: Point[] = [];
    // Tunnels built after the baseline reading.
    let have = 0;
    for (const size of sizes) {
      const built = await master.call<{ built: number; failed: number; ms: number }>('build', { hops: [hopOf(relay), hopOf(endpoint)], count: size - have, concurrency: 64 });
      have += built.built;
      config.log(`row 4: ${have} tunnels (${built.failed} failed; ${Math.round(built.built / (built.ms / 1000))} builds/s)`);
      points.push({ tunnels: have, relay: await relay.call<Memory>('memory'), endpoint: await endpoint.call<Memory>('memory') });
    }
    return { base, points };
  } finally {
    await stopAll(workers);
  }
}

const KB = 1024;

/** Growth per tunnel, in KB, from `base` to `now`. */
function perTunnel(tunnels: number, now: Memory, base: Memory): { tunnels: number; heap: number; buffers: number; rss: number; held: number } {
  return {
    tunnels,
    heap: (now.heapUsed - base.heapUsed) / KB / tunnels,
    buffers: (now.arrayBuffers - base.arrayBuffers) / KB / tunnels,
    rss: (now.rss - base.rss) / KB / tunnels,
    held: now.transit,
  };
}

/** Row 4: relayed tunnels at three sizes, endpoint tunnels at two or three. */
export async function memoryRow(config: BenchConfig): Promise<RowResult[]> {
  const rows: RowResult[] = [];
  const endpointSizes = config.quick ? [250, 500, 1_000] : [1_000, 5_000, 10_000];
  const real = await grow(endpointSizes, false, config);
  const relayPoints = real.points.map((p) => perTunnel(p.tunnels, p.relay, real.base.relay));
  if (!config.quick) {
    const big = await grow([100_000], true, config);
    const p = big.points[0]!;
    relayPoints.push(perTunnel(p.tunnels, p.relay, big.base.relay));
  }
  let previous: { tunnels: number; total: number } | undefined;
  for (const p of relayPoints) {
    const total = (p.heap + p.buffers) * p.tunnels;
    const slope = previous === undefined || previous.tunnels >= p.tunnels ? undefined : (total - previous.total) / (p.tunnels - previous.tunnels);
    previous = { tunnels: p.tunnels, total };
    rows.push(
      makeRow({
        row: 4,
        name: 'memory per relayed tunnel',
        size: `${p.tunnels} tunnels`,
        unit: 'KB',
        deut: [p.heap + p.buffers],
        goal: { on: 'value', op: '<=', target: 1 },
        note:
          `JS heap ${p.heap.toFixed(2)} KB + typed-array stores ${p.buffers.toFixed(2)} KB; RSS ${p.rss.toFixed(2)} KB; ${p.held} transit entries held` +
          `${slope === undefined ? '' : `; slope from the size before ${slope.toFixed(2)} KB/tunnel`}; one measurement (memory is not CPU-noisy)`,
      }),
    );
  }
  for (const point of real.points) {
    const p = perTunnel(point.tunnels, point.endpoint, real.base.endpoint);
    rows.push(
      makeRow({
        row: 4,
        name: 'memory per endpoint tunnel',
        size: `${p.tunnels} tunnels`,
        unit: 'KB',
        deut: [p.heap + p.buffers],
        note: `JS heap ${p.heap.toFixed(2)} KB + typed-array stores ${p.buffers.toFixed(2)} KB; RSS ${p.rss.toFixed(2)} KB (a bound UDP socket each); one measurement`,
      }),
    );
  }
  const lastPoint = real.points[real.points.length - 1]!;
  rows.push(
    makeRow({
      row: 4,
      name: 'endpoint ports held on one node',
      size: `${lastPoint.tunnels + WARM_TUNNELS} asked`,
      unit: 'ports',
      deut: [lastPoint.endpoint.endpoints],
      ...(config.quick ? { note: 'quick run: only this many asked; the goal of 10,000 is judged by the full run' } : { goal: { on: 'value', op: '>=', target: 10_000 } }),
    }),
  );
  return rows;
}

/**
 * Heap measurements for the hardening tests: a forced full GC (exposed at run time, so the
 * test files need no special node flags) and the least-squares slope of heap samples.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as (options?: { type: 'major' }) => void;

/**
 * Used heap bytes after letting pending callbacks run and collecting garbage twice, less
 * the code spaces: V8 keeps compiling and re-optimising hot functions for minutes, which
 * grows code and deopt data that is not the program's data (a heap snapshot diff of the
 * soak shows nothing else growing once the code is left out).
 */
export async function heapAfterGc(): Promise<number> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  gc();
  gc();
  let code = 0;
  for (const space of v8.getHeapSpaceStatistics()) if (space.space_name.startsWith('code')) code += space.space_used_size;
  return process.memoryUsage().heapUsed - code;
}

/** Least-squares slope of `ys` over `xs` (units of y per unit of x). */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Describes bytes in MiB for diagnostics. */
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;

/**
 * Live objects by constructor name, from a heap snapshot taken after a full GC. Precise where
 * byte counts are noisy: a leak of one object per tunnel or per request shows as a count
 * that keeps climbing.
 */
export async function objectCounts(): Promise<Map<string, number>> {
  await heapAfterGc();
  const chunks: Buffer[] = [];
  for await (const chunk of v8.getHeapSnapshot()) chunks.push(chunk as Buffer);
  const snapshot = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const counts = new Map<string, number>();
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    if (types[snapshot.nodes[i + typeAt]!] !== 'object') continue;
    const name = snapshot.strings[snapshot.nodes[i + nameAt]!]!;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return counts;
}

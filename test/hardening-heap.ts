/**
 * Heap measurements for the hardening tests: a forced full GC (exposed at run time, so the
 * test files need no special node flags) and the least-squares slope of heap samples.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as (options?: { type: 'major' }) => void;

/** Used heap bytes after letting pending callbacks run and collecting garbage twice. */
export async function heapAfterGc(): Promise<number> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  gc();
  gc();
  return process.memoryUsage().heapUsed;
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

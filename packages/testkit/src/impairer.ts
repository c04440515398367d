/**
 * Link impairment for the namespace mesh: what to impair (delay, jitter, loss, duplication,
 * reordering), as netem arguments where the kernel has netem, and the userspace impairer
 * (impair/deut-impair.c on libnetfilter_queue) built with gcc where it has not.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** What a host's incoming UDP suffers. Probabilities are in 0..1. */
export interface Impairment {
  /** Added one-way delay. @default 0 */
  readonly delayMs?: number;
  /** Uniform jitter of the delay, ± this much. @default 0 */
  readonly jitterMs?: number;
  /** Share of datagrams dropped. @default 0 */
  readonly loss?: number;
  /** Share of datagrams delivered twice. @default 0 */
  readonly duplicate?: number;
  /** Share of datagrams that skip the delay and overtake the held ones (netem's meaning). @default 0 */
  readonly reorder?: number;
  /** Seed of the impairer's decisions (nfqueue only; netem has none). @default the host's index */
  readonly seed?: number;
}

/** The source of the userspace impairer, shipped with testkit. */
export const IMPAIRER_SOURCE = fileURLToPath(new URL('../../impair/deut-impair.c', import.meta.url));

/** Throws unless every field of `spec` is in range. */
export function checkImpairment(spec: Impairment): void {
  for (const key of ['loss', 'duplicate', 'reorder'] as const) {
    const p = spec[key] ?? 0;
    if (!(p >= 0 && p <= 1)) throw new RangeError(`impairment ${key} must be in 0..1, got ${p}`);
  }
  for (const key of ['delayMs', 'jitterMs'] as const) {
    const ms = spec[key] ?? 0;
    if (!(ms >= 0 && ms <= 60_000)) throw new RangeError(`impairment ${key} must be in 0..60000, got ${ms}`);
  }
  if ((spec.jitterMs ?? 0) > (spec.delayMs ?? 0)) throw new RangeError('impairment jitterMs cannot exceed delayMs');
}

/** `tc qdisc ... netem` arguments for `spec`. */
export function netemArgs(spec: Impairment): string[] {
  const percent = (p: number): string => `${(p * 100).toFixed(3)}%`;
  const args: string[] = [];
  if ((spec.delayMs ?? 0) > 0) args.push('delay', `${spec.delayMs}ms`, ...((spec.jitterMs ?? 0) > 0 ? [`${spec.jitterMs}ms`] : []));
  if ((spec.loss ?? 0) > 0) args.push('loss', percent(spec.loss ?? 0));
  if ((spec.duplicate ?? 0) > 0) args.push('duplicate', percent(spec.duplicate ?? 0));
  if ((spec.reorder ?? 0) > 0 && (spec.delayMs ?? 0) > 0) args.push('reorder', percent(spec.reorder ?? 0));
  return args;
}

/** The impairer's command-line arguments for `spec`, serving NFQUEUE `queue`. */
export function impairerArgs(spec: Impairment, queue: number, defaultSeed: number): string[] {
  return [
    '--queue', String(queue),
    '--delay-ms', String(spec.delayMs ?? 0),
    '--jitter-ms', String(spec.jitterMs ?? 0),
    '--loss', String(spec.loss ?? 0),
    '--duplicate', String(spec.duplicate ?? 0),
    '--reorder', String(spec.reorder ?? 0),
    '--seed', String(spec.seed ?? defaultSeed),
  ];
}

let built: Promise<string> | undefined;

/**
 * Path of the compiled impairer, compiling it once (gcc, pkg-config libnetfilter_queue)
 * into the temp directory under a name that carries the source's hash: a changed source is
 * rebuilt, and concurrent test processes each rename a complete binary into place.
 */
export function impairerBinary(): Promise<string> {
  built ??= (async () => {
    const source = readFileSync(IMPAIRER_SOURCE);
    const binary = join(tmpdir(), `deut-impair-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`);
    if (existsSync(binary)) return binary;
    const flags = (await run('pkg-config', ['--cflags', '--libs', 'libnetfilter_queue'])).stdout.trim().split(/\s+/).filter((f) => f !== '');
    const partial = `${binary}.${process.pid}.tmp`;
    try {
      await run('gcc', ['-O2', '-Wall', '-o', partial, IMPAIRER_SOURCE, ...flags]);
      renameSync(partial, binary);
    } finally {
      rmSync(partial, { force: true });
    }
    return binary;
  })();
  // A failed build is not cached: the next call tries again (say, after apt-get install).
  built.catch(() => {
    built = undefined;
  });
  return built;
}

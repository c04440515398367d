/**
 * Starting and talking to benchmark worker processes (worker.ts), each on its own loopback
 * address, and making sure none outlives the benchmark, whatever happens.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;

/** A running worker process. */
export interface Worker {
  readonly role: string;
  /** What the worker reported when ready: its address, and its public key for deut nodes. */
  readonly info: { address: string; publicKey?: string };
  readonly pid: number;
  /** Runs one command in the worker and resolves with its answer. */
  call<T = unknown>(cmd: string, args?: Record<string, unknown>): Promise<T>;
  /** Ends the worker: SIGKILL is a crash (no DESTROY sent), as a test of abrupt loss wants. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

let nextHost = 1;

/** A fresh loopback host for the next worker: 127.77.x.y. */
export function loopbackHost(): string {
  const n = nextHost++;
  return `127.77.${(n >> 8) & 0xff}.${n & 0xff}`;
}

/** Starts a worker in `role` with `options` and waits until it reports ready. */
export function startWorker(role: string, options: Record<string, unknown> = {}): Promise<Worker> {
  const child = fork(WORKER, [role, JSON.stringify({ host: loopbackHost(), ...options })], {
    execArgv: ['--expose-gc', ...(process.env.DEUT_BENCH_PROFILE === role ? ['--cpu-prof', '--cpu-prof-dir=bench/profiles'] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  live.add(child);
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextId = 1;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', (code, signal) => {
    live.delete(child);
    for (const p of pending.values()) p.reject(new Error(`${role} worker exited (${String(code ?? signal)})`));
    pending.clear();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${role} worker did not start`));
    }, START_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`${role} worker exited before it was ready`));
    });
    child.on('message', (message: { ready?: Worker['info']; id?: number; result?: unknown; error?: string }) => {
      if (message.ready !== undefined) {
        clearTimeout(timer);
        resolve({
          role,
          info: message.ready,
          pid: child.pid ?? -1,
          call: <T>(cmd: string, args: Record<string, unknown> = {}) =>
            new Promise<T>((res, rej) => {
              const id = nextId++;
              pending.set(id, { resolve: res as (value: unknown) => void, reject: rej });
              child.send({ id, cmd, args });
            }),
          kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            await exited;
          },
        });
        return;
      }
      const p = message.id === undefined ? undefined : pending.get(message.id);
      if (p === undefined || message.id === undefined) return;
      pending.delete(message.id);
      if (message.error !== undefined) p.reject(new Error(`${role}: ${message.error}`));
      else p.resolve(message.result);
    });
  });
}

/** Stops every worker in `workers` (SIGTERM: a profiled worker writes its profile), waiting for each to be gone. */
export async function stopAll(workers: readonly Worker[]): Promise<void> {
  await Promise.all(workers.map((w) => w.kill('SIGTERM')));
}

/** A path hop as the master worker's `build` command takes it. */
export function hopOf(worker: Worker): { address: string; publicKey: string } {
  if (worker.info.publicKey === undefined) throw new Error(`${worker.role} worker has no public key`);
  return { address: worker.info.address, publicKey: worker.info.publicKey };
}

/** Waits `ms` milliseconds (a ref'd timer: the benchmark waits on it). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

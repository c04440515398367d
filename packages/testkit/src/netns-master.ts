/**
 * The test's side of a fault-scenario master (netns-master-process.ts): starts the process in
 * a namespace of a {@link NetnsMesh} and turns its stdin/stdout protocol into async calls.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { NetnsMasterCommand, NetnsMasterOptions, NetnsMasterStatus, NetnsTrafficResult } from './netns-master-process.js';
import type { NetnsHost, NetnsMesh } from './netns.js';

export type { NetnsMasterOptions, NetnsMasterStatus, NetnsTrafficResult } from './netns-master-process.js';

const PROCESS = fileURLToPath(new URL('./netns-master-process.js', import.meta.url));

type Distribute<T> = T extends { id: number } ? Omit<T, 'id'> : never;

/** A master process in a namespace, driven by the test. */
export class NetnsMaster {
  readonly host: NetnsHost;
  readonly #child: ChildProcess;
  readonly #waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #nextId = 1;
  #stderr = '';

  private constructor(host: NetnsHost, child: ChildProcess) {
    this.host = host;
    this.#child = child;
    child.stderr?.on('data', (c: Buffer) => (this.#stderr += c.toString()));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let answer: { id: number; ok: boolean; result?: unknown; error?: string };
      try {
        answer = JSON.parse(line) as typeof answer;
      } catch {
        return;
      }
      const waiter = this.#waiting.get(answer.id);
      if (waiter === undefined) return;
      this.#waiting.delete(answer.id);
      if (answer.ok) waiter.resolve(answer.result);
      else waiter.reject(new Error(answer.error ?? 'failed'));
    });
    child.once('exit', (code) => {
      for (const waiter of this.#waiting.values()) waiter.reject(new Error(`the master in ${host.ns} exited (${code}): ${this.#stderr}`));
      this.#waiting.clear();
    });
  }

  /** Starts a master on `host` (port 7500); resolves once its node runs. */
  static async start(mesh: NetnsMesh, host: NetnsHost, options: Omit<NetnsMasterOptions, 'listen'>): Promise<NetnsMaster> {
    const child = mesh.spawn(host, [process.execPath, PROCESS, JSON.stringify({ ...options, listen: `${host.address}:7500` })], { stdin: true });
    const master = new NetnsMaster(host, child);
    await new Promise<void>((resolve, reject) => {
      master.#waiting.set(0, { resolve: () => resolve(), reject });
    });
    return master;
  }

  status(): Promise<NetnsMasterStatus> {
    return this.#call({ op: 'status' }) as Promise<NetnsMasterStatus>;
  }

  put(key: string, value: string): Promise<{ stored: number }> {
    return this.#call({ op: 'put', key, value }) as Promise<{ stored: number }>;
  }

  get(key: string): Promise<string[]> {
    return this.#call({ op: 'get', key }) as Promise<string[]>;
  }

  findNode(dhtId: string): Promise<Array<{ id: string; address: string }>> {
    return this.#call({ op: 'find-node', dhtId }) as Promise<Array<{ id: string; address: string }>>;
  }

  /** Issues `perTick` requests every `tickMs` to `to` (all tried by each request) until stopped. */
  async startTraffic(to: string[], options: { perTick: number; tickMs: number; timeoutMs: number }): Promise<void> {
    await this.#call({ op: 'traffic-start', to, ...options });
  }

  /** Stops the traffic and resolves once every request it issued has settled. */
  stopTraffic(): Promise<NetnsTrafficResult> {
    return this.#call({ op: 'traffic-stop' }) as Promise<NetnsTrafficResult>;
  }

  /** Ends the process (closing stdin makes it close its node and exit). */
  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.stdin?.end();
    const killer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  }

  #call(command: Distribute<NetnsMasterCommand>): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#child.stdin?.write(`${JSON.stringify({ ...command, id })}\n`);
    });
  }
}

/**
 * `deut scenario dht-pair`: one of two masters that prove to each other, through the DHT
 * and their tunnels, that the mesh works. Each puts `scenario:<name>`, waits to find
 * `scenario:<peer>`, puts `scenario:<name>:done`, and waits for `scenario:<peer>:done`.
 * Finding the peer's done marker proves both directions: the peer only writes it after it
 * found us. With `--echo HOST:PORT` it also sends a datagram there and waits for the echo.
 * The docker-compose mesh and the network-namespace mesh run it in their master nodes.
 */
import { addressKey, type Logger, type UdpAddress } from '@deut/common';
import type { DeutNode } from '@deut/node';
import type { RunConfig } from './config.js';
import { EXIT, startConfiguredNode } from './daemon.js';
import { createCliLogger } from './logging.js';
import { nextDatagramFrom } from './routes.js';

/** Options of {@link runDhtPairScenario}. */
export interface DhtPairOptions {
  readonly name: string;
  readonly peer: string;
  readonly echo: UdpAddress | undefined;
  readonly timeoutMs: number;
}

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

const startedAt = Date.now();

/** One progress line, with the seconds since the process started: where a slow run spent its time. */
function say(name: string, message: string): void {
  process.stdout.write(`scenario ${name} [${((Date.now() - startedAt) / 1000).toFixed(1)} s]: ${message}\n`);
}

async function pause(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Retries `attempt` every 2 s until it returns true or the deadline passes. */
async function eventually(deadline: number, attempt: () => Promise<boolean>, logger: Logger): Promise<boolean> {
  while (Date.now() < deadline) {
    try {
      if (await attempt()) return true;
    } catch (error) {
      logger.debug('scenario: attempt failed', { error: String(error) });
    }
    await pause(2_000);
  }
  return false;
}

async function echoThrough(node: DeutNode, to: UdpAddress, deadline: number): Promise<boolean> {
  const payload = `echo-${Date.now()}`;
  const reply = nextDatagramFrom(node, to, Math.max(1, deadline - Date.now()));
  reply.catch(() => undefined);
  await node.send(to, new TextEncoder().encode(payload));
  // A late echo of an earlier attempt is not this one's: the caller tries again.
  return reply.then((r) => text(r.data) === payload, () => false);
}

/** Runs the scenario; resolves with the exit code. */
export async function runDhtPairScenario(config: RunConfig, options: DhtPairOptions): Promise<number> {
  const logs = createCliLogger({ level: config.logLevel, unsafe: config.unsafeLogs, ...(config.logFormat !== undefined ? { format: config.logFormat } : {}) });
  const logger = logs.logger;
  const deadline = Date.now() + options.timeoutMs;
  const keep = setInterval(() => undefined, 1_000);
  let node: DeutNode | undefined;
  try {
    node = await startConfiguredNode({ ...config, master: true, dht: true }, logger);
    const started = node;
    say(options.name, `node on udp ${addressKey(started.address)}; building ${config.tunnels} tunnels`);
    const tunnelsUp = await eventually(deadline, async () => (await Promise.race([started.tunnels.ready(config.tunnels).then(() => true), pause(2_000).then(() => false)])), logger);
    if (!tunnelsUp) {
      // Say why: the pool's build counters, the peers known, and the link's handshakes.
      const stats = started.stats();
      throw new Error(`tunnels did not come up: pool ${JSON.stringify(stats.pool)}; peers ${stats.peers}; node ${JSON.stringify(stats.counters)}; link ${JSON.stringify(stats.link.counters)}`);
    }
    const builds = started.stats().pool?.counters ?? {};
    say(options.name, `${started.tunnels.list().length} tunnels up after ${builds['builds-started'] ?? 0} builds (${builds['builds-failed'] ?? 0} failed), endpoints ${started.tunnels.list().map((t) => addressKey(t.endpoint)).join(', ')}`);
    const put = (key: string): Promise<boolean> => started.dht.put(key, new TextEncoder().encode(`from ${options.name}`), { timeoutMs: 20_000 }).then((r) => r.stored > 0);
    const found = async (key: string): Promise<boolean> => (await started.dht.get(key, { timeoutMs: 20_000 })).values.length > 0;
    const steps: Array<[string, () => Promise<boolean>]> = [
      [`stored scenario:${options.name}`, () => put(`scenario:${options.name}`)],
      [`found scenario:${options.peer}`, () => found(`scenario:${options.peer}`)],
      [`stored scenario:${options.name}:done`, () => put(`scenario:${options.name}:done`)],
      [`found scenario:${options.peer}:done: both directions work`, () => found(`scenario:${options.peer}:done`)],
    ];
    for (const [what, attempt] of steps) {
      if (!(await eventually(deadline, attempt, logger))) throw new Error(`timed out before: ${what}`);
      say(options.name, what);
    }
    if (options.echo !== undefined) {
      const echoTarget = options.echo;
      if (!(await eventually(deadline, () => echoThrough(started, echoTarget, Math.min(deadline, Date.now() + 3_000)), logger))) throw new Error('no echo came back');
      say(options.name, `echo from ${addressKey(echoTarget)} came back through the tunnels`);
    }
    say(options.name, 'PASS');
    return EXIT.ok;
  } catch (error) {
    say(options.name, `FAIL: ${error instanceof Error ? error.message : String(error)}`);
    return EXIT.failure;
  } finally {
    clearInterval(keep);
    await node?.close();
    await logs.close();
  }
}

/**
 * `deut run`: one node with its control API, optional metrics endpoint and logs, until a
 * signal. SIGINT/SIGTERM tear down every tunnel (TunnelDestroy), close every port and
 * socket, flush the logs and exit 0; a second signal exits at once.
 */
import { writeFile } from 'node:fs/promises';
import { addressKey, DeutError, type Logger, type UdpAddress } from '@deut/common';
import { KnownPeers } from '@deut/link';
import { DeutNode, formatHeartbeat, formatMilestone, type Heartbeat, type ProgressMilestone } from '@deut/node';
import type { RunConfig } from './config.js';
import { startControlServer } from './control-server.js';
import { createCliLogger, OwnSetting } from './logging.js';
import { createNodeMetrics, serveMetrics } from './metrics.js';
import { loadOrCreateKey, startPublicDht } from './public-dht.js';
import { controlRoutes } from './routes.js';

/** Exit codes of the `deut` command. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/**
 * Starts the node `config` describes. The node key is read from `keyFile`, created there
 * on first start (0600), or, without a key file, fresh and marked not to be pinned.
 */
export async function startConfiguredNode(config: RunConfig, logger: Logger, knownPeers?: KnownPeers): Promise<DeutNode> {
  const identity = config.keyFile === undefined ? undefined : await loadOrCreateKey(config.keyFile, logger, 'node');
  return DeutNode.start({
    listen: config.listen,
    bootstrap: config.bootstrap,
    master: config.master,
    tunnels: config.tunnels,
    hops: config.hops,
    fanout: config.fanout,
    pathSelection: config.pathSelection,
    relay: config.relay,
    allowPrivateExits: config.allowPrivateExits,
    allowSameSubnet: config.allowSameSubnet,
    ...(identity !== undefined ? { identity } : {}),
    ...(knownPeers !== undefined ? { knownPeers } : config.knownPeers !== undefined ? { knownPeers: KnownPeers.load(config.knownPeers) } : {}),
    ...(config.dht ? { dht: { bootstrap: config.dhtBootstrap } } : {}),
    logger,
  });
}

/**
 * Runs the daemon until SIGINT/SIGTERM. Returns the exit code; user mistakes found while
 * starting (unreadable key file, port in use, ...) are one line on stderr, never a stack.
 */
export async function runDaemon(config: RunConfig): Promise<number> {
  const logs = createCliLogger({
    level: config.logLevel,
    unsafe: config.unsafeLogs,
    ...(config.logFormat !== undefined ? { format: config.logFormat } : {}),
  });
  const logger = logs.logger;
  const closeLogs = (): Promise<void> => logs.close();
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    for (const step of cleanups.reverse()) await step().catch((error: unknown) => logger.warn('shutdown step failed', { error: String(error) }));
    cleanups.length = 0;
  };
  try {
    const knownPeers = config.knownPeers !== undefined ? KnownPeers.load(config.knownPeers) : undefined;
    const node = await binding('--listen', config.listen, () => startConfiguredNode(config, logger, knownPeers));
    cleanups.push(logProgress(node, logger));
    const stopReloading = reloadOnHangup(logger, knownPeers);
    cleanups.push(() => Promise.resolve(stopReloading()));
    cleanups.push(() => node.close());
    const publicDht = config.dhtListen === undefined ? undefined : await binding('--dht-listen', config.dhtListen, () => startPublicDht(config.dhtListen!, config.dhtKeyFile, config.dhtBootstrap, logger));
    if (publicDht !== undefined) cleanups.push(() => publicDht.close());
    // Written before the control API answers, so a healthcheck that passes means the file is there.
    if (publicDht !== undefined && config.dhtContactFile !== undefined) await writeFile(config.dhtContactFile, `${publicDht.contact}\n`);
    const roles = { relay: config.relay, master: config.master, dht: config.dht };
    const control = await binding('--control', config.control, () =>
      startControlServer({ listen: config.control, file: config.controlFile, routes: controlRoutes({ node, startedAt: Date.now(), roles, publicDht }) }),
    );
    cleanups.push(() => control.close());
    let metricsAddress: string | undefined;
    if (config.metrics !== undefined) {
      const metrics = createNodeMetrics(node, { processMetrics: true, ...(publicDht !== undefined ? { publicDht: publicDht.dht } : {}) });
      const server = await binding('--metrics', config.metrics, () => serveMetrics(config.metrics!, metrics, { logger })).catch((error: unknown) => {
        metrics.close();
        throw error;
      });
      metricsAddress = addressKey(server.address);
      cleanups.push(async () => {
        await server.close();
        metrics.close();
      });
    }
    // The one line an operator needs at start; everything else is in `deut status`.
    process.stdout.write(
      `deut ${[roles.relay ? 'relay' : '', roles.master ? 'master' : '', roles.dht ? 'dht' : ''].filter(Boolean).join('+')} node on udp ${addressKey(node.address)}; ` +
        `control ${addressKey(control.address)}${metricsAddress !== undefined ? `; metrics http://${metricsAddress}/metrics` : ''}\n`,
    );
    if (publicDht !== undefined) process.stdout.write(`public dht contact ${publicDht.contact}\n`);
    if (config.dht && config.dhtBootstrap.length === 0) {
      logger.warn('dht: no --dht-bootstrap given, so this node knows no DHT node to join through and puts will store nowhere; name one as <public key hex>@HOST:PORT (a node started with --dht-listen prints its contact)');
    }
    // Addresses are scrubbed from logs unless --unsafe-logs; the operator sees them on stdout and in `deut status`.
    logger.info('node started', { roles: Object.entries(roles).filter(([, on]) => on).map(([r]) => r).join(','), address: addressKey(node.address), control: addressKey(control.address) });
    await waitForSignal(logger);
    await cleanup();
    logger.info('stopped: tunnels destroyed, ports closed');
    await closeLogs();
    return EXIT.ok;
  } catch (error) {
    await cleanup();
    const message = error instanceof DeutError || isSystemError(error) ? (error as Error).message : String(error);
    process.stderr.write(`deut run: ${message}\n`);
    // A port that cannot be bound is logged with its flag and address even in safe logs:
    // the address is the operator's own setting (given on the command line, in the config
    // file or the environment, and printed on stdout once the daemon runs), not a peer's,
    // and a start-up error that hides it from that very operator only sends them guessing.
    if (error instanceof BindError) logger.error('start failed', { flag: error.flag, listen: new OwnSetting(error.listen), error: error.reason });
    else logger.error('start failed', { error: message });
    await closeLogs();
    return error instanceof DeutError && error.kind === 'config' ? EXIT.usage : EXIT.failure;
  }
}

/** What an operator can do about each errno of a failed bind. */
const BIND_ERRNOS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use: another process (another deut daemon?) has that port; stop it or pick another port',
  EACCES: 'permission denied: ports below 1024 need privileges',
  EADDRNOTAVAIL: 'address not available: no interface of this host has that IP address',
};

/** A port of the daemon that could not be bound, with the flag that named it. */
class BindError extends DeutError {
  constructor(
    readonly flag: string,
    readonly listen: string,
    readonly reason: string,
    cause: unknown,
  ) {
    super('transport', 'BIND_FAILED', `${flag} ${listen}: ${reason}`, { cause });
  }
}

/**
 * Runs `start`, which binds the port `flag` configured; a bind or listen error from it (at
 * any depth of causes) becomes a {@link BindError} naming `flag` and `address`. Other errors
 * (an unreadable key file, say) pass as they are.
 */
async function binding<T>(flag: string, address: UdpAddress, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (error) {
    let errno: NodeJS.ErrnoException | undefined;
    for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 5 && errno === undefined; cause = cause.cause, depth++) {
      const syscall = (cause as NodeJS.ErrnoException).syscall;
      if ((syscall === 'bind' || syscall === 'listen') && typeof (cause as NodeJS.ErrnoException).code === 'string') errno = cause;
    }
    if (errno === undefined) throw error;
    const code = errno.code!;
    throw new BindError(flag, addressKey(address), BIND_ERRNOS[code] ?? `cannot bind (${code})`, error);
  }
}

function isSystemError(error: unknown): boolean {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string';
}

/**
 * SIGHUP reloads what can change under a running daemon, as Tor and i2pd do: the known-peers
 * file (so `deut pins remove` takes effect without a restart). Everything else in the
 * configuration takes effect at the next start, and the log line says so. Logs go to stdout
 * and stderr, so there is no log file to re-open. Returns the function that stops listening.
 */
function reloadOnHangup(logger: Logger, knownPeers: KnownPeers | undefined): () => void {
  const onHangup = (): void => {
    if (knownPeers === undefined) {
      logger.info('SIGHUP: nothing to reload (no --known-peers file); other settings take effect at restart');
      return;
    }
    try {
      const pins = knownPeers.reload();
      logger.info(`SIGHUP: reloaded the known-peers file (${pins} pins); other settings take effect at restart`);
    } catch (error) {
      logger.warn(`SIGHUP: the known-peers file was not reloaded, the pins in force stay: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}

/** Resolves on the first SIGINT/SIGTERM; a second one exits the process at once. */
function waitForSignal(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (received) {
        process.stderr.write(`deut run: ${signal} again, exiting at once\n`);
        process.exit(EXIT.failure);
      }
      received = true;
      logger.info('shutting down', { signal });
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * Logs the node's start-up milestones (Tor's "Bootstrapped N%" lines) and its heartbeat at
 * info. Milestones passed inside start() are replayed first, so the log shows every one.
 * Returns the cleanup that stops listening.
 */
function logProgress(node: DeutNode, logger: Logger): () => Promise<void> {
  const onMilestone = (m: ProgressMilestone): void => logger.info(formatMilestone(m), { percent: m.percent, phase: m.phase });
  const onHeartbeat = (beat: Heartbeat): void => logger.info(formatHeartbeat(beat));
  for (const m of node.progress().passed) onMilestone(m);
  node.on('progress', onMilestone);
  node.on('heartbeat', onHeartbeat);
  return () => {
    node.off('progress', onMilestone);
    node.off('heartbeat', onHeartbeat);
    return Promise.resolve();
  };
}

/**
 * Prometheus metrics of one node (`deut run --metrics HOST:PORT`, README.md), with
 * prom-client. Most values come from `node.stats()` snapshots read at scrape time: counters
 * there are monotonic, so they are exposed as Prometheus counters whose `collect()` sets
 * the value from the snapshot; table sizes are gauges. Build latencies and exit refusals
 * come from the node's events.
 *
 * INVARIANT: every label value is a bounded enum or a code chosen by our own code (a drop
 * reason); never an address, key or id. Anything else becomes 'other'.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DeutError, silentLogger, type CounterSnapshot, type Logger } from '@deut/common';
import { DHT_RPC_DROP_REASONS, type DhtNode, type DhtRpcCounter } from '@deut/dht';
import { LINK_DROP_REASONS } from '@deut/link';
import { ENDPOINT_EXITS_DROP_REASONS, EXIT_REFUSED, MESSENGER_DROP_REASONS, NODE_DROP_REASONS, exitRefusedReasonName, type DeutNode } from '@deut/node';
import { BUILD_REFUSAL_CAUSES, TUNNEL_DROP_REASONS } from '@deut/tunnel';
import { DATAGRAM_BYTES } from '@deut/wire';
import { isLoopbackIp } from './control.js';
import { DEUT_VERSION } from './routes.js';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The metrics of one node. */
export interface NodeMetrics {
  /** This node's registry (never prom-client's global one). */
  readonly registry: Registry;
  /** Text exposition (refreshes from node.stats() first). */
  scrape(): Promise<string>;
  /** Detaches the node listeners; later scrapes still read the node's stats. */
  close(): void;
}

/** Options of {@link createNodeMetrics}. */
export interface NodeMetricsOptions {
  /**
   * Add prom-client's default process metrics (CPU, memory, event loop lag, GC) to the
   * registry, under their standard unprefixed names (`process_cpu_seconds_total`,
   * `nodejs_eventloop_lag_seconds`, ...): they describe the process, not the node, and stock
   * Node.js dashboards and alerts find them there; `deut run` is one node per process, so
   * nothing else claims them. They install process-wide observers that are never removed:
   * once per process.
   * @default false
   */
  readonly processMetrics?: boolean;
  /** The public DHT node of `deut run --dht-listen`, if any: its drops join deut_drops_total as layer "public-dht". */
  readonly publicDht?: DhtNode;
}

/** Build latency buckets (seconds), 1 ms to 10 s. */
export const BUILD_SECONDS_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * What a drop reason must look like to be a label value: a short lowercase code. Wire codes
 * keep their underscore (`decode-bad_length`), as in `deut status`.
 */
const REASON_LABEL = /^[a-z][a-z0-9_-]{0,63}$/;
const HEX_RUN = /[0-9a-f]{16,}/;

/** A drop reason as a label value: our own code, or 'other' for anything that is not one. */
export function reasonLabel(reason: string): string {
  return REASON_LABEL.test(reason) && !HEX_RUN.test(reason) ? reason : 'other';
}

type NodeStats = ReturnType<DeutNode['stats']>;
type DhtStats = ReturnType<DhtNode['stats']>;

interface Snapshot {
  readonly node: NodeStats;
  readonly dht: DhtStats | undefined;
}

/** A counter value: absent, negative or non-finite values count as 0. */
function valueOf(value: number | undefined): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : 0;
}

/**
 * A counter from a snapshot, by a name of the snapshot's own union: a counter renamed in its
 * package fails the build here instead of exporting a metric stuck at 0. NoInfer: the name
 * must not widen the union it is checked against.
 */
function count<K extends string>(counters: CounterSnapshot<K> | undefined, name: NoInfer<K>): number {
  return valueOf(counters?.[name]);
}

/** Every counter of a snapshot whose name starts with `prefix`, by the rest of its name. */
function* countersAfter(prefix: string, counters: CounterSnapshot<string> | undefined): Generator<[rest: string, value: number]> {
  if (counters === undefined) return;
  for (const [name, value] of Object.entries<number | undefined>(counters)) if (name.startsWith(prefix)) yield [name.slice(prefix.length), valueOf(value)];
}

/** Every `drop:<reason>` counter of one layer, its known reasons first (at 0 until counted). */
function* drops(layer: string, known: readonly string[], counters: CounterSnapshot<string> | undefined): Generator<[{ layer: string; reason: string }, number]> {
  for (const reason of known) yield [{ layer, reason: reasonLabel(reason) }, 0];
  for (const [reason, value] of countersAfter('drop:', counters)) yield [{ layer, reason: reasonLabel(reason) }, value];
}

/**
 * What the crypto package runs on: libsodium's WebAssembly build, the only one it supports
 * (scratch.ts calls the module's exports on its heap).
 */
const CRYPTO_BACKEND = 'wasm';

/** The node's DHT, or undefined when it runs without one. */
function dhtOf(node: DeutNode): DhtNode | undefined {
  try {
    return node.dht;
  } catch (error) {
    if (error instanceof DeutError && error.code === 'DHT_OFF') return undefined;
    throw error;
  }
}

/**
 * Creates the metrics of `node` in a fresh registry: tunnels by role, builds and their
 * latency, relayed cells, datagrams, drops by layer and reason, sessions, peers, endpoint
 * ports, exit refusals, and the DHT's lookups and tables when the node runs one.
 */
export function createNodeMetrics(node: DeutNode, options: NodeMetricsOptions = {}): NodeMetrics {
  const registry = new Registry();
  const registers = [registry];
  const dht = dhtOf(node);

  // One snapshot per scrape: every collect() of one exposition runs in the same tick.
  let cached: Snapshot | undefined;
  const read = (): Snapshot => {
    if (cached !== undefined) return cached;
    const snapshot: Snapshot = { node: node.stats(), dht: dht?.stats() };
    cached = snapshot;
    queueMicrotask(() => {
      cached = undefined;
    });
    return snapshot;
  };

  new Gauge({
    name: 'deut_tunnels',
    help: 'Tunnels by our role in them: owned (ours, as master), transit (relayed hop), endpoint (last hop).',
    labelNames: ['role'] as const,
    registers,
    collect() {
      const t = read().node.tunnels;
      this.set({ role: 'owned' }, t.owned);
      this.set({ role: 'transit' }, t.relaying);
      this.set({ role: 'endpoint' }, t.endpoints);
    },
  });
  new Gauge({
    name: 'deut_tunnel_builds_pending',
    help: 'Tunnel builds of ours waiting for their response.',
    registers,
    collect() {
      this.set(read().node.tunnels.pendingBuilds);
    },
  });
  new Counter({
    name: 'deut_tunnel_builds_total',
    help: 'Tunnel builds of our pool that ended, by outcome (since the node started); no-path: a build the pool wanted and could not start, for want of a path.',
    labelNames: ['outcome'] as const,
    registers,
    collect() {
      const pool = read().node.pool?.counters;
      this.reset();
      this.inc({ outcome: 'succeeded' }, count(pool, 'builds-succeeded'));
      this.inc({ outcome: 'failed' }, count(pool, 'builds-failed'));
      this.inc({ outcome: 'no-path' }, count(pool, 'builds-no-path'));
    },
  });
  new Counter({
    name: 'deut_stalled_warnings_total',
    help: 'Warnings that this node cannot do its job, by cause: no path (too few verified relayers, or all in one /16) or an unanswered --bootstrap (every attempt counts).',
    labelNames: ['reason'] as const,
    registers,
    collect() {
      const node = read().node;
      this.reset();
      this.inc({ reason: 'no-path-too-few-relayers' }, count(node.pool?.counters, 'no-path-warnings-too-few-relayers'));
      this.inc({ reason: 'no-path-one-subnet' }, count(node.pool?.counters, 'no-path-warnings-one-subnet'));
      this.inc({ reason: 'bootstrap-unanswered' }, count(node.counters, 'bootstrap-unanswered'));
    },
  });
  const buildSeconds = new Histogram({
    name: 'deut_tunnel_build_seconds',
    help: 'Time from starting a tunnel build to its outcome (builds ended since metrics were created).',
    labelNames: ['outcome'] as const,
    buckets: [...BUILD_SECONDS_BUCKETS],
    registers,
  });
  buildSeconds.zero({ outcome: 'succeeded' });
  buildSeconds.zero({ outcome: 'failed' });
  new Counter({
    name: 'deut_cells_relayed_total',
    help: 'Cells this node relayed for others (transit hops).',
    registers,
    collect() {
      this.reset();
      this.inc(count(read().node.tunnels.counters, 'cells-relayed'));
    },
  });
  new Counter({
    name: 'deut_datagrams_total',
    help: 'UDP datagrams: layer="link" on the node port, layer="endpoint" between our endpoint ports and destinations.',
    labelNames: ['layer', 'direction'] as const,
    registers,
    collect() {
      const s = read().node;
      this.reset();
      this.inc({ layer: 'link', direction: 'sent' }, count(s.link.counters, 'datagrams-out'));
      this.inc({ layer: 'link', direction: 'received' }, count(s.link.counters, 'datagrams-in'));
      this.inc({ layer: 'endpoint', direction: 'sent' }, count(s.exits.counters, 'datagrams-exited'));
      this.inc({ layer: 'endpoint', direction: 'received' }, count(s.exits.counters, 'datagrams-entered'));
    },
  });
  new Counter({
    name: 'deut_link_bytes_total',
    help: 'Bytes on the node port. Every link datagram is exactly DATAGRAM_BYTES (1200), so this is datagrams x 1200; datagrams of any other size are dropped (deut_drops_total{layer="link",reason="size"}).',
    labelNames: ['direction'] as const,
    registers,
    collect() {
      const link = read().node.link.counters;
      this.reset();
      this.inc({ direction: 'sent' }, count(link, 'datagrams-out') * DATAGRAM_BYTES);
      this.inc({ direction: 'received' }, Math.max(0, count(link, 'datagrams-in') - count(link, 'drop:size')) * DATAGRAM_BYTES);
    },
  });
  new Counter({
    name: 'deut_drops_total',
    help: 'Input dropped and counted, by layer (link, engine, node, exits, messenger, dht) and reason.',
    labelNames: ['layer', 'reason'] as const,
    registers,
    collect() {
      const s = read();
      this.reset();
      // A layer the node does not run (no messenger on a relay, no DHT) has no samples at all.
      const sources: Array<[string, readonly string[], CounterSnapshot<string> | undefined]> = [
        ['link', LINK_DROP_REASONS, s.node.link.counters],
        ['engine', TUNNEL_DROP_REASONS, s.node.tunnels.counters],
        ['node', NODE_DROP_REASONS, s.node.counters],
        ['exits', ENDPOINT_EXITS_DROP_REASONS, s.node.exits.counters],
        ['messenger', MESSENGER_DROP_REASONS, s.node.messages?.counters],
        ['dht', DHT_RPC_DROP_REASONS, s.dht?.rpc.counters],
        ['public-dht', DHT_RPC_DROP_REASONS, options.publicDht?.stats().rpc.counters],
      ];
      for (const [layer, known, counters] of sources) {
        if (counters === undefined) continue;
        for (const [labels, value] of drops(layer, known, counters)) this.inc(labels, value);
      }
    },
  });
  new Counter({
    name: 'deut_handshake_cookies_total',
    help: 'Link handshake cookies (PROTOCOL.md 3.3), by kind: sent (msg1 answered under load instead of a key exchange), received (our msg1 was), admitted (msg1 that echoed a valid cookie).',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      const link = read().node.link.counters;
      this.reset();
      this.inc({ kind: 'sent' }, count(link, 'cookies-sent'));
      this.inc({ kind: 'received' }, count(link, 'cookies-received'));
      this.inc({ kind: 'admitted' }, count(link, 'handshakes-cookie-admitted'));
    },
  });
  new Counter({
    name: 'deut_anti_amplification_total',
    help:
      'What keeps us from sending more to an unproven address than it sent us (PROTOCOL.md 7, 4.7), by kind: ' +
      'too-large-sent (a response did not fit in its request copy; we asked for padding), reply-over-request (not even that fitted; nothing sent), ' +
      'padded-resend (our request was re-sent padded), pex-contact (handshake to a relayer a neighbour named), pex-unanswered (it never answered), ' +
      'pex-distrusted (a neighbour whose names went unanswered), pex-list-refused (a list from a distrusted neighbour).',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      const s = read().node;
      const messages = s.messages?.counters;
      this.reset();
      this.inc({ kind: 'too-large-sent' }, count(messages, 'too-large-sent'));
      this.inc({ kind: 'reply-over-request' }, count(messages, 'drop:reply-over-request'));
      this.inc({ kind: 'padded-resend' }, count(messages, 'requests-padded'));
      this.inc({ kind: 'pex-contact' }, count(s.counters, 'pex-contacts'));
      this.inc({ kind: 'pex-unanswered' }, count(s.counters, 'pex-unanswered'));
      this.inc({ kind: 'pex-distrusted' }, count(s.counters, 'pex-distrusted'));
      this.inc({ kind: 'pex-list-refused' }, count(s.counters, 'drop:pex-distrusted'));
    },
  });
  new Counter({
    name: 'deut_key_exchanges_total',
    help: 'Key exchanges done for unauthenticated or neighbour input: kind="handshake" (link msg1 answered), kind="build" (build requests opened). Floods past the limits add none.',
    labelNames: ['kind'] as const,
    registers,
    collect() {
      const s = read().node;
      this.reset();
      this.inc({ kind: 'handshake' }, count(s.link.counters, 'handshakes-responded'));
      this.inc({ kind: 'build' }, count(s.tunnels.counters, 'build-key-exchanges'));
    },
  });
  new Counter({
    name: 'deut_build_refusals_total',
    help: 'Build requests this node refused with a reply, by reason (transit-cap, neighbour-cap, stale, overloaded, exit-policy, ...).',
    labelNames: ['reason'] as const,
    registers,
    collect() {
      const counters = read().node.tunnels.counters;
      this.reset();
      for (const reason of BUILD_REFUSAL_CAUSES) this.inc({ reason }, 0);
      for (const [reason, value] of countersAfter('build-refused-', counters)) this.inc({ reason: reasonLabel(reason) }, value);
    },
  });
  new Gauge({
    name: 'deut_link_sessions',
    help: 'Authenticated link sessions with neighbours.',
    registers,
    collect() {
      this.set(read().node.link.sessions);
    },
  });
  new Gauge({
    name: 'deut_peers',
    help: 'Relayers this node knows from peer exchange.',
    registers,
    collect() {
      this.set(read().node.peers);
    },
  });
  new Gauge({
    name: 'deut_endpoint_ports',
    help: 'UDP ports open for tunnels that end at this node.',
    registers,
    collect() {
      this.set(read().node.exits.ports);
    },
  });
  const exitRefused = new Counter({
    name: 'deut_exit_refused_total',
    help: 'Datagrams of ours that an endpoint refused to send, by reason (refusals since metrics were created).',
    labelNames: ['reason'] as const,
    registers,
  });
  for (const reason of [...Object.keys(EXIT_REFUSED), 'other']) exitRefused.inc({ reason }, 0);
  new Counter({
    name: 'deut_dht_settled_answers_total',
    help:
      'Answers to DHT calls of ours that had already settled; not drops. kind="duplicate": the call was answered already ' +
      '(every fan-out copy and re-send gets an answer, so expect about fanout-1 per call); kind="late": the call had timed out. ' +
      'layer="dht" (over our tunnels) or "public-dht" (--dht-listen).',
    labelNames: ['layer', 'kind'] as const,
    registers,
    collect() {
      const s = read();
      this.reset();
      const sources: Array<[string, CounterSnapshot<DhtRpcCounter> | undefined]> = [
        ['dht', s.dht?.rpc.counters],
        ['public-dht', options.publicDht?.stats().rpc.counters],
      ];
      for (const [layer, counters] of sources) {
        if (counters === undefined) continue;
        this.inc({ layer, kind: 'duplicate' }, count(counters, 'answers-duplicate'));
        this.inc({ layer, kind: 'late' }, count(counters, 'answers-late'));
      }
    },
  });
  new Gauge({
    name: 'deut_build_info',
    help: 'Always 1; the labels say which deut (version), which Node.js (node_version) and which crypto build (crypto_backend) this node runs.',
    labelNames: ['version', 'node_version', 'crypto_backend'] as const,
    registers,
  }).set({ version: DEUT_VERSION, node_version: process.version, crypto_backend: CRYPTO_BACKEND }, 1);

  if (dht !== undefined) {
    new Counter({
      name: 'deut_dht_lookups_total',
      help: 'DHT operations started through our tunnels, by kind.',
      labelNames: ['kind'] as const,
      registers,
      collect() {
        const counters = read().dht?.counters;
        this.reset();
        this.inc({ kind: 'get' }, count(counters, 'gets'));
        this.inc({ kind: 'put' }, count(counters, 'puts'));
        this.inc({ kind: 'find-node' }, count(counters, 'lookups-node'));
      },
    });
    new Gauge({
      name: 'deut_dht_contacts',
      help: 'Contacts in the DHT routing table.',
      registers,
      collect() {
        this.set(read().dht?.contacts ?? 0);
      },
    });
    new Gauge({
      name: 'deut_dht_values',
      help: 'Values this node stores for the DHT.',
      registers,
      collect() {
        this.set(read().dht?.store.entries ?? 0);
      },
    });
  }

  if (options.processMetrics === true) collectDefaultMetrics({ register: registry });

  const onBuildEnded = (outcome: { ok: boolean; ms: number }): void => {
    if (Number.isFinite(outcome.ms) && outcome.ms >= 0) buildSeconds.observe({ outcome: outcome.ok ? 'succeeded' : 'failed' }, outcome.ms / 1000);
  };
  const onExitRefused = (info: { reason: number }): void => {
    exitRefused.inc({ reason: exitRefusedReasonName(info.reason) ?? 'other' });
  };
  node.on('build-ended', onBuildEnded);
  node.on('exit-refused', onExitRefused);

  return {
    registry,
    scrape: () => registry.metrics(),
    close: () => {
      node.off('build-ended', onBuildEnded);
      node.off('exit-refused', onExitRefused);
    },
  };
}

/** A running metrics HTTP server. */
export interface MetricsServer {
  /** Where it listens (the bound port when asked for port 0). */
  readonly address: { host: string; port: number };
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Options of {@link serveMetrics}. */
export interface ServeMetricsOptions {
  /** Hears the warning about a listen address that is not loopback. @default silentLogger */
  readonly logger?: Logger;
}

/**
 * The warning for a metrics server that listens beyond loopback: the counters (tunnels,
 * cells relayed, datagrams, drops, over time) help whoever reads them correlate this node's
 * traffic, and the endpoint has no authentication.
 */
export const METRICS_EXPOSED_WARNING =
  '--metrics listens on a non-loopback address: anyone who can reach it reads counters that help traffic analysis of this node ' +
  '(no authentication); bind it to loopback, or firewall the port so only your Prometheus reaches it (README.md, "Read it")';

/** {@link METRICS_EXPOSED_WARNING} for a listen address outside 127.0.0.0/8 and ::1 (wildcards included), else undefined. */
export function metricsExposureWarning(host: string): string | undefined {
  return isLoopbackIp(host) ? undefined : METRICS_EXPOSED_WARNING;
}

/**
 * Serves `GET /metrics` (Prometheus text format) on `listen`; anything else is 404. Any
 * host is accepted; one that is not loopback (0.0.0.0 included) logs
 * {@link METRICS_EXPOSED_WARNING} once.
 * @throws the listen error (EADDRINUSE, EADDRNOTAVAIL, ...)
 */
export async function serveMetrics(listen: { host: string; port: number }, metrics: NodeMetrics, options: ServeMetricsOptions = {}): Promise<MetricsServer> {
  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    const path = (request.url ?? '').split('?', 1)[0];
    if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      response.end('not found\n');
      return;
    }
    metrics.scrape().then(
      (body) => {
        response.writeHead(200, { 'Content-Type': metrics.registry.contentType, 'Cache-Control': 'no-store' });
        response.end(body);
      },
      () => {
        // No details: an error message could carry an address.
        response.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
        response.end('scrape failed\n');
      },
    );
  };
  const server = createServer(handle);
  server.on('clientError', (_error, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  // The bound address, not the flag's text: a name such as localhost is checked as resolved.
  const warning = metricsExposureWarning(bound.address);
  if (warning !== undefined) (options.logger ?? silentLogger).warn(warning);
  let closing: Promise<void> | undefined;
  return {
    address: { host: bound.address, port: bound.port },
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

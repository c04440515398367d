/**
 * A master's tunnel pool (PROTOCOL.md §7 "Pool"): keeps `target` tunnels up, builds
 * them concurrently on random paths, probes each through the tunnel, replaces dead ones,
 * and rotates each before it expires with overlap: a replacement is built a minute ahead,
 * the old tunnel stops carrying new messages half a minute ahead and keeps receiving until
 * it expires, so nothing sent through it or addressed to its endpoint is lost.
 */
import { Counters, addressKey, silentLogger, systemClock, type Clock, type Logger, type TimerHandle, type UdpAddress } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { BuildError, type DestroyReason, type OwnedTunnel, type PathHop, type PathSelection, type TunnelEngine } from '@deut/tunnel';
import { encodeCellFrame } from '@deut/wire';
import { randomBytes } from '@deut/crypto';
import { abortedError } from './errors.js';
import { subnetGroup, type PeerRecord, type PeerTable } from './peers.js';
import { randomIndex, sample } from './random.js';

/** Options of {@link TunnelPool}. */
export interface TunnelPoolOptions {
  readonly engine: TunnelEngine;
  readonly peers: PeerTable;
  /** Address key of this node, never a hop of its own tunnels. */
  readonly self: string;
  /** Tunnels to keep up. @default 8 */
  readonly target?: number;
  /** Hops per tunnel, endpoint included. @default 3 */
  readonly hops?: number;
  /** @default 'master' */
  readonly pathSelection?: PathSelection;
  /** Allow two hops in one /16 (test meshes on loopback). @default false */
  readonly allowSameSubnet?: boolean;
  /** @default 600,000 */
  readonly lifetimeMs?: number;
  /** Start building a replacement this long before a tunnel expires (at most half the lifetime). @default 60,000 */
  readonly rotateBeforeMs?: number;
  /**
   * Stop sending new messages through a tunnel this long before it expires; it keeps
   * receiving until it expires, so replies to its endpoint still arrive (at most a
   * quarter of the lifetime). @default 30,000
   */
  readonly drainBeforeMs?: number;
  /** Builds in flight at once. @default 16 */
  readonly buildConcurrency?: number;
  /** @default 5,000 */
  readonly buildTimeoutMs?: number;
  /** Mean time between probes of one tunnel (jittered ±50%). @default 30,000 */
  readonly probeIntervalMs?: number;
  /** @default 3,000 */
  readonly probeTimeoutMs?: number;
  /**
   * At start, how long the first builds wait for relayers that neighbours named to be
   * verified, so that the first paths are not all drawn from the first few relayers known.
   * @default 2,000
   */
  readonly settleMs?: number;
  /** @default systemClock */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly logger?: Logger;
}

/** A pooled tunnel, as `tunnels.list()` shows it. */
export interface TunnelInfo {
  readonly id: number;
  readonly hops: number;
  /** Who picked the hops: in relayer mode this master knows only the first. */
  readonly mode: PathSelection;
  /**
   * The hops, first hop to endpoint, `hops` long; `undefined` for a hop this master does
   * not know (every hop after the first in relayer mode).
   */
  readonly path: ReadonlyArray<PathHop | undefined>;
  readonly endpoint: UdpAddress;
  /** When the build completed, epoch ms of the node's clock. */
  readonly createdAt: number;
  /** How long ago the build completed, in ms of the node's clock. */
  readonly ageMs: number;
  readonly expiresAt: number;
  /** Round trip of the last answered probe, if any. */
  readonly rttMs: number | undefined;
  readonly draining: boolean;
}

/** A copy, so that a caller of `list()` cannot change the path the tunnel's own checks use. */
function copyHop(hop: PathHop | undefined): PathHop | undefined {
  return hop === undefined ? undefined : { address: { host: hop.address.host, port: hop.address.port }, publicKey: hop.publicKey?.slice() };
}

interface Pooled {
  readonly tunnel: OwnedTunnel;
  rttMs: number | undefined;
  failures: number;
  /** When a cell last arrived through this tunnel: traffic is proof of life, like a probe reply. */
  lastHeardAt: number;
  nextProbeAt: number;
  probe: { id: string; sentAt: number; timer: TimerHandle; sample: boolean } | undefined;
  /** A message through it went unanswered, and nothing has come through it since. */
  suspected: boolean;
}

/**
 * Consecutive unanswered probes, with no other traffic through the tunnel meanwhile, that
 * make a tunnel dead: at least {@link MIN_FAILURES_DEAD}, more on a lossy network. A probe
 * crosses every link twice, so at 10% loss per link a 3-hop probe fails about half the time
 * and a fixed three misses would kill one live tunnel in eight.
 */
const MIN_FAILURES_DEAD = 3;
/** However lossy the network, a tunnel silent for this many probes is dead. */
const MAX_FAILURES_DEAD = 12;
/** Chance, per streak of misses, of declaring a live tunnel dead that the threshold aims at. */
const FALSE_DEATH_ODDS = 1e-3;
/** Outcomes of probes to tunnels with no miss yet that the loss estimate looks back over. */
const PROBE_HISTORY = 64;
/**
 * Prior of the loss estimate: as if {@link PRIOR_PROBES} probes had been sent and one
 * missed, which on its own gives the minimum threshold.
 */
const PRIOR_PROBES = 10;
const TICK_MS = 250;

/** How long the pool may have found no path before it says so, and how often it says it again. */
export const NO_PATH_WARN_AFTER_MS = 10_000;
export const NO_PATH_WARN_EVERY_MS = 60_000;

/**
 * Why no path can be picked: too few verified relayers for the hop count, or enough of them
 * but in too few /16 networks for the one-hop-per-/16 rule.
 */
export type NoPathCause = 'too-few-relayers' | 'one-subnet';

/** Counter names of {@link TunnelPool.stats}. */
export type PoolCounter =
  | 'builds-started'
  | 'builds-succeeded'
  | 'builds-failed'
  | 'builds-no-path'
  | `no-path-warnings-${NoPathCause}`
  | 'builds-through-avoided'
  | 'probes-sent'
  | 'probes-answered'
  | 'probes-unanswered'
  | 'probe-replies-unmatched'
  | 'tunnels-dead'
  | 'tunnels-expired'
  // Expiry is rotation, not a loss: it has its own counter.
  | `tunnels-lost-${Exclude<DestroyReason, 'expired'>}`;

/** The pool of tunnels a master sends and receives through. */
export class TunnelPool {
  readonly #o: Required<Omit<TunnelPoolOptions, 'engine' | 'peers' | 'self'>>;
  readonly #engine: TunnelEngine;
  readonly #peers: PeerTable;
  readonly #self: string;
  readonly #tunnels = new Map<number, Pooled>();
  readonly #counters = new Counters<PoolCounter>();
  readonly #waiters: Array<{ n: number; resolve: () => void }> = [];
  /** Outcomes (true = answered) of the latest probes that began a streak, oldest first. */
  readonly #probeHistory: boolean[] = [];
  #building = 0;
  /** Paths of the builds in flight, counted in hop usage like built tunnels. */
  readonly #buildingPaths = new Set<readonly PeerRecord[]>();
  /** Until when the first builds wait for named relayers to be verified. */
  #settleUntil = 0;
  #failureStreak = 0;
  #nextBuildAt = 0;
  /** Since when every build attempt found no path (undefined while paths are found). */
  #noPathSince: number | undefined;
  #nextNoPathWarnAt = 0;
  #timer: TimerHandle | undefined;
  #closed = false;
  /** Called for a tunnel that died or expired, after it left the pool. */
  onTunnelGone: (tunnel: OwnedTunnel) => void = () => undefined;
  /** Called when a build ends: its outcome and how long it took (for metrics). */
  onBuildEnded: (outcome: { ok: boolean; ms: number; hops: number }) => void = () => undefined;

  constructor(options: TunnelPoolOptions) {
    this.#engine = options.engine;
    this.#peers = options.peers;
    this.#self = options.self;
    this.#o = {
      target: options.target ?? 8,
      hops: options.hops ?? 3,
      pathSelection: options.pathSelection ?? 'master',
      allowSameSubnet: options.allowSameSubnet ?? false,
      lifetimeMs: options.lifetimeMs ?? 600_000,
      // INVARIANT: drain < rotate < lifetime. A window as long as the lifetime would put every
      // tunnel in rotation from birth: endless builds, and no tunnel ever usable.
      rotateBeforeMs: Math.min(options.rotateBeforeMs ?? 60_000, (options.lifetimeMs ?? 600_000) / 2),
      drainBeforeMs: Math.min(options.drainBeforeMs ?? 30_000, (options.lifetimeMs ?? 600_000) / 4),
      buildConcurrency: options.buildConcurrency ?? 16,
      buildTimeoutMs: options.buildTimeoutMs ?? 5_000,
      probeIntervalMs: options.probeIntervalMs ?? 30_000,
      probeTimeoutMs: options.probeTimeoutMs ?? 3_000,
      settleMs: options.settleMs ?? 2_000,
      clock: options.clock ?? systemClock,
      logger: options.logger ?? silentLogger,
    };
    this.#settleUntil = this.#o.clock.now() + this.#o.settleMs;
    this.#schedule(0);
  }

  /** Resolves once at least `n` tunnels are up (and not draining). */
  ready(n = this.#o.target, signal?: AbortSignal): Promise<void> {
    if (this.usable().length >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = { n, resolve };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(abortedError('ABORTED', 'waiting for tunnels was aborted'));
      }, { once: true });
    });
  }

  /** Tunnels that take new messages: up, and not about to expire. */
  usable(): OwnedTunnel[] {
    return this.#usablePooled().map((p) => p.tunnel);
  }

  /**
   * `count` distinct usable tunnels chosen uniformly at random, in this order of preference:
   * not in doubt and not in `exclude`, not in doubt, in doubt and not in `exclude`, any.
   *
   * In doubt means a message through it went unanswered or a probe was missed, and nothing
   * has come through since. A dead tunnel is declared dead only after several probe
   * timeouts (9 s or more), and meanwhile a uniform pick would keep sending into it: a
   * relayer killed under 7 of 8 tunnels cost most first attempts for 14 s. Doubt clears at
   * the next cell or probe reply, so on a healthy network the choice stays uniform.
   */
  pick(count: number, exclude: ReadonlySet<number> = new Set()): OwnedTunnel[] {
    const chosen: OwnedTunnel[] = [];
    const usable = this.#usablePooled();
    const trusted = (p: Pooled): boolean => !p.suspected && p.failures === 0;
    const tiers = [
      (p: Pooled) => trusted(p) && !exclude.has(p.tunnel.localId),
      (p: Pooled) => trusted(p) && exclude.has(p.tunnel.localId),
      (p: Pooled) => !trusted(p) && !exclude.has(p.tunnel.localId),
      (p: Pooled) => !trusted(p) && exclude.has(p.tunnel.localId),
    ];
    for (const inTier of tiers) {
      if (chosen.length >= count) break;
      chosen.push(...sample(usable.filter(inTier), count - chosen.length).map((p) => p.tunnel));
    }
    return chosen;
  }

  #usablePooled(): Pooled[] {
    const cutoff = this.#o.clock.now() + this.#o.drainBeforeMs;
    return [...this.#tunnels.values()].filter((p) => p.tunnel.expiresAt > cutoff);
  }

  /** The usable tunnel with local id `id`, if it is still in the pool and not draining. */
  usableById(id: number): OwnedTunnel | undefined {
    return this.usable().find((t) => t.localId === id);
  }

  /** One usable tunnel chosen uniformly at random, preferring one not in doubt, if any. */
  pickOne(): OwnedTunnel | undefined {
    return this.pick(1)[0];
  }

  /** Median round trip of the last answered probes, if any tunnel has answered one. */
  medianRttMs(): number | undefined {
    const rtts = [...this.#tunnels.values()].map((p) => p.rttMs).filter((r): r is number => r !== undefined).sort((a, b) => a - b);
    return rtts.length === 0 ? undefined : rtts[Math.floor(rtts.length / 2)];
  }

  /** The pool's tunnels for `tunnels.list()`. */
  list(): TunnelInfo[] {
    const now = this.#o.clock.now();
    const cutoff = now + this.#o.drainBeforeMs;
    return [...this.#tunnels.values()].map((p) => ({
      id: p.tunnel.localId,
      hops: p.tunnel.hopCount,
      mode: p.tunnel.mode,
      path: Array.from({ length: p.tunnel.hopCount }, (_, i) => copyHop(p.tunnel.path[i])),
      endpoint: p.tunnel.endpoint,
      createdAt: p.tunnel.createdAt,
      ageMs: now - p.tunnel.createdAt,
      expiresAt: p.tunnel.expiresAt,
      rttMs: p.rttMs,
      draining: p.tunnel.expiresAt <= cutoff,
    }));
  }

  /** A message through `tunnel` went unanswered: probe it now rather than at its turn. */
  suspect(tunnel: OwnedTunnel): void {
    const pooled = this.#tunnels.get(tunnel.localId);
    if (pooled === undefined) return;
    pooled.suspected = true;
    if (pooled.probe === undefined) pooled.nextProbeAt = 0;
  }

  /** A PROBE_REPLY arrived through `tunnel`. */
  probeAnswered(tunnel: OwnedTunnel, probeId: Uint8Array): void {
    const pooled = this.#tunnels.get(tunnel.localId);
    const probe = pooled?.probe;
    if (pooled === undefined || probe === undefined || probe.id !== Buffer.from(probeId).toString('hex')) return this.#counters.add('probe-replies-unmatched');
    this.#o.clock.clearTimeout(probe.timer);
    pooled.probe = undefined;
    pooled.failures = 0;
    pooled.suspected = false;
    pooled.rttMs = this.#o.clock.now() - probe.sentAt;
    if (probe.sample) this.#recordProbe(true);
    this.#counters.add('probes-answered');
  }

  /** A cell arrived through `tunnel`. */
  heardFrom(tunnel: OwnedTunnel): void {
    const pooled = this.#tunnels.get(tunnel.localId);
    if (pooled === undefined) return;
    pooled.lastHeardAt = this.#o.clock.now();
    pooled.failures = 0;
    pooled.suspected = false;
  }

  /** The engine reports that one of our tunnels ended: by expiry (rotation) or a loss. */
  tunnelClosed(tunnel: OwnedTunnel, reason: DestroyReason): void {
    const pooled = this.#tunnels.get(tunnel.localId);
    if (pooled === undefined) return;
    this.#forget(pooled);
    this.#counters.add(reason === 'expired' ? 'tunnels-expired' : `tunnels-lost-${reason}`);
    this.onTunnelGone(tunnel);
  }

  /** Counters and sizes. */
  stats(): { tunnels: number; usable: number; building: number; failuresBeforeDead: number; counters: CounterSnapshot<PoolCounter> } {
    return {
      tunnels: this.#tunnels.size,
      usable: this.usable().length,
      building: this.#building,
      failuresBeforeDead: this.failuresBeforeDead(),
      counters: this.#counters.snapshot(),
    };
  }

  /** Destroys every tunnel and stops. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    for (const pooled of [...this.#tunnels.values()]) {
      this.#forget(pooled);
      this.#engine.destroy(pooled.tunnel, 'shutdown');
    }
  }

  // ---- maintenance ------------------------------------------------------------------------

  #schedule(ms: number): void {
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#tick();
      if (!this.#closed) this.#schedule(TICK_MS);
    }, ms);
  }

  #tick(): void {
    const now = this.#o.clock.now();
    for (const pooled of [...this.#tunnels.values()]) {
      if (pooled.probe === undefined && now >= pooled.nextProbeAt) this.#sendProbe(pooled);
    }
    this.#fill();
  }

  /** Starts builds while the pool is short, within the concurrency limit and any backoff. */
  #fill(): void {
    if (this.#closed) return;
    const now = this.#o.clock.now();
    // Tor builds no circuit before it has enough of the directory, and I2P reseeds below a
    // floor of known routers. A master starts with its bootstrap relayer and the few it
    // verified first; paths drawn from those alone put one relayer under most tunnels
    // (7 or 8 of 8 in the relayer-kill test). So the first builds wait, briefly, for the
    // relayers neighbours have named to be verified.
    if (now < this.#settleUntil && this.#tunnels.size === 0 && this.#building === 0 && this.#peers.unverified().length > 0) return;
    // Tunnels within the rotation window are already being replaced: count them out.
    const rotateCutoff = now + this.#o.rotateBeforeMs;
    let lasting = 0;
    for (const pooled of this.#tunnels.values()) if (pooled.tunnel.expiresAt > rotateCutoff) lasting++;
    let deficit = this.#o.target - lasting - this.#building;
    while (deficit > 0 && this.#building < this.#o.buildConcurrency && now >= this.#nextBuildAt) {
      if (!this.#startBuild()) break;
      deficit--;
    }
  }

  #startBuild(): boolean {
    const hops = this.#o.hops;
    const exclude = new Set([this.#self]);
    const mode = this.#o.pathSelection;
    // Relayers blamed for failed builds are left out while others remain; when too few
    // remain they fill the path, soonest forgiven first. On a lossy network (a 3-hop build
    // crosses 6 links) most relayers are blamed in turn, and waiting out their avoidance
    // (up to 2 min) left a master with no tunnel at all; Tor likewise retries its guards
    // when every one of them is marked down.
    const path = this.#peers.pick(mode === 'master' ? hops : 1, { exclude, sameSubnet: this.#o.allowSameSubnet, usage: this.#hopUsage(), orAvoided: true });
    if (path.length < (mode === 'master' ? hops : 1)) {
      this.#counters.add('builds-no-path');
      this.#noPath(mode === 'master' ? hops : 1, exclude);
      this.#backoff();
      return false;
    }
    this.#noPathSince = undefined;
    if (path.some((peer) => this.#peers.isAvoided(peer.key))) this.#counters.add('builds-through-avoided');
    this.#building++;
    this.#buildingPaths.add(path);
    this.#counters.add('builds-started');
    const startedAt = this.#o.clock.now();
    const plan =
      mode === 'master'
        ? { mode, hops: path, lifetimeMs: this.#o.lifetimeMs, timeoutMs: this.#o.buildTimeoutMs }
        : { mode, firstHop: path[0]!, hopCount: hops, lifetimeMs: this.#o.lifetimeMs, timeoutMs: this.#o.buildTimeoutMs };
    this.#engine.build(plan).then(
      (tunnel) => {
        this.#building--;
        this.#buildingPaths.delete(path);
        for (const hop of path) this.#peers.credit(hop.key);
        this.#failureStreak = 0;
        if (this.#closed) return this.#engine.destroy(tunnel, 'shutdown');
        this.#tunnels.set(tunnel.localId, { tunnel, rttMs: undefined, failures: 0, lastHeardAt: this.#o.clock.now(), nextProbeAt: this.#jitteredProbeTime(), probe: undefined, suspected: false });
        this.#counters.add('builds-succeeded');
        this.onBuildEnded({ ok: true, ms: this.#o.clock.now() - startedAt, hops });
        this.#wake();
        // Keep the pipeline full: start the next build now rather than at the next tick.
        this.#fill();
      },
      (error: unknown) => {
        this.#building--;
        this.#buildingPaths.delete(path);
        this.onBuildEnded({ ok: false, ms: this.#o.clock.now() - startedAt, hops });
        this.#counters.add('builds-failed');
        // Blame the hop that refused or, on a timeout, every hop we chose: we cannot tell
        // which died. In relayer mode we chose only the first hop, so a refusal further on
        // names a relayer we do not know, and nobody in our table is blamed for it.
        const hop = error instanceof BuildError ? error.failure.hop : undefined;
        const blamed = hop === undefined || hop < 0 ? path : path[hop] !== undefined ? [path[hop]] : [];
        for (const peer of blamed) this.#peers.blame(peer.key);
        this.#backoff();
        this.#o.logger.debug('pool: build failed', { error: String(error) });
      },
    );
    return true;
  }

  /**
   * How many of our tunnels (built or building) each relayer is in. Paths prefer the least
   * used, so that one relayer's death takes few tunnels and fan-out copies cross different
   * relayers; among equals the choice stays uniform.
   */
  #hopUsage(): Map<string, number> {
    const usage = new Map<string, number>();
    const count = (key: string): void => void usage.set(key, (usage.get(key) ?? 0) + 1);
    for (const pooled of this.#tunnels.values()) for (const hop of pooled.tunnel.path) count(addressKey(hop.address));
    for (const path of this.#buildingPaths) for (const hop of path) count(hop.key);
    return usage;
  }

  /** Repeated failures slow building down (50 ms doubling to 5 s): no hot loop on a broken network. */
  /**
   * No path again: once that has lasted NO_PATH_WARN_AFTER_MS with no usable tunnel, one
   * warning names the cause and what to do, repeated at most every NO_PATH_WARN_EVERY_MS.
   * A master that can never build must not sit silent (an operator saw only `deut status`).
   */
  #noPath(needed: number, exclude: ReadonlySet<string>): void {
    const now = this.#o.clock.now();
    this.#noPathSince ??= now;
    if (now - this.#noPathSince < NO_PATH_WARN_AFTER_MS || now < this.#nextNoPathWarnAt || this.usable().length > 0) return;
    this.#nextNoPathWarnAt = now + NO_PATH_WARN_EVERY_MS;
    const verified = this.#peers.verified().filter((peer) => !exclude.has(peer.key));
    const groups = new Set(verified.map((peer) => subnetGroup(peer.address.host))).size;
    const seconds = Math.round((now - this.#noPathSince) / 1000);
    if (verified.length < needed) {
      this.#counters.add('no-path-warnings-too-few-relayers');
      this.#o.logger.warn(
        `pool: no tunnel for ${seconds} s: ${verified.length} verified relayers known, a path needs ${needed}; check that --bootstrap names a running relayer, or lower --hops`,
        { cause: 'too-few-relayers', verified: verified.length, needed },
      );
    } else {
      this.#counters.add('no-path-warnings-one-subnet');
      this.#o.logger.warn(
        `pool: no tunnel for ${seconds} s: the ${verified.length} verified relayers sit in ${groups} /16 networks, and a path takes at most one hop per /16; on a test mesh on one host, start with --allow-same-subnet`,
        { cause: 'one-subnet', verified: verified.length, groups, needed },
      );
    }
  }

  #backoff(): void {
    this.#failureStreak++;
    this.#nextBuildAt = this.#o.clock.now() + Math.min(50 * 2 ** Math.min(this.#failureStreak, 10), 5_000);
  }

  #sendProbe(pooled: Pooled): void {
    const probeId = randomBytes(8);
    const id = Buffer.from(probeId).toString('hex');
    // Only the first probe of a streak estimates the loss rate: counting re-probes would let
    // one dead tunnel's streak pass for loss and slow its own detection down.
    const firstOfStreak = pooled.failures === 0;
    const timer = this.#o.clock.setTimeout(() => {
      if (pooled.probe?.id !== id) return;
      const sentAt = pooled.probe.sentAt;
      pooled.probe = undefined;
      if (firstOfStreak) this.#recordProbe(false);
      this.#counters.add('probes-unanswered');
      if (pooled.lastHeardAt > sentAt) {
        // Other cells came through meanwhile: the tunnel is alive, only the probe was lost.
        pooled.failures = 0;
        return;
      }
      pooled.failures++;
      if (pooled.failures >= this.failuresBeforeDead()) {
        this.#counters.add('tunnels-dead');
        this.#o.logger.debug('pool: tunnel dead', { tunnel: pooled.tunnel.localId, missedProbes: pooled.failures });
        this.#forget(pooled);
        this.#engine.destroy(pooled.tunnel, 'closed');
        this.onTunnelGone(pooled.tunnel);
      } else {
        pooled.nextProbeAt = 0;
      }
    }, this.#o.probeTimeoutMs);
    pooled.probe = { id, sentAt: this.#o.clock.now(), timer, sample: firstOfStreak };
    pooled.nextProbeAt = this.#jitteredProbeTime();
    this.#counters.add('probes-sent');
    this.#engine.send(pooled.tunnel, encodeCellFrame({ type: 'probe', probeId }));
  }

  /**
   * How many consecutive misses declare a tunnel dead, given the share m of first probes (of a streak)
   * that went unanswered lately: the least n with m^n <= {@link FALSE_DEATH_ODDS}, within
   * {@link MIN_FAILURES_DEAD}..{@link MAX_FAILURES_DEAD}.
   */
  failuresBeforeDead(): number {
    const misses = this.#probeHistory.filter((answered) => !answered).length;
    const missRate = (misses + 1) / (this.#probeHistory.length + PRIOR_PROBES);
    const needed = Math.ceil(Math.log(FALSE_DEATH_ODDS) / Math.log(missRate) - 1e-9);
    return Math.min(MAX_FAILURES_DEAD, Math.max(MIN_FAILURES_DEAD, needed));
  }

  #recordProbe(answered: boolean): void {
    this.#probeHistory.push(answered);
    if (this.#probeHistory.length > PROBE_HISTORY) this.#probeHistory.shift();
  }

  #jitteredProbeTime(): number {
    const interval = this.#o.probeIntervalMs;
    return this.#o.clock.now() + interval / 2 + randomIndex(Math.max(1, Math.floor(interval)));
  }

  #forget(pooled: Pooled): void {
    this.#tunnels.delete(pooled.tunnel.localId);
    if (pooled.probe !== undefined) this.#o.clock.clearTimeout(pooled.probe.timer);
    pooled.probe = undefined;
  }

  #wake(): void {
    const usable = this.usable().length;
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const waiter = this.#waiters[i]!;
      if (usable >= waiter.n) {
        this.#waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }
}

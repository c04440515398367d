/**
 * The master's side (PROTOCOL.md §4.2, §4.4, §5): it builds tunnels in either path mode, one
 * request out and one response back, then owns them: seals the cells it sends, opens the
 * cells that come back, and learns when a hop destroyed one, its first hop was lost, or it
 * expired (MasterSink).
 */
import { DeutError, addressKey, type TimerHandle } from '@deut/common';
import { randomBytes } from '@deut/crypto';
import { MAX_HOPS, RELAYER_FILLER_BYTES, encodeTunnelMessage, type BuildInstructions, type BuildReply, type TunnelId, type TunnelMessage } from '@deut/wire';
import { prepareMasterBuild, prepareRelayerBuild, readMasterResponse, readRelayerResponse, type HopKeys, type HopOutcome } from './build-crypto.js';
import { BUILD_TIMEOUT_MS, MAX_TUNNEL_LIFETIME_MS, TUNNEL_LIFETIME_MS } from './constants.js';
import type { DestroyReason, PeerCandidate, RefusalReason, TunnelContext } from './context.js';
import type { OwnIds } from './hop-table.js';
import { OwnedTunnel, type PathHop } from './owned-tunnel.js';

/** Where the master's tunnels meet the node. */
export interface MasterSink {
  /** Inbound cell plaintext of an owned tunnel. */
  tunnelFrame(tunnel: OwnedTunnel, plaintext: Uint8Array): void;
  /** An owned tunnel ended without the node asking (destroyed by a hop, first hop lost, expired). */
  tunnelClosed(tunnel: OwnedTunnel, reason: DestroyReason): void;
}

/** What the master learns about a build that failed. */
export interface BuildFailure {
  /** Index of the hop that refused or failed, when known. */
  readonly hop?: number;
  readonly reason?: RefusalReason | 'invalid' | 'timeout';
}

/** Parameters of a build. */
export type BuildPlan =
  | { readonly mode: 'master'; readonly hops: readonly PeerCandidate[]; readonly lifetimeMs?: number; readonly timeoutMs?: number }
  | { readonly mode: 'relayer'; readonly firstHop: PeerCandidate; readonly hopCount: number; readonly lifetimeMs?: number; readonly timeoutMs?: number };

/** Error raised when a build fails; `failure` says where and why. */
export class BuildError extends DeutError {
  constructor(
    code: string,
    message: string,
    readonly failure: BuildFailure,
  ) {
    super(failure.reason === 'timeout' ? 'timeout' : 'protocol', code, message);
    this.name = 'BuildError';
  }
}

interface PendingBuild {
  readonly key: string;
  /** When the request left: hops count their lifetime from about then, never later. */
  readonly startedAt: number;
  readonly plan: BuildPlan;
  readonly linkId: TunnelId;
  readonly firstHop: PeerCandidate;
  readonly hopCount: number;
  readonly lifetimeMs: number;
  readonly read: (slots: Uint8Array) => HopOutcome[];
  readonly resolve: (tunnel: OwnedTunnel) => void;
  readonly reject: (error: DeutError) => void;
  readonly timer: TimerHandle;
}

/** The master role of one engine: its pending builds and owned tunnels, by (first hop, link id). */
export class MasterRole implements OwnIds {
  readonly #ctx: TunnelContext;
  readonly #sink: MasterSink;
  readonly #owned = new Map<string, OwnedTunnel>();
  readonly #pendingBuilds = new Map<string, PendingBuild>();

  constructor(ctx: TunnelContext, sink: MasterSink) {
    this.#ctx = ctx;
    this.#sink = sink;
  }

  /** Owned tunnels held. */
  get size(): number {
    return this.#owned.size;
  }

  /** Builds waiting for their response. */
  get pendingCount(): number {
    return this.#pendingBuilds.size;
  }

  /** Live owned tunnels. */
  tunnels(): IterableIterator<OwnedTunnel> {
    return this.#owned.values();
  }

  /** Whether a pending build or an owned tunnel uses `id` toward the first hop `peerKey`. */
  holdsId(peerKey: string, id: TunnelId): boolean {
    const key = `${peerKey}|${id}`;
    return this.#owned.has(key) || this.#pendingBuilds.has(key);
  }

  /** See TunnelEngine.build. */
  build(plan: BuildPlan): Promise<OwnedTunnel> {
    const ctx = this.#ctx;
    const lifetimeMs = Math.min(plan.lifetimeMs ?? TUNNEL_LIFETIME_MS, MAX_TUNNEL_LIFETIME_MS);
    const firstHop = plan.mode === 'master' ? plan.hops[0] : plan.firstHop;
    const hopCount = plan.mode === 'master' ? plan.hops.length : plan.hopCount;
    if (firstHop === undefined || hopCount < 1 || hopCount > MAX_HOPS) {
      return Promise.reject(new BuildError('BAD_PATH', `a path has 1..${MAX_HOPS} hops`, {}));
    }
    const firstKey = addressKey(firstHop.address);
    const linkId = ctx.hops.chooseId(firstKey);
    const key = `${firstKey}|${linkId}`;
    let message: TunnelMessage;
    let read: (slots: Uint8Array) => HopOutcome[];
    if (plan.mode === 'master') {
      const now = ctx.clock.now();
      const build = prepareMasterBuild(plan.hops.map((hop, i) => ({ staticKey: hop.publicKey, instructions: instructions(plan.hops[i + 1], now, lifetimeMs) })));
      message = { type: 'build-request', tunnelId: linkId, records: build.records };
      read = (slots) => readMasterResponse(build, slots);
    } else {
      const build = prepareRelayerBuild();
      message = { type: 'build-request-relayer', tunnelId: linkId, ttl: hopCount - 1, ephemeralKey: build.E, filler: randomBytes(RELAYER_FILLER_BYTES) };
      read = (slots) => readRelayerResponse(build, hopCount, slots);
    }
    ctx.counters.add('builds-started');
    return new Promise((resolve, reject) => {
      const timer = ctx.clock.setTimeout(() => {
        if (this.#pendingBuilds.get(key)?.timer !== timer) return;
        this.#pendingBuilds.delete(key);
        ctx.counters.add('builds-timed-out');
        ctx.sendDestroy(firstHop.address, 'destroy-out', linkId, 'closed');
        reject(new BuildError('BUILD_TIMEOUT', 'no build response in time', { reason: 'timeout' }));
      }, plan.timeoutMs ?? BUILD_TIMEOUT_MS);
      this.#pendingBuilds.set(key, { key, startedAt: ctx.clock.now(), plan, linkId, firstHop, hopCount, lifetimeMs, read, resolve, reject, timer });
      ctx.link.send(firstHop.address, encodeTunnelMessage(message), { expectedKey: firstHop.publicKey });
    });
  }

  /** See TunnelEngine.send. */
  send(tunnel: OwnedTunnel, plaintext: Uint8Array): boolean {
    if (this.#owned.get(`${tunnel.firstHopKey}|${tunnel.linkId}`) !== tunnel) return false;
    this.#ctx.link.send(tunnel.firstHop, tunnel.sealCell(plaintext));
    this.#ctx.counters.add('cells-sent');
    return true;
  }

  /** See TunnelEngine.destroy. */
  destroy(tunnel: OwnedTunnel, reason: DestroyReason): void {
    const key = `${tunnel.firstHopKey}|${tunnel.linkId}`;
    if (this.#owned.get(key) !== tunnel) return;
    this.#owned.delete(key);
    this.#ctx.sendDestroy(tunnel.firstHop, 'destroy-out', tunnel.linkId, reason);
  }

  /** A BUILD_RESPONSE from a first hop: settles a pending build, if it is one of ours. */
  buildResponse(fromKey: string, id: TunnelId, slots: Uint8Array): void {
    const pending = this.#pendingBuilds.get(`${fromKey}|${id}`);
    if (pending === undefined) return this.#ctx.drop('build-response-unknown');
    const ctx = this.#ctx;
    this.#pendingBuilds.delete(pending.key);
    ctx.clock.clearTimeout(pending.timer);
    const outcomes = pending.read(slots);
    const failedAt = outcomes.findIndex((o) => o.status !== 'accepted');
    if (failedAt >= 0 || outcomes.length !== pending.hopCount) {
      const outcome = outcomes[failedAt];
      const reason = outcome?.status === 'refused' ? outcome.reply.reason : 'invalid';
      ctx.counters.add(`builds-failed-${reason}`);
      ctx.sendDestroy(pending.firstHop.address, 'destroy-out', pending.linkId, 'closed');
      pending.reject(new BuildError('BUILD_REFUSED', `hop ${failedAt} ${reason === 'invalid' ? 'sent an invalid reply' : `refused: ${reason}`}`, { hop: failedAt, reason }));
      return;
    }
    const keys: HopKeys[] = [];
    let endpointReply: BuildReply | undefined;
    for (const outcome of outcomes) {
      if (outcome.status !== 'accepted') return;
      keys.push(outcome.keys);
      endpointReply = outcome.reply;
    }
    const endpointAddress = endpointReply?.endpoint;
    if (endpointAddress === null || endpointAddress === undefined) {
      ctx.sendDestroy(pending.firstHop.address, 'destroy-out', pending.linkId, 'closed');
      pending.reject(new BuildError('BUILD_REFUSED', 'the endpoint did not report its port', { hop: pending.hopCount - 1, reason: 'invalid' }));
      return;
    }
    const plan = pending.plan;
    const path: PathHop[] = plan.mode === 'master' ? plan.hops.map((h) => ({ address: h.address, publicKey: h.publicKey })) : [plan.firstHop];
    const last = plan.mode === 'master' ? plan.hops[plan.hops.length - 1] : undefined;
    // An endpoint that does not know its public address reports '::' (PROTOCOL.md §4.3).
    const endpoint = endpointAddress.host === '::' && last !== undefined ? { host: last.address.host, port: endpointAddress.port } : endpointAddress;
    const tunnel = new OwnedTunnel({
      localId: ctx.hops.newHandle(),
      linkId: pending.linkId,
      mode: plan.mode,
      path,
      hopCount: pending.hopCount,
      keys,
      endpoint,
      createdAt: ctx.clock.now(),
      expiresAt: pending.startedAt + pending.lifetimeMs,
    });
    this.#owned.set(pending.key, tunnel);
    ctx.counters.add('builds-succeeded');
    pending.resolve(tunnel);
  }

  /** A CELL_IN from a first hop that no relay entry claims: one of our tunnels', or unknown. */
  cellIn(fromKey: string, id: TunnelId, seq: number, body: Uint8Array): void {
    const key = `${fromKey}|${id}`;
    const tunnel = this.#owned.get(key);
    if (tunnel === undefined) return this.#ctx.drop('cell-unknown-tunnel');
    const result = tunnel.openCell(seq, body);
    if (result === 'replay') return this.#ctx.drop('cell-replay');
    if (result === 'bad-tag') return this.#badCell(key, tunnel);
    this.#ctx.counters.add('cells-received');
    this.#sink.tunnelFrame(tunnel, result);
  }

  /**
   * An inbound cell of our own tunnel failed the endpoint's tag: a hop altered it (tagging)
   * or the path is corrupt. The tunnel can no longer be trusted, so it is torn down like an
   * outbound tag failure (PROTOCOL.md §5.2, §8) and the owner learns 'bad-cell'.
   */
  #badCell(key: string, tunnel: OwnedTunnel): void {
    this.#ctx.drop('cell-bad-tag');
    if (this.#owned.get(key) !== tunnel) return;
    this.#owned.delete(key);
    this.#ctx.counters.add('tunnels-torn-down-bad-cell');
    this.#ctx.sendDestroy(tunnel.firstHop, 'destroy-out', tunnel.linkId, 'bad-cell');
    this.#sink.tunnelClosed(tunnel, 'bad-cell');
  }

  /** A DESTROY from a first hop that no relay entry claims: one of our tunnels', or unknown. */
  destroyIn(fromKey: string, id: TunnelId, reason: DestroyReason): void {
    const key = `${fromKey}|${id}`;
    const tunnel = this.#owned.get(key);
    if (tunnel === undefined) return this.#ctx.drop('destroy-unknown-tunnel');
    this.#owned.delete(key);
    this.#ctx.counters.add('destroys-received');
    if (reason === 'bad-cell') this.#ctx.counters.add('tunnels-torn-down-bad-cell');
    this.#sink.tunnelClosed(tunnel, reason);
  }

  /** The link to a first hop died: its tunnels are gone (no one to tell). */
  neighbourLost(peerKey: string): void {
    for (const [key, tunnel] of [...this.#owned]) {
      if (tunnel.firstHopKey !== peerKey) continue;
      this.#owned.delete(key);
      this.#sink.tunnelClosed(tunnel, 'neighbour-lost');
    }
  }

  /** Ends the owned tunnels that expired, telling their hops. */
  expire(now: number): void {
    for (const [key, tunnel] of [...this.#owned]) {
      if (tunnel.expiresAt > now) continue;
      this.#owned.delete(key);
      this.#ctx.sendDestroy(tunnel.firstHop, 'destroy-out', tunnel.linkId, 'expired');
      this.#sink.tunnelClosed(tunnel, 'expired');
    }
  }

  /** Engine shutdown: every pending build fails (the owned tunnels are destroyed first, one by one). */
  failPendingBuilds(): void {
    for (const pending of [...this.#pendingBuilds.values()]) {
      this.#ctx.clock.clearTimeout(pending.timer);
      pending.reject(new BuildError('ENGINE_CLOSED', 'tunnel engine closed', {}));
    }
    this.#pendingBuilds.clear();
  }
}

function instructions(next: PeerCandidate | undefined, now: number, lifetimeMs: number): BuildInstructions {
  const timeSeconds = Math.floor(now / 1000);
  const lifetimeSeconds = Math.ceil(lifetimeMs / 1000);
  if (next === undefined) return { role: 'endpoint', timeSeconds, lifetimeSeconds };
  return { role: 'relay', timeSeconds, lifetimeSeconds, next: { address: next.address, staticKey: next.publicKey } };
}

/**
 * The tunnel engine (PROTOCOL.md §4-§5, §8): one per node, for every role at once. As a
 * hop it opens build records, admits or refuses, forwards builds and responses, and relays
 * cells, peeling or adding one layer; as an endpoint it hands cell plaintext to the node and
 * seals the node's answers; as a master it builds tunnels and carries their cells. Policy
 * (admission, exits, next-hop choice) is injected; every drop of remote input is counted.
 *
 * INVARIANT: state is re-checked after every await (a tunnel may be destroyed meanwhile).
 */
import {
  Counters,
  DeutError,
  ProtocolError,
  addressKey,
  replayCheck,
  replayMark,
  replayWindowWords,
  silentLogger,
  systemClock,
  type Clock,
  type Logger,
  type TimerHandle,
  type UdpAddress,
} from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { addInboundLayerInto, openOutbound, peelOutboundInto, randomBytes, sealInbound, type KeyPair } from '@deut/crypto';
import type { Link, LinkPeer } from '@deut/link';
import {
  CELL_BYTES,
  CELL_HEADER_BYTES,
  MAX_HOPS,
  RELAYER_FILLER_BYTES,
  decodeTunnelMessage,
  encodeCellHeaderInto,
  encodeCellInto,
  encodeTunnelMessage,
  tunnelId,
  type BuildInstructions,
  type BuildReply,
  type BuildRefusalReason,
  type TunnelId,
  type TunnelMessage,
  type WireErrorCode,
} from '@deut/wire';
import {
  acceptRecord,
  acceptRelayerHop,
  addResponseSlot,
  openRecord,
  prepareMasterBuild,
  prepareRelayerBuild,
  readMasterResponse,
  readRelayerResponse,
  sealReplySlot,
  transformRequestRecords,
  wipeAcceptance,
  type HopKeys,
  type HopOutcome,
} from './build-crypto.js';
import {
  BUILD_HOP_TIMEOUT_MS,
  BUILD_MAX_AGE_S,
  BUILD_TIMEOUT_MS,
  CELL_REPLAY_WINDOW,
  CLOCK_SKEW_S,
  MAX_TRANSIT_PER_NEIGHBOUR,
  MAX_TRANSIT_TUNNELS,
  MAX_TUNNEL_LIFETIME_MS,
  TUNNEL_LIFETIME_MS,
  TUNNEL_TICK_MS,
} from './constants.js';
import type { TunnelCounter, TunnelDropReason, TunnelErrorCode } from './counters.js';
import { OwnedTunnel, randomCounterStart, type PathHop } from './owned-tunnel.js';
import { PeerIdMap } from './peer-id-map.js';

/** Reasons a hop refuses a build (PROTOCOL.md §4.3), as named by @deut/wire. */
export type RefusalReason = BuildRefusalReason;

/** DESTROY reasons (PROTOCOL.md §4.1). */
export const DESTROY_REASONS = { closed: 0, expired: 1, 'bad-cell': 2, 'neighbour-lost': 3, shutdown: 4 } as const;
/** Name of a DESTROY reason. */
export type DestroyReason = keyof typeof DESTROY_REASONS;

/** The name of a received DESTROY reason byte; unknown values read as 'closed'. */
export function destroyReasonName(code: number): DestroyReason {
  for (const [name, value] of Object.entries(DESTROY_REASONS)) if (value === code) return name as DestroyReason;
  return 'closed';
}

/** An endpoint tunnel as the node's exit code sees it. */
export interface EndpointTunnel {
  /** Local handle, unique within this engine. */
  readonly handle: number;
  /** The previous hop (for a 1-hop tunnel, the master itself). */
  readonly upstream: LinkPeer;
  readonly expiresAt: number;
}

/** A relayer candidate: address and the static key to expect there. */
export interface PeerCandidate {
  readonly address: UdpAddress;
  readonly publicKey: Uint8Array;
}

/** What the node decides for the engine. */
export interface TunnelPolicy {
  /**
   * Build-rate admission, asked before any cryptography so that a flooding neighbour costs
   * no key exchange; false drops the request silently (no reply is possible without keys).
   */
  allowBuildFrom(from: LinkPeer): boolean;
  /** Admission of a transit tunnel in a role (this node does not relay, ...); a reason refuses it. */
  admit(from: LinkPeer, role: 'relay' | 'endpoint'): RefusalReason | undefined;
  /** Endpoint setup (bind a port); resolves to the address to report, or a refusal reason. */
  openEndpoint(tunnel: EndpointTunnel): Promise<UdpAddress | RefusalReason>;
  /** Endpoint teardown: release the port. Called once for every opened endpoint. */
  closeEndpoint(tunnel: EndpointTunnel, reason: DestroyReason): void;
  /** Cell plaintext that arrived at an endpoint. */
  endpointFrame(tunnel: EndpointTunnel, plaintext: Uint8Array): void;
  /** Relayer mode: a random next hop other than the excluded address keys. */
  pickNextHop(exclude: ReadonlySet<string>): PeerCandidate | undefined;
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

/** Options of {@link TunnelEngine}. */
export interface TunnelEngineOptions {
  readonly link: Link;
  readonly identity: KeyPair;
  readonly policy: TunnelPolicy;
  /** Transit tunnels carried at most (relay and endpoint). @default 10,000 */
  readonly maxTransit?: number;
  /**
   * Transit tunnels carried at most for one previous hop, so that one neighbour cannot take
   * the whole table. @default 2,500 (a quarter of the default transit cap)
   */
  readonly maxTransitPerNeighbour?: number;
  /** @default systemClock */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly logger?: Logger;
}

interface Acceptance {
  readonly keys: HopKeys;
  readonly Y: Uint8Array;
  readonly replyKey: Uint8Array;
  readonly responseLayerKey: Uint8Array;
}

/** A hop-table entry: this node's part in someone else's tunnel (PROTOCOL.md §5.4). */
interface HopEntry {
  readonly handle: number;
  readonly role: 'relay' | 'endpoint';
  readonly prev: LinkPeer;
  /** Interned: every entry of one neighbour shares the string (see #peerRefs). */
  readonly prevKey: string;
  readonly prevId: TunnelId;
  /** Interned, like prevKey; the next hop's key is only needed while the build is forwarded. */
  nextAddress: UdpAddress | undefined;
  nextKey: string | undefined;
  nextId: TunnelId | undefined;
  /** Outbound layer key ‖ inbound layer key: 64 secret bytes in one array. */
  readonly layerKeys: Uint8Array;
  readonly outboundOffset: number;
  readonly inboundOffset: number;
  /** Reply secrets, needed until this hop's reply slot is sent, then wiped and dropped. */
  acceptance: Acceptance | undefined;
  /** Both cell replay windows packed in one array: outbound words, then inbound words. */
  readonly windows: Uint32Array;
  outHighest: number;
  inHighest: number;
  state: 'pending' | 'active';
  /** Pending: when the build gives up; active: when the tunnel expires. */
  deadline: number;
  readonly expiresAt: number;
  /** Endpoint only: counter of cells sent toward the master. */
  inboundCounter: number;
  endpointOpen: boolean;
}

/** What the transit entries of one neighbour share (see TunnelEngine.#peerRefs). */
interface PeerRef {
  readonly key: string;
  readonly address: UdpAddress;
  /** The neighbour as the upstream of entries, as last seen (session and key). */
  upstream: LinkPeer | undefined;
  refs: number;
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

const REPLAY_CACHE_LIMIT = 200_000;
/** Words of one cell replay window, and where the inbound one starts in `HopEntry.windows`. */
const WINDOW_WORDS = replayWindowWords(CELL_REPLAY_WINDOW);
const OUTBOUND_KEY = 0;
const INBOUND_KEY = 32;
const ENTRY_KEY_BYTES = 64;
const RELAYER_REPLAY_TTL_MS = TUNNEL_LIFETIME_MS + CLOCK_SKEW_S * 1000;
/** Kept a little past the last moment a request could be fresh (timer granularity). */
const REPLAY_MARGIN_MS = 2 * TUNNEL_TICK_MS;

/**
 * PROTOCOL.md §4.5: a build's `time` (whole seconds) may be up to CLOCK_SKEW_S ahead of this
 * hop's clock and up to BUILD_MAX_AGE_S + CLOCK_SKEW_S behind it, edges included.
 */
export function buildTimeAcceptable(timeSeconds: number, nowMs: number): boolean {
  const ms = timeSeconds * 1000;
  return ms <= nowMs + CLOCK_SKEW_S * 1000 && ms >= nowMs - (BUILD_MAX_AGE_S + CLOCK_SKEW_S) * 1000;
}

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

/** The per-node tunnel state machine. */
export class TunnelEngine {
  readonly #link: Link;
  readonly #identity: KeyPair;
  readonly #policy: TunnelPolicy;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #maxTransit: number;
  readonly #maxTransitPerNeighbour: number;
  readonly #counters = new Counters<TunnelCounter>();
  /** Hop entries by (upstream peer, id chosen by it). */
  readonly #byUpstream = new PeerIdMap<HopEntry>();
  /** Hop entries by (downstream peer, id we chose). */
  readonly #byDownstream = new PeerIdMap<HopEntry>();
  /** Our own tunnels by (first hop, id we chose). */
  readonly #owned = new Map<string, OwnedTunnel>();
  readonly #pendingBuilds = new Map<string, PendingBuild>();
  /** Endpoint entries by handle, for the node's exit code. */
  readonly #endpoints = new Map<number, HopEntry>();
  /** Build ephemeral keys seen, with the time they may be forgotten. */
  readonly #seenEphemerals = new Map<string, number>();
  /**
   * One key string and address object per neighbour, shared by all its transit entries and
   * counted, so that 100,000 tunnels over a few links do not hold 200,000 copies of them.
   */
  readonly #peerRefs = new Map<string, PeerRef>();
  /** The cell being relayed (relaying is synchronous, and link.send copies it). */
  readonly #relayCell = new Uint8Array(CELL_BYTES);
  #nextHandle = 1;
  #timer: TimerHandle | undefined;
  #closed = false;
  /** Inbound cell plaintext of an owned tunnel. */
  onTunnelFrame: (tunnel: OwnedTunnel, plaintext: Uint8Array) => void = () => undefined;
  /** An owned tunnel ended (destroyed by a hop, or expired). */
  onTunnelClosed: (tunnel: OwnedTunnel, reason: DestroyReason) => void = () => undefined;

  constructor(options: TunnelEngineOptions) {
    this.#link = options.link;
    this.#identity = options.identity;
    this.#policy = options.policy;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#maxTransit = options.maxTransit ?? MAX_TRANSIT_TUNNELS;
    this.#maxTransitPerNeighbour = options.maxTransitPerNeighbour ?? MAX_TRANSIT_PER_NEIGHBOUR;
    this.#link.on('unreachable', ({ address }) => this.#onNeighbourLost(addressKey(address)));
    this.#schedule();
  }

  /** Handles one tunnel-layer link payload. Never throws for remote input. */
  handle(payload: Uint8Array, from: LinkPeer): void {
    if (this.#closed) return;
    let message: TunnelMessage;
    try {
      message = decodeTunnelMessage(payload);
    } catch (error) {
      // decodeTunnelMessage raises only the wire's codes.
      if (error instanceof ProtocolError) return this.#drop(`decode-${error.code.toLowerCase() as Lowercase<WireErrorCode>}`);
      throw error;
    }
    try {
      this.#dispatch(message, from);
    } catch (error) {
      // Encoders and build-crypto raise only TunnelErrorCode codes.
      if (error instanceof ProtocolError) return this.#drop(error.code.toLowerCase() as Lowercase<TunnelErrorCode>);
      this.#drop('internal-error');
      this.#logger.error('tunnel: unexpected error handling a message', { error: String(error) });
    }
  }

  // ---- master --------------------------------------------------------------------------

  /**
   * Builds a tunnel: one request out, one response back. Rejects with a BuildError naming
   * the hop that refused, or a timeout; the partial tunnel is torn down either way.
   */
  build(plan: BuildPlan): Promise<OwnedTunnel> {
    if (this.#closed) return Promise.reject(new BuildError('ENGINE_CLOSED', 'tunnel engine is closed', {}));
    const lifetimeMs = Math.min(plan.lifetimeMs ?? TUNNEL_LIFETIME_MS, MAX_TUNNEL_LIFETIME_MS);
    const firstHop = plan.mode === 'master' ? plan.hops[0] : plan.firstHop;
    const hopCount = plan.mode === 'master' ? plan.hops.length : plan.hopCount;
    if (firstHop === undefined || hopCount < 1 || hopCount > MAX_HOPS) {
      return Promise.reject(new BuildError('BAD_PATH', `a path has 1..${MAX_HOPS} hops`, {}));
    }
    const firstKey = addressKey(firstHop.address);
    const linkId = this.#chooseId(firstKey);
    const key = `${firstKey}|${linkId}`;
    let message: TunnelMessage;
    let read: (slots: Uint8Array) => HopOutcome[];
    if (plan.mode === 'master') {
      const now = this.#clock.now();
      const build = prepareMasterBuild(
        plan.hops.map((hop, i) => ({ staticKey: hop.publicKey, instructions: this.#instructions(plan.hops[i + 1], now, lifetimeMs) })),
      );
      message = { type: 'build-request', tunnelId: linkId, records: build.records };
      read = (slots) => readMasterResponse(build, slots);
    } else {
      const build = prepareRelayerBuild();
      message = { type: 'build-request-relayer', tunnelId: linkId, ttl: hopCount - 1, ephemeralKey: build.E, filler: randomBytes(RELAYER_FILLER_BYTES) };
      read = (slots) => readRelayerResponse(build, hopCount, slots);
    }
    this.#counters.add('builds-started');
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        if (this.#pendingBuilds.get(key)?.timer !== timer) return;
        this.#pendingBuilds.delete(key);
        this.#counters.add('builds-timed-out');
        this.#sendDestroy(firstHop.address, 'destroy-out', linkId, 'closed');
        reject(new BuildError('BUILD_TIMEOUT', 'no build response in time', { reason: 'timeout' }));
      }, plan.timeoutMs ?? BUILD_TIMEOUT_MS);
      this.#pendingBuilds.set(key, { key, startedAt: this.#clock.now(), plan, linkId, firstHop, hopCount, lifetimeMs, read, resolve, reject, timer });
      this.#link.send(firstHop.address, encodeTunnelMessage(message), { expectedKey: firstHop.publicKey });
    });
  }

  /** Sends one cell of plaintext (CELL_PLAINTEXT_BYTES) through an owned tunnel. */
  send(tunnel: OwnedTunnel, plaintext: Uint8Array): boolean {
    if (this.#owned.get(`${tunnel.firstHopKey}|${tunnel.linkId}`) !== tunnel) return false;
    this.#link.send(tunnel.firstHop, tunnel.sealCell(plaintext));
    this.#counters.add('cells-sent');
    return true;
  }

  /** Tears down an owned tunnel (TunnelDestroy hop by hop). */
  destroy(tunnel: OwnedTunnel, reason: DestroyReason = 'closed'): void {
    const key = `${tunnel.firstHopKey}|${tunnel.linkId}`;
    if (this.#owned.get(key) !== tunnel) return;
    this.#owned.delete(key);
    this.#sendDestroy(tunnel.firstHop, 'destroy-out', tunnel.linkId, reason);
  }

  /** Live owned tunnels. */
  ownedTunnels(): OwnedTunnel[] {
    return [...this.#owned.values()];
  }

  // ---- endpoint ------------------------------------------------------------------------

  /** Sends cell plaintext from an endpoint tunnel toward its master. */
  sendFromEndpoint(tunnel: EndpointTunnel, plaintext: Uint8Array): boolean {
    const entry = this.#entryByHandle(tunnel);
    if (entry === undefined || entry.state !== 'active') return false;
    const counter = entry.inboundCounter++;
    const cell = new Uint8Array(CELL_BYTES);
    encodeCellInto(cell, 'cell-in', entry.prevId, counter, sealInbound(entry.layerKeys.subarray(INBOUND_KEY), counter, plaintext));
    this.#link.send(entry.prev.address, cell);
    this.#counters.add('endpoint-cells-sent');
    return true;
  }

  /** Tears down an endpoint tunnel from the endpoint's side (e.g. exit abuse). */
  closeEndpoint(tunnel: EndpointTunnel, reason: DestroyReason = 'closed'): void {
    const entry = this.#entryByHandle(tunnel);
    if (entry === undefined) return;
    this.#sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, reason);
    this.#remove(entry, reason);
  }

  // ---- stats and lifecycle -------------------------------------------------------------

  /** Table sizes and counters (drops by reason, cells relayed, builds). */
  stats(): { transit: number; relaying: number; endpoints: number; owned: number; pendingBuilds: number; replayCache: number; counters: CounterSnapshot<TunnelCounter> } {
    let endpoints = 0;
    for (const entry of this.#byUpstream.values()) if (entry.role === 'endpoint') endpoints++;
    return {
      transit: this.#byUpstream.size,
      relaying: this.#byUpstream.size - endpoints,
      endpoints,
      owned: this.#owned.size,
      pendingBuilds: this.#pendingBuilds.size,
      replayCache: this.#seenEphemerals.size,
      counters: this.#counters.snapshot(),
    };
  }

  /** Destroys every tunnel (owned and transit), fails pending builds, stops timers. */
  close(): void {
    if (this.#closed) return;
    for (const tunnel of [...this.#owned.values()]) this.destroy(tunnel, 'shutdown');
    for (const entry of [...this.#byUpstream.values()]) {
      this.#sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, 'shutdown');
      if (entry.nextAddress !== undefined && entry.nextId !== undefined) this.#sendDestroy(entry.nextAddress, 'destroy-out', entry.nextId, 'shutdown');
      this.#remove(entry, 'shutdown');
    }
    for (const pending of [...this.#pendingBuilds.values()]) {
      this.#clock.clearTimeout(pending.timer);
      pending.reject(new BuildError('ENGINE_CLOSED', 'tunnel engine closed', {}));
    }
    this.#pendingBuilds.clear();
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
  }

  // ---- dispatch ------------------------------------------------------------------------

  #dispatch(message: TunnelMessage, from: LinkPeer): void {
    const fromKey = addressKey(from.address);
    switch (message.type) {
      case 'cell-out':
        return this.#onCellOut(fromKey, message.tunnelId, message.seq, message.body);
      case 'cell-in':
        return this.#onCellIn(fromKey, message.tunnelId, message.seq, message.body);
      case 'build-request':
        return this.#onBuildRequest(from, fromKey, message.tunnelId, message.records);
      case 'build-request-relayer':
        return this.#onRelayerBuildRequest(from, fromKey, message.tunnelId, message.ttl, message.ephemeralKey);
      case 'build-response':
        return this.#onBuildResponse(fromKey, message.tunnelId, message.slots);
      case 'destroy-out':
        return this.#onDestroyOut(fromKey, message.tunnelId, message.reason);
      case 'destroy-in':
        return this.#onDestroyIn(fromKey, message.tunnelId, message.reason);
    }
  }

  // ---- builds at a hop -------------------------------------------------------------------

  #onBuildRequest(from: LinkPeer, fromKey: string, prevId: TunnelId, records: Uint8Array): void {
    if (this.#byUpstream.has(fromKey, prevId)) return this.#drop('build-duplicate-id');
    if (!this.#policy.allowBuildFrom(from)) return this.#drop('build-rate-limited');
    // Counts key exchanges: exactly one per admitted request (and none for a dropped one).
    this.#counters.add('build-key-exchanges');
    const opened = openRecord(this.#identity, records);
    if (opened === null) return this.#drop('build-bad-record');
    const { instructions } = opened;
    const now = this.#clock.now();
    // Remembered until the request's own time could no longer pass the check below, so a
    // replay is refused for as long as the request would be fresh (PROTOCOL.md §4.5).
    const freshUntil = (instructions.timeSeconds + BUILD_MAX_AGE_S + CLOCK_SKEW_S) * 1000;
    if (!this.#rememberEphemeral(opened.ephemeral, Math.max(freshUntil - now, 0) + REPLAY_MARGIN_MS)) return this.#drop('build-replay');
    const acceptance = acceptRecord(this.#identity, opened);
    const role = instructions.role;
    if (!buildTimeAcceptable(instructions.timeSeconds, now)) {
      this.#counters.add('build-refused-stale');
      return this.#refuse(from, prevId, acceptance, 'stale');
    }
    const refusal = this.#admit(from, fromKey, role);
    if (refusal !== undefined) return this.#refuse(from, prevId, acceptance, refusal);
    const lifetimeMs = Math.min(instructions.lifetimeSeconds * 1000, MAX_TUNNEL_LIFETIME_MS);
    const entry = this.#addEntry(role, from, fromKey, prevId, acceptance, lifetimeMs);
    if (role === 'endpoint') return this.#openEndpoint(entry);
    const next = { address: instructions.next.address, publicKey: instructions.next.staticKey };
    this.#forwardBuild(entry, next, (nextId) => ({ type: 'build-request', tunnelId: nextId, records: transformRequestRecords(records, opened.requestLayerKey) }));
  }

  #onRelayerBuildRequest(from: LinkPeer, fromKey: string, prevId: TunnelId, ttl: number, ephemeral: Uint8Array): void {
    if (this.#byUpstream.has(fromKey, prevId)) return this.#drop('build-duplicate-id');
    if (!this.#policy.allowBuildFrom(from)) return this.#drop('build-rate-limited');
    if (!this.#rememberEphemeral(ephemeral, RELAYER_REPLAY_TTL_MS)) return this.#drop('build-replay');
    this.#counters.add('build-key-exchanges');
    const hop = acceptRelayerHop(ephemeral);
    const role = ttl === 0 ? 'endpoint' : 'relay';
    const refusal = this.#admit(from, fromKey, role);
    if (refusal !== undefined) return this.#refuse(from, prevId, hop, refusal);
    const entry = this.#addEntry(role, from, fromKey, prevId, hop, TUNNEL_LIFETIME_MS);
    if (role === 'endpoint') return this.#openEndpoint(entry);
    const next = this.#policy.pickNextHop(new Set([fromKey, addressKey(this.#link.address)]));
    if (next === undefined) {
      this.#counters.add('build-refused-next-hop-unreachable');
      this.#remove(entry, 'closed');
      return this.#entryReply(entry, { status: 'refused', reason: 'next-hop-unreachable', endpoint: null }, undefined);
    }
    this.#forwardBuild(entry, next, (nextId) => ({
      type: 'build-request-relayer',
      tunnelId: nextId,
      ttl: ttl - 1,
      ephemeralKey: hop.nextE,
      filler: randomBytes(RELAYER_FILLER_BYTES),
    }));
  }

  #admit(from: LinkPeer, fromKey: string, role: 'relay' | 'endpoint'): RefusalReason | undefined {
    if (this.#byUpstream.size >= this.#maxTransit) {
      this.#counters.add('build-refused-transit-cap');
      return 'overloaded';
    }
    if (this.#byUpstream.sizeOf(fromKey) >= this.#maxTransitPerNeighbour) {
      this.#counters.add('build-refused-neighbour-cap');
      return 'overloaded';
    }
    const refusal = this.#policy.admit(from, role);
    if (refusal !== undefined) this.#counters.add(`build-refused-${refusal}`);
    return refusal;
  }

  #addEntry(role: 'relay' | 'endpoint', prev: LinkPeer, prevKey: string, prevId: TunnelId, acceptance: Acceptance, lifetimeMs: number): HopEntry {
    const now = this.#clock.now();
    const { keys } = acceptance;
    // One buffer per entry behind both views: the keys, then the replay windows.
    const buffer = new ArrayBuffer(ENTRY_KEY_BYTES + 2 * WINDOW_WORDS * 4);
    const layerKeys = new Uint8Array(buffer, 0, ENTRY_KEY_BYTES);
    layerKeys.set(keys.outboundKey, OUTBOUND_KEY);
    layerKeys.set(keys.inboundKey, INBOUND_KEY);
    keys.outboundKey.fill(0);
    keys.inboundKey.fill(0);
    const peer = this.#refPeer(prevKey, prev.address);
    // The same neighbour on the same session is one LinkPeer for all its entries.
    const sameUpstream = peer.upstream !== undefined && peer.upstream.sessionId === prev.sessionId && peer.upstream.publicKey === prev.publicKey;
    if (!sameUpstream) peer.upstream = prev;
    const entry: HopEntry = {
      handle: this.#nextHandle++,
      role,
      prev: peer.upstream ?? prev,
      prevKey: peer.key,
      prevId,
      // Set when the build is forwarded; present from the start so entries keep one shape.
      nextAddress: undefined,
      nextKey: undefined,
      nextId: undefined,
      layerKeys,
      outboundOffset: keys.outboundOffset,
      inboundOffset: keys.inboundOffset,
      acceptance,
      windows: new Uint32Array(buffer, ENTRY_KEY_BYTES, 2 * WINDOW_WORDS),
      outHighest: -1,
      inHighest: -1,
      state: 'pending',
      deadline: now + BUILD_HOP_TIMEOUT_MS,
      expiresAt: now + lifetimeMs,
      inboundCounter: randomCounterStart(),
      endpointOpen: false,
    };
    this.#byUpstream.set(entry.prevKey, prevId, entry);
    if (role === 'endpoint') this.#endpoints.set(entry.handle, entry);
    return entry;
  }

  #forwardBuild(entry: HopEntry, next: PeerCandidate, request: (nextId: TunnelId) => TunnelMessage): void {
    const nextKey = addressKey(next.address);
    if (nextKey === entry.prevKey || nextKey === addressKey(this.#link.address)) {
      this.#remove(entry, 'closed');
      return this.#entryReply(entry, { status: 'refused', reason: 'bad-record', endpoint: null }, undefined);
    }
    const nextId = this.#chooseId(nextKey);
    const peer = this.#refPeer(nextKey, next.address);
    entry.nextAddress = peer.address;
    entry.nextKey = peer.key;
    entry.nextId = nextId;
    this.#byDownstream.set(peer.key, nextId, entry);
    this.#link.connect(next.address, { expectedKey: next.publicKey }).then(
      () => {
        if (this.#byDownstream.get(nextKey, nextId) !== entry || entry.state !== 'pending') return;
        this.#link.send(next.address, encodeTunnelMessage(request(nextId)));
        this.#counters.add('builds-forwarded');
      },
      () => {
        if (this.#byDownstream.get(nextKey, nextId) !== entry || entry.state !== 'pending') return;
        this.#counters.add('build-refused-next-hop-unreachable');
        this.#remove(entry, 'closed');
        this.#entryReply(entry, { status: 'refused', reason: 'next-hop-unreachable', endpoint: null }, undefined);
      },
    );
  }

  #openEndpoint(entry: HopEntry): void {
    const tunnel = this.#endpointView(entry);
    this.#policy.openEndpoint(tunnel).then(
      (result) => {
        if (this.#byUpstream.get(entry.prevKey, entry.prevId) !== entry) {
          // Torn down while the port was being bound: give it back.
          if (typeof result !== 'string') this.#policy.closeEndpoint(tunnel, 'closed');
          return;
        }
        if (typeof result === 'string') {
          this.#counters.add(`build-refused-${result}`);
          this.#remove(entry, 'closed');
          return this.#entryReply(entry, { status: 'refused', reason: result, endpoint: null }, undefined);
        }
        entry.endpointOpen = true;
        this.#activate(entry);
        this.#counters.add('endpoints-opened');
        this.#entryReply(entry, { status: 'accepted', reason: 'none', endpoint: result }, undefined);
      },
      (error: unknown) => {
        this.#logger.error('tunnel: endpoint setup failed', { error: String(error) });
        if (this.#byUpstream.get(entry.prevKey, entry.prevId) !== entry) return;
        this.#remove(entry, 'closed');
        this.#entryReply(entry, { status: 'refused', reason: 'exit-policy', endpoint: null }, undefined);
      },
    );
  }

  #onBuildResponse(fromKey: string, id: TunnelId, slots: Uint8Array): void {
    const pending = this.#pendingBuilds.get(`${fromKey}|${id}`);
    if (pending !== undefined) return this.#onOwnBuildResponse(pending, slots);
    const entry = this.#byDownstream.get(fromKey, id);
    if (entry === undefined || entry.state !== 'pending') return this.#drop('build-response-unknown');
    this.#activate(entry);
    this.#entryReply(entry, { status: 'accepted', reason: 'none', endpoint: null }, slots);
  }

  #onOwnBuildResponse(pending: PendingBuild, slots: Uint8Array): void {
    this.#pendingBuilds.delete(pending.key);
    this.#clock.clearTimeout(pending.timer);
    const outcomes = pending.read(slots);
    const failedAt = outcomes.findIndex((o) => o.status !== 'accepted');
    if (failedAt >= 0 || outcomes.length !== pending.hopCount) {
      const outcome = outcomes[failedAt];
      const reason = outcome?.status === 'refused' ? outcome.reply.reason : 'invalid';
      this.#counters.add(`builds-failed-${reason}`);
      this.#sendDestroy(pending.firstHop.address, 'destroy-out', pending.linkId, 'closed');
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
      this.#sendDestroy(pending.firstHop.address, 'destroy-out', pending.linkId, 'closed');
      pending.reject(new BuildError('BUILD_REFUSED', 'the endpoint did not report its port', { hop: pending.hopCount - 1, reason: 'invalid' }));
      return;
    }
    const plan = pending.plan;
    const path: PathHop[] = plan.mode === 'master' ? plan.hops.map((h) => ({ address: h.address, publicKey: h.publicKey })) : [plan.firstHop];
    const last = plan.mode === 'master' ? plan.hops[plan.hops.length - 1] : undefined;
    // An endpoint that does not know its public address reports '::' (PROTOCOL.md §4.3).
    const endpoint = endpointAddress.host === '::' && last !== undefined ? { host: last.address.host, port: endpointAddress.port } : endpointAddress;
    const now = this.#clock.now();
    const tunnel = new OwnedTunnel({
      localId: this.#nextHandle++,
      linkId: pending.linkId,
      mode: plan.mode,
      path,
      hopCount: pending.hopCount,
      keys,
      endpoint,
      createdAt: now,
      expiresAt: pending.startedAt + pending.lifetimeMs,
    });
    this.#owned.set(pending.key, tunnel);
    this.#counters.add('builds-succeeded');
    pending.resolve(tunnel);
  }

  /** Sends this hop's reply for `entry` once, then wipes and drops the reply secrets. */
  #entryReply(entry: HopEntry, reply: BuildReply, slots: Uint8Array | undefined): void {
    const acceptance = entry.acceptance;
    if (acceptance === undefined) return;
    entry.acceptance = undefined;
    this.#reply(entry.prev, entry.prevId, acceptance, reply, slots);
    wipeAcceptance(acceptance);
  }

  #refuse(to: LinkPeer, prevId: TunnelId, acceptance: Acceptance, reason: RefusalReason): void {
    this.#reply(to, prevId, acceptance, { status: 'refused', reason, endpoint: null }, undefined);
    wipeAcceptance(acceptance);
  }

  #reply(to: LinkPeer, prevId: TunnelId, acceptance: Acceptance, reply: BuildReply, slots: Uint8Array | undefined): void {
    const slot = sealReplySlot(acceptance, reply);
    const response = addResponseSlot(slots, slot, acceptance.responseLayerKey);
    this.#link.send(to.address, encodeTunnelMessage({ type: 'build-response', tunnelId: prevId, slots: response }));
  }

  #activate(entry: HopEntry): void {
    entry.state = 'active';
    entry.deadline = entry.expiresAt;
  }

  #instructions(next: PeerCandidate | undefined, now: number, lifetimeMs: number): BuildInstructions {
    const timeSeconds = Math.floor(now / 1000);
    const lifetimeSeconds = Math.ceil(lifetimeMs / 1000);
    if (next === undefined) return { role: 'endpoint', timeSeconds, lifetimeSeconds };
    return { role: 'relay', timeSeconds, lifetimeSeconds, next: { address: next.address, staticKey: next.publicKey } };
  }

  // ---- cells -----------------------------------------------------------------------------

  #onCellOut(fromKey: string, id: TunnelId, seq: number, body: Uint8Array): void {
    const entry = this.#byUpstream.get(fromKey, id);
    if (entry === undefined) return this.#drop('cell-unknown-tunnel');
    if (entry.state !== 'active') return this.#drop('cell-not-ready');
    if (!replayCheck(entry.windows, 0, WINDOW_WORDS, entry.outHighest, seq)) return this.#drop('cell-replay');
    if (entry.role === 'endpoint') {
      const plaintext = openOutbound(entry.layerKeys.subarray(OUTBOUND_KEY, OUTBOUND_KEY + 32), seq, body);
      if (plaintext === null) return this.#badCell(entry);
      entry.outHighest = replayMark(entry.windows, 0, WINDOW_WORDS, entry.outHighest, seq);
      this.#counters.add('endpoint-cells-received');
      this.#policy.endpointFrame(this.#endpointView(entry), plaintext);
      return;
    }
    // The layer comes off straight into the forwarded cell's body; link.send copies the
    // cell before it returns, so one buffer serves every relayed cell.
    const cell = this.#relayCell;
    if (!peelOutboundInto(entry.layerKeys, seq, body, cell, CELL_HEADER_BYTES, OUTBOUND_KEY)) return this.#badCell(entry);
    entry.outHighest = replayMark(entry.windows, 0, WINDOW_WORDS, entry.outHighest, seq);
    encodeCellHeaderInto(cell, 'cell-out', entry.nextId!, seq + entry.outboundOffset);
    this.#link.send(entry.nextAddress!, cell);
    this.#counters.add('cells-relayed');
  }

  #onCellIn(fromKey: string, id: TunnelId, seq: number, body: Uint8Array): void {
    // Ids are unique across our tables toward one neighbour (#chooseId), so the relay's
    // table is asked first and a relayed cell never builds the owned tables' key string.
    const entry = this.#byDownstream.get(fromKey, id);
    if (entry === undefined) {
      const tunnel = this.#owned.get(`${fromKey}|${id}`);
      if (tunnel === undefined) return this.#drop('cell-unknown-tunnel');
      const result = tunnel.openCell(seq, body);
      if (result === 'replay') return this.#drop('cell-replay');
      if (result === 'bad-tag') return this.#ownedBadCell(`${fromKey}|${id}`, tunnel);
      this.#counters.add('cells-received');
      this.onTunnelFrame(tunnel, result);
      return;
    }
    if (entry.state !== 'active') return this.#drop('cell-not-ready');
    const inHighest = replayMark(entry.windows, WINDOW_WORDS, WINDOW_WORDS, entry.inHighest, seq);
    if (inHighest === -2) return this.#drop('cell-replay');
    entry.inHighest = inHighest;
    const cell = this.#relayCell;
    addInboundLayerInto(entry.layerKeys, seq, body, cell, CELL_HEADER_BYTES, INBOUND_KEY);
    encodeCellHeaderInto(cell, 'cell-in', entry.prevId, seq + entry.inboundOffset);
    this.#link.send(entry.prev.address, cell);
    this.#counters.add('cells-relayed');
  }

  /** A tag failed: tagging or corruption. Drop, count, and tear the tunnel down both ways. */
  #badCell(entry: HopEntry): void {
    this.#drop('cell-bad-tag');
    this.#sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, 'bad-cell');
    if (entry.nextAddress !== undefined && entry.nextId !== undefined) this.#sendDestroy(entry.nextAddress, 'destroy-out', entry.nextId, 'bad-cell');
    this.#remove(entry, 'bad-cell');
  }

  /**
   * An inbound cell of our own tunnel failed the endpoint's tag: a hop altered it (tagging)
   * or the path is corrupt. The tunnel can no longer be trusted, so it is torn down like an
   * outbound tag failure (PROTOCOL.md §5.2, §8) and the owner learns 'bad-cell'.
   */
  #ownedBadCell(key: string, tunnel: OwnedTunnel): void {
    this.#drop('cell-bad-tag');
    if (this.#owned.get(key) !== tunnel) return;
    this.#owned.delete(key);
    this.#counters.add('tunnels-torn-down-bad-cell');
    this.#sendDestroy(tunnel.firstHop, 'destroy-out', tunnel.linkId, 'bad-cell');
    this.onTunnelClosed(tunnel, 'bad-cell');
  }

  // ---- teardown --------------------------------------------------------------------------

  // A DESTROY is passed on with the reason it arrived with (normalised to a known name, so
  // the byte cannot carry anything else along the path): a master whose tunnel a hop tore
  // down for a failed tag learns 'bad-cell', not 'closed' (PROTOCOL.md §4.1).

  #onDestroyOut(fromKey: string, id: TunnelId, reasonCode: number): void {
    const entry = this.#byUpstream.get(fromKey, id);
    if (entry === undefined) return this.#drop('destroy-unknown-tunnel');
    const reason = destroyReasonName(reasonCode);
    if (entry.nextAddress !== undefined && entry.nextId !== undefined) this.#sendDestroy(entry.nextAddress, 'destroy-out', entry.nextId, reason);
    this.#remove(entry, reason);
    this.#counters.add('destroys-received');
  }

  #onDestroyIn(fromKey: string, id: TunnelId, reasonCode: number): void {
    const reason = destroyReasonName(reasonCode);
    const key = `${fromKey}|${id}`;
    const tunnel = this.#owned.get(key);
    if (tunnel !== undefined) {
      this.#owned.delete(key);
      this.#counters.add('destroys-received');
      if (reason === 'bad-cell') this.#counters.add('tunnels-torn-down-bad-cell');
      this.onTunnelClosed(tunnel, reason);
      return;
    }
    const entry = this.#byDownstream.get(fromKey, id);
    if (entry === undefined) return this.#drop('destroy-unknown-tunnel');
    this.#sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, reason);
    this.#remove(entry, reason);
    this.#counters.add('destroys-received');
  }

  #onNeighbourLost(peerKey: string): void {
    this.#counters.add('neighbours-lost');
    for (const entry of [...this.#byUpstream.values()]) {
      if (entry.prevKey === peerKey && entry.nextAddress !== undefined && entry.nextId !== undefined) {
        this.#sendDestroy(entry.nextAddress, 'destroy-out', entry.nextId, 'neighbour-lost');
        this.#remove(entry, 'neighbour-lost');
      } else if (entry.nextKey === peerKey) {
        this.#sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, 'neighbour-lost');
        this.#remove(entry, 'neighbour-lost');
      } else if (entry.prevKey === peerKey) {
        this.#remove(entry, 'neighbour-lost');
      }
    }
    for (const [key, tunnel] of [...this.#owned]) {
      if (tunnel.firstHopKey !== peerKey) continue;
      this.#owned.delete(key);
      this.onTunnelClosed(tunnel, 'neighbour-lost');
    }
  }

  #remove(entry: HopEntry, reason: DestroyReason): void {
    if (this.#byUpstream.get(entry.prevKey, entry.prevId) === entry) {
      this.#byUpstream.delete(entry.prevKey, entry.prevId);
      this.#unrefPeer(entry.prevKey);
      entry.layerKeys.fill(0);
    }
    if (this.#endpoints.get(entry.handle) === entry) this.#endpoints.delete(entry.handle);
    if (entry.nextKey !== undefined && entry.nextId !== undefined) {
      if (this.#byDownstream.get(entry.nextKey, entry.nextId) === entry) {
        this.#byDownstream.delete(entry.nextKey, entry.nextId);
        this.#unrefPeer(entry.nextKey);
      }
    }
    if (entry.endpointOpen) {
      entry.endpointOpen = false;
      this.#policy.closeEndpoint(this.#endpointView(entry), reason);
    }
  }

  #sendDestroy(to: UdpAddress, type: 'destroy-out' | 'destroy-in', id: TunnelId, reason: DestroyReason): void {
    if (this.#closed) return;
    this.#link.send(to, encodeTunnelMessage({ type, tunnelId: id, reason: DESTROY_REASONS[reason] }));
  }

  // ---- housekeeping ----------------------------------------------------------------------

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#tick();
      if (!this.#closed) this.#schedule();
    }, TUNNEL_TICK_MS);
  }

  #tick(): void {
    const now = this.#clock.now();
    for (const entry of [...this.#byUpstream.values()]) {
      if (entry.deadline > now) continue;
      this.#counters.add(entry.state === 'pending' ? 'transit-build-expired' : 'transit-expired');
      this.#remove(entry, 'expired');
    }
    for (const [key, tunnel] of [...this.#owned]) {
      if (tunnel.expiresAt > now) continue;
      this.#owned.delete(key);
      this.#sendDestroy(tunnel.firstHop, 'destroy-out', tunnel.linkId, 'expired');
      this.onTunnelClosed(tunnel, 'expired');
    }
    for (const [ephemeral, until] of this.#seenEphemerals) if (until <= now) this.#seenEphemerals.delete(ephemeral);
    this.#heartbeatNeighbours();
  }

  /**
   * Every neighbour we hold tunnel state with gets the link's liveness check (PROTOCOL.md
   * §3.8): a dead one becomes `unreachable`, and #onNeighbourLost frees its tunnels long
   * before they expire, whichever side of us it was on and whether or not cells still flow.
   */
  #heartbeatNeighbours(): void {
    // #peerRefs holds each neighbour of a transit entry once, so this costs per neighbour,
    // not per tunnel; a master's own tunnels add their first hops.
    const neighbours = new Map<string, UdpAddress>();
    for (const peer of this.#peerRefs.values()) neighbours.set(peer.key, peer.address);
    for (const tunnel of this.#owned.values()) neighbours.set(tunnel.firstHopKey, tunnel.firstHop);
    for (const address of neighbours.values()) this.#link.heartbeat(address);
  }

  // ---- helpers ---------------------------------------------------------------------------

  /** false if `ephemeral` was seen (a replayed build) or the cache is full (refuse, never forget early). */
  #rememberEphemeral(ephemeral: Uint8Array, ttlMs: number): boolean {
    const key = Buffer.from(ephemeral).toString('base64');
    if (this.#seenEphemerals.has(key)) return false;
    if (this.#seenEphemerals.size >= REPLAY_CACHE_LIMIT) return false;
    this.#seenEphemerals.set(key, this.#clock.now() + ttlMs);
    return true;
  }

  /** A random link tunnel id not used toward `peerKey` by any of our tables. */
  #chooseId(peerKey: string): TunnelId {
    for (;;) {
      const bytes = randomBytes(4);
      const id = tunnelId(((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0);
      const key = `${peerKey}|${id}`;
      if (!this.#byDownstream.has(peerKey, id) && !this.#owned.has(key) && !this.#pendingBuilds.has(key)) return id;
    }
  }

  /** The shared key string and address of a neighbour, counting one more entry that uses them. */
  #refPeer(key: string, address: UdpAddress): PeerRef {
    let peer = this.#peerRefs.get(key);
    if (peer === undefined) {
      peer = { key, address: { host: address.host, port: address.port }, upstream: undefined, refs: 0 };
      this.#peerRefs.set(key, peer);
    }
    peer.refs++;
    return peer;
  }

  #unrefPeer(key: string): void {
    const peer = this.#peerRefs.get(key);
    if (peer !== undefined && --peer.refs === 0) this.#peerRefs.delete(key);
  }

  #entryByHandle(tunnel: EndpointTunnel): HopEntry | undefined {
    return this.#endpoints.get(tunnel.handle);
  }

  #endpointView(entry: HopEntry): EndpointTunnel {
    return { handle: entry.handle, upstream: entry.prev, expiresAt: entry.expiresAt };
  }

  #drop(reason: TunnelDropReason): void {
    this.#counters.add(`drop:${reason}`);
  }
}

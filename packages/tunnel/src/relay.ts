/**
 * A hop of someone else's tunnel (PROTOCOL.md §4.2-§4.5, §5.4, §8): it opens build records in
 * both path modes, admits or refuses, forwards builds and their responses, relays cells
 * peeling or adding one layer, passes DESTROYs on, and frees its entries when a neighbour is
 * lost or they expire. When this hop is the tunnel's endpoint it hands over to endpoint.ts.
 *
 * INVARIANT: state is re-checked after every await (a tunnel may be destroyed meanwhile).
 */
import { addressKey, replayCheck, replayMark, type Counters } from '@deut/common';
import { addInboundLayerInto, peelOutboundInto, randomBytes } from '@deut/crypto';
import type { Link, LinkPeer } from '@deut/link';
import { CELL_BYTES, CELL_HEADER_BYTES, RELAYER_FILLER_BYTES, encodeCellHeaderInto, encodeTunnelMessage, type TunnelId, type TunnelMessage } from '@deut/wire';
import { acceptRecord, acceptRelayerHop, openRecord, transformRequestRecords, type HopAcceptance } from './build-crypto.js';
import { BUILD_MAX_AGE_S, CLOCK_SKEW_S, MAX_TUNNEL_LIFETIME_MS, TUNNEL_LIFETIME_MS, TUNNEL_TICK_MS } from './constants.js';
import { destroyReasonName, type DestroyReason, type PeerCandidate, type RefusalReason, type TunnelContext } from './context.js';
import type { TunnelCounter } from './counters.js';
import type { EndpointRole } from './endpoint.js';
import { INBOUND_KEY, OUTBOUND_KEY, WINDOW_WORDS, activate, type HopEntry, type HopTable } from './hop-table.js';
import type { PeerIdMap } from './peer-id-map.js';

const RELAYER_REPLAY_TTL_MS = TUNNEL_LIFETIME_MS + CLOCK_SKEW_S * 1000;
/** Kept a little past the last moment a request could be fresh (timer granularity). */
const REPLAY_MARGIN_MS = 2 * TUNNEL_TICK_MS;

/** What the node decides for the engine as a hop. */
export interface HopPolicy {
  /**
   * Build-rate admission, asked before any cryptography so that a flooding neighbour costs
   * no key exchange; false drops the request silently (no reply is possible without keys).
   */
  allowBuildFrom(from: LinkPeer): boolean;
  /** Admission of a transit tunnel in a role (this node does not relay, ...); a reason refuses it. */
  admit(from: LinkPeer, role: 'relay' | 'endpoint'): RefusalReason | undefined;
  /** Relayer mode: a random next hop other than the excluded address keys. */
  pickNextHop(exclude: ReadonlySet<string>): PeerCandidate | undefined;
}

/** The engine's caps on transit tunnels (see TunnelEngineOptions). */
export interface TransitLimits {
  readonly maxTransit: number;
  readonly maxTransitPerNeighbour: number;
}

/**
 * PROTOCOL.md §4.5: a build's `time` (whole seconds) may be up to CLOCK_SKEW_S ahead of this
 * hop's clock and up to BUILD_MAX_AGE_S + CLOCK_SKEW_S behind it, edges included.
 */
export function buildTimeAcceptable(timeSeconds: number, nowMs: number): boolean {
  const ms = timeSeconds * 1000;
  return ms <= nowMs + CLOCK_SKEW_S * 1000 && ms >= nowMs - (BUILD_MAX_AGE_S + CLOCK_SKEW_S) * 1000;
}

/** The relay role of one engine: every hop entry's life but the endpoint's own part. */
export class RelayRole {
  readonly #ctx: TunnelContext;
  readonly #policy: HopPolicy;
  readonly #endpoint: EndpointRole;
  readonly #limits: TransitLimits;
  readonly #hops: HopTable;
  // The cell path's state, held directly: a relayed cell costs no lookup beyond its entry's.
  readonly #link: Link;
  readonly #counters: Counters<TunnelCounter>;
  readonly #upstream: PeerIdMap<HopEntry>;
  /** The cell being relayed (relaying is synchronous, and link.send copies it). */
  readonly #relayCell = new Uint8Array(CELL_BYTES);

  constructor(ctx: TunnelContext, policy: HopPolicy, endpoint: EndpointRole, limits: TransitLimits) {
    this.#ctx = ctx;
    this.#policy = policy;
    this.#endpoint = endpoint;
    this.#limits = limits;
    this.#hops = ctx.hops;
    this.#link = ctx.link;
    this.#counters = ctx.counters;
    this.#upstream = ctx.hops.upstream;
  }

  // ---- builds --------------------------------------------------------------------------

  /** A master-mode BUILD_REQUEST (PROTOCOL.md §4.2): one record is ours. */
  buildRequest(from: LinkPeer, fromKey: string, prevId: TunnelId, records: Uint8Array): void {
    const ctx = this.#ctx;
    if (this.#upstream.has(fromKey, prevId)) return ctx.drop('build-duplicate-id');
    if (!this.#policy.allowBuildFrom(from)) return ctx.drop('build-rate-limited');
    // Counts key exchanges: exactly one per admitted request (and none for a dropped one).
    this.#counters.add('build-key-exchanges');
    const opened = openRecord(ctx.identity, records);
    if (opened === null) return ctx.drop('build-bad-record');
    const { instructions } = opened;
    const now = ctx.clock.now();
    // Remembered until the request's own time could no longer pass the check below, so a
    // replay is refused for as long as the request would be fresh (PROTOCOL.md §4.5).
    const freshUntil = (instructions.timeSeconds + BUILD_MAX_AGE_S + CLOCK_SKEW_S) * 1000;
    if (!this.#rememberEphemeral(opened.ephemeral, Math.max(freshUntil - now, 0) + REPLAY_MARGIN_MS)) return ctx.drop('build-replay');
    const acceptance = acceptRecord(ctx.identity, opened);
    const role = instructions.role;
    if (!buildTimeAcceptable(instructions.timeSeconds, now)) {
      this.#counters.add('build-refused-stale');
      return ctx.refuse(from.address, prevId, acceptance, 'stale');
    }
    const refusal = this.#admit(from, fromKey, role);
    if (refusal !== undefined) return ctx.refuse(from.address, prevId, acceptance, refusal);
    const lifetimeMs = Math.min(instructions.lifetimeSeconds * 1000, MAX_TUNNEL_LIFETIME_MS);
    const entry = this.#add(role, from, fromKey, prevId, acceptance, lifetimeMs);
    if (role === 'endpoint') return this.#endpoint.open(entry);
    const next = { address: instructions.next.address, publicKey: instructions.next.staticKey };
    this.#forwardBuild(entry, next, (nextId) => ({ type: 'build-request', tunnelId: nextId, records: transformRequestRecords(records, opened.requestLayerKey) }));
  }

  /** A relayer-mode BUILD_REQUEST (PROTOCOL.md §4.4): this hop picks the next one. */
  relayerBuildRequest(from: LinkPeer, fromKey: string, prevId: TunnelId, ttl: number, ephemeral: Uint8Array): void {
    const ctx = this.#ctx;
    if (this.#upstream.has(fromKey, prevId)) return ctx.drop('build-duplicate-id');
    if (!this.#policy.allowBuildFrom(from)) return ctx.drop('build-rate-limited');
    if (!this.#rememberEphemeral(ephemeral, RELAYER_REPLAY_TTL_MS)) return ctx.drop('build-replay');
    this.#counters.add('build-key-exchanges');
    const hop = acceptRelayerHop(ephemeral);
    const role = ttl === 0 ? 'endpoint' : 'relay';
    const refusal = this.#admit(from, fromKey, role);
    if (refusal !== undefined) return ctx.refuse(from.address, prevId, hop, refusal);
    const entry = this.#add(role, from, fromKey, prevId, hop, TUNNEL_LIFETIME_MS);
    if (role === 'endpoint') return this.#endpoint.open(entry);
    const next = this.#policy.pickNextHop(new Set([fromKey, addressKey(this.#link.address)]));
    if (next === undefined) return this.#refuseForwarding(entry, 'next-hop-unreachable');
    this.#forwardBuild(entry, next, (nextId) => ({
      type: 'build-request-relayer',
      tunnelId: nextId,
      ttl: ttl - 1,
      ephemeralKey: hop.nextE,
      filler: randomBytes(RELAYER_FILLER_BYTES),
    }));
  }

  /** The next hop's BUILD_RESPONSE for a forwarded build: add our slot and pass it back. */
  buildResponse(entry: HopEntry, slots: Uint8Array): void {
    if (entry.state !== 'pending') return this.#ctx.drop('build-response-unknown');
    activate(entry);
    this.#ctx.entryReply(entry, { status: 'accepted', reason: 'none', endpoint: null }, slots);
  }

  #rememberEphemeral(ephemeral: Uint8Array, ttlMs: number): boolean {
    return this.#hops.rememberEphemeral(ephemeral, this.#ctx.clock.now() + ttlMs);
  }

  #admit(from: LinkPeer, fromKey: string, role: 'relay' | 'endpoint'): RefusalReason | undefined {
    if (this.#upstream.size >= this.#limits.maxTransit) {
      this.#counters.add('build-refused-transit-cap');
      return 'overloaded';
    }
    if (this.#upstream.sizeOf(fromKey) >= this.#limits.maxTransitPerNeighbour) {
      this.#counters.add('build-refused-neighbour-cap');
      return 'overloaded';
    }
    const refusal = this.#policy.admit(from, role);
    if (refusal !== undefined) this.#counters.add(`build-refused-${refusal}`);
    return refusal;
  }

  #add(role: 'relay' | 'endpoint', prev: LinkPeer, prevKey: string, prevId: TunnelId, acceptance: HopAcceptance, lifetimeMs: number): HopEntry {
    return this.#hops.add(role, prev, prevKey, prevId, acceptance, lifetimeMs, this.#ctx.clock.now());
  }

  #forwardBuild(entry: HopEntry, next: PeerCandidate, request: (nextId: TunnelId) => TunnelMessage): void {
    const nextKey = addressKey(next.address);
    if (nextKey === entry.prevKey || nextKey === addressKey(this.#link.address)) {
      this.#hops.remove(entry, 'closed');
      return this.#ctx.entryReply(entry, { status: 'refused', reason: 'bad-record', endpoint: null }, undefined);
    }
    const nextId = this.#hops.linkNext(entry, nextKey, next.address);
    const stillPending = (): boolean => this.#hops.downstream.get(nextKey, nextId) === entry && entry.state === 'pending';
    this.#link.connect(next.address, { expectedKey: next.publicKey }).then(
      () => {
        if (!stillPending()) return;
        this.#link.send(next.address, encodeTunnelMessage(request(nextId)));
        this.#counters.add('builds-forwarded');
      },
      () => {
        if (stillPending()) this.#refuseForwarding(entry, 'next-hop-unreachable');
      },
    );
  }

  #refuseForwarding(entry: HopEntry, reason: 'next-hop-unreachable'): void {
    this.#counters.add(`build-refused-${reason}`);
    this.#hops.remove(entry, 'closed');
    this.#ctx.entryReply(entry, { status: 'refused', reason, endpoint: null }, undefined);
  }

  // ---- cells -----------------------------------------------------------------------------

  /** A CELL_OUT from upstream: peel our layer and pass it on, or hand it to the endpoint. */
  cellOut(fromKey: string, id: TunnelId, seq: number, body: Uint8Array): void {
    const entry = this.#upstream.get(fromKey, id);
    if (entry === undefined) return this.#ctx.drop('cell-unknown-tunnel');
    if (entry.state !== 'active') return this.#ctx.drop('cell-not-ready');
    if (!replayCheck(entry.windows, 0, WINDOW_WORDS, entry.outHighest, seq)) return this.#ctx.drop('cell-replay');
    if (entry.role === 'endpoint') {
      if (!this.#endpoint.cellOut(entry, seq, body)) this.#badCell(entry);
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

  /** A CELL_IN from downstream for one of our relay entries: add our layer and pass it back. */
  cellIn(entry: HopEntry, seq: number, body: Uint8Array): void {
    if (entry.state !== 'active') return this.#ctx.drop('cell-not-ready');
    const inHighest = replayMark(entry.windows, WINDOW_WORDS, WINDOW_WORDS, entry.inHighest, seq);
    if (inHighest === -2) return this.#ctx.drop('cell-replay');
    entry.inHighest = inHighest;
    const cell = this.#relayCell;
    addInboundLayerInto(entry.layerKeys, seq, body, cell, CELL_HEADER_BYTES, INBOUND_KEY);
    encodeCellHeaderInto(cell, 'cell-in', entry.prevId, seq + entry.inboundOffset);
    this.#link.send(entry.prev.address, cell);
    this.#counters.add('cells-relayed');
  }

  /** A tag failed: tagging or corruption. Drop, count, and tear the tunnel down both ways. */
  #badCell(entry: HopEntry): void {
    this.#ctx.drop('cell-bad-tag');
    this.#tearDown(entry, 'bad-cell');
  }

  // ---- teardown --------------------------------------------------------------------------

  // A DESTROY is passed on with the reason it arrived with (normalised to a known name, so
  // the byte cannot carry anything else along the path): a master whose tunnel a hop tore
  // down for a failed tag learns 'bad-cell', not 'closed' (PROTOCOL.md §4.1).

  /** A DESTROY from upstream: pass it on downstream, if there is a downstream. */
  destroyOut(fromKey: string, id: TunnelId, reasonCode: number): void {
    const entry = this.#upstream.get(fromKey, id);
    if (entry === undefined) return this.#ctx.drop('destroy-unknown-tunnel');
    const reason = destroyReasonName(reasonCode);
    this.#destroyNext(entry, reason);
    this.#hops.remove(entry, reason);
    this.#counters.add('destroys-received');
  }

  /** A DESTROY from downstream for one of our relay entries: pass it back upstream. */
  destroyIn(entry: HopEntry, reason: DestroyReason): void {
    this.#ctx.sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, reason);
    this.#hops.remove(entry, reason);
    this.#counters.add('destroys-received');
  }

  /** A neighbour's link died: every entry through it goes, and the other side is told. */
  neighbourLost(peerKey: string): void {
    const ctx = this.#ctx;
    for (const entry of [...this.#upstream.values()]) {
      if (entry.prevKey === peerKey && entry.nextAddress !== undefined && entry.nextId !== undefined) {
        ctx.sendDestroy(entry.nextAddress, 'destroy-out', entry.nextId, 'neighbour-lost');
        this.#hops.remove(entry, 'neighbour-lost');
      } else if (entry.nextKey === peerKey) {
        ctx.sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, 'neighbour-lost');
        this.#hops.remove(entry, 'neighbour-lost');
      } else if (entry.prevKey === peerKey) {
        this.#hops.remove(entry, 'neighbour-lost');
      }
    }
  }

  /** Drops entries whose build gave up or whose tunnel expired. */
  expire(now: number): void {
    for (const entry of [...this.#upstream.values()]) {
      if (entry.deadline > now) continue;
      this.#counters.add(entry.state === 'pending' ? 'transit-build-expired' : 'transit-expired');
      this.#hops.remove(entry, 'expired');
    }
  }

  /** Engine shutdown: every entry goes, and both sides are told. */
  closeAll(): void {
    for (const entry of [...this.#upstream.values()]) this.#tearDown(entry, 'shutdown');
  }

  #tearDown(entry: HopEntry, reason: DestroyReason): void {
    this.#ctx.sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, reason);
    this.#destroyNext(entry, reason);
    this.#hops.remove(entry, reason);
  }

  /** An endpoint, or a relay whose build was not forwarded, has no one downstream to tell. */
  #destroyNext(entry: HopEntry, reason: DestroyReason): void {
    if (entry.nextAddress !== undefined && entry.nextId !== undefined) this.#ctx.sendDestroy(entry.nextAddress, 'destroy-out', entry.nextId, reason);
  }
}

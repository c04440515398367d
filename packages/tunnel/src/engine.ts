/**
 * The tunnel engine (PROTOCOL.md §4-§5, §8): one per node, for every role at once. It decodes
 * each tunnel-layer link payload and hands it to the role it is for: relay.ts (a hop of
 * someone else's tunnel), endpoint.ts (the last hop's part), master.ts (our own builds and
 * tunnels), all around one hop table (hop-table.ts). The node's decisions and the two places
 * data leaves the engine are interfaces given to the constructor; every drop of remote input
 * is counted.
 */
import { ProtocolError, addressKey, silentLogger, systemClock, type Clock, type CounterSnapshot, type Logger, type TimerHandle, type UdpAddress } from '@deut/common';
import type { KeyPair } from '@deut/crypto';
import type { Link, LinkPeer } from '@deut/link';
import { decodeTunnelMessage, wireDropCode, type TunnelMessage } from '@deut/wire';
import { MAX_TRANSIT_PER_NEIGHBOUR, MAX_TRANSIT_TUNNELS, TUNNEL_TICK_MS } from './constants.js';
import { TunnelContext, destroyReasonName, type DestroyReason } from './context.js';
import type { TunnelCounter, TunnelErrorCode } from './counters.js';
import { EndpointRole, type EndpointSender, type EndpointSink, type EndpointTunnel } from './endpoint.js';
import { HopTable, type HopEntry } from './hop-table.js';
import { BuildError, MasterRole, type BuildPlan, type MasterSink } from './master.js';
import type { OwnedTunnel } from './owned-tunnel.js';
import type { PeerIdMap } from './peer-id-map.js';
import { RelayRole, type HopPolicy } from './relay.js';

/** Options of {@link TunnelEngine}. */
export interface TunnelEngineOptions {
  readonly link: Link;
  readonly identity: KeyPair;
  /** What the node decides as a hop: build rate, admission, a relayer-mode next hop. */
  readonly policy: HopPolicy;
  /** Where endpoint tunnels get their ports and deliver their cells (the node's exits). */
  readonly endpoints: EndpointSink;
  /** Where the cells and ends of the tunnels this node built go. */
  readonly master: MasterSink;
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

/** Table sizes and counters of a {@link TunnelEngine}. */
export interface TunnelEngineStats {
  /** Hop entries, relay and endpoint. */
  readonly transit: number;
  readonly relaying: number;
  readonly endpoints: number;
  readonly owned: number;
  readonly pendingBuilds: number;
  /** Build ephemeral keys remembered against replays. */
  readonly replayCache: number;
  readonly counters: CounterSnapshot<TunnelCounter>;
}

/** The per-node tunnel state machine. */
export class TunnelEngine implements EndpointSender {
  readonly #ctx: TunnelContext;
  readonly #relay: RelayRole;
  readonly #endpoint: EndpointRole;
  readonly #master: MasterRole;
  /** Relay entries by the id we chose toward their next hop: where a message toward the master goes first. */
  readonly #downstream: PeerIdMap<HopEntry>;
  #timer: TimerHandle | undefined;

  constructor(options: TunnelEngineOptions) {
    // The hop table's id allocator must avoid the master's ids, and the master allocates
    // through the table: the table asks the master, made right after, through this closure.
    const hops = new HopTable(options.endpoints, { holdsId: (peerKey, id) => this.#master.holdsId(peerKey, id) });
    const ctx = new TunnelContext(options.link, options.identity, options.clock ?? systemClock, options.logger ?? silentLogger, hops);
    this.#ctx = ctx;
    this.#master = new MasterRole(ctx, options.master);
    this.#endpoint = new EndpointRole(ctx, options.endpoints);
    this.#relay = new RelayRole(ctx, options.policy, this.#endpoint, {
      maxTransit: options.maxTransit ?? MAX_TRANSIT_TUNNELS,
      maxTransitPerNeighbour: options.maxTransitPerNeighbour ?? MAX_TRANSIT_PER_NEIGHBOUR,
    });
    this.#downstream = hops.downstream;
    ctx.link.on('unreachable', ({ address }) => this.#onNeighbourLost(addressKey(address)));
    this.#schedule();
  }

  /** Handles one tunnel-layer link payload. Never throws for remote input. */
  handle(payload: Uint8Array, from: LinkPeer): void {
    const ctx = this.#ctx;
    if (ctx.closed) return;
    let message: TunnelMessage;
    try {
      message = decodeTunnelMessage(payload);
    } catch (error) {
      // decodeTunnelMessage raises only the wire's codes.
      if (error instanceof ProtocolError) return ctx.drop(`decode-${wireDropCode(error)}`);
      throw error;
    }
    try {
      this.#dispatch(message, from);
    } catch (error) {
      // Encoders and build-crypto raise only TunnelErrorCode codes.
      if (error instanceof ProtocolError) return ctx.drop(error.code.toLowerCase() as Lowercase<TunnelErrorCode>);
      ctx.drop('internal-error');
      ctx.logger.error('tunnel: unexpected error handling a message', { error: String(error) });
    }
  }

  // ---- master --------------------------------------------------------------------------

  /**
   * Builds a tunnel: one request out, one response back. Rejects with a BuildError naming
   * the hop that refused, or a timeout; the partial tunnel is torn down either way.
   */
  build(plan: BuildPlan): Promise<OwnedTunnel> {
    if (this.#ctx.closed) return Promise.reject(new BuildError('ENGINE_CLOSED', 'tunnel engine is closed', {}));
    return this.#master.build(plan);
  }

  /** Sends one cell of plaintext (CELL_PLAINTEXT_BYTES) through an owned tunnel. */
  send(tunnel: OwnedTunnel, plaintext: Uint8Array): boolean {
    return this.#master.send(tunnel, plaintext);
  }

  /** Tears down an owned tunnel (TunnelDestroy hop by hop). */
  destroy(tunnel: OwnedTunnel, reason: DestroyReason = 'closed'): void {
    this.#master.destroy(tunnel, reason);
  }

  /** Live owned tunnels. */
  ownedTunnels(): OwnedTunnel[] {
    return [...this.#master.tunnels()];
  }

  // ---- endpoint ------------------------------------------------------------------------

  /** Sends cell plaintext from an endpoint tunnel toward its master. */
  sendFromEndpoint(tunnel: EndpointTunnel, plaintext: Uint8Array): boolean {
    return this.#endpoint.send(tunnel, plaintext);
  }

  /** Tears down an endpoint tunnel from the endpoint's side (e.g. exit abuse). */
  closeEndpoint(tunnel: EndpointTunnel, reason: DestroyReason = 'closed'): void {
    this.#endpoint.close(tunnel, reason);
  }

  // ---- stats and lifecycle -------------------------------------------------------------

  /** Table sizes and counters (drops by reason, cells relayed, builds). */
  stats(): TunnelEngineStats {
    const hops = this.#ctx.hops;
    let endpoints = 0;
    for (const entry of hops.upstream.values()) if (entry.role === 'endpoint') endpoints++;
    return {
      transit: hops.upstream.size,
      relaying: hops.upstream.size - endpoints,
      endpoints,
      owned: this.#master.size,
      pendingBuilds: this.#master.pendingCount,
      replayCache: hops.replayCacheSize,
      counters: this.#ctx.counters.snapshot(),
    };
  }

  /** Destroys every tunnel (owned and transit), fails pending builds, stops timers. */
  close(): void {
    const ctx = this.#ctx;
    if (ctx.closed) return;
    for (const tunnel of [...this.#master.tunnels()]) this.#master.destroy(tunnel, 'shutdown');
    this.#relay.closeAll();
    this.#master.failPendingBuilds();
    ctx.closed = true;
    if (this.#timer !== undefined) ctx.clock.clearTimeout(this.#timer);
  }

  // ---- dispatch ------------------------------------------------------------------------

  #dispatch(message: TunnelMessage, from: LinkPeer): void {
    const fromKey = addressKey(from.address);
    const id = message.tunnelId;
    switch (message.type) {
      // Toward the endpoint: always someone else's tunnel, at a relay or at its endpoint.
      case 'cell-out':
        return this.#relay.cellOut(fromKey, id, message.seq, message.body);
      case 'build-request':
        return this.#relay.buildRequest(from, fromKey, id, message.records);
      case 'build-request-relayer':
        return this.#relay.relayerBuildRequest(from, fromKey, id, message.ttl, message.ephemeralKey);
      case 'destroy-out':
        return this.#relay.destroyOut(fromKey, id, message.reason);
    }
    // Toward the master: a relay entry's if we chose this id toward the sender for one, else
    // our own tunnel's or unknown. Ids are unique across our tables toward one neighbour
    // (HopTable.chooseId), so a relayed cell never builds the owned tables' key string.
    const entry = this.#downstream.get(fromKey, id);
    switch (message.type) {
      case 'cell-in':
        if (entry === undefined) return this.#master.cellIn(fromKey, id, message.seq, message.body);
        return this.#relay.cellIn(entry, message.seq, message.body);
      case 'build-response':
        if (entry === undefined) return this.#master.buildResponse(fromKey, id, message.slots);
        return this.#relay.buildResponse(entry, message.slots);
      case 'destroy-in': {
        const reason = destroyReasonName(message.reason);
        if (entry === undefined) return this.#master.destroyIn(fromKey, id, reason);
        return this.#relay.destroyIn(entry, reason);
      }
    }
  }

  // ---- housekeeping ----------------------------------------------------------------------

  #onNeighbourLost(peerKey: string): void {
    this.#ctx.counters.add('neighbours-lost');
    this.#relay.neighbourLost(peerKey);
    this.#master.neighbourLost(peerKey);
  }

  #schedule(): void {
    this.#timer = this.#ctx.clock.setTimeout(() => {
      this.#tick();
      if (!this.#ctx.closed) this.#schedule();
    }, TUNNEL_TICK_MS);
  }

  #tick(): void {
    const now = this.#ctx.clock.now();
    this.#relay.expire(now);
    this.#master.expire(now);
    this.#ctx.hops.forgetEphemerals(now);
    this.#heartbeatNeighbours();
  }

  /**
   * Every neighbour we hold tunnel state with gets the link's liveness check (PROTOCOL.md
   * §3.8): a dead one becomes `unreachable`, and #onNeighbourLost frees its tunnels long
   * before they expire, whichever side of us it was on and whether or not cells still flow.
   */
  #heartbeatNeighbours(): void {
    // The hop table holds each neighbour of a transit entry once, so this costs per
    // neighbour, not per tunnel; a master's own tunnels add their first hops.
    const neighbours = new Map<string, UdpAddress>();
    for (const peer of this.#ctx.hops.neighbours()) neighbours.set(peer.key, peer.address);
    for (const tunnel of this.#master.tunnels()) neighbours.set(tunnel.firstHopKey, tunnel.firstHop);
    for (const address of neighbours.values()) this.#ctx.link.heartbeat(address);
  }
}

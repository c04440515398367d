/**
 * The endpoint's part of someone else's tunnel (PROTOCOL.md §4.3, §5.5): the last hop has the
 * node open a port for it (EndpointSink), opens the cells that reach it and hands their
 * plaintext to the node, and seals the node's answers toward the master.
 *
 * INVARIANT: state is re-checked after every await (a tunnel may be destroyed meanwhile).
 */
import { replayMark, type UdpAddress } from '@deut/common';
import { LAYER_KEY_BYTES, openOutbound, sealInbound } from '@deut/crypto';
import type { Link, LinkPeer } from '@deut/link';
import { CELL_BYTES, MAX_HOPS, encodeCellInto } from '@deut/wire';
import type { DestroyReason, RefusalReason, TunnelContext } from './context.js';
import { INBOUND_KEY, OUTBOUND_KEY, WINDOW_WORDS, activate, endpointView, type HopEntry, type HopTable } from './hop-table.js';

/** An endpoint tunnel as the node's exit code sees it. */
export interface EndpointTunnel {
  /** Local handle, unique within this engine. */
  readonly handle: number;
  /** The previous hop (for a 1-hop tunnel, the master itself). */
  readonly upstream: LinkPeer;
  readonly expiresAt: number;
}

/** Where the engine's endpoint tunnels meet the world: the node's exits. */
export interface EndpointSink {
  /** Endpoint setup (bind a port); resolves to the address to report, or a refusal reason. */
  open(tunnel: EndpointTunnel): Promise<UdpAddress | RefusalReason>;
  /** Endpoint teardown: release the port. Called once for every opened endpoint. */
  close(tunnel: EndpointTunnel, reason: DestroyReason): void;
  /** Cell plaintext that arrived at an endpoint. */
  frame(tunnel: EndpointTunnel, plaintext: Uint8Array): void;
}

/** What an endpoint's exits send through: the engine's side of {@link EndpointSink}. */
export interface EndpointSender {
  /** Sends cell plaintext (CELL_PLAINTEXT_BYTES) toward the master; false if the tunnel is gone or not yet open. */
  sendFromEndpoint(tunnel: EndpointTunnel, plaintext: Uint8Array): boolean;
}

/** The endpoint role of one engine. */
export class EndpointRole {
  readonly #ctx: TunnelContext;
  readonly #hops: HopTable;
  readonly #link: Link;
  readonly #sink: EndpointSink;

  constructor(ctx: TunnelContext, sink: EndpointSink) {
    this.#ctx = ctx;
    this.#hops = ctx.hops;
    this.#link = ctx.link;
    this.#sink = sink;
  }

  /** Has the node open the endpoint of a new entry, then replies to the build. */
  open(entry: HopEntry): void {
    const ctx = this.#ctx;
    const tunnel = endpointView(entry);
    this.#sink.open(tunnel).then(
      (result) => {
        if (!this.#hops.holds(entry)) {
          // Torn down while the port was being bound: give it back.
          if (typeof result !== 'string') this.#sink.close(tunnel, 'closed');
          return;
        }
        if (typeof result === 'string') {
          ctx.counters.add(`build-refused-${result}`);
          this.#hops.remove(entry, 'closed');
          return ctx.entryReply(entry, { status: 'refused', reason: result, endpoint: null }, undefined);
        }
        entry.endpointOpen = true;
        activate(entry);
        ctx.counters.add('endpoints-opened');
        ctx.entryReply(entry, { status: 'accepted', reason: 'none', endpoint: result }, undefined);
      },
      (error: unknown) => {
        ctx.logger.error('tunnel: endpoint setup failed', { error: String(error) });
        if (!this.#hops.holds(entry)) return;
        this.#hops.remove(entry, 'closed');
        ctx.entryReply(entry, { status: 'refused', reason: 'exit-policy', endpoint: null }, undefined);
      },
    );
  }

  /**
   * A cell that reached this endpoint, already checked active and fresh by the relay: its
   * plaintext goes to the node. false if its tag fails, for the caller to tear the tunnel down.
   */
  cellOut(entry: HopEntry, seq: number, body: Uint8Array): boolean {
    const plaintext = openOutbound(entry.layerKeys.subarray(OUTBOUND_KEY, OUTBOUND_KEY + LAYER_KEY_BYTES), seq, body, MAX_HOPS);
    if (plaintext === null) return false;
    entry.outHighest = replayMark(entry.windows, 0, WINDOW_WORDS, entry.outHighest, seq);
    this.#ctx.counters.add('endpoint-cells-received');
    this.#sink.frame(endpointView(entry), plaintext);
    return true;
  }

  /** See {@link EndpointSender.sendFromEndpoint}. */
  send(tunnel: EndpointTunnel, plaintext: Uint8Array): boolean {
    const entry = this.#hops.endpoint(tunnel.handle);
    if (entry === undefined || entry.state !== 'active') return false;
    const counter = entry.inboundCounter++;
    const cell = new Uint8Array(CELL_BYTES);
    encodeCellInto(cell, 'cell-in', entry.prevId, counter, sealInbound(entry.layerKeys.subarray(INBOUND_KEY), counter, plaintext, MAX_HOPS));
    this.#link.send(entry.prev.address, cell);
    this.#ctx.counters.add('endpoint-cells-sent');
    return true;
  }

  /** Tears down an endpoint tunnel from the endpoint's side (e.g. exit abuse). */
  close(tunnel: EndpointTunnel, reason: DestroyReason): void {
    const entry = this.#hops.endpoint(tunnel.handle);
    if (entry === undefined) return;
    this.#ctx.sendDestroy(entry.prev.address, 'destroy-in', entry.prevId, reason);
    this.#hops.remove(entry, reason);
  }
}

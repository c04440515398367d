/**
 * What the roles of one tunnel engine share (engine.ts wires them): the link, the clock, the
 * counters and the hop table, and the two messages a hop sends whatever its role, a
 * TunnelDestroy (PROTOCOL.md §4.1) and a build reply (PROTOCOL.md §4.3).
 */
import { Counters, type Clock, type Logger, type UdpAddress } from '@deut/common';
import type { KeyPair } from '@deut/crypto';
import type { Link } from '@deut/link';
import { encodeTunnelMessage, type BuildRefusalReason, type BuildReply, type TunnelId } from '@deut/wire';
import { addResponseSlot, sealReplySlot, wipeAcceptance, type HopAcceptance } from './build-crypto.js';
import type { TunnelCounter, TunnelDropReason } from './counters.js';
import type { HopEntry, HopTable } from './hop-table.js';

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

/** A relayer candidate: address and the static key to expect there. */
export interface PeerCandidate {
  readonly address: UdpAddress;
  readonly publicKey: Uint8Array;
}

/** One engine's shared state, and the messages every role sends. */
export class TunnelContext {
  readonly counters = new Counters<TunnelCounter>();
  /** Set once the engine closed: from then on nothing is sent. */
  closed = false;

  constructor(
    readonly link: Link,
    readonly identity: KeyPair,
    readonly clock: Clock,
    readonly logger: Logger,
    readonly hops: HopTable,
  ) {}

  /** Counts remote input dropped without an answer. */
  drop(reason: TunnelDropReason): void {
    this.counters.add(`drop:${reason}`);
  }

  /** Sends a TunnelDestroy, unless the engine closed (its shutdown sends the last ones). */
  sendDestroy(to: UdpAddress, type: 'destroy-out' | 'destroy-in', id: TunnelId, reason: DestroyReason): void {
    if (this.closed) return;
    this.link.send(to, encodeTunnelMessage({ type, tunnelId: id, reason: DESTROY_REASONS[reason] }));
  }

  /** Sends this hop's reply for `entry` once, then wipes and drops the reply secrets. */
  entryReply(entry: HopEntry, reply: BuildReply, slots: Uint8Array | undefined): void {
    const acceptance = entry.acceptance;
    if (acceptance === undefined) return;
    entry.acceptance = undefined;
    this.#reply(entry.prev.address, entry.prevId, acceptance, reply, slots);
    wipeAcceptance(acceptance);
  }

  /** Refuses a build that got no hop entry, and wipes its reply secrets. */
  refuse(to: UdpAddress, prevId: TunnelId, acceptance: HopAcceptance, reason: RefusalReason): void {
    this.#reply(to, prevId, acceptance, { status: 'refused', reason, endpoint: null }, undefined);
    wipeAcceptance(acceptance);
  }

  #reply(to: UdpAddress, prevId: TunnelId, acceptance: HopAcceptance, reply: BuildReply, slots: Uint8Array | undefined): void {
    const slot = sealReplySlot(acceptance, reply);
    const response = addResponseSlot(slots, slot, acceptance.responseLayerKey);
    this.link.send(to, encodeTunnelMessage({ type: 'build-response', tunnelId: prevId, slots: response }));
  }
}

/**
 * Vetting of relayers learned from peer exchange (PROTOCOL.md §4.7). A PEER_LIST comes from
 * an authenticated neighbour, but nothing proves that the addresses in it are relayers: a
 * hostile neighbour can name victims so that we send them handshakes (1200 bytes each, up
 * to HANDSHAKE_ATTEMPTS times). So a named address is unverified until one handshake with
 * it completes; we contact unverified addresses lazily, under a global budget of contacts
 * per second and in flight, with HANDSHAKE_ATTEMPTS_UNVERIFIED transmissions instead of 6;
 * an address that never answers is forgotten and not taken again for a while (5 s after a
 * first miss, doubling per further miss up to 5 min); and a
 * neighbour whose names go unanswered more often than answered, by PEX_DISTRUST_AFTER, is
 * distrusted: its unverified names are dropped and its lists refused for PEX_DISTRUST_MS.
 */
import type { Clock, Counters, RateLimit, TimerHandle } from '@deut/common';
import { TokenBucket, addressKey } from '@deut/common';
import type { PeerEntry } from '@deut/wire';
import type { PeerRecord, PeerTable } from './peers.js';
import { shuffled } from './random.js';

/** New addresses contacted per second and at once (all neighbours together). */
export const PEX_CONTACT_BUDGET: RateLimit = { perSecond: 4, burst: 8 };
/** Handshakes with unverified addresses in flight at once. */
export const PEX_CONTACTS_IN_FLIGHT = 4;
/** msg1 transmissions to an unverified address: one retransmission survives a lost datagram. */
export const HANDSHAKE_ATTEMPTS_UNVERIFIED = 2;
/** Longest time an unanswered address is not taken from any list again (after repeated misses). */
export const PEX_UNANSWERED_MEMORY_MS = 300_000;
/**
 * How long an address is not taken again after its first miss; each further miss doubles it,
 * up to PEX_UNANSWERED_MEMORY_MS. A relayer that missed one contact while everything was
 * starting (still busy, a lost datagram) was once shut out for the full 5 minutes, and a
 * master on a small mesh then had too few relayers for a path all that time.
 */
export const PEX_UNANSWERED_RETRY_MS = 5_000;
/** Unanswered minus answered names after which a neighbour is distrusted. */
export const PEX_DISTRUST_AFTER = 4;
/** How long a distrusted neighbour's lists are refused. */
export const PEX_DISTRUST_MS = 1_800_000;
/** Most addresses and neighbours remembered in each table (oldest forgotten first). */
const MEMORY_LIMIT = 4096;

/** Counter names {@link PeerVetting} adds to the node's counters. */
export type PeerVettingCounter =
  | 'pex-contacts'
  | 'pex-verified'
  | 'pex-unanswered'
  | 'pex-skipped-unanswered'
  | 'pex-distrusted'
  | 'pex-names-discarded'
  | `drop:${PeerVettingDropReason}`;

/** Why {@link PeerVetting} dropped a peer list (counted as `drop:<reason>` in the node's counters). */
export const PEER_VETTING_DROP_REASONS = ['pex-distrusted'] as const;

/** One of {@link PEER_VETTING_DROP_REASONS}. */
export type PeerVettingDropReason = (typeof PEER_VETTING_DROP_REASONS)[number];

/** Options of {@link PeerVetting}. */
export interface PeerVettingOptions {
  readonly peers: PeerTable;
  /** Runs a handshake with `peer` (its named key expected), with `attempts` transmissions. */
  readonly contact: (peer: PeerRecord, attempts: number) => Promise<unknown>;
  readonly clock: Clock;
  /** Where pex-* counters go (the node's). */
  readonly counters: Counters<PeerVettingCounter>;
  /** @default PEX_CONTACT_BUDGET */
  readonly budget?: RateLimit;
}

/** Sets `key` in an insertion-ordered map, forgetting the oldest entry beyond the limit. */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MEMORY_LIMIT) map.delete(map.keys().next().value!);
}

/** Decides which named relayers enter the table and contacts them under a budget. */
export class PeerVetting {
  readonly #o: PeerVettingOptions;
  readonly #bucket: TokenBucket;
  readonly #inFlight = new Set<string>();
  /** Address key → until when it is not taken again, and its misses in a row. */
  readonly #unanswered = new Map<string, { until: number; misses: number }>();
  /** Neighbour address key → unanswered minus answered names. */
  readonly #scores = new Map<string, number>();
  /** Neighbour address key → until when its lists are refused. */
  readonly #distrusted = new Map<string, number>();
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(options: PeerVettingOptions) {
    this.#o = options;
    this.#bucket = new TokenBucket(options.budget ?? PEX_CONTACT_BUDGET, () => options.clock.now());
  }

  /**
   * Takes the entries of a PEER_LIST from `neighbour` (an address key) into the table as
   * unverified, unless the neighbour is distrusted; returns how many were added.
   */
  learn(neighbour: string, entries: readonly PeerEntry[]): number {
    const now = this.#o.clock.now();
    const distrustedUntil = this.#distrusted.get(neighbour);
    if (distrustedUntil !== undefined && distrustedUntil > now) {
      this.#o.counters.add('drop:pex-distrusted');
      return 0;
    }
    let added = 0;
    for (const entry of entries) {
      const until = this.#unanswered.get(addressKey(entry.address))?.until;
      if (until !== undefined && until > now) {
        this.#o.counters.add('pex-skipped-unanswered');
        continue;
      }
      if (this.#o.peers.add(entry.address, entry.publicKey, neighbour)) added++;
    }
    this.contactSome();
    return added;
  }

  /** Contacts as many unverified relayers as the budget allows, and plans the next round. */
  contactSome(): void {
    if (this.#closed) return;
    const waiting = shuffled(this.#o.peers.unverified().filter((p) => !this.#inFlight.has(p.key)));
    for (const peer of waiting) {
      if (this.#inFlight.size >= PEX_CONTACTS_IN_FLIGHT || !this.#bucket.take()) break;
      this.#contact(peer);
    }
    if (this.#timer === undefined && waiting.some((p) => !this.#inFlight.has(p.key))) {
      this.#timer = this.#o.clock.setTimeout(() => {
        this.#timer = undefined;
        this.contactSome();
      }, Math.ceil(1000 / (this.#o.budget ?? PEX_CONTACT_BUDGET).perSecond));
    }
  }

  /** Stops contacting. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #contact(peer: PeerRecord): void {
    this.#inFlight.add(peer.key);
    this.#o.counters.add('pex-contacts');
    const neighbour = peer.namedBy;
    Promise.resolve()
      .then(() => this.#o.contact(peer, HANDSHAKE_ATTEMPTS_UNVERIFIED))
      .then(
      () => {
        this.#inFlight.delete(peer.key);
        if (this.#o.peers.get(peer.key) !== peer) return;
        this.#o.peers.verify(peer.key);
        this.#unanswered.delete(peer.key);
        this.#o.counters.add('pex-verified');
        // Answered names offset unanswered ones, but bank no credit for later victims.
        if (neighbour !== undefined) remember(this.#scores, neighbour, Math.max(0, (this.#scores.get(neighbour) ?? 0) - 1));
      },
      () => {
        this.#inFlight.delete(peer.key);
        if (this.#o.peers.get(peer.key) === peer) this.#o.peers.remove(peer.key);
        this.#o.counters.add('pex-unanswered');
        const now = this.#o.clock.now();
        const previous = this.#unanswered.get(peer.key);
        const misses = (previous?.misses ?? 0) + 1;
        const memory = Math.min(PEX_UNANSWERED_MEMORY_MS, PEX_UNANSWERED_RETRY_MS * 2 ** (misses - 1));
        remember(this.#unanswered, peer.key, { until: now + memory, misses });
        // An address retried while backing off is no new victim: only its first miss, and misses
        // once it is remembered for the full time (one per 5 min, as before), count against the
        // neighbour, so a relayer slow to start does not get its honest neighbour distrusted.
        if (neighbour === undefined || (previous !== undefined && memory < PEX_UNANSWERED_MEMORY_MS)) return;
        const score = (this.#scores.get(neighbour) ?? 0) + 1;
        remember(this.#scores, neighbour, score);
        if (score >= PEX_DISTRUST_AFTER && !((this.#distrusted.get(neighbour) ?? 0) > now)) {
          remember(this.#distrusted, neighbour, now + PEX_DISTRUST_MS);
          this.#scores.delete(neighbour);
          this.#o.counters.add('pex-distrusted');
          this.#o.counters.add('pex-names-discarded', this.#o.peers.removeNamedBy(neighbour));
        }
      },
    );
  }
}

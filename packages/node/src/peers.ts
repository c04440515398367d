/**
 * The peer table (PROTOCOL.md §4.7): relayers this node knows, with the static key it
 * authenticated or was told to expect. Masters pick paths from it; relayers in relayer
 * mode pick next hops from it; PEER_LIST answers sample it. A relayer only named by a
 * neighbour is unverified until a handshake with it completes, and is used for none of
 * these (its address might be a victim's).
 */
import { addressKey, type UdpAddress } from '@deut/common';
import type { PeerCandidate } from '@deut/tunnel';
import { parseIp } from '@deut/wire';
import { shuffled } from './random.js';

/** A relayer in the table. */
export interface PeerRecord extends PeerCandidate {
  readonly key: string;
  /** Consecutive build failures blamed on this relayer; reset by a success. */
  failures: number;
  /** Until when this relayer is left out of paths after failures. */
  avoidUntil: number;
  /** A handshake with this address completed (or it reached us over a link). */
  verified: boolean;
  /** Address key of the neighbour whose PEER_LIST named it, while unverified. */
  readonly namedBy: string | undefined;
}

/**
 * The /16 of an IPv4 address or the /32 of an IPv6 one: at most one hop per group (I2P's
 * rule). Computed from the parsed address bytes, so every spelling of an address (and an
 * IPv4-mapped IPv6 one) lands in the same group.
 */
export function subnetGroup(host: string): string {
  const { family, bytes } = parseIp(host);
  return family === 4 ? `4:${bytes[12]}.${bytes[13]}` : `6:${Buffer.from(bytes.subarray(0, 4)).toString('hex')}`;
}

/** Relayers known to this node, bounded. */
export class PeerTable {
  readonly #peers = new Map<string, PeerRecord>();

  constructor(
    private readonly self: string,
    private readonly now: () => number,
    private readonly maxPeers = 4096,
  ) {}

  /**
   * Adds a relayer: one we authenticated ourselves (verified), or, with `namedBy`, one a
   * neighbour named (unverified). A different key for a known address replaces nothing,
   * except that an authenticated key replaces a neighbour's unverified claim.
   */
  add(address: UdpAddress, publicKey: Uint8Array, namedBy?: string): boolean {
    const key = addressKey(address);
    const known = this.#peers.get(key);
    if (key === this.self || (known !== undefined && (known.verified || namedBy !== undefined))) return false;
    if (known === undefined && this.#peers.size >= this.maxPeers) return false;
    const verified = namedBy === undefined;
    this.#peers.set(key, { address: { host: address.host, port: address.port }, publicKey: publicKey.slice(), key, failures: 0, avoidUntil: 0, verified, namedBy });
    return true;
  }

  /** A handshake with this unverified relayer completed under the key it was named with. */
  verify(key: string): void {
    const peer = this.#peers.get(key);
    if (peer !== undefined) peer.verified = true;
  }

  /** Relayers a handshake has proven. */
  verified(): PeerRecord[] {
    return [...this.#peers.values()].filter((p) => p.verified);
  }

  /** Relayers only named by neighbours so far. */
  unverified(): PeerRecord[] {
    return [...this.#peers.values()].filter((p) => !p.verified);
  }

  /** Forgets every unverified relayer that `neighbour` named; returns how many. */
  removeNamedBy(neighbour: string): number {
    let removed = 0;
    for (const peer of [...this.#peers.values()]) {
      if (!peer.verified && peer.namedBy === neighbour) {
        this.#peers.delete(peer.key);
        removed++;
      }
    }
    return removed;
  }

  /** Forgets a relayer. */
  remove(key: string): void {
    this.#peers.delete(key);
  }

  /** The record for an address key. */
  get(key: string): PeerRecord | undefined {
    return this.#peers.get(key);
  }

  /** Number of relayers known. */
  get size(): number {
    return this.#peers.size;
  }

  /** All relayers. */
  all(): PeerRecord[] {
    return [...this.#peers.values()];
  }

  /** A build through this relayer failed or timed out: leave it out for a while, longer each time. */
  blame(key: string): void {
    const peer = this.#peers.get(key);
    if (peer === undefined) return;
    peer.failures++;
    peer.avoidUntil = this.now() + Math.min(1000 * 2 ** peer.failures, 120_000);
  }

  /** A build through this relayer succeeded. */
  credit(key: string): void {
    const peer = this.#peers.get(key);
    if (peer !== undefined) {
      peer.failures = 0;
      peer.avoidUntil = 0;
    }
  }

  /**
   * `count` distinct verified relayers chosen uniformly at random, none in `exclude`, none
   * currently avoided, and (unless `sameSubnet`) no two in one /16. Fewer if the table cannot supply them.
   * With `usage` (times each relayer is already used, by address key), the least used come
   * first, uniformly at random among equals. With `orAvoided`, relayers still avoided fill
   * what the others cannot, the one whose avoidance ends soonest first.
   */
  pick(count: number, options: { exclude?: ReadonlySet<string>; sameSubnet?: boolean; usage?: ReadonlyMap<string, number>; orAvoided?: boolean } = {}): PeerRecord[] {
    const now = this.now();
    const groups = new Set<string>();
    const chosen: PeerRecord[] = [];
    const usage = options.usage;
    const candidates = shuffled([...this.#peers.values()]).filter((peer) => peer.verified && options.exclude?.has(peer.key) !== true);
    // A stable sort keeps the shuffled order among equals.
    if (usage !== undefined) candidates.sort((a, b) => (usage.get(a.key) ?? 0) - (usage.get(b.key) ?? 0));
    const take = (peers: PeerRecord[]): void => {
      for (const peer of peers) {
        if (chosen.length >= count) return;
        if (options.sameSubnet !== true) {
          const group = subnetGroup(peer.address.host);
          if (groups.has(group)) continue;
          groups.add(group);
        }
        chosen.push(peer);
      }
    };
    take(candidates.filter((peer) => peer.avoidUntil <= now));
    if (options.orAvoided === true && chosen.length < count) take(candidates.filter((peer) => peer.avoidUntil > now).sort((a, b) => a.avoidUntil - b.avoidUntil));
    return chosen;
  }

  /** Whether `key` is left out of paths right now after failures. */
  isAvoided(key: string): boolean {
    return (this.#peers.get(key)?.avoidUntil ?? 0) > this.now();
  }
}

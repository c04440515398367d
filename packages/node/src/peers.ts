/**
 * The peer table (PROTOCOL.md §4.7): relayers this node knows, with the static key it
 * authenticated or was told to expect. Masters pick paths from it; relayers in relayer
 * mode pick next hops from it; PEER_LIST answers sample it.
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

  /** Adds or refreshes a relayer; a different key for a known address replaces nothing. */
  add(address: UdpAddress, publicKey: Uint8Array): boolean {
    const key = addressKey(address);
    if (key === this.self || this.#peers.has(key) || this.#peers.size >= this.maxPeers) return false;
    this.#peers.set(key, { address: { host: address.host, port: address.port }, publicKey: publicKey.slice(), key, failures: 0, avoidUntil: 0 });
    return true;
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
   * `count` distinct relayers chosen uniformly at random, none in `exclude`, none currently
   * avoided, and (unless `sameSubnet`) no two in one /16. Fewer if the table cannot supply them.
   */
  pick(count: number, options: { exclude?: ReadonlySet<string>; sameSubnet?: boolean } = {}): PeerRecord[] {
    const now = this.now();
    const groups = new Set<string>();
    const chosen: PeerRecord[] = [];
    for (const peer of shuffled([...this.#peers.values()])) {
      if (chosen.length >= count) break;
      if (options.exclude?.has(peer.key) === true || peer.avoidUntil > now) continue;
      if (options.sameSubnet !== true) {
        const group = subnetGroup(peer.address.host);
        if (groups.has(group)) continue;
        groups.add(group);
      }
      chosen.push(peer);
    }
    return chosen;
  }
}

/**
 * The Kademlia routing table (PROTOCOL.md §11.4; Maymounkov & Mazières 2002, §2.2 and §4.1):
 * 256 k-buckets keyed by bucketIndex, least-recently-seen contact first, each with a small
 * replacement cache. Bounded by construction: at most 256 × (k + replacement cache) contacts.
 */
import type { Clock, UdpAddress } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { Counters, systemClock } from '@deut/common';
import { constantTimeEqual } from '@deut/crypto';
import { assertId, bucketIndex, compareDistance, ID_BITS, idToHex, isId, nodeIdFromPublicKey, PUBLIC_KEY_BYTES } from './id.js';

/** Kademlia's k: contacts per bucket, and the size of a lookup result. */
export const K_BUCKET_SIZE = 20;

/** Default length of each bucket's replacement cache. */
export const REPLACEMENT_CACHE_SIZE = 5;

/** Default number of consecutive RPC failures after which a contact is evicted. */
export const MAX_CONTACT_FAILURES = 2;

/** Default interval after which an untouched bucket needs a refresh lookup: one hour. */
export const BUCKET_REFRESH_MS = 60 * 60 * 1000;

/** A peer as the routing table keeps it. */
export interface Contact {
  /** Node id, always nodeIdFromPublicKey(publicKey). */
  readonly id: Uint8Array;
  /** Where to send it datagrams; changes when the peer's tunnels rotate. */
  readonly address: UdpAddress;
  readonly publicKey: Uint8Array;
  /** Clock time of the last message from it or the last answered ping. */
  readonly lastSeen: number;
  /** Consecutive RPC timeouts since it last answered. */
  readonly failures: number;
}

/** What the caller knows of a peer when it hears from it. */
export interface ContactInfo {
  readonly id: Uint8Array;
  readonly address: UdpAddress;
  readonly publicKey: Uint8Array;
}

/** Why {@link RoutingTable.seen} refused a contact. */
export type RejectReason = 'self' | 'bad-id' | 'bad-key' | 'id-mismatch';

/**
 * Outcome of {@link RoutingTable.seen}. On `ping`, the bucket is full: the newcomer waits in
 * the replacement cache, and the caller should ping `ping` (the least-recently-seen contact)
 * and report back with pingAnswered or pingFailed. The same oldest contact is returned until
 * it is resolved, so the caller should not send a second ping while one is in flight.
 */
export type SeenResult =
  | { readonly kind: 'added'; readonly contact: Contact }
  | { readonly kind: 'updated'; readonly contact: Contact; readonly addressChanged: boolean }
  | { readonly kind: 'ping'; readonly ping: Contact }
  | { readonly kind: 'rejected'; readonly reason: RejectReason };

/** Options of {@link RoutingTable}. */
export interface RoutingTableOptions {
  /** Contacts per bucket. @default 20 ({@link K_BUCKET_SIZE}) */
  readonly k?: number;
  /** Replacement-cache entries per bucket. @default 5 ({@link REPLACEMENT_CACHE_SIZE}) */
  readonly replacementCacheSize?: number;
  /** Consecutive failures that evict a contact. @default 2 ({@link MAX_CONTACT_FAILURES}) */
  readonly maxFailures?: number;
  /** Source of lastSeen and bucket touch times. @default systemClock */
  readonly clock?: Clock;
}

/** Counter names of {@link RoutingTable.stats}. */
export type RoutingTableCounter =
  | 'added'
  | 'updated'
  | 'address-changed'
  | 'cached'
  | 'evicted'
  | 'stale-kept'
  | 'promoted'
  | 'rejected-self'
  | 'rejected-bad-id'
  | 'rejected-bad-key'
  | 'rejected-id-mismatch';

interface Bucket {
  /** INVARIANT: least-recently-seen first, at most k entries, no id twice across the table. */
  contacts: Contact[];
  /** INVARIANT: oldest first, at most replacementCacheSize entries, none also in `contacts`. */
  replacements: Contact[];
  lastTouched: number;
}

/** A Kademlia routing table around one node's own id. Self is never stored. */
export class RoutingTable {
  /** This node's id. */
  readonly self: Uint8Array;
  /** Contacts per bucket. */
  readonly k: number;
  readonly #cacheSize: number;
  readonly #maxFailures: number;
  readonly #clock: Clock;
  readonly #buckets: Bucket[];
  /** Id hex → bucket index, for every contact in a bucket (not in a replacement cache). */
  readonly #index = new Map<string, number>();
  readonly #counters = new Counters<RoutingTableCounter>();

  /**
   * @param self this node's id (32 bytes)
   * @throws ProtocolError `BAD_ID_LENGTH` unless self is 32 bytes
   */
  constructor(self: Uint8Array, options: RoutingTableOptions = {}) {
    assertId(self, 'self');
    this.self = self.slice();
    this.k = options.k ?? K_BUCKET_SIZE;
    this.#cacheSize = options.replacementCacheSize ?? REPLACEMENT_CACHE_SIZE;
    this.#maxFailures = options.maxFailures ?? MAX_CONTACT_FAILURES;
    this.#clock = options.clock ?? systemClock;
    const now = this.#clock.now();
    this.#buckets = Array.from({ length: ID_BITS }, () => ({ contacts: [], replacements: [], lastTouched: now }));
  }

  /** Number of contacts in buckets (replacement caches not counted). */
  get size(): number {
    return this.#index.size;
  }

  /** Number of contacts waiting in replacement caches. */
  get cachedSize(): number {
    let n = 0;
    for (const b of this.#buckets) n += b.replacements.length;
    return n;
  }

  /**
   * Kademlia's update rule, for every message heard from a peer. A known contact moves to
   * the most-recently-seen end, taking the new address if it changed (its tunnels rotated);
   * an unknown one is appended if its bucket has room, otherwise cached, and the caller is
   * asked to ping the oldest contact.
   *
   * The id must be the hash of the public key. Call this only for a peer that has proven it
   * holds the key (answered under it), or anyone could move a contact to their address.
   */
  seen(info: ContactInfo): SeenResult {
    const reason = this.#check(info);
    if (reason !== undefined) {
      this.#counters.add(`rejected-${reason}`);
      return { kind: 'rejected', reason };
    }
    const hex = idToHex(info.id);
    const index = bucketIndex(this.self, info.id)!;
    const bucket = this.#buckets[index]!;
    const now = this.#clock.now();
    bucket.lastTouched = now;
    const contact: Contact = {
      id: info.id.slice(),
      address: { host: info.address.host, port: info.address.port },
      publicKey: info.publicKey.slice(),
      lastSeen: now,
      failures: 0,
    };
    const at = this.#index.has(hex) ? findIn(bucket.contacts, info.id) : -1;
    if (at >= 0) {
      const old = bucket.contacts[at]!;
      bucket.contacts.splice(at, 1);
      bucket.contacts.push(contact);
      const addressChanged = old.address.host !== contact.address.host || old.address.port !== contact.address.port;
      this.#counters.add('updated');
      if (addressChanged) this.#counters.add('address-changed');
      return { kind: 'updated', contact, addressChanged };
    }
    const cached = findIn(bucket.replacements, info.id);
    if (cached >= 0) bucket.replacements.splice(cached, 1);
    if (bucket.contacts.length < this.k) {
      bucket.contacts.push(contact);
      this.#index.set(hex, index);
      this.#counters.add('added');
      return { kind: 'added', contact };
    }
    bucket.replacements.push(contact);
    if (bucket.replacements.length > this.#cacheSize) bucket.replacements.shift();
    this.#counters.add('cached');
    return { kind: 'ping', ping: bucket.contacts[0]! };
  }

  /** The pinged contact answered: it stays, as most recently seen; the newcomer stays cached. */
  pingAnswered(id: Uint8Array): void {
    const found = this.#find(id);
    if (found === undefined) return;
    const [bucket, at] = found;
    const old = bucket.contacts[at]!;
    bucket.contacts.splice(at, 1);
    bucket.contacts.push({ ...old, lastSeen: this.#clock.now(), failures: 0 });
  }

  /** The pinged contact did not answer: evict it and promote the freshest replacement. */
  pingFailed(id: Uint8Array): void {
    this.#evict(id);
  }

  /**
   * An RPC to `id` timed out. After maxFailures in a row the contact is evicted and the
   * freshest replacement takes its place; a cached contact that fails is simply dropped.
   * With no replacement waiting, a failing contact stays (stale, its failures counted):
   * Kademlia §4.1. Timeouts also come from our own side (a starved process, a dead uplink),
   * and evicting on them alone emptied whole tables, leaving a node nobody to ask.
   */
  failed(id: Uint8Array): void {
    if (!isId(id)) return;
    const found = this.#find(id);
    if (found === undefined) {
      const bucket = this.#bucketOf(id);
      const at = bucket === undefined ? -1 : findIn(bucket.replacements, id);
      if (at >= 0) bucket!.replacements.splice(at, 1);
      return;
    }
    const [bucket, at] = found;
    const old = bucket.contacts[at]!;
    if (old.failures + 1 >= this.#maxFailures && bucket.replacements.length > 0) {
      this.#evict(id);
    } else {
      if (old.failures + 1 >= this.#maxFailures) this.#counters.add('stale-kept');
      bucket.contacts[at] = { ...old, failures: old.failures + 1 };
    }
  }

  /** Removes a contact (or a cached one) without promoting a replacement. */
  remove(id: Uint8Array): boolean {
    if (!isId(id)) return false;
    const found = this.#find(id);
    if (found !== undefined) {
      found[0].contacts.splice(found[1], 1);
      this.#index.delete(idToHex(id));
      return true;
    }
    const bucket = this.#bucketOf(id);
    const at = bucket === undefined ? -1 : findIn(bucket.replacements, id);
    if (at < 0) return false;
    bucket!.replacements.splice(at, 1);
    return true;
  }

  /** The contact with this id, if it is in a bucket. */
  get(id: Uint8Array): Contact | undefined {
    const found = this.#find(id);
    return found === undefined ? undefined : found[0].contacts[found[1]];
  }

  /**
   * The `count` contacts closest to `target` by XOR distance, closest first, leaving out ids
   * whose hex is in `exclude`. Exact: buckets are visited in an order that respects the
   * metric (see below), and each group is sorted, so the result equals a full sort.
   */
  closest(target: Uint8Array, count: number = this.k, exclude?: ReadonlySet<string>): Contact[] {
    if (!isId(target)) return [];
    const out: Contact[] = [];
    const take = (group: Contact[]): boolean => {
      group.sort((a, b) => compareDistance(target, a.id, b.id));
      for (const c of group) {
        if (out.length >= count) return true;
        if (exclude !== undefined && exclude.has(idToHex(c.id))) continue;
        out.push(c);
      }
      return out.length >= count;
    };
    const j = bucketIndex(this.self, target);
    // With j the top bit where target and self differ: bucket j holds ids at distance
    // < 2^j from target; buckets below j all lie in [2^j, 2^(j+1)) and must be merged;
    // each bucket i above j lies in [2^i, 2^(i+1)), farther with each step up.
    let start = 0;
    if (j !== undefined) {
      if (take([...this.#buckets[j]!.contacts])) return out;
      const low: Contact[] = [];
      for (let i = 0; i < j; i++) low.push(...this.#buckets[i]!.contacts);
      if (take(low)) return out;
      start = j + 1;
    }
    for (let i = start; i < ID_BITS; i++) {
      const contacts = this.#buckets[i]!.contacts;
      if (contacts.length > 0 && take([...contacts])) return out;
    }
    return out;
  }

  /** Every contact in a bucket, in bucket order. */
  contacts(): Contact[] {
    return this.#buckets.flatMap((b) => b.contacts);
  }

  /** Records a lookup of `target`, which refreshes the bucket it falls in. */
  touch(target: Uint8Array): void {
    const index = isId(target) ? bucketIndex(this.self, target) : undefined;
    if (index !== undefined) this.#buckets[index]!.lastTouched = this.#clock.now();
  }

  /**
   * Indices of buckets not touched (by seen or a lookup) for `intervalMs`, from the lowest
   * non-empty bucket up. Buckets below it are almost surely empty in any network of
   * realistic size, and the joining self-lookup already covers them.
   * @param intervalMs @default 1 hour ({@link BUCKET_REFRESH_MS})
   */
  bucketsNeedingRefresh(now: number, intervalMs: number = BUCKET_REFRESH_MS): number[] {
    const lowest = this.#buckets.findIndex((b) => b.contacts.length > 0);
    if (lowest < 0) return [];
    const out: number[] = [];
    for (let i = lowest; i < ID_BITS; i++) {
      if (now - this.#buckets[i]!.lastTouched >= intervalMs) out.push(i);
    }
    return out;
  }

  /**
   * Counters (added, updated, address changes, contacts put in the replacement cache, evicted,
   * promoted, rejections by reason) and the two table sizes. The sizes have names of their own:
   * a size named `cached` once overwrote the counter of that name.
   */
  stats(): CounterSnapshot<RoutingTableCounter | 'size' | 'cached-size'> {
    return { ...this.#counters.snapshot(), size: this.size, 'cached-size': this.cachedSize };
  }

  #check(info: ContactInfo): RejectReason | undefined {
    if (!isId(info.id)) return 'bad-id';
    if (!(info.publicKey instanceof Uint8Array) || info.publicKey.length !== PUBLIC_KEY_BYTES) return 'bad-key';
    if (bucketIndex(this.self, info.id) === undefined) return 'self';
    if (!constantTimeEqual(nodeIdFromPublicKey(info.publicKey), info.id)) return 'id-mismatch';
    return undefined;
  }

  #bucketOf(id: Uint8Array): Bucket | undefined {
    const index = isId(id) ? bucketIndex(this.self, id) : undefined;
    return index === undefined ? undefined : this.#buckets[index];
  }

  #find(id: Uint8Array): [Bucket, number] | undefined {
    if (!isId(id)) return undefined;
    const index = this.#index.get(idToHex(id));
    if (index === undefined) return undefined;
    const bucket = this.#buckets[index]!;
    return [bucket, findIn(bucket.contacts, id)];
  }

  #evict(id: Uint8Array): void {
    const found = this.#find(id);
    if (found === undefined) return;
    const [bucket, at] = found;
    bucket.contacts.splice(at, 1);
    this.#index.delete(idToHex(id));
    this.#counters.add('evicted');
    const promoted = bucket.replacements.pop();
    if (promoted !== undefined) {
      bucket.contacts.push(promoted);
      this.#index.set(idToHex(promoted.id), bucketIndex(this.self, promoted.id)!);
      this.#counters.add('promoted');
    }
  }
}

function findIn(list: readonly Contact[], id: Uint8Array): number {
  for (let i = 0; i < list.length; i++) {
    if (sameId(list[i]!.id, id)) return i;
  }
  return -1;
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return a.length === b.length;
}

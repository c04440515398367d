/**
 * The DHT value store (PROTOCOL.md §11.4; Kademlia §2.5): values under 32-byte keys, one per
 * publisher per key, each with a TTL, republished hourly by the node that published it and
 * expired after at most a day. Every limit refuses and counts rather than evicting live
 * data; memory is bounded by maxBytes and maxKeys × maxValuesPerKey.
 */
import { Counters } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { ID_BYTES } from './id.js';

/** Default largest value, in bytes: one value must fit a datagram with room to spare. */
export const MAX_VALUE_BYTES = 1_000;

/** Default longest TTL: 24 hours, Kademlia's expiry. */
export const MAX_TTL_MS = 24 * 60 * 60 * 1000;

/** Default number of distinct keys held. */
export const MAX_KEYS = 10_000;

/** Default bound on accounted bytes: 16 MiB. */
export const MAX_STORE_BYTES = 16 * 1024 * 1024;

/** Default number of keys one publisher may hold values under. */
export const PER_PUBLISHER_KEYS = 100;

/** Default number of publishers whose values one key may hold. */
export const MAX_VALUES_PER_KEY = 8;

/** Default republish interval for values this node published: one hour. */
export const REPUBLISH_MS = 60 * 60 * 1000;

/**
 * Bytes charged per entry on top of its value, so that floods of tiny values still hit
 * maxBytes (a rough figure for the key, publisher string, entry object and map slots).
 */
export const ENTRY_OVERHEAD_BYTES = 256;

/** Why a put was refused. */
export type RefuseReason = 'too-large' | 'ttl' | 'full' | 'quota' | 'bad-key' | 'stale';

/** Result of {@link ValueStore.put}. */
export type PutResult = 'stored' | RefuseReason;

/** Options of {@link ValueStore.put}. */
export interface PutOptions {
  /** Who stored it, e.g. the sender's node id in hex; quotas and replacement are per publisher. */
  readonly publisher: string;
  /** How long the value lives, in ms; 1..maxTtlMs. */
  readonly ttlMs: number;
  /** Current clock time. */
  readonly now: number;
  /**
   * The publisher's sequence number for this key (its clock when it stored). A put whose
   * seq is not above the one stored from the same publisher is refused as `stale`, so a
   * replayed STORE can neither bring back an older value nor extend a value's life.
   * @default no ordering: every put replaces
   */
  readonly seq?: number;
}

/** A stored value. */
export interface StoredValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly publisher: string;
  readonly storedAt: number;
  readonly expiresAt: number;
}

/** Options of {@link ValueStore}. */
export interface ValueStoreOptions {
  /** Largest value, in bytes. @default 1000 ({@link MAX_VALUE_BYTES}) */
  readonly maxValueBytes?: number;
  /** Longest TTL, in ms. @default 24 hours ({@link MAX_TTL_MS}) */
  readonly maxTtlMs?: number;
  /** Distinct keys held. @default 10000 ({@link MAX_KEYS}) */
  readonly maxKeys?: number;
  /** Accounted bytes: values plus {@link ENTRY_OVERHEAD_BYTES} each. @default 16 MiB ({@link MAX_STORE_BYTES}) */
  readonly maxBytes?: number;
  /** Keys one publisher may hold values under. @default 100 ({@link PER_PUBLISHER_KEYS}) */
  readonly perPublisherKeys?: number;
  /** Publishers per key. @default 8 ({@link MAX_VALUES_PER_KEY}) */
  readonly maxValuesPerKey?: number;
  /**
   * The publisher string of this node: its entries are what republishDue returns.
   * @default undefined (nothing is republished)
   */
  readonly localPublisher?: string;
}

/** Counter names of {@link ValueStore.stats}. */
export type StoreCounter = 'stored' | 'replaced' | 'expired' | `refused-${RefuseReason}`;

/** Figures of {@link ValueStore.stats}. */
export interface StoreStats {
  readonly keys: number;
  readonly entries: number;
  readonly bytes: number;
  readonly counters: CounterSnapshot<StoreCounter>;
}

interface Entry extends StoredValue {
  republishedAt: number;
  readonly seq: number | undefined;
}

/** Bounded in-memory store of DHT values. */
export class ValueStore {
  readonly #maxValueBytes: number;
  readonly #maxTtlMs: number;
  readonly #maxKeys: number;
  readonly #maxBytes: number;
  readonly #perPublisherKeys: number;
  readonly #maxValuesPerKey: number;
  readonly #localPublisher: string | undefined;
  /** Key hex → publisher → entry. INVARIANT: no empty inner map. */
  readonly #entries = new Map<string, Map<string, Entry>>();
  /** Publisher → number of keys it holds a value under. INVARIANT: no zero counts. */
  readonly #perPublisher = new Map<string, number>();
  #bytes = 0;
  /** A lower bound on the earliest expiry, so a full store refuses in O(1) instead of sweeping. */
  #nextExpiry = Infinity;
  readonly #counters = new Counters<StoreCounter>();

  constructor(options: ValueStoreOptions = {}) {
    this.#maxValueBytes = options.maxValueBytes ?? MAX_VALUE_BYTES;
    this.#maxTtlMs = options.maxTtlMs ?? MAX_TTL_MS;
    this.#maxKeys = options.maxKeys ?? MAX_KEYS;
    this.#maxBytes = options.maxBytes ?? MAX_STORE_BYTES;
    this.#perPublisherKeys = options.perPublisherKeys ?? PER_PUBLISHER_KEYS;
    this.#maxValuesPerKey = options.maxValuesPerKey ?? MAX_VALUES_PER_KEY;
    this.#localPublisher = options.localPublisher;
  }

  /**
   * Stores `value` under `key` for `publisher`, replacing that publisher's earlier value
   * under the key. When a limit is reached, expired entries are swept first; if that frees
   * nothing, the put is refused and counted under its reason.
   */
  put(key: Uint8Array, value: Uint8Array, options: PutOptions): PutResult {
    const { publisher, ttlMs, now } = options;
    if (!(key instanceof Uint8Array) || key.length !== ID_BYTES) return this.#refuse('bad-key');
    if (!(value instanceof Uint8Array) || value.length > this.#maxValueBytes) return this.#refuse('too-large');
    if (!Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > this.#maxTtlMs) return this.#refuse('ttl');
    if (this.#nextExpiry <= now) this.sweep(now);
    const hex = Buffer.from(key).toString('hex');
    const perKey = this.#entries.get(hex);
    const old = perKey?.get(publisher);
    if (old !== undefined && options.seq !== undefined && old.seq !== undefined && options.seq <= old.seq && old.expiresAt > now) return this.#refuse('stale');
    const cost = value.length + ENTRY_OVERHEAD_BYTES;
    const delta = cost - (old === undefined ? 0 : old.value.length + ENTRY_OVERHEAD_BYTES);
    if (old === undefined) {
      if (perKey === undefined && this.#entries.size >= this.#maxKeys) return this.#refuse('full');
      if (perKey !== undefined && perKey.size >= this.#maxValuesPerKey) return this.#refuse('full');
      if ((this.#perPublisher.get(publisher) ?? 0) >= this.#perPublisherKeys) return this.#refuse('quota');
    }
    if (this.#bytes + delta > this.#maxBytes) return this.#refuse('full');

    const entry: Entry = {
      key: key.slice(),
      value: value.slice(),
      publisher,
      storedAt: now,
      expiresAt: now + ttlMs,
      republishedAt: now,
      seq: options.seq,
    };
    if (perKey === undefined) this.#entries.set(hex, new Map([[publisher, entry]]));
    else perKey.set(publisher, entry);
    if (old === undefined) this.#perPublisher.set(publisher, (this.#perPublisher.get(publisher) ?? 0) + 1);
    this.#bytes += delta;
    this.#nextExpiry = Math.min(this.#nextExpiry, entry.expiresAt);
    this.#counters.add(old === undefined ? 'stored' : 'replaced');
    return 'stored';
  }

  /** The unexpired values under `key`, newest first. */
  get(key: Uint8Array, now: number): StoredValue[] {
    if (!(key instanceof Uint8Array) || key.length !== ID_BYTES) return [];
    const perKey = this.#entries.get(Buffer.from(key).toString('hex'));
    if (perKey === undefined) return [];
    const out: StoredValue[] = [];
    for (const e of perKey.values()) {
      if (e.expiresAt > now) out.push(publicView(e));
    }
    return out.sort((a, b) => b.storedAt - a.storedAt);
  }

  /** Drops every entry expired at `now`; returns how many. */
  sweep(now: number): number {
    let dropped = 0;
    let next = Infinity;
    for (const [hex, perKey] of this.#entries) {
      for (const [publisher, e] of perKey) {
        if (e.expiresAt <= now) {
          perKey.delete(publisher);
          this.#release(publisher, e);
          dropped++;
        } else {
          next = Math.min(next, e.expiresAt);
        }
      }
      if (perKey.size === 0) this.#entries.delete(hex);
    }
    this.#nextExpiry = next;
    if (dropped > 0) this.#counters.add('expired', dropped);
    return dropped;
  }

  /**
   * Values this node published (publisher = localPublisher) that are still alive and were
   * last (re)published `intervalMs` or more ago. Republish each with its remaining TTL
   * (expiresAt − now), then call markRepublished.
   * @param intervalMs @default 1 hour ({@link REPUBLISH_MS})
   */
  republishDue(now: number, intervalMs: number = REPUBLISH_MS): StoredValue[] {
    const local = this.#localPublisher;
    if (local === undefined) return [];
    const out: StoredValue[] = [];
    for (const perKey of this.#entries.values()) {
      const e = perKey.get(local);
      if (e !== undefined && e.expiresAt > now && now - e.republishedAt >= intervalMs) out.push(publicView(e));
    }
    return out;
  }

  /** Records that this node's value under `key` was republished at `now`. */
  markRepublished(key: Uint8Array, now: number): void {
    const local = this.#localPublisher;
    if (local === undefined || key.length !== ID_BYTES) return;
    const e = this.#entries.get(Buffer.from(key).toString('hex'))?.get(local);
    if (e !== undefined) e.republishedAt = now;
  }

  /** Keys, entries, accounted bytes, and counters (stored, replaced, expired, refused-* by reason). */
  stats(): StoreStats {
    let entries = 0;
    for (const perKey of this.#entries.values()) entries += perKey.size;
    return { keys: this.#entries.size, entries, bytes: this.#bytes, counters: this.#counters.snapshot() };
  }

  #refuse(reason: RefuseReason): RefuseReason {
    this.#counters.add(`refused-${reason}`);
    return reason;
  }

  #release(publisher: string, e: Entry): void {
    this.#bytes -= e.value.length + ENTRY_OVERHEAD_BYTES;
    const n = (this.#perPublisher.get(publisher) ?? 1) - 1;
    if (n === 0) this.#perPublisher.delete(publisher);
    else this.#perPublisher.set(publisher, n);
  }
}

function publicView(e: Entry): StoredValue {
  return { key: e.key, value: e.value, publisher: e.publisher, storedAt: e.storedAt, expiresAt: e.expiresAt };
}

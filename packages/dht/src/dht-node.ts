/**
 * A Kademlia DHT node (PROTOCOL.md §11): routing table, value store, RPC and
 * lookups tied together, with the timers Kademlia needs (bucket refresh, value expiry,
 * republish). It runs over any {@link DatagramChannel}; over deut tunnels its contact
 * address is one of its endpoints, which changes when tunnels rotate, so:
 *
 * - a contact's address is taken only from evidence that it answers there: its answer to
 *   our call, or its answer to a verification PING we send to the address a request came
 *   from. A request alone never moves a contact (IK requests can be replayed from
 *   anywhere), which is what stops a peer from pointing another's contact at itself;
 * - {@link DhtNode.announce} (a lookup of our own id) makes the nodes closest to us hear
 *   from our new endpoints and verify them; the owner calls it after its tunnels rotate.
 */
import { setMaxListeners } from 'node:events';
import type { Clock, Logger, RateLimit, TimerHandle } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { Counters, DeutError, KeyedRateLimiter, addressKey, silentLogger, systemClock } from '@deut/common';
import { toHex, type KeyPair } from '@deut/crypto';
import { DHT_CONTACT_BYTES, DHT_HEADER_BYTES, DHT_MAX_CONTACTS, DHT_REQUEST_OVERHEAD_BYTES, DHT_MAX_TTL_SECONDS, DHT_MAX_VALUES, DHT_RESPONSE_OVERHEAD_BYTES, type DhtRequestBody, type DhtResponseBody, type DhtStoreResult } from '@deut/wire';
import type { DatagramChannel } from './channel.js';
import { abortedError, configError, transportError } from './errors.js';
import { assertId, bucketIndex, ID_BITS, keyFromBytes, nodeIdFromPublicKey, randomIdInBucket } from './id.js';
import { iterativeLookup, type AskResult, type LookupCandidate, type LookupResult } from './lookup.js';
import { K_BUCKET_SIZE, RoutingTable, type Contact, type ContactInfo } from './routing-table.js';
import { DhtRpc, type DhtRpcOptions, type RemoteNode, type VerifiedPeer } from './rpc.js';
import { ValueStore, type PutResult, type ValueStoreOptions } from './store.js';

/** Type and count bytes of a NODES or VALUES body. */
const LIST_HEADER_BYTES = 2;
/** The smallest answer body: STORED, or NODES with no contact. */
const SMALLEST_ANSWER_BODY = 2;
/** Bytes of the verification PING a request may trigger (an unpadded PING request datagram). */
const VERIFY_PING_BYTES = DHT_HEADER_BYTES + DHT_REQUEST_OVERHEAD_BYTES + 1;
/**
 * Body bytes a VALUES answer fills at most (newest values first, always at least one), so
 * the answer fits one 1,200-byte datagram: the endpoint sends it to the asker as plain UDP,
 * and IP fragments are dropped by many networks. NODES answers (≤ 1,080 bytes) always fit.
 */
const ANSWER_BODY_BUDGET = 1_200 - DHT_HEADER_BYTES - DHT_RESPONSE_OVERHEAD_BYTES - LIST_HEADER_BYTES;
const VALUE_ENTRY_OVERHEAD = 4 + 2;
/**
 * Abort listeners one operation may hold on its signal at once: a STORE goes to k nodes at
 * the same time, and a lookup keeps stalled calls alive beside α fresh ones. Node warns of a
 * leak above 10, which these legitimately pass; past this bound it would be a real one.
 */
const CONCURRENT_CALLS_PER_OPERATION = 4 * K_BUCKET_SIZE;

/** Default lifetime of a value put without a TTL: two republish periods. */
export const DEFAULT_VALUE_TTL_MS = 2 * 60 * 60 * 1000;
/** How far a STORE's timestamp may be from our clock. */
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** Options of {@link DhtNode}. */
export interface DhtNodeOptions {
  /** This node's DHT key pair; its id is nodeIdFromPublicKey(publicKey). */
  readonly identity: KeyPair;
  readonly channel: DatagramChannel;
  /** Nodes to join through (their keys must be known: every call is authenticated). */
  readonly bootstrap?: readonly RemoteNode[];
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** @default 20 */
  readonly k?: number;
  /** @default 3 */
  readonly alpha?: number;
  /** RPC tuning (attempts, limits, caches). */
  readonly rpc?: Omit<DhtRpcOptions, 'identity' | 'channel' | 'clock' | 'logger'>;
  /** Store limits. */
  readonly store?: Omit<ValueStoreOptions, 'localPublisher'>;
  /** STOREs admitted per publisher. @default 20/s, burst 200 */
  readonly storeLimit?: RateLimit;
  /** A bucket untouched this long is refreshed. @default 1 hour */
  readonly refreshIntervalMs?: number;
  /** Our own values are stored again this often. @default 1 hour */
  readonly republishIntervalMs?: number;
  /** How often expiry, refresh and republish are checked. @default 60,000 ms */
  readonly maintenanceIntervalMs?: number;
  /** Default timeout of put, get and findNode. @default 30,000 ms */
  readonly operationTimeoutMs?: number;
}

/** Options of put, get and findNode. */
export interface DhtOperationOptions {
  readonly signal?: AbortSignal;
  /** @default the node's operationTimeoutMs */
  readonly timeoutMs?: number;
}

/** Options of {@link DhtNode.put}. */
export interface DhtPutOptions extends DhtOperationOptions {
  /** Lifetime of the value. @default 2 hours ({@link DEFAULT_VALUE_TTL_MS}); at most 24 hours */
  readonly ttlMs?: number;
}

/** Outcome of a put. */
export interface DhtPutResult {
  /** Nodes that stored the value. */
  readonly stored: number;
  /** Nodes asked to store it. */
  readonly asked: number;
  /** Refusals by reason. */
  readonly refused: CounterSnapshot<DhtPutRefusal>;
}

/** Why a node asked to store a put did not: its STORE result, a wrong answer type, or no answer. */
export type DhtPutRefusal = Exclude<DhtStoreResult, 'stored'> | 'bad-answer' | 'no-answer';

/** Outcome of a get. */
export interface DhtGetResult {
  /** Distinct values found under the key (one per publisher), empty if none. */
  readonly values: Uint8Array[];
  /** Calls the lookup made. */
  readonly asked: number;
}

/** Counter names of {@link DhtNode.stats}' own counters (the table's, store's and RPC's are theirs). */
export type DhtNodeCounter =
  | 'announces'
  | 'announces-unanswered'
  | 'lookups-node'
  | 'puts'
  | 'stores-sent'
  | 'gets'
  | 'gets-retried'
  | 'gets-found'
  | 'verifications'
  | 'verifications-skipped'
  | 'verified'
  | 'stores-rate-limited'
  | 'stores-skewed'
  | 'rejoins'
  | 'republishes'
  | 'refreshes';

/** A DHT node. */
export class DhtNode {
  /** Our node id. */
  readonly id: Uint8Array;
  /** Our DHT public key. */
  readonly publicKey: Uint8Array;
  readonly table: RoutingTable;
  readonly store: ValueStore;
  readonly rpc: DhtRpc;
  readonly #k: number;
  readonly #alpha: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #bootstrap: readonly RemoteNode[];
  readonly #storeLimit: KeyedRateLimiter;
  readonly #refreshIntervalMs: number;
  readonly #republishIntervalMs: number;
  readonly #maintenanceIntervalMs: number;
  readonly #operationTimeoutMs: number;
  readonly #selfHex: string;
  /** Ids being verified at a new address, or pinged before an eviction: one call each. */
  readonly #checking = new Set<string>();
  readonly #counters = new Counters<DhtNodeCounter>();
  #timer: TimerHandle | undefined;
  #closed = false;
  /** Last STORE timestamp we used: strictly increasing, so two puts in one ms both count. */
  #lastSeq = 0;

  constructor(options: DhtNodeOptions) {
    this.publicKey = options.identity.publicKey.slice();
    this.id = nodeIdFromPublicKey(this.publicKey);
    this.#selfHex = toHex(this.id);
    this.#k = options.k ?? K_BUCKET_SIZE;
    if (this.#k < 1 || this.#k > DHT_MAX_CONTACTS) throw configError('BAD_K', `k must be 1..${DHT_MAX_CONTACTS}`);
    this.#alpha = options.alpha ?? 3;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#bootstrap = options.bootstrap ?? [];
    this.table = new RoutingTable(this.id, { k: this.#k, clock: this.#clock });
    this.store = new ValueStore({ ...options.store, localPublisher: this.#selfHex });
    this.#storeLimit = new KeyedRateLimiter(options.storeLimit ?? { perSecond: 20, burst: 200 }, () => this.#clock.now());
    this.#refreshIntervalMs = options.refreshIntervalMs ?? 60 * 60 * 1000;
    this.#republishIntervalMs = options.republishIntervalMs ?? 60 * 60 * 1000;
    this.#maintenanceIntervalMs = options.maintenanceIntervalMs ?? 60_000;
    this.#operationTimeoutMs = options.operationTimeoutMs ?? 30_000;
    this.rpc = new DhtRpc({ ...options.rpc, identity: options.identity, channel: options.channel, clock: this.#clock, logger: this.#logger });
    this.rpc.handle((body, from, maxBodyBytes) => this.#answer(body, from, maxBodyBytes));
    this.#scheduleMaintenance();
  }

  /**
   * Joins the network: a lookup of our own id through the bootstrap nodes (or the table),
   * then one lookup in each still-empty bucket farther than our closest neighbour, so the
   * table learns the whole id space (Kademlia §2.3). `via` adds nodes to start from, besides the
   * bootstrap nodes given at construction.
   * @returns the number of contacts in the routing table afterwards
   */
  async join(options: DhtOperationOptions & { readonly via?: readonly RemoteNode[] } = {}): Promise<number> {
    this.table.touch(this.id);
    await this.#lookup(this.id, false, options, options.via ?? []);
    const closest = this.table.closest(this.id, 1)[0];
    if (closest !== undefined) {
      // Only the buckets the self-lookup left empty: the others already hold contacts, and
      // the hourly refresh keeps them full. In a 50-node network this is 0-2 lookups, not 6.
      const occupied = new Set(this.table.contacts().map((c) => bucketIndex(this.id, c.id)));
      const from = (bucketIndex(this.id, closest.id) ?? 0) + 1;
      const refreshes: Array<Promise<unknown>> = [];
      // The refreshes run at once, each listening on the signal: on a signal of our own.
      const signal = options.signal === undefined ? undefined : AbortSignal.any([options.signal]);
      if (signal !== undefined) setMaxListeners(CONCURRENT_CALLS_PER_OPERATION, signal);
      const refreshOptions = { ...options, ...(signal !== undefined ? { signal } : {}) };
      for (let bucket = from; bucket < ID_BITS; bucket++) {
        if (!occupied.has(bucket)) refreshes.push(this.findNode(randomIdInBucket(this.id, bucket), refreshOptions).catch(() => undefined));
      }
      await Promise.all(refreshes);
    }
    return this.table.size;
  }

  /**
   * Re-announces us: a lookup of our own id, so the nodes closest to us hear from our
   * current address and verify it. Call it after the address changed (tunnels rotated).
   * @returns how many nodes answered; 0 means nobody heard us and the caller should try again
   * @throws as findNode; a lookup that timed out counts as unanswered too
   */
  async announce(options: DhtOperationOptions = {}): Promise<number> {
    this.#counters.add('announces');
    let answered = 0;
    try {
      answered = (await this.findNode(this.id, options)).length;
      return answered;
    } finally {
      if (answered === 0) this.#counters.add('announces-unanswered');
    }
  }

  /** The k nodes closest to `id` that answered, closest first (FIND_NODE lookup). */
  async findNode(id: Uint8Array, options: DhtOperationOptions = {}): Promise<Contact[]> {
    assertId(id, 'target');
    const result = await this.#lookup(id, false, options);
    this.#counters.add('lookups-node');
    return result.closest.map((c) => this.table.get(c.id) ?? { ...c, lastSeen: this.#clock.now(), failures: 0 });
  }

  /**
   * Stores `value` under `key` at the k nodes closest to it, and keeps republishing it
   * until it expires.
   * @param key a user key (any bytes or string), hashed with {@link keyFromBytes}
   * @throws DeutError `PUT_FAILED` if no node stored it; `LOOKUP_TIMEOUT`, `ABORTED`
   */
  async put(key: string | Uint8Array, value: Uint8Array, options: DhtPutOptions = {}): Promise<DhtPutResult> {
    const dhtKey = keyFromBytes(typeof key === 'string' ? new TextEncoder().encode(key) : key);
    const ttlMs = options.ttlMs ?? DEFAULT_VALUE_TTL_MS;
    if (!Number.isInteger(ttlMs) || ttlMs < 1_000 || ttlMs > DHT_MAX_TTL_SECONDS * 1000) {
      throw configError('BAD_TTL', `ttlMs must be 1,000..${DHT_MAX_TTL_SECONDS * 1000}`);
    }
    const now = this.#clock.now();
    const local = this.store.put(dhtKey, value, { publisher: this.#selfHex, ttlMs, now, seq: this.#nextSeq() });
    if (local !== 'stored') throw configError('PUT_REFUSED', `the value is refused locally: ${local}`);
    this.#counters.add('puts');
    return this.#storeAtClosest(dhtKey, value, now + ttlMs, options);
  }

  /**
   * The values stored under `key` (FIND_VALUE lookup); empty if there are none.
   * @throws DeutError `LOOKUP_TIMEOUT`, `ABORTED`
   */
  async get(key: string | Uint8Array, options: DhtOperationOptions = {}): Promise<DhtGetResult> {
    const dhtKey = keyFromBytes(typeof key === 'string' ? new TextEncoder().encode(key) : key);
    this.#counters.add('gets');
    const local = this.store.get(dhtKey, this.#clock.now()).map((v) => v.value);
    let result = await this.#lookup(dhtKey, true, options);
    // A call that failed may have been to a holder of the value (a loaded or lossy path, not
    // a missing value): before answering "nothing", look once more with fresh calls.
    if (result.values.length === 0 && local.length === 0 && result.failed > 0) {
      this.#counters.add('gets-retried');
      result = await this.#lookup(dhtKey, true, options);
    }
    const values = [...local];
    const seen = new Set(local.map(toHex));
    for (const value of result.values) if (!seen.has(toHex(value))) values.push(value);
    if (values.length > 0) this.#counters.add('gets-found');
    return { values, asked: result.asked };
  }

  /** Pings a node; true if it answered under its key at that address (and it is now a contact). */
  async ping(node: RemoteNode, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    try {
      await this.#call(node, { type: 'ping' }, options.signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Table and store sizes, RPC figures, and counters. */
  stats(): {
    contacts: number;
    cachedContacts: number;
    table: ReturnType<RoutingTable['stats']>;
    store: ReturnType<ValueStore['stats']>;
    rpc: ReturnType<DhtRpc['stats']>;
    counters: CounterSnapshot<DhtNodeCounter>;
  } {
    return {
      contacts: this.table.size,
      cachedContacts: this.table.cachedSize,
      table: this.table.stats(),
      store: this.store.stats(),
      rpc: this.rpc.stats(),
      counters: this.#counters.snapshot(),
    };
  }

  /** Stops timers and fails calls in flight. The channel's socket is the owner's to close. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.rpc.close();
  }

  // ---- calls and lookups ------------------------------------------------------------------

  /** One call; its outcome feeds the routing table. */
  async #call(node: RemoteNode, body: DhtRequestBody, signal?: AbortSignal): Promise<DhtResponseBody> {
    const id = nodeIdFromPublicKey(node.publicKey);
    try {
      const reply = await this.rpc.call(node, body, { signal });
      this.#heardFrom(reply.from);
      return reply.body;
    } catch (error) {
      // A call cut short by its lookup's end or by the caller says nothing about the node.
      if (!(error instanceof DeutError && error.kind === 'aborted')) this.table.failed(id);
      throw error;
    }
  }

  #nextSeq(): number {
    this.#lastSeq = Math.max(this.#clock.now(), this.#lastSeq + 1);
    return this.#lastSeq;
  }

  #lookup(target: Uint8Array, wantValues: boolean, options: DhtOperationOptions, via: readonly RemoteNode[] = []): Promise<LookupResult> {
    if (this.#closed) return Promise.reject(abortedError('CLOSED', 'dht node closed'));
    this.table.touch(target);
    const seeds: LookupCandidate[] = this.table.closest(target, this.#k);
    const extra = seeds.length < this.#k ? [...via, ...this.#bootstrap] : via;
    for (const b of extra) seeds.push({ id: nodeIdFromPublicKey(b.publicKey), publicKey: b.publicKey, address: b.address });
    // On the node's clock, not AbortSignal.timeout's real one: a simulated mesh's lookups
    // must not time out because the process was starved of CPU.
    const timeoutMs = options.timeoutMs ?? this.#operationTimeoutMs;
    const timer = new AbortController();
    const handle = this.#clock.setTimeout(() => timer.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError')), timeoutMs);
    const timeout = timer.signal;
    const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout]);
    setMaxListeners(CONCURRENT_CALLS_PER_OPERATION, signal);
    const body: DhtRequestBody = wantValues ? { type: 'find-value', key: target } : { type: 'find-node', target };
    return iterativeLookup({
      target,
      seeds,
      k: this.#k,
      alpha: this.#alpha,
      wantValues,
      self: this.id,
      signal,
      stallAfterMs: this.rpc.attemptTimeoutMs,
      ask: async (node): Promise<AskResult> => {
        const answer = await this.#call(node, body, signal);
        if (answer.type === 'values' && wantValues) return { kind: 'values', values: answer.values.map((v) => v.value) };
        if (answer.type !== 'nodes') throw transportError('BAD_ANSWER', `expected nodes, got ${answer.type}`);
        return { kind: 'nodes', contacts: answer.contacts.map((c) => ({ id: nodeIdFromPublicKey(c.publicKey), publicKey: c.publicKey, address: c.address })) };
      },
    }).finally(() => this.#clock.clearTimeout(handle));
  }

  async #storeAtClosest(key: Uint8Array, value: Uint8Array, expiresAt: number, options: DhtOperationOptions): Promise<DhtPutResult> {
    const closest = await this.findNode(key, options);
    const refused: Partial<Record<DhtPutRefusal, number>> = {};
    let stored = 0;
    const ttlSeconds = Math.max(1, Math.floor((expiresAt - this.#clock.now()) / 1000));
    const timestampMs = this.#nextSeq();
    // One listener per STORE in flight: on a signal of our own, so the caller's sees one.
    const signal = options.signal === undefined ? undefined : AbortSignal.any([options.signal]);
    if (signal !== undefined) setMaxListeners(CONCURRENT_CALLS_PER_OPERATION, signal);
    await Promise.all(
      closest.map(async (node) => {
        try {
          const answer = await this.#call(node, { type: 'store', key, timestampMs, ttlSeconds, value }, signal);
          const result = answer.type === 'stored' ? answer.result : 'bad-answer';
          if (result === 'stored') stored++;
          else refused[result] = (refused[result] ?? 0) + 1;
        } catch {
          refused['no-answer'] = (refused['no-answer'] ?? 0) + 1;
        }
      }),
    );
    this.#counters.add('stores-sent', closest.length);
    if (stored === 0 && closest.length > 0) throw transportError('PUT_FAILED', `no node stored the value (${JSON.stringify(refused)})`);
    return { stored, asked: closest.length, refused };
  }

  // ---- the routing table's evidence --------------------------------------------------------

  /** A peer answered us under its key at `peer.address`: Kademlia's update rule. */
  #heardFrom(peer: VerifiedPeer): void {
    const result = this.table.seen(peer);
    if (result.kind !== 'ping') return;
    // Bucket full: the newcomer waits in the replacement cache while the oldest is pinged.
    const oldest = result.ping;
    const hex = toHex(oldest.id);
    if (this.#checking.has(hex)) return;
    this.#checking.add(hex);
    this.rpc.call(oldest, { type: 'ping' }).then(
      () => this.table.pingAnswered(oldest.id),
      () => this.table.pingFailed(oldest.id),
    ).finally(() => this.#checking.delete(hex));
  }

  /**
   * A request came from `peer` at `peer.address`. A contact already known there is only
   * refreshed; anything else is verified with a PING to that address first, sent once and
   * only if `mayPing` (the request left room for it: that address is not authenticated, so
   * the PING counts against what the request may cost it, PROTOCOL.md §11.2). Returns
   * whether a PING was sent.
   */
  #requestFrom(peer: VerifiedPeer, mayPing: boolean): boolean {
    const known = this.table.get(peer.id);
    if (known !== undefined && addressKey(known.address) === addressKey(peer.address)) {
      this.table.seen(peer);
      return false;
    }
    const hex = toHex(peer.id);
    if (hex === this.#selfHex || this.#checking.has(hex) || this.#checking.size >= 256) return false;
    if (!mayPing) {
      this.#counters.add('verifications-skipped');
      return false;
    }
    this.#checking.add(hex);
    this.#counters.add('verifications');
    this.rpc.call(peer, { type: 'ping' }, { attempts: 1 }).then(
      (reply) => {
        this.#counters.add('verified');
        this.#checking.delete(hex);
        this.#heardFrom(reply.from);
      },
      () => this.#checking.delete(hex),
    );
    return true;
  }

  // ---- answering ---------------------------------------------------------------------------

  /** `maxBodyBytes`: the answer may be no larger than the request (PROTOCOL.md §11.2). */
  #answer(body: DhtRequestBody, from: VerifiedPeer, requestRoom: number): DhtResponseBody | undefined {
    const pinged = this.#requestFrom(from, requestRoom - SMALLEST_ANSWER_BODY >= VERIFY_PING_BYTES);
    const maxBodyBytes = requestRoom - (pinged ? VERIFY_PING_BYTES : 0);
    switch (body.type) {
      case 'ping':
        return { type: 'pong' };
      case 'find-node':
        return { type: 'nodes', contacts: this.#closestFor(body.target, from, maxBodyBytes) };
      case 'find-value': {
        const now = this.#clock.now();
        const values: Array<{ value: Uint8Array; ttlSeconds: number }> = [];
        let room = Math.min(ANSWER_BODY_BUDGET, maxBodyBytes - LIST_HEADER_BYTES);
        for (const v of this.store.get(body.key, now).slice(0, DHT_MAX_VALUES)) {
          room -= VALUE_ENTRY_OVERHEAD + v.value.length;
          if (room < 0) break;
          values.push({ value: v.value, ttlSeconds: Math.max(1, Math.min(DHT_MAX_TTL_SECONDS, Math.floor((v.expiresAt - now) / 1000))) });
        }
        return values.length > 0 ? { type: 'values', values } : { type: 'nodes', contacts: this.#closestFor(body.key, from, maxBodyBytes) };
      }
      case 'store':
        return { type: 'stored', result: this.#acceptStore(body, from) };
    }
  }

  #closestFor(target: Uint8Array, from: VerifiedPeer, maxBodyBytes: number): Array<{ publicKey: Uint8Array; address: ContactInfo['address'] }> {
    const fit = Math.max(0, Math.floor((maxBodyBytes - LIST_HEADER_BYTES) / DHT_CONTACT_BYTES));
    return this.table
      .closest(target, Math.min(this.#k, fit), new Set([toHex(from.id)]))
      .map((c) => ({ publicKey: c.publicKey, address: c.address }));
  }

  #acceptStore(body: Extract<DhtRequestBody, { type: 'store' }>, from: VerifiedPeer): DhtStoreResult {
    const publisher = toHex(from.id);
    if (!this.#storeLimit.take(publisher)) {
      this.#counters.add('stores-rate-limited');
      return 'rate-limited';
    }
    const now = this.#clock.now();
    if (Math.abs(now - body.timestampMs) > MAX_CLOCK_SKEW_MS) {
      this.#counters.add('stores-skewed');
      return 'skew';
    }
    const result: PutResult = this.store.put(body.key, body.value, { publisher, ttlMs: body.ttlSeconds * 1000, now, seq: body.timestampMs });
    // 'bad-key' cannot happen: the wire format fixes the key length.
    return result === 'bad-key' ? 'full' : result;
  }

  // ---- maintenance -------------------------------------------------------------------------

  #scheduleMaintenance(): void {
    this.#timer = this.#clock.setTimeout(() => {
      if (this.#closed) return;
      this.maintain();
      this.#scheduleMaintenance();
    }, this.#maintenanceIntervalMs);
  }

  /**
   * One round of upkeep (run by a timer; public so tests can drive it): drops expired
   * values, rejoins through the bootstrap nodes if the table is empty, republishes our own
   * values that are due, refreshes up to four stale buckets.
   */
  maintain(): void {
    const now = this.#clock.now();
    this.store.sweep(now);
    if (this.table.size === 0 && this.#bootstrap.length > 0) {
      // Alone (the bootstrap was down, or every contact left): try to join again.
      this.#counters.add('rejoins');
      this.join().catch(() => undefined);
    }
    for (const entry of this.store.republishDue(now, this.#republishIntervalMs)) {
      this.store.markRepublished(entry.key, now);
      this.#counters.add('republishes');
      this.#storeAtClosest(entry.key, entry.value, entry.expiresAt, {}).catch((error: unknown) => {
        this.#logger.debug('dht: republish failed', { error: String(error) });
      });
    }
    // Only buckets that hold or could hold contacts need refreshing: those from our closest
    // neighbour's outwards (the ones nearer than that are empty in any network of this size).
    const closest = this.table.closest(this.id, 1)[0];
    const firstInUse = closest === undefined ? ID_BITS : (bucketIndex(this.id, closest.id) ?? 0);
    const stale = this.table.bucketsNeedingRefresh(now, this.#refreshIntervalMs).filter((i) => i >= firstInUse);
    for (const bucket of stale.slice(0, 4)) {
      this.#counters.add('refreshes');
      this.findNode(randomIdInBucket(this.id, bucket)).catch(() => undefined);
    }
  }
}

/**
 * The hop table (PROTOCOL.md §4.1, §5.4): this node's part in other nodes' tunnels, as a relay
 * or as their endpoint, found by the link a message came over and the id chosen for that
 * link. With it live what must be unique or shared across the engine's roles: the link ids
 * this node chooses, the local handles, one key string and address per neighbour, and the
 * cache of build ephemeral keys seen (PROTOCOL.md §4.5).
 */
import { replayWindowWords, type UdpAddress } from '@deut/common';
import { randomBytes, LAYER_KEY_BYTES } from '@deut/crypto';
import type { LinkPeer } from '@deut/link';
import { tunnelId, type TunnelId } from '@deut/wire';
import type { HopAcceptance } from './build-crypto.js';
import { BUILD_HOP_TIMEOUT_MS, CELL_REPLAY_WINDOW } from './constants.js';
import type { DestroyReason } from './context.js';
import type { EndpointSink, EndpointTunnel } from './endpoint.js';
import { randomCounterStart } from './owned-tunnel.js';
import { PeerIdMap } from './peer-id-map.js';

/** Words of one cell replay window; the inbound one starts there in `HopEntry.windows`. */
export const WINDOW_WORDS = replayWindowWords(CELL_REPLAY_WINDOW);
/** Where the outbound layer key sits in `HopEntry.layerKeys`. */
export const OUTBOUND_KEY = 0;
/** Where the inbound layer key sits in `HopEntry.layerKeys`. */
export const INBOUND_KEY = LAYER_KEY_BYTES;
const ENTRY_KEY_BYTES = 2 * LAYER_KEY_BYTES;
const REPLAY_CACHE_LIMIT = 200_000;

/** A hop-table entry: this node's part in someone else's tunnel (PROTOCOL.md §5.4). */
export interface HopEntry {
  /** Local handle, unique within the engine (the endpoint's tunnel handle). */
  readonly handle: number;
  readonly role: 'relay' | 'endpoint';
  readonly prev: LinkPeer;
  /** Interned: every entry of one neighbour shares the string (see HopTable's peer refs). */
  readonly prevKey: string;
  readonly prevId: TunnelId;
  /** Interned, like prevKey; the next hop's key is only needed while the build is forwarded. */
  nextAddress: UdpAddress | undefined;
  nextKey: string | undefined;
  nextId: TunnelId | undefined;
  /** Outbound layer key ‖ inbound layer key: 64 secret bytes in one array. */
  readonly layerKeys: Uint8Array;
  readonly outboundOffset: number;
  readonly inboundOffset: number;
  /** Reply secrets, needed until this hop's reply slot is sent, then wiped and dropped. */
  acceptance: HopAcceptance | undefined;
  /** Both cell replay windows packed in one array: outbound words, then inbound words. */
  readonly windows: Uint32Array;
  outHighest: number;
  inHighest: number;
  state: 'pending' | 'active';
  /** Pending: when the build gives up; active: when the tunnel expires. */
  deadline: number;
  readonly expiresAt: number;
  /** Endpoint only: counter of cells sent toward the master. */
  inboundCounter: number;
  endpointOpen: boolean;
}

/** What the transit entries of one neighbour share (see HopTable's peer refs). */
export interface PeerRef {
  readonly key: string;
  readonly address: UdpAddress;
  /** The neighbour as the upstream of entries, as last seen (session and key). */
  upstream: LinkPeer | undefined;
  refs: number;
}

/** Link ids this node chose outside the hop table (the master's builds and tunnels). */
export interface OwnIds {
  /** Whether `id` toward the neighbour `peerKey` is taken. */
  holdsId(peerKey: string, id: TunnelId): boolean;
}

/** The endpoint's view of an entry, as handed to the node. */
export function endpointView(entry: HopEntry): EndpointTunnel {
  return { handle: entry.handle, upstream: entry.prev, expiresAt: entry.expiresAt };
}

/** A pending entry's build succeeded: from now on it carries cells, until it expires. */
export function activate(entry: HopEntry): void {
  entry.state = 'active';
  entry.deadline = entry.expiresAt;
}

/** Hop entries of one engine, indexed both ways, with the engine's id and handle allocators. */
export class HopTable {
  /** Hop entries by (upstream peer, id chosen by it): relays and endpoints. */
  readonly upstream = new PeerIdMap<HopEntry>();
  /** Relay entries by (downstream peer, id we chose). */
  readonly downstream = new PeerIdMap<HopEntry>();
  readonly #endpointSink: EndpointSink;
  readonly #ownIds: OwnIds;
  /** Endpoint entries by handle, for the node's exit code. */
  readonly #endpoints = new Map<number, HopEntry>();
  /**
   * One key string and address object per neighbour, shared by all its transit entries and
   * counted, so that 100,000 tunnels over a few links do not hold 200,000 copies of them.
   */
  readonly #peerRefs = new Map<string, PeerRef>();
  /** Build ephemeral keys seen, with the time they may be forgotten. */
  readonly #seenEphemerals = new Map<string, number>();
  #nextHandle = 1;

  /**
   * @param endpointSink told when an opened endpoint's entry goes, whatever removed it
   * @param ownIds the ids the master holds, so that no id is chosen twice toward a neighbour
   */
  constructor(endpointSink: EndpointSink, ownIds: OwnIds) {
    this.#endpointSink = endpointSink;
    this.#ownIds = ownIds;
  }

  /** Build ephemeral keys remembered. */
  get replayCacheSize(): number {
    return this.#seenEphemerals.size;
  }

  /** A new local handle, for a hop entry or an owned tunnel alike. */
  newHandle(): number {
    return this.#nextHandle++;
  }

  /**
   * A random link tunnel id not used toward `peerKey` by any of our tables: a cell coming
   * back then finds one owner, and the relay's table can be asked first (see engine.ts).
   */
  chooseId(peerKey: string): TunnelId {
    for (;;) {
      const bytes = randomBytes(4);
      const id = tunnelId(((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0);
      if (!this.downstream.has(peerKey, id) && !this.#ownIds.holdsId(peerKey, id)) return id;
    }
  }

  /** false if `ephemeral` was seen (a replayed build) or the cache is full (refuse, never forget early). */
  rememberEphemeral(ephemeral: Uint8Array, untilMs: number): boolean {
    const key = Buffer.from(ephemeral).toString('base64');
    if (this.#seenEphemerals.has(key)) return false;
    if (this.#seenEphemerals.size >= REPLAY_CACHE_LIMIT) return false;
    this.#seenEphemerals.set(key, untilMs);
    return true;
  }

  /** Forgets the ephemeral keys that could no longer pass a build's freshness check. */
  forgetEphemerals(now: number): void {
    for (const [ephemeral, until] of this.#seenEphemerals) if (until <= now) this.#seenEphemerals.delete(ephemeral);
  }

  /** A pending entry for an admitted build; its layer keys are moved in (the originals zeroed). */
  add(role: 'relay' | 'endpoint', prev: LinkPeer, prevKey: string, prevId: TunnelId, acceptance: HopAcceptance, lifetimeMs: number, now: number): HopEntry {
    const { keys } = acceptance;
    // One buffer per entry behind both views: the keys, then the replay windows.
    const buffer = new ArrayBuffer(ENTRY_KEY_BYTES + 2 * WINDOW_WORDS * 4);
    const layerKeys = new Uint8Array(buffer, 0, ENTRY_KEY_BYTES);
    layerKeys.set(keys.outboundKey, OUTBOUND_KEY);
    layerKeys.set(keys.inboundKey, INBOUND_KEY);
    keys.outboundKey.fill(0);
    keys.inboundKey.fill(0);
    const peer = this.#refPeer(prevKey, prev.address);
    // The same neighbour on the same session is one LinkPeer for all its entries.
    const sameUpstream = peer.upstream !== undefined && peer.upstream.sessionId === prev.sessionId && peer.upstream.publicKey === prev.publicKey;
    if (!sameUpstream) peer.upstream = prev;
    const entry: HopEntry = {
      handle: this.newHandle(),
      role,
      prev: peer.upstream ?? prev,
      prevKey: peer.key,
      prevId,
      // Set when the build is forwarded; present from the start so entries keep one shape.
      nextAddress: undefined,
      nextKey: undefined,
      nextId: undefined,
      layerKeys,
      outboundOffset: keys.outboundOffset,
      inboundOffset: keys.inboundOffset,
      acceptance,
      windows: new Uint32Array(buffer, ENTRY_KEY_BYTES, 2 * WINDOW_WORDS),
      outHighest: -1,
      inHighest: -1,
      state: 'pending',
      deadline: now + BUILD_HOP_TIMEOUT_MS,
      expiresAt: now + lifetimeMs,
      inboundCounter: randomCounterStart(),
      endpointOpen: false,
    };
    this.upstream.set(entry.prevKey, prevId, entry);
    if (role === 'endpoint') this.#endpoints.set(entry.handle, entry);
    return entry;
  }

  /** Gives a relay entry its next hop under a newly chosen id; returns that id. */
  linkNext(entry: HopEntry, nextKey: string, nextAddress: UdpAddress): TunnelId {
    const nextId = this.chooseId(nextKey);
    const peer = this.#refPeer(nextKey, nextAddress);
    entry.nextAddress = peer.address;
    entry.nextKey = peer.key;
    entry.nextId = nextId;
    this.downstream.set(peer.key, nextId, entry);
    return nextId;
  }

  /** An endpoint entry by its handle. */
  endpoint(handle: number): HopEntry | undefined {
    return this.#endpoints.get(handle);
  }

  /** Whether `entry` is still the table's (it may have gone during an await). */
  holds(entry: HopEntry): boolean {
    return this.upstream.get(entry.prevKey, entry.prevId) === entry;
  }

  /** Removes `entry` from every index, wipes its keys, and releases an opened endpoint. */
  remove(entry: HopEntry, reason: DestroyReason): void {
    if (this.holds(entry)) {
      this.upstream.delete(entry.prevKey, entry.prevId);
      this.#unrefPeer(entry.prevKey);
      entry.layerKeys.fill(0);
    }
    if (this.#endpoints.get(entry.handle) === entry) this.#endpoints.delete(entry.handle);
    if (entry.nextKey !== undefined && entry.nextId !== undefined) {
      if (this.downstream.get(entry.nextKey, entry.nextId) === entry) {
        this.downstream.delete(entry.nextKey, entry.nextId);
        this.#unrefPeer(entry.nextKey);
      }
    }
    if (entry.endpointOpen) {
      entry.endpointOpen = false;
      this.#endpointSink.close(endpointView(entry), reason);
    }
  }

  /** Every neighbour some entry goes through, once: the links to keep checking. */
  neighbours(): IterableIterator<PeerRef> {
    return this.#peerRefs.values();
  }

  /** The shared key string and address of a neighbour, counting one more entry that uses them. */
  #refPeer(key: string, address: UdpAddress): PeerRef {
    let peer = this.#peerRefs.get(key);
    if (peer === undefined) {
      peer = { key, address: { host: address.host, port: address.port }, upstream: undefined, refs: 0 };
      this.#peerRefs.set(key, peer);
    }
    peer.refs++;
    return peer;
  }

  #unrefPeer(key: string): void {
    const peer = this.#peerRefs.get(key);
    if (peer !== undefined && --peer.refs === 0) this.#peerRefs.delete(key);
  }
}

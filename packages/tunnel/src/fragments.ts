/**
 * Fragmentation and reassembly of UDP datagrams carried in DATAGRAM cell frames
 * (docs/PROTOCOL.md §6). The endpoint reassembles outbound datagrams and the master inbound
 * ones; either way the fragments come from the far end of a tunnel, so every limit here is
 * a defence against a peer that never completes what it starts.
 */
import { Counters, configError } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import type { Clock, UdpAddress } from '@deut/common';
import { MAX_DATAGRAM_BYTES, MAX_FRAGMENTS, MAX_FRAGMENT_DATA } from '@deut/wire';
import type { DatagramFrame } from '@deut/wire';

/** Partial datagrams held per key (tunnel) by default (§6 `MAX_PARTIAL_DATAGRAMS`). */
export const MAX_PARTIAL_DATAGRAMS = 16;

/** Bytes held in partial datagrams per node by default (§6 `REASSEMBLY_BYTES`, 4 MiB). */
export const REASSEMBLY_BYTES = 4 * 1024 * 1024;

/** How long a partial datagram waits for its missing fragments (§6 `REASSEMBLY_TIMEOUT_MS`). */
export const REASSEMBLY_TIMEOUT_MS = 5_000;

/**
 * Bytes charged against the byte cap for each partial datagram on top of its data: an
 * estimate of its bookkeeping (an object, up to 65 fragment slots, map entries). Without
 * it, last fragments of one byte each would let partials multiply far past the cap.
 */
export const PARTIAL_OVERHEAD_BYTES = 512;

/** Completed (key, datagram id) pairs remembered by default to refuse late duplicates. */
export const MAX_RECENT_COMPLETIONS = 4096;

/**
 * Splits a datagram into DATAGRAM frames (§6): every fragment but the last carries exactly
 * MAX_FRAGMENT_DATA bytes, and an empty datagram is one empty fragment, so each datagram
 * has exactly one fragmentation. The fragments' `data` are views of `data`, not copies.
 * @param datagramId - u32 grouping the fragments; must not repeat on this tunnel within
 *   the receiver's reassembly timeout
 * @param address - destination (outbound) or source (inbound) of the datagram
 * @param data - 0..MAX_DATAGRAM_BYTES bytes
 * @throws RangeError if `data` is over MAX_DATAGRAM_BYTES or `datagramId` is not a u32
 */
export function fragmentDatagram(datagramId: number, address: UdpAddress, data: Uint8Array): DatagramFrame[] {
  if (!Number.isInteger(datagramId) || datagramId < 0 || datagramId > 0xffffffff) {
    throw new RangeError(`datagram id ${datagramId} is not a u32`);
  }
  if (data.length > MAX_DATAGRAM_BYTES) {
    throw new RangeError(`datagram of ${data.length} bytes is over ${MAX_DATAGRAM_BYTES}`);
  }
  const count = Math.max(1, Math.ceil(data.length / MAX_FRAGMENT_DATA));
  const frames: DatagramFrame[] = [];
  for (let index = 0; index < count; index++) {
    const start = index * MAX_FRAGMENT_DATA;
    frames.push({ type: 'datagram', datagramId, index, count, address, data: data.subarray(start, start + MAX_FRAGMENT_DATA) });
  }
  return frames;
}

/** Options of a Reassembler. */
export interface ReassemblerOptions {
  /** Time source for expiry. */
  readonly clock: Clock;
  /**
   * Partial datagrams held per key; a new one beyond this evicts the key's least recently
   * extended partial.
   * @default MAX_PARTIAL_DATAGRAMS (16)
   */
  readonly maxPartialPerKey?: number;
  /**
   * Bytes held in partial datagrams over all keys, counting fragment data plus
   * PARTIAL_OVERHEAD_BYTES per partial; beyond it the least recently extended partials are
   * evicted.
   * @default REASSEMBLY_BYTES (4 MiB)
   */
  readonly maxBytes?: number;
  /**
   * A partial datagram is dropped this long after its first fragment arrived, and a
   * completed datagram's id is refused for this long after completion.
   * @default REASSEMBLY_TIMEOUT_MS (5000)
   */
  readonly timeoutMs?: number;
  /**
   * Completed (key, datagram id) pairs remembered at most, oldest forgotten first.
   * @default MAX_RECENT_COMPLETIONS (4096)
   */
  readonly maxRecentCompletions?: number;
  /** Called with the reason of every counted drop (a fragment refused, a partial evicted or expired). */
  readonly onDrop?: (reason: ReassemblyDropReason) => void;
}

/**
 * Why a fragment or a partial datagram was dropped:
 * - `bad-fragment`: index, count, id or data length out of range (a decoded frame never is);
 * - `short-fragment`: a fragment other than the last not of MAX_FRAGMENT_DATA bytes;
 * - `empty-fragment`: an empty last fragment of a datagram of several fragments, which
 *   `fragmentDatagram` never produces (that datagram has a shorter fragmentation);
 * - `too-large`: the fragments would add up to more than MAX_DATAGRAM_BYTES;
 * - `count-mismatch`, `address-mismatch`: disagrees with earlier fragments of its datagram;
 * - `duplicate-fragment`: its index is already held, or its datagram recently completed;
 * - `evicted`: a partial datagram pushed out by the per-key or byte cap;
 * - `expired`: a partial datagram older than the timeout.
 */
export const REASSEMBLY_DROP_REASONS = [
  'bad-fragment',
  'short-fragment',
  'empty-fragment',
  'too-large',
  'count-mismatch',
  'address-mismatch',
  'duplicate-fragment',
  'evicted',
  'expired',
] as const;

/** One of {@link REASSEMBLY_DROP_REASONS}. */
export type ReassemblyDropReason = (typeof REASSEMBLY_DROP_REASONS)[number];

/** Every counter of a Reassembler: datagrams completed, and drops by reason. */
export type ReassemblyCounter = 'completed' | ReassemblyDropReason;

/** A reassembled datagram. */
export interface ReassembledDatagram {
  /** The address its fragments carried. */
  readonly address: UdpAddress;
  /** The whole datagram, a new array owned by the caller. */
  readonly data: Uint8Array;
}

/** Counters and occupancy of a Reassembler. */
export interface ReassemblerStats {
  /** Partial datagrams held. */
  readonly partials: number;
  /** Bytes charged against `maxBytes`: fragment data plus PARTIAL_OVERHEAD_BYTES per partial. */
  readonly bytes: number;
  /** `completed` plus one counter per ReassemblyDropReason seen. */
  readonly counters: CounterSnapshot<ReassemblyCounter>;
}

/** A datagram some of whose fragments have arrived. */
interface PartialDatagram {
  readonly key: string;
  readonly datagramId: number;
  readonly count: number;
  readonly address: UdpAddress;
  readonly createdAt: number;
  /** Copies of the fragments received, by index. */
  readonly fragments: (Uint8Array | undefined)[];
  received: number;
  /** What this partial adds to the byte total. */
  charge: number;
}

/** A recently completed datagram. */
interface Completion {
  readonly key: string;
  readonly at: number;
}

/**
 * Reassembles DATAGRAM frames into datagrams with bounded memory (§6). One instance per
 * node serves every tunnel, each under its own key, so the byte cap is per node.
 *
 * Eviction picks the partial that least recently received a fragment, not the one that
 * started first: a legitimate datagram whose fragments arrive close together then survives
 * a flood of never-completed ones, as long as the flood opens fewer partials between two of
 * its fragments than the caps hold. Expiry still counts from the first fragment, so no
 * partial lives longer than the timeout however it is fed.
 */
export class Reassembler {
  readonly #clock: Clock;
  readonly #maxPartialPerKey: number;
  readonly #maxBytes: number;
  readonly #timeoutMs: number;
  readonly #maxRecentCompletions: number;
  readonly #onDrop: ((reason: ReassemblyDropReason) => void) | undefined;
  readonly #counters = new Counters<ReassemblyCounter>();
  /** Partials per key, least recently extended first. */
  readonly #byKey = new Map<string, Map<number, PartialDatagram>>();
  /** Every partial, least recently extended first: the global eviction order. */
  readonly #byUse = new Set<PartialDatagram>();
  /** Every partial in creation order: the expiry order. */
  readonly #byAge = new Set<PartialDatagram>();
  /** Recently completed datagrams by completionKey, oldest first. */
  readonly #completed = new Map<string, Completion>();
  #bytes = 0;

  constructor(options: ReassemblerOptions) {
    this.#clock = options.clock;
    this.#maxPartialPerKey = positiveInteger('maxPartialPerKey', options.maxPartialPerKey ?? MAX_PARTIAL_DATAGRAMS);
    this.#maxBytes = positiveInteger('maxBytes', options.maxBytes ?? REASSEMBLY_BYTES);
    this.#timeoutMs = positiveInteger('timeoutMs', options.timeoutMs ?? REASSEMBLY_TIMEOUT_MS);
    this.#maxRecentCompletions = positiveInteger('maxRecentCompletions', options.maxRecentCompletions ?? MAX_RECENT_COMPLETIONS);
    this.#onDrop = options.onDrop;
  }

  /**
   * Takes one fragment received under `key` (a tunnel); returns the datagram when this
   * fragment completes it. Fragments that break §6 are dropped and counted, never thrown.
   * The frame's `data` is copied, so it may alias a buffer the caller reuses.
   */
  add(key: string, frame: DatagramFrame): ReassembledDatagram | undefined {
    const now = this.#clock.now();
    this.#expire(now);
    const { datagramId, index, count, address, data } = frame;
    if (
      !Number.isInteger(datagramId) || datagramId < 0 || datagramId > 0xffffffff ||
      !Number.isInteger(count) || count < 1 || count > MAX_FRAGMENTS ||
      !Number.isInteger(index) || index < 0 || index >= count ||
      data.length > MAX_FRAGMENT_DATA
    ) {
      return this.#drop('bad-fragment');
    }
    const last = index === count - 1;
    if (!last && data.length !== MAX_FRAGMENT_DATA) return this.#drop('short-fragment');
    if (last && count > 1 && data.length === 0) return this.#drop('empty-fragment');
    // Only the last fragment can overflow: 64 full fragments are 65,280 bytes.
    if (last && (count - 1) * MAX_FRAGMENT_DATA + data.length > MAX_DATAGRAM_BYTES) return this.#drop('too-large');
    if (this.#completed.has(completionKey(key, datagramId))) return this.#drop('duplicate-fragment');

    if (count === 1) return this.#complete(key, datagramId, now, { address, data: data.slice() });

    const partials = this.#byKey.get(key);
    const partial = partials?.get(datagramId);
    if (partials === undefined || partial === undefined) return this.#start(key, frame, now);
    if (count !== partial.count) return this.#drop('count-mismatch');
    if (address.host !== partial.address.host || address.port !== partial.address.port) return this.#drop('address-mismatch');
    if (partial.fragments[index] !== undefined) return this.#drop('duplicate-fragment');

    if (partial.received + 1 === count) {
      partial.fragments[index] = data;
      const datagram = assemble(partial);
      this.#remove(partial);
      return this.#complete(key, datagramId, now, datagram);
    }
    partial.fragments[index] = data.slice();
    partial.received++;
    this.#charge(partial, data.length);
    // Re-inserting moves the partial to the most recently extended end of both orders.
    partials.delete(datagramId);
    partials.set(datagramId, partial);
    this.#byUse.delete(partial);
    this.#byUse.add(partial);
    this.#shrink();
    return undefined;
  }

  /** Drops every partial and completion record of `key` when its tunnel closes (not counted as drops). */
  forget(key: string): void {
    const partials = this.#byKey.get(key);
    if (partials !== undefined) {
      for (const partial of [...partials.values()]) this.#remove(partial);
    }
    for (const [id, completion] of this.#completed) {
      if (completion.key === key) this.#completed.delete(id);
    }
  }

  /**
   * Drops partials older than the timeout and completion records past it; `add` does the
   * same lazily, so call this from a housekeeping tick to free memory of idle tunnels.
   * @returns the number of partials expired
   */
  sweep(): number {
    return this.#expire(this.#clock.now());
  }

  /** Occupancy and counters, for tests and metrics. */
  stats(): ReassemblerStats {
    return { partials: this.#byUse.size, bytes: this.#bytes, counters: this.#counters.snapshot() };
  }

  /** Stores the first fragment of a datagram of several fragments. */
  #start(key: string, frame: DatagramFrame, now: number): undefined {
    let partials = this.#byKey.get(key);
    if (partials === undefined) {
      partials = new Map();
      this.#byKey.set(key, partials);
    }
    while (partials.size >= this.#maxPartialPerKey) {
      const oldest = partials.values().next();
      if (oldest.done === true) break;
      this.#evict(oldest.value);
    }
    const fragments = new Array<Uint8Array | undefined>(frame.count).fill(undefined);
    fragments[frame.index] = frame.data.slice();
    const partial: PartialDatagram = {
      key,
      datagramId: frame.datagramId,
      count: frame.count,
      address: frame.address,
      createdAt: now,
      fragments,
      received: 1,
      charge: 0,
    };
    // #evict may have removed the key's map when it emptied it.
    this.#byKey.set(key, partials);
    partials.set(frame.datagramId, partial);
    this.#byUse.add(partial);
    this.#byAge.add(partial);
    this.#charge(partial, PARTIAL_OVERHEAD_BYTES + frame.data.length);
    this.#shrink();
    return undefined;
  }

  #charge(partial: PartialDatagram, bytes: number): void {
    partial.charge += bytes;
    this.#bytes += bytes;
  }

  /** Evicts least recently extended partials until the byte total fits the cap. */
  #shrink(): void {
    // INVARIANT: after every add, #bytes <= #maxBytes. The partial just extended is the last
    // in #byUse, so it goes only if it alone is over the cap.
    while (this.#bytes > this.#maxBytes) {
      const oldest = this.#byUse.values().next();
      if (oldest.done === true) break;
      this.#evict(oldest.value);
    }
  }

  #evict(partial: PartialDatagram): void {
    this.#remove(partial);
    this.#drop('evicted');
  }

  #remove(partial: PartialDatagram): void {
    const partials = this.#byKey.get(partial.key);
    partials?.delete(partial.datagramId);
    if (partials?.size === 0) this.#byKey.delete(partial.key);
    this.#byUse.delete(partial);
    this.#byAge.delete(partial);
    this.#bytes -= partial.charge;
  }

  #complete(key: string, datagramId: number, now: number, datagram: ReassembledDatagram): ReassembledDatagram {
    this.#completed.set(completionKey(key, datagramId), { key, at: now });
    if (this.#completed.size > this.#maxRecentCompletions) {
      const oldest = this.#completed.keys().next();
      if (oldest.done !== true) this.#completed.delete(oldest.value);
    }
    this.#counters.add('completed');
    return datagram;
  }

  #expire(now: number): number {
    let expired = 0;
    for (const partial of this.#byAge) {
      if (now - partial.createdAt < this.#timeoutMs) break;
      this.#remove(partial);
      this.#drop('expired');
      expired++;
    }
    for (const [id, completion] of this.#completed) {
      if (now - completion.at < this.#timeoutMs) break;
      this.#completed.delete(id);
    }
    return expired;
  }

  #drop(reason: ReassemblyDropReason): undefined {
    this.#counters.add(reason);
    this.#onDrop?.(reason);
    return undefined;
  }
}

/** One string per (key, datagram id); the length prefix keeps keys containing separators apart. */
function completionKey(key: string, datagramId: number): string {
  return `${key.length}:${key}:${datagramId}`;
}

/** Concatenates a partial whose fragments are all present. */
function assemble(partial: PartialDatagram): ReassembledDatagram {
  const lastLength = partial.fragments[partial.count - 1]?.length ?? 0;
  const data = new Uint8Array((partial.count - 1) * MAX_FRAGMENT_DATA + lastLength);
  partial.fragments.forEach((fragment, index) => {
    if (fragment !== undefined) data.set(fragment, index * MAX_FRAGMENT_DATA);
  });
  return { address: partial.address, data };
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) throw configError('BAD_OPTION', `${name} must be a positive integer`);
  return value;
}

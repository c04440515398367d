/**
 * An in-memory UDP network for deterministic tests of meshes of tens or hundreds of nodes:
 * any host string is an address, and each datagram's fate (loss, duplication, delay,
 * reordering, partitions, MTU) is drawn from a seeded PRNG, so the same seed and the same
 * sequence of sends give the same fates. Delays run on an injected Clock, so a ManualClock
 * drives delivery without sleeping; zero-delay delivery goes through a setImmediate queue.
 */
import { isIP } from 'node:net';
import type { Clock, TimerHandle, UdpAddress } from '@deut/common';
import { addressKey, systemClock } from '@deut/common';
import { socketError, transportConfigError } from './errors.js';
import type { DatagramSocket, MessageHandler, SocketOptions, SocketStats } from './socket.js';
import {
  MAX_UDP6_PAYLOAD_BYTES,
  MAX_UDP_PAYLOAD_BYTES,
  SocketCore,
  assertDestination,
  copyBytes,
  isBindablePort,
} from './socket.js';
import { seededRandom } from '@deut/common';

/** First port handed out when binding port 0 (the IANA dynamic range, as on most systems). */
export const EPHEMERAL_PORT_FIRST = 49_152;
const EPHEMERAL_PORT_LAST = 65_535;

/** How the simulated wire treats datagrams in one direction. */
export interface LinkConditions {
  /**
   * Probability in [0, 1] that a datagram is dropped.
   * @default 0
   */
  readonly loss?: number;
  /**
   * Probability in [0, 1] that a datagram arrives twice (the copy with its own delay).
   * @default 0
   */
  readonly duplicate?: number;
  /**
   * Probability in [0, 1] that a datagram is held back an extra `reorderDelayMs`, so that
   * datagrams sent after it overtake it.
   * @default 0
   */
  readonly reorder?: number;
  /**
   * Extra delay of a reordered datagram, in milliseconds.
   * @default 10
   */
  readonly reorderDelayMs?: number;
  /**
   * One-way delay in milliseconds. Zero delivers on the next setImmediate turn.
   * @default 0
   */
  readonly delayMs?: number;
  /**
   * Uniformly random extra delay in [0, jitterMs) milliseconds; enough jitter reorders too.
   * @default 0
   */
  readonly jitterMs?: number;
  /**
   * Largest datagram payload in bytes; larger ones are dropped with fate `too-big`.
   * @default 65507
   */
  readonly mtu?: number;
}

/** Hosts that a {@link MemoryNetwork.setConditions} override applies to; a missing side matches any host. */
export interface LinkSelector {
  /** Sending host. */
  readonly from?: string;
  /** Receiving host. */
  readonly to?: string;
}

/** What became of one datagram copy on the wire. */
export type WireFate = 'delivered' | 'lost' | 'duplicated' | 'no-listener' | 'partitioned' | 'too-big';

/**
 * One datagram copy whose fate is settled. `duplicated` marks the extra copy of a
 * duplicated datagram that reached its socket (the original is reported `delivered`).
 */
export interface WireEvent {
  /** The sending socket's address. */
  readonly from: UdpAddress;
  /** The destination as given to send(). */
  readonly to: UdpAddress;
  /** The payload; observers must not modify it, since the receiving handler gets the same bytes. */
  readonly data: Uint8Array;
  readonly fate: WireFate;
  /** Clock time at which the fate was settled. */
  readonly at: number;
}

/** Options of {@link MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /**
   * Seed of the PRNG that decides fates.
   * @default 0x5eed
   */
  readonly seed?: number;
  /**
   * Conditions for every direction without an override.
   * @default a perfect wire: no loss, no delay, MTU 65507
   */
  readonly conditions?: LinkConditions;
  /**
   * Clock for delayed deliveries and event times.
   * @default systemClock
   */
  readonly clock?: Clock;
}

/** Network-wide counters, one per fate (a duplicated datagram counts in `delivered` twice). */
export interface MemoryNetworkStats {
  /** Copies handed to an open socket, duplicates included. */
  readonly delivered: number;
  /** Datagrams dropped by `loss`. */
  readonly lost: number;
  /** Extra copies created by duplication. */
  readonly duplicated: number;
  /** Copies given the extra reorder delay. */
  readonly reordered: number;
  /** Copies that arrived at an address with no open socket. */
  readonly noListener: number;
  /** Datagrams dropped by a partition, at send or on arrival. */
  readonly partitioned: number;
  /** Datagrams larger than the `mtu` of their direction. */
  readonly tooBig: number;
}

type ResolvedConditions = Required<LinkConditions>;

const PERFECT: ResolvedConditions = Object.freeze({
  loss: 0,
  duplicate: 0,
  reorder: 0,
  reorderDelayMs: 10,
  delayMs: 0,
  jitterMs: 0,
  mtu: MAX_UDP_PAYLOAD_BYTES,
});

interface InFlight {
  readonly from: UdpAddress;
  readonly to: UdpAddress;
  readonly data: Uint8Array;
  /** Fate if it reaches an open socket: `delivered`, or `duplicated` for an extra copy. */
  readonly arrival: 'delivered' | 'duplicated';
}

/**
 * An in-memory network of DatagramSockets.
 *
 * Each send draws exactly six PRNG values whatever the conditions, so the fate of the n-th
 * datagram depends only on the seed, n and the conditions, not on earlier fates.
 */
export class MemoryNetwork {
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #sockets = new Map<string, MemorySocket>();
  readonly #nextPort = new Map<string, number>();
  #defaults: ResolvedConditions;
  readonly #overrides = new Map<string, LinkConditions>();
  readonly #resolved = new Map<string, ResolvedConditions>();
  readonly #partitions = new Set<string>();
  readonly #observers = new Set<(event: WireEvent) => void>();
  #queue: InFlight[] = [];
  #immediate: NodeJS.Immediate | undefined;
  readonly #timers = new Set<TimerHandle>();
  #closed = false;
  readonly #stats = { delivered: 0, lost: 0, duplicated: 0, reordered: 0, noListener: 0, partitioned: 0, tooBig: 0 };

  constructor(options: MemoryNetworkOptions = {}) {
    const seed = options.seed ?? 0x5eed;
    if (!Number.isFinite(seed)) throw transportConfigError('BAD_OPTION', 'seed must be a finite number');
    this.#random = seededRandom(seed);
    this.#clock = options.clock ?? systemClock;
    this.#defaults = applyLayer(PERFECT, checkConditions(options.conditions ?? {}));
  }

  /**
   * Binds a socket. Port 0 takes the next free port on that host from 49152 up. Throws
   * `BIND_FAILED` if the address is taken or no port is free, `BAD_ADDRESS` for an empty
   * host or a port outside 0..65535, `NETWORK_CLOSED` after close().
   */
  bind(address: UdpAddress, options: SocketOptions = {}): DatagramSocket {
    if (this.#closed) throw socketError('NETWORK_CLOSED', 'bind on a closed MemoryNetwork');
    if (typeof address.host !== 'string' || address.host === '') {
      throw socketError('BAD_ADDRESS', 'bind host must be a non-empty string');
    }
    if (!isBindablePort(address.port)) throw socketError('BAD_ADDRESS', 'bind port must be an integer in 0..65535');
    const port = address.port === 0 ? this.#allocatePort(address.host) : address.port;
    const local = Object.freeze({ host: address.host, port });
    const key = addressKey(local);
    if (this.#sockets.has(key)) throw socketError('BIND_FAILED', `address in use: ${key}`);
    const socket = new MemorySocket(local, options, {
      transmit: (data, to) => this.#transmit(local, data, to),
      unbind: () => {
        if (this.#sockets.get(key) === socket) this.#sockets.delete(key);
      },
    });
    this.#sockets.set(key, socket);
    return socket;
  }

  /**
   * Sets conditions. Without `between` (or with neither side given) this replaces the
   * default; otherwise it replaces the override for that direction. Overrides layer field
   * by field over the default, most specific last: default, then `{ to }`, then
   * `{ from }`, then `{ from, to }`. Set a field to its default value to undo it.
   */
  setConditions(conditions: LinkConditions, between: LinkSelector = {}): void {
    const checked = checkConditions(conditions);
    if (between.from === undefined && between.to === undefined) {
      this.#defaults = applyLayer(PERFECT, checked);
    } else {
      this.#overrides.set(selectorKey(between.from, between.to), checked);
    }
    this.#resolved.clear();
  }

  /** Drops every datagram between the two hosts, both ways, until heal(). In-flight ones are dropped too. */
  partition(hostA: string, hostB: string): void {
    this.#partitions.add(pairKey(hostA, hostB));
  }

  /** Ends every partition. */
  heal(): void;
  /** Ends the partition between two hosts. */
  heal(hostA: string, hostB: string): void;
  heal(hostA?: string, hostB?: string): void {
    if (hostA === undefined || hostB === undefined) {
      this.#partitions.clear();
    } else {
      this.#partitions.delete(pairKey(hostA, hostB));
    }
  }

  /**
   * Calls `observer` for every datagram copy when its fate is settled: at send for
   * `lost`, `too-big` and `partitioned`, at arrival for the others. Copies cancelled by
   * close() are not reported. An observer that throws fails loudly (the error is rethrown
   * from a microtask) without disturbing delivery. Returns a function that unsubscribes.
   */
  tap(observer: (event: WireEvent) => void): () => void {
    this.#observers.add(observer);
    return () => {
      this.#observers.delete(observer);
    };
  }

  /** Number of bound, open sockets. */
  get openSockets(): number {
    return this.#sockets.size;
  }

  /** Datagram copies scheduled but not yet arrived (zero-delay queue plus timers). */
  get inFlight(): number {
    return this.#queue.length + this.#timers.size;
  }

  /** A snapshot of the network-wide counters. */
  get stats(): MemoryNetworkStats {
    return { ...this.#stats };
  }

  /**
   * Resolves once the zero-delay queue is empty, including datagrams that handlers sent
   * in response. Delayed datagrams are not waited for: advance the clock for those.
   * Never resolves while two handlers echo to each other forever.
   */
  async idle(): Promise<void> {
    while (this.#queue.length > 0 && !this.#closed) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Closes every socket and cancels every pending delivery and timer. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const socket of [...this.#sockets.values()]) void socket.close();
      this.#sockets.clear();
      for (const handle of this.#timers) this.#clock.clearTimeout(handle);
      this.#timers.clear();
      if (this.#immediate !== undefined) clearImmediate(this.#immediate);
      this.#immediate = undefined;
      this.#queue = [];
    }
    return Promise.resolve();
  }

  #allocatePort(host: string): number {
    const span = EPHEMERAL_PORT_LAST - EPHEMERAL_PORT_FIRST + 1;
    // Continue after the last port handed out, as kernels do, so a just-closed port is not
    // reused at once and cannot receive datagrams meant for its previous owner.
    const start = this.#nextPort.get(host) ?? EPHEMERAL_PORT_FIRST;
    for (let i = 0; i < span; i++) {
      const port = EPHEMERAL_PORT_FIRST + ((start - EPHEMERAL_PORT_FIRST + i) % span);
      if (!this.#sockets.has(addressKey({ host, port }))) {
        this.#nextPort.set(host, port === EPHEMERAL_PORT_LAST ? EPHEMERAL_PORT_FIRST : port + 1);
        return port;
      }
    }
    throw socketError('BIND_FAILED', `no free ephemeral port on ${host}`);
  }

  #conditions(from: string, to: string): ResolvedConditions {
    const key = selectorKey(from, to);
    let resolved = this.#resolved.get(key);
    if (resolved === undefined) {
      resolved = this.#defaults;
      for (const layer of [selectorKey(undefined, to), selectorKey(from, undefined), key]) {
        const override = this.#overrides.get(layer);
        if (override !== undefined) resolved = applyLayer(resolved, override);
      }
      this.#resolved.set(key, resolved);
    }
    return resolved;
  }

  /** Called by MemorySocket.send with a destination already validated and a private copy of the payload. */
  #transmit(from: UdpAddress, data: Uint8Array, to: UdpAddress): void {
    // INVARIANT: exactly six draws per send, before any early return (see the class doc).
    const lossDraw = this.#random();
    const duplicateDraw = this.#random();
    const jitterDraws = [this.#random(), this.#random()] as const;
    const reorderDraws = [this.#random(), this.#random()] as const;
    const c = this.#conditions(from.host, to.host);
    const destination = Object.freeze({ host: to.host, port: to.port });
    if (this.#partitions.has(pairKey(from.host, to.host))) {
      this.#settle({ from, to: destination, data, arrival: 'delivered' }, 'partitioned');
      return;
    }
    if (data.length > c.mtu) {
      this.#settle({ from, to: destination, data, arrival: 'delivered' }, 'too-big');
      return;
    }
    if (lossDraw < c.loss) {
      this.#settle({ from, to: destination, data, arrival: 'delivered' }, 'lost');
      return;
    }
    this.#schedule({ from, to: destination, data, arrival: 'delivered' }, c, jitterDraws[0], reorderDraws[0]);
    if (duplicateDraw < c.duplicate) {
      this.#stats.duplicated++;
      const copy = { from, to: destination, data: copyBytes(data), arrival: 'duplicated' } as const;
      this.#schedule(copy, c, jitterDraws[1], reorderDraws[1]);
    }
  }

  #schedule(item: InFlight, c: ResolvedConditions, jitterDraw: number, reorderDraw: number): void {
    let delay = c.delayMs + jitterDraw * c.jitterMs;
    if (reorderDraw < c.reorder) {
      this.#stats.reordered++;
      delay += c.reorderDelayMs;
    }
    if (delay <= 0) {
      this.#queue.push(item);
      this.#immediate ??= setImmediate(() => this.#drain());
      return;
    }
    const handle = this.#clock.setTimeout(() => {
      this.#timers.delete(handle);
      this.#arrive(item);
    }, delay);
    this.#timers.add(handle);
  }

  #drain(): void {
    this.#immediate = undefined;
    // Datagrams sent by handlers during this batch wait for the next turn, so a chatty
    // pair of handlers cannot starve timers and I/O.
    const batch = this.#queue;
    this.#queue = [];
    for (const item of batch) {
      if (this.#closed) return;
      this.#arrive(item);
    }
  }

  #arrive(item: InFlight): void {
    if (this.#partitions.has(pairKey(item.from.host, item.to.host))) {
      this.#settle(item, 'partitioned');
      return;
    }
    const socket = this.#sockets.get(addressKey(item.to));
    if (socket === undefined) {
      this.#settle(item, 'no-listener');
      return;
    }
    this.#settle(item, item.arrival);
    socket.receive(item.data, item.from);
  }

  #settle(item: InFlight, fate: WireFate): void {
    switch (fate) {
      case 'delivered':
      case 'duplicated':
        this.#stats.delivered++;
        break;
      case 'lost':
        this.#stats.lost++;
        break;
      case 'no-listener':
        this.#stats.noListener++;
        break;
      case 'partitioned':
        this.#stats.partitioned++;
        break;
      case 'too-big':
        this.#stats.tooBig++;
        break;
    }
    if (this.#observers.size === 0) return;
    const event: WireEvent = { from: item.from, to: item.to, data: item.data, fate, at: this.#clock.now() };
    for (const observer of this.#observers) {
      try {
        observer(event);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

interface Wire {
  transmit(data: Uint8Array, to: UdpAddress): void;
  unbind(): void;
}

/** A socket on a MemoryNetwork. */
class MemorySocket implements DatagramSocket {
  readonly local: UdpAddress;
  readonly #core: SocketCore;
  readonly #wire: Wire;
  readonly #maxPayload: number;

  constructor(local: UdpAddress, options: SocketOptions, wire: Wire) {
    this.local = local;
    this.#core = new SocketCore(options);
    this.#wire = wire;
    this.#maxPayload = isIP(local.host) === 6 ? MAX_UDP6_PAYLOAD_BYTES : MAX_UDP_PAYLOAD_BYTES;
  }

  get stats(): SocketStats {
    return this.#core.snapshot();
  }

  send(data: Uint8Array, to: UdpAddress): void {
    this.#core.assertOpen();
    assertDestination(to);
    if (data.length > this.#maxPayload) {
      // A real socket refuses this locally (EMSGSIZE) and reports it asynchronously.
      const error = socketError('SEND_FAILED', `datagram of ${data.length} bytes exceeds the UDP maximum`);
      queueMicrotask(() => this.#core.countSendError(error));
      return;
    }
    this.#core.countSent(data.length);
    this.#wire.transmit(copyBytes(data), to);
  }

  onMessage(handler: MessageHandler): void {
    this.#core.setHandler(handler);
  }

  close(): Promise<void> {
    if (!this.#core.closed) {
      this.#core.closed = true;
      this.#wire.unbind();
    }
    return Promise.resolve();
  }

  receive(data: Uint8Array, from: UdpAddress): void {
    this.#core.deliver(data, from);
  }
}

function checkConditions(conditions: LinkConditions): LinkConditions {
  for (const name of ['loss', 'duplicate', 'reorder'] as const) {
    const value = conditions[name];
    if (value !== undefined && !(value >= 0 && value <= 1)) {
      throw transportConfigError('BAD_CONDITIONS', `${name} must be a probability in [0, 1]`);
    }
  }
  for (const name of ['delayMs', 'jitterMs', 'reorderDelayMs'] as const) {
    const value = conditions[name];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw transportConfigError('BAD_CONDITIONS', `${name} must be a finite number >= 0`);
    }
  }
  if (conditions.mtu !== undefined && !(Number.isInteger(conditions.mtu) && conditions.mtu >= 0)) {
    throw transportConfigError('BAD_CONDITIONS', 'mtu must be an integer >= 0');
  }
  return { ...conditions };
}

function applyLayer(base: ResolvedConditions, layer: LinkConditions): ResolvedConditions {
  return Object.freeze({
    loss: layer.loss ?? base.loss,
    duplicate: layer.duplicate ?? base.duplicate,
    reorder: layer.reorder ?? base.reorder,
    reorderDelayMs: layer.reorderDelayMs ?? base.reorderDelayMs,
    delayMs: layer.delayMs ?? base.delayMs,
    jitterMs: layer.jitterMs ?? base.jitterMs,
    mtu: layer.mtu ?? base.mtu,
  });
}

function selectorKey(from: string | undefined, to: string | undefined): string {
  return JSON.stringify([from ?? null, to ?? null]);
}

function pairKey(hostA: string, hostB: string): string {
  return JSON.stringify(hostA < hostB ? [hostA, hostB] : [hostB, hostA]);
}


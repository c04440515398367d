/**
 * TunnelSocket: a UDP socket shaped like node:dgram's `Socket` whose datagrams leave from,
 * and arrive at, a master's endpoints, so that an unmodified UDP library (a BitTorrent DHT
 * through k-rpc-socket, say) runs over deut and its peers never learn the master's address.
 *
 * Where it has to differ from dgram, a library sees this:
 * - `bind()` ignores port and address: the endpoints (relayers) chose their ports when the
 *   tunnels were built. It waits for one usable tunnel, then emits 'listening'.
 * - `address()` is one of the endpoints, not a local port, and may change as tunnels rotate.
 * - Destinations must be IP literals: resolving a name here would send a DNS query outside
 *   the tunnels and tell the resolver whom the master is about to talk to.
 * - The endpoints belong to the node, not to the socket: every open bound socket of a node
 *   receives every datagram that reaches any of its endpoints.
 * - With `fanout` above 1 each datagram leaves as that many copies through distinct tunnels;
 *   duplicates are legal UDP, and a peer answers each copy.
 * - Unicast only: broadcast and multicast calls throw `ERR_DEUT_UNSUPPORTED`. No `connect()`.
 */
import { EventEmitter } from 'node:events';
import type { BindOptions } from 'node:dgram';
import { isIP } from 'node:net';
import { Counters, DeutError, addressKey, type ErrorKind, type UdpAddress } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import type { OwnedTunnel } from '@deut/tunnel';
import { MAX_DATAGRAM_BYTES } from '@deut/wire';
import { configError, type TunnelSocketErrorCode } from './errors.js';
import { sample } from './random.js';

/** Options of {@link DeutNode.createSocket}. */
export interface TunnelSocketOptions {
  /**
   * Copies of each datagram sent, through that many distinct tunnels (fewer when fewer are
   * usable): more chance of arriving, at the price of duplicates at the receiver. 1..8.
   * @default 1
   */
  readonly fanout?: number;
}

/** Where a received datagram came from, as node:dgram's `RemoteInfo`. */
export interface TunnelSocketRemoteInfo {
  /** IP of the sender as our endpoint saw it; IPv4-mapped IPv6 is given as plain IPv4. */
  readonly address: string;
  readonly family: 'IPv4' | 'IPv6';
  readonly port: number;
  /** Bytes of the datagram. */
  readonly size: number;
}

/** The address a socket is reachable at: one of the node's endpoints. */
export interface TunnelSocketAddress {
  readonly address: string;
  readonly family: 'IPv4' | 'IPv6';
  readonly port: number;
}

/** What `send` takes: bytes, text (UTF-8), or a list of them sent as one datagram. */
export type TunnelSocketMessage = string | Uint8Array | ReadonlyArray<string | Uint8Array>;

/** Called once a datagram has left (`bytes` of it) or could not be sent. */
export type TunnelSocketSendCallback = (error: Error | null, bytes: number) => void;

/** Events of a {@link TunnelSocket}, as node:dgram's. */
export interface TunnelSocketEvents {
  message: [msg: Buffer, rinfo: TunnelSocketRemoteInfo];
  listening: [];
  close: [];
  error: [error: Error];
}

/**
 * What a socket needs of its node. {@link DeutNode.createSocket} supplies it; a socket
 * holds no tunnels of its own.
 */
export interface TunnelSocketHost {
  /** Resolves once at least one tunnel is usable; rejects when `signal` aborts. */
  ready(signal: AbortSignal): Promise<void>;
  /** The tunnels that take new datagrams now. */
  usable(): readonly OwnedTunnel[];
  /** Sends one datagram to `to` through `tunnel`, from its endpoint. */
  transmit(tunnel: OwnedTunnel, to: UdpAddress, data: Uint8Array): void;
  /** Calls `listener` for every datagram reaching the node's endpoints; returns the unsubscribe. */
  subscribe(listener: (data: Uint8Array, from: UdpAddress, info: { readonly tunnel: number }) => void): () => void;
}

/** Remote addresses whose latest tunnel is remembered; the oldest is forgotten first. */
const CONTACTED_CAPACITY = 4096;
/** Longest delay a node timer takes: the keep-alive interval never has to fire. */
const KEEP_ALIVE_MS = 2 ** 31 - 1;
/** node:dgram's destination when none is given (udp4). */
const DEFAULT_DESTINATION = '127.0.0.1';
const MAX_FANOUT = 8;

/** Counter names of {@link TunnelSocket.stats}. */
export type TunnelSocketCounter =
  | 'datagrams-sent'
  | 'copies-sent'
  | 'copies-via-contacted-tunnel'
  | 'datagrams-received'
  | 'drop:hostname'
  | 'drop:too-big'
  | 'drop:no-tunnel'
  | 'drop:transmit-failed'
  | 'drop:closed';

/** Errors carry node:dgram's codes where dgram has one, so callers branch on them as usual. */
function socketError(kind: ErrorKind, code: TunnelSocketErrorCode, message: string): DeutError {
  return new DeutError(kind, code, message);
}

const notRunning = (): DeutError => socketError('config', 'ERR_SOCKET_DGRAM_NOT_RUNNING', 'Not running');
const unsupported = (what: string): DeutError => socketError('config', 'ERR_DEUT_UNSUPPORTED', `${what}: tunnels carry unicast only`);

/** `::ffff:a.b.c.d` as `a.b.c.d`, the way a udp4 socket reports its senders. */
function unmapIpv4(host: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(host);
  return mapped?.[1] ?? host;
}

function familyOf(host: string): 'IPv4' | 'IPv6' {
  return isIP(host) === 6 ? 'IPv6' : 'IPv4';
}

/** dgram's port rule for destinations: an integer 1..65535, or a string of one. */
function validPort(port: unknown): number {
  const value = typeof port === 'string' && port.trim() !== '' ? Number(port) : port;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 0xffff) {
    throw socketError('config', 'ERR_SOCKET_BAD_PORT', `Port should be > 0 and < 65536. Received ${String(port)}.`);
  }
  return value;
}

function toBytes(part: unknown): Uint8Array {
  if (typeof part === 'string') return Buffer.from(part);
  if (ArrayBuffer.isView(part)) return new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
  throw socketError('config', 'ERR_INVALID_ARG_TYPE', 'The "buffer" argument must be a string, a Buffer, a TypedArray, a DataView or an array of them');
}

/** The datagram `send` was given, as one copy (the caller may reuse its buffers at once). */
function datagramOf(msg: unknown, slice: { offset: number; length: number } | undefined): Buffer {
  if (slice === undefined) return Buffer.concat((Array.isArray(msg) ? msg : [msg]).map(toBytes));
  if (Array.isArray(msg)) throw socketError('config', 'ERR_INVALID_ARG_TYPE', 'offset and length need a single buffer or string');
  const bytes = toBytes(msg);
  const offset = slice.offset >>> 0;
  const length = slice.length >>> 0;
  if (offset > bytes.length) throw socketError('config', 'ERR_BUFFER_OUT_OF_BOUNDS', '"offset" is outside of buffer bounds');
  if (offset + length > bytes.length) throw socketError('config', 'ERR_BUFFER_OUT_OF_BOUNDS', '"length" is outside of buffer bounds');
  return Buffer.from(bytes.subarray(offset, offset + length));
}

interface PendingSend {
  readonly data: Buffer;
  readonly host: string;
  readonly port: number;
  readonly callback: TunnelSocketSendCallback | undefined;
}

/**
 * A node:dgram-shaped socket over a master's tunnels; see the file header for where it
 * differs from dgram. Create it with {@link DeutNode.createSocket}; close it when done (a
 * bound, ref'd socket keeps the process alive, like a dgram socket).
 */
export class TunnelSocket extends EventEmitter<TunnelSocketEvents> {
  readonly #host: TunnelSocketHost;
  readonly #fanout: number;
  readonly #counters = new Counters<TunnelSocketCounter>();
  /** Remote address key -> tunnel its latest datagram arrived through, oldest first. */
  readonly #contacted = new Map<string, number>();
  readonly #binding = new AbortController();
  #queue: PendingSend[] = [];
  #state: 'unbound' | 'binding' | 'bound' | 'closed' = 'unbound';
  #unsubscribe: (() => void) | undefined;
  #lastTunnel: OwnedTunnel | undefined;
  #refed = true;
  #keepAlive: ReturnType<typeof setInterval> | undefined;

  /** Use {@link DeutNode.createSocket}. */
  constructor(host: TunnelSocketHost, options: TunnelSocketOptions = {}) {
    super();
    const fanout = options.fanout ?? 1;
    if (!Number.isInteger(fanout) || fanout < 1 || fanout > MAX_FANOUT) throw configError('BAD_FANOUT', `fanout must be 1..${MAX_FANOUT}`);
    this.#host = host;
    this.#fanout = fanout;
  }

  /**
   * Starts receiving once a tunnel is usable, then emits 'listening' and calls `callback`.
   * `port` and `address` (or `options`) are accepted for dgram's sake and ignored: the
   * endpoints' ports are their relayers' choice. Throws `ERR_SOCKET_ALREADY_BOUND` on a
   * second call, `ERR_SOCKET_DGRAM_NOT_RUNNING` once closed.
   */
  bind(port?: number, address?: string, callback?: () => void): this;
  bind(port?: number, callback?: () => void): this;
  bind(callback?: () => void): this;
  bind(options: BindOptions, callback?: () => void): this;
  bind(...args: unknown[]): this {
    if (this.#state === 'closed') throw notRunning();
    if (this.#state !== 'unbound') throw socketError('config', 'ERR_SOCKET_ALREADY_BOUND', 'Socket is already bound');
    const callback = args.at(-1);
    if (typeof callback === 'function') this.once('listening', callback as () => void);
    this.#state = 'binding';
    this.#holdEventLoop();
    this.#host.ready(this.#binding.signal).then(
      () => this.#listen(),
      (error: unknown) => {
        // Closed while waiting: close() has already settled everything.
        if (this.#state === 'binding') this.emit('error', error instanceof Error ? error : new Error(String(error)));
      },
    );
    return this;
  }

  /**
   * Sends one datagram to `address:port` (an IP literal; default 127.0.0.1) from one of the
   * node's endpoints: the one `address:port` last reached us at, if that tunnel is still
   * usable, so a peer hears the answer from where it asked; else a random one. Binds first
   * if unbound, like dgram. Bad arguments throw, as in dgram; failures to send (a host
   * name, no usable tunnel, a datagram over 65,507 bytes) go to `callback`, or else are
   * emitted as 'error'.
   */
  send(msg: TunnelSocketMessage, port: number, address?: string, callback?: TunnelSocketSendCallback): void;
  send(msg: TunnelSocketMessage, port: number, callback?: TunnelSocketSendCallback): void;
  send(msg: string | Uint8Array, offset: number, length: number, port: number, address?: string, callback?: TunnelSocketSendCallback): void;
  send(msg: string | Uint8Array, offset: number, length: number, port: number, callback?: TunnelSocketSendCallback): void;
  send(msg: TunnelSocketMessage, ...args: unknown[]): void {
    // dgram's rule: offset and length are given when a port follows them (a fourth argument
    // that is not a callback) or an address does (a fifth).
    const sliceForm = Boolean(args[3]) || (Boolean(args[2]) && typeof args[2] !== 'function');
    const [port, address, callback] = sliceForm ? [args[2], args[3], args[4]] : [args[0], args[1], args[2]];
    const data = datagramOf(msg, sliceForm ? { offset: Number(args[0]), length: Number(args[1]) } : undefined);
    const validatedPort = validPort(port);
    const [host, done] = typeof address === 'function' ? [undefined, address] : [address, callback];
    if (host !== undefined && host !== null && typeof host !== 'string') throw socketError('config', 'ERR_INVALID_ARG_TYPE', 'The "address" argument must be a string');
    if (this.#state === 'closed') throw notRunning();
    const pending: PendingSend = {
      data,
      host: host ?? DEFAULT_DESTINATION,
      port: validatedPort,
      callback: typeof done === 'function' ? (done as TunnelSocketSendCallback) : undefined,
    };
    if (this.#state === 'unbound') this.bind();
    if (this.#state === 'binding') this.#queue.push(pending);
    else this.#transmit(pending);
  }

  /** The endpoint of the tunnel last sent through, else of a usable one. Throws `ERR_SOCKET_DGRAM_NOT_RUNNING` unless bound. */
  address(): TunnelSocketAddress {
    if (this.#state !== 'bound') throw notRunning();
    const usable = this.#host.usable();
    const last = this.#lastTunnel;
    const tunnel = (last !== undefined && usable.includes(last) ? last : undefined) ?? usable[0] ?? last;
    // INVARIANT: a bound socket has seen a usable tunnel (#listen records one).
    if (tunnel === undefined) throw notRunning();
    const host = unmapIpv4(tunnel.endpoint.host);
    return { address: host, family: familyOf(host), port: tunnel.endpoint.port };
  }

  /**
   * Stops receiving and emits 'close' (then calls `callback`). Sends still waiting for the
   * first tunnel are dropped; their callbacks get `ERR_SOCKET_DGRAM_NOT_RUNNING`. Throws
   * `ERR_SOCKET_DGRAM_NOT_RUNNING` if already closed.
   */
  close(callback?: () => void): this {
    if (this.#state === 'closed') throw notRunning();
    if (callback !== undefined) this.once('close', callback);
    this.#state = 'closed';
    this.#binding.abort();
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#releaseEventLoop();
    const dropped = this.#queue;
    this.#queue = [];
    this.#counters.add('drop:closed', dropped.length);
    queueMicrotask(() => {
      for (const pending of dropped) pending.callback?.(notRunning(), 0);
      this.emit('close');
    });
    return this;
  }

  /** Lets an open socket keep the process alive again (the default). */
  ref(): this {
    this.#refed = true;
    if (this.#state === 'binding' || this.#state === 'bound') this.#holdEventLoop();
    return this;
  }

  /** Lets the process exit even though this socket is open. */
  unref(): this {
    this.#refed = false;
    this.#releaseEventLoop();
    return this;
  }

  /** Throws `ERR_DEUT_UNSUPPORTED`: tunnels carry unicast only. */
  setBroadcast(_flag: boolean): never {
    throw unsupported('setBroadcast');
  }

  /** Throws `ERR_DEUT_UNSUPPORTED`: tunnels carry unicast only. */
  setMulticastTTL(_ttl: number): never {
    throw unsupported('setMulticastTTL');
  }

  /** Throws `ERR_DEUT_UNSUPPORTED`: tunnels carry unicast only. */
  setMulticastLoopback(_flag: boolean): never {
    throw unsupported('setMulticastLoopback');
  }

  /** Throws `ERR_DEUT_UNSUPPORTED`: tunnels carry unicast only. */
  setMulticastInterface(_interfaceAddress: string): never {
    throw unsupported('setMulticastInterface');
  }

  /** Throws `ERR_DEUT_UNSUPPORTED`: tunnels carry unicast only. */
  addMembership(_multicastAddress: string, _multicastInterface?: string): never {
    throw unsupported('addMembership');
  }

  /** Throws `ERR_DEUT_UNSUPPORTED`: tunnels carry unicast only. */
  dropMembership(_multicastAddress: string, _multicastInterface?: string): never {
    throw unsupported('dropMembership');
  }

  /**
   * Counters: datagrams and copies sent, datagrams received, copies that left through the
   * tunnel their destination had reached us by, and drops by reason (`drop:hostname`,
   * `drop:too-big`, `drop:no-tunnel`, `drop:closed`); and how many remotes are remembered.
   */
  stats(): { contacted: number; counters: CounterSnapshot<TunnelSocketCounter> } {
    return { contacted: this.#contacted.size, counters: this.#counters.snapshot() };
  }

  // ---- internals ------------------------------------------------------------------------

  #listen(): void {
    if (this.#state !== 'binding') return;
    this.#state = 'bound';
    this.#lastTunnel = this.#host.usable()[0];
    this.#unsubscribe = this.#host.subscribe((data, from, info) => this.#receive(data, from, info.tunnel));
    this.emit('listening');
    const queued = this.#queue;
    this.#queue = [];
    // A 'listening' listener may have closed the socket: close() then failed the queue.
    for (const pending of queued) this.#transmit(pending);
  }

  #receive(data: Uint8Array, from: UdpAddress, tunnel: number): void {
    if (this.#state !== 'bound') return;
    const host = unmapIpv4(from.host);
    const key = addressKey({ host, port: from.port });
    // Delete first so that the key moves to the newest end: the map evicts from the front.
    this.#contacted.delete(key);
    this.#contacted.set(key, tunnel);
    if (this.#contacted.size > CONTACTED_CAPACITY) this.#contacted.delete(this.#contacted.keys().next().value!);
    this.#counters.add('datagrams-received');
    this.emit('message', Buffer.from(data), { address: host, family: familyOf(host), port: from.port, size: data.length });
  }

  #transmit(pending: PendingSend): void {
    const { data, port, callback } = pending;
    const host = unmapIpv4(pending.host);
    if (isIP(host) === 0) {
      this.#counters.add('drop:hostname');
      return this.#fail(callback, socketError('config', 'ERR_DEUT_HOSTNAME_REFUSED', `${JSON.stringify(pending.host)} is not an IP literal; names are never resolved, as a lookup would leave the tunnels`));
    }
    if (data.length > MAX_DATAGRAM_BYTES) {
      this.#counters.add('drop:too-big');
      return this.#fail(callback, socketError('config', 'EMSGSIZE', `a datagram of ${data.length} bytes is over ${MAX_DATAGRAM_BYTES}`));
    }
    const to = { host, port };
    const tunnels = this.#route(addressKey(to));
    if (tunnels.length === 0) {
      this.#counters.add('drop:no-tunnel');
      return this.#fail(callback, socketError('transport', 'NO_TUNNELS', 'no usable tunnel'));
    }
    try {
      for (const tunnel of tunnels) this.#host.transmit(tunnel, to, data);
    } catch (error) {
      this.#counters.add('drop:transmit-failed');
      return this.#fail(callback, error instanceof Error ? error : new Error(String(error)));
    }
    this.#lastTunnel = tunnels[0];
    this.#counters.add('datagrams-sent');
    this.#counters.add('copies-sent', tunnels.length);
    if (callback !== undefined) queueMicrotask(() => callback(null, data.length));
  }

  /**
   * Up to `fanout` distinct usable tunnels for a datagram to `key`: first the one that
   * remote's latest datagram came through, if still usable (UDP libraries such as
   * k-rpc-socket drop answers from another host than the one asked), then random others.
   */
  #route(key: string): OwnedTunnel[] {
    const usable = this.#host.usable();
    const contactedId = this.#contacted.get(key);
    const contacted = contactedId === undefined ? undefined : usable.find((t) => t.localId === contactedId);
    if (contacted === undefined) return sample(usable, this.#fanout);
    this.#counters.add('copies-via-contacted-tunnel');
    return [contacted, ...sample(usable.filter((t) => t !== contacted), this.#fanout - 1)];
  }

  #fail(callback: TunnelSocketSendCallback | undefined, error: Error): void {
    queueMicrotask(() => (callback !== undefined ? callback(error, 0) : this.emit('error', error)));
  }

  /** A socket that is binding or bound holds the event loop open, as a dgram handle does. */
  #holdEventLoop(): void {
    if (this.#refed && this.#keepAlive === undefined) this.#keepAlive = setInterval(() => undefined, KEEP_ALIVE_MS);
  }

  #releaseEventLoop(): void {
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
  }
}

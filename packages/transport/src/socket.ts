/**
 * The datagram socket contract shared by real UDP (udp.ts) and the in-memory network
 * (memory.ts): the one surface the link layer and tunnel endpoints send through. Also the
 * bookkeeping both implementations share (stats, handler isolation, closed state), so the
 * two behave alike where the compliance suite can see it. Sockets carry datagrams of any
 * size up to the UDP maximum; the fixed 1200-byte node datagrams of PROTOCOL.md §3.1 are
 * the link layer's business.
 */
import type { DeutError, UdpAddress } from '@deut/common';
import { socketError } from './errors.js';

export { MAX_UDP_PAYLOAD_BYTES, MAX_UDP6_PAYLOAD_BYTES } from '@deut/common';

/** Counters kept by every socket; they only ever grow. */
export interface SocketStats {
  /**
   * Datagrams handed to the network. UDP counts them when the kernel accepts them, which
   * can be an event-loop turn after send() returns.
   */
  readonly sent: number;
  /** Datagrams that arrived while the socket was open, whether or not a handler was set. */
  readonly received: number;
  /** Sends that failed, e.g. EMSGSIZE; each is also reported to `onError`. */
  readonly sendErrors: number;
  /** Calls of the message handler that threw; each is also reported to `onError`. */
  readonly handlerErrors: number;
  /** Payload bytes counted in `sent`. */
  readonly bytesSent: number;
  /** Payload bytes counted in `received`. */
  readonly bytesReceived: number;
}

/** Receives one datagram. `data` belongs to the handler: it may keep or modify it. */
export type MessageHandler = (data: Uint8Array, from: UdpAddress) => void;

/** Options every socket implementation accepts. */
export interface SocketOptions {
  /**
   * Told about failures that `send` and message delivery do not throw: send failures
   * (`SEND_FAILED`), handler exceptions (`HANDLER_FAILED`) and asynchronous socket errors
   * (`SOCKET_ERROR`). Exceptions it throws are ignored.
   * @default none: failures are only counted in `stats`
   */
  readonly onError?: (error: DeutError) => void;
}

/**
 * A bound datagram socket with UDP semantics: unreliable, unordered, message-oriented.
 *
 * Error codes (all `kind: 'transport'`): `SOCKET_CLOSED` and `BAD_ADDRESS` are thrown by
 * `send` for programmer errors; network failures are never thrown, only counted.
 */
export interface DatagramSocket {
  /** The bound address; after binding port 0 it holds the port actually allocated. */
  readonly local: UdpAddress;
  /**
   * Sends one datagram, fire-and-forget. `data` is copied, so the caller may reuse its
   * buffer as soon as this returns. Throws `SOCKET_CLOSED` after `close()` and
   * `BAD_ADDRESS` for an address the socket cannot send to; network failures are
   * counted in `stats.sendErrors` and reported to `onError`, never thrown.
   */
  send(data: Uint8Array, to: UdpAddress): void;
  /**
   * Sets the one message handler, replacing any previous one. Datagrams arriving while no
   * handler is set are counted and dropped. A throwing handler is counted in
   * `stats.handlerErrors` and does not stop later deliveries.
   */
  onMessage(handler: MessageHandler): void;
  /** Closes the socket; idempotent. No message is delivered once this has been called. */
  close(): Promise<void>;
  /** A snapshot of the counters. */
  readonly stats: SocketStats;
}

/** True for an integer port in 1..65535 (0 is only meaningful when binding). */
export function isSendablePort(port: unknown): port is number {
  return typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65_535;
}

/** True for an integer port in 0..65535, 0 meaning "allocate one". */
export function isBindablePort(port: unknown): port is number {
  return port === 0 || isSendablePort(port);
}

/**
 * Throws BAD_ADDRESS unless `to` has a non-empty string host and a port in 1..65535.
 * Messages leave the address out: error text reaches logs, where addresses are redacted.
 */
export function assertDestination(to: UdpAddress): void {
  if (typeof to !== 'object' || to === null || typeof to.host !== 'string' || to.host === '') {
    throw socketError('BAD_ADDRESS', 'destination needs a non-empty host');
  }
  if (!isSendablePort(to.port)) throw socketError('BAD_ADDRESS', 'destination port must be an integer in 1..65535');
}

/** Copies into a fresh Uint8Array that nothing else references. */
export function copyBytes(data: Uint8Array): Uint8Array {
  return new Uint8Array(data);
}

/**
 * State both socket implementations share: counters, the handler, the closed flag and
 * error reporting. Not exported from the package.
 */
export class SocketCore {
  closed = false;
  sent = 0;
  received = 0;
  sendErrors = 0;
  handlerErrors = 0;
  bytesSent = 0;
  bytesReceived = 0;
  #handler: MessageHandler | undefined;
  readonly #onError: ((error: DeutError) => void) | undefined;

  constructor(options: SocketOptions) {
    this.#onError = options.onError;
  }

  setHandler(handler: MessageHandler): void {
    if (typeof handler !== 'function') {
      throw socketError('BAD_HANDLER', 'onMessage needs a function');
    }
    this.#handler = handler;
  }

  /** Throws SOCKET_CLOSED once close() has been called. */
  assertOpen(): void {
    if (this.closed) throw socketError('SOCKET_CLOSED', 'send on a closed socket');
  }

  countSent(bytes: number): void {
    this.sent++;
    this.bytesSent += bytes;
  }

  countSendError(error: DeutError): void {
    this.sendErrors++;
    this.report(error);
  }

  /**
   * Hands one datagram to the handler. INVARIANT: nothing reaches the handler after
   * close(), and nothing the handler throws escapes into the socket's event loop.
   */
  deliver(data: Uint8Array, from: UdpAddress): void {
    if (this.closed) return;
    this.received++;
    this.bytesReceived += data.length;
    const handler = this.#handler;
    if (handler === undefined) return;
    try {
      handler(data, from);
    } catch (error) {
      this.handlerErrors++;
      this.report(socketError('HANDLER_FAILED', `message handler threw: ${String(error)}`, error));
    }
  }

  /** Passes an error to onError; a throwing onError must not take the socket down either. */
  report(error: DeutError): void {
    if (this.#onError === undefined) return;
    try {
      this.#onError(error);
    } catch {
      // Nowhere left to report to; the failure itself is already counted.
    }
  }

  snapshot(): SocketStats {
    return {
      sent: this.sent,
      received: this.received,
      sendErrors: this.sendErrors,
      handlerErrors: this.handlerErrors,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
    };
  }
}

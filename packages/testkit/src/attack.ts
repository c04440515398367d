/**
 * Scaffolding for attack tests (issue #8): a socket that counts bytes per remote address and
 * lets a test inject datagrams from any source (a spoofer's view), and a clock skewed from a
 * shared one. (A mesh of Link + TunnelEngine nodes built on them: engine-mesh.ts.)
 */
import { addressKey, type Clock, type TimerHandle, type UdpAddress } from '@deut/common';
import type { DatagramSocket, MessageHandler, SocketStats } from '@deut/transport';

/** Datagrams and bytes to or from one address. */
export interface Traffic {
  datagrams: number;
  bytes: number;
}

/**
 * Wraps a socket: counts what it sends to and receives from each address, and `inject`s
 * datagrams as if they came from any address, as a spoofer on the path would.
 */
export class SpyingSocket implements DatagramSocket {
  readonly #sent = new Map<string, Traffic>();
  readonly #received = new Map<string, Traffic>();
  #handler: MessageHandler | undefined;

  constructor(readonly inner: DatagramSocket) {
    inner.onMessage((data, from) => this.#arrive(data, from));
  }

  get local(): UdpAddress {
    return this.inner.local;
  }

  get stats(): SocketStats {
    return this.inner.stats;
  }

  send(data: Uint8Array, to: UdpAddress): void {
    add(this.#sent, addressKey(to), data.length);
    this.inner.send(data, to);
  }

  onMessage(handler: MessageHandler): void {
    this.#handler = handler;
  }

  /** Hands `data` to the owner as if it had arrived from `from`. */
  inject(data: Uint8Array, from: UdpAddress): void {
    this.#arrive(data, from);
  }

  /** What was sent to `to`. */
  sentTo(to: UdpAddress): Traffic {
    return { ...(this.#sent.get(addressKey(to)) ?? { datagrams: 0, bytes: 0 }) };
  }

  /** What arrived (or was injected) from `from`. */
  receivedFrom(from: UdpAddress): Traffic {
    return { ...(this.#received.get(addressKey(from)) ?? { datagrams: 0, bytes: 0 }) };
  }

  /** Addresses anything was sent to. */
  destinations(): string[] {
    return [...this.#sent.keys()];
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  #arrive(data: Uint8Array, from: UdpAddress): void {
    add(this.#received, addressKey(from), data.length);
    this.#handler?.(data, from);
  }
}

function add(table: Map<string, Traffic>, key: string, bytes: number): void {
  const entry = table.get(key) ?? { datagrams: 0, bytes: 0 };
  entry.datagrams++;
  entry.bytes += bytes;
  table.set(key, entry);
}

/** A clock that reads `offsetMs` away from `base` and shares its timers (a node whose clock is off). */
export class SkewedClock implements Clock {
  constructor(
    private readonly base: Clock,
    public offsetMs: number,
  ) {}

  now(): number {
    return this.base.now() + this.offsetMs;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    return this.base.setTimeout(callback, ms);
  }

  clearTimeout(handle: TimerHandle): void {
    this.base.clearTimeout(handle);
  }
}

/**
 * DatagramSocket over node:dgram: one unconnected UDP socket per bound address, udp4 or
 * udp6 by the family of the host literal. Every socket opened here is tracked until it
 * has closed, so test suites can assert that none leaked (wireguard-go's leak check).
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import type { UdpAddress } from '@deut/common';
import { socketError, transportConfigError } from './errors.js';
import type { DatagramSocket, MessageHandler, SocketOptions, SocketStats } from './socket.js';
import { SocketCore, assertDestination, isBindablePort } from './socket.js';

/** Options of {@link bindUdp}. */
export interface UdpSocketOptions extends SocketOptions {
  /**
   * SO_RCVBUF in bytes, applied after binding. Linux doubles the value and caps it at
   * net.core.rmem_max unless the process is privileged.
   * @default the operating system's default
   */
  readonly recvBufferSize?: number;
  /**
   * SO_SNDBUF in bytes, applied after binding; capped like `recvBufferSize`.
   * @default the operating system's default
   */
  readonly sendBufferSize?: number;
}

const open = new Set<UdpSocket>();

/** Number of sockets opened by {@link bindUdp} that have not finished closing. */
export function openSocketCount(): number {
  return open.size;
}

/**
 * Binds a UDP socket. `host` must be an IP literal (never resolved: a name lookup would
 * leak to DNS); port 0 allocates an ephemeral port, reported in `local`.
 *
 * Rejects with `BAD_ADDRESS` for a host that is not an IP literal or a port outside
 * 0..65535, `BAD_OPTION` (kind `config`) for a bad buffer size, and `BIND_FAILED` when the
 * operating system refuses (EADDRINUSE, EADDRNOTAVAIL, EACCES), with the system error as
 * `cause`.
 */
export async function bindUdp(address: UdpAddress, options: UdpSocketOptions = {}): Promise<DatagramSocket> {
  const family = isIP(typeof address.host === 'string' ? address.host : '');
  if (family === 0) throw socketError('BAD_ADDRESS', 'bind host must be an IPv4 or IPv6 literal');
  if (!isBindablePort(address.port)) throw socketError('BAD_ADDRESS', 'bind port must be an integer in 0..65535');
  checkBufferSize('recvBufferSize', options.recvBufferSize);
  checkBufferSize('sendBufferSize', options.sendBufferSize);

  const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        socket.off('listening', onListening);
        reject(error);
      };
      const onListening = (): void => {
        socket.off('error', onError);
        resolve();
      };
      socket.once('error', onError);
      socket.once('listening', onListening);
      socket.bind({ address: address.host, port: address.port });
    });
    if (options.recvBufferSize !== undefined) socket.setRecvBufferSize(options.recvBufferSize);
    if (options.sendBufferSize !== undefined) socket.setSendBufferSize(options.sendBufferSize);
  } catch (error) {
    await closeQuietly(socket);
    const code = (error as { code?: unknown }).code;
    throw socketError(
      'BIND_FAILED',
      `cannot bind UDP ${address.host} port ${address.port}: ${typeof code === 'string' ? code : String(error)}`,
      error,
    );
  }
  return new UdpSocket(socket, family, options);
}

function checkBufferSize(name: string, value: number | undefined): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value <= 0) throw transportConfigError('BAD_OPTION', `${name} must be a positive integer`);
}

async function closeQuietly(socket: dgram.Socket): Promise<void> {
  await new Promise<void>((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      // Never bound or already closed: there is no handle left to release.
      resolve();
    }
  });
}

/** A node:dgram socket behind the DatagramSocket interface. */
class UdpSocket implements DatagramSocket {
  readonly local: UdpAddress;
  readonly #socket: dgram.Socket;
  readonly #family: 4 | 6;
  readonly #core: SocketCore;
  #closing: Promise<void> | undefined;

  constructor(socket: dgram.Socket, family: number, options: SocketOptions) {
    const bound = socket.address();
    this.local = Object.freeze({ host: bound.address, port: bound.port });
    this.#socket = socket;
    this.#family = family === 6 ? 6 : 4;
    this.#core = new SocketCore(options);
    open.add(this);
    socket.on('message', (message, rinfo) => {
      this.#core.deliver(ownBytes(message), { host: rinfo.address, port: rinfo.port });
    });
    socket.on('error', (error) => {
      this.#core.report(socketError('SOCKET_ERROR', `UDP socket error: ${errorCode(error)}`, error));
    });
    // Registered before any close() callback, so the registry is updated before close() resolves.
    socket.on('close', () => {
      this.#core.closed = true;
      open.delete(this);
    });
  }

  get stats(): SocketStats {
    return this.#core.snapshot();
  }

  send(data: Uint8Array, to: UdpAddress): void {
    this.#core.assertOpen();
    assertDestination(to);
    if (isIP(to.host) !== this.#family) {
      throw socketError('BAD_ADDRESS', `an IPv${this.#family} socket needs an IPv${this.#family} literal destination`);
    }
    // dgram reads the buffer after an asynchronous address step, so a caller reusing its
    // buffer right after send() would change what goes out: copy first.
    const copy = Buffer.from(data);
    const onSent = (error: Error | null): void => {
      if (error === null) {
        this.#core.countSent(copy.length);
      } else {
        this.#core.countSendError(socketError('SEND_FAILED', `UDP send failed: ${errorCode(error)}`, error));
      }
    };
    try {
      this.#socket.send(copy, to.port, to.host, onSent);
    } catch (error) {
      // Only reachable if the handle vanished under us; still a network failure, not the caller's.
      onSent(error instanceof Error ? error : new Error(String(error)));
    }
  }

  onMessage(handler: MessageHandler): void {
    this.#core.setHandler(handler);
  }

  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#core.closed = true;
      this.#closing = closeQuietly(this.#socket).then(() => {
        open.delete(this);
      });
    }
    return this.#closing;
  }
}

/**
 * The payload as a plain Uint8Array. Node gives each received datagram its own
 * ArrayBuffer; the check keeps that promise to handlers even if a future Node pools them.
 */
function ownBytes(message: Buffer): Uint8Array {
  if (message.byteOffset === 0 && message.buffer.byteLength === message.length) {
    return new Uint8Array(message.buffer, 0, message.length);
  }
  return new Uint8Array(message);
}

function errorCode(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error.message;
}

/**
 * The datagram service the DHT runs over (ARCHITECTURE.md). The DHT knows nothing of tunnels:
 * it sends and receives datagrams through this interface, which is plain UDP for a public
 * node and for comparisons, or a deut `TunnelSocket` for a node whose every RPC goes
 * through its tunnels. Both have the node:dgram shape, so one adapter serves them.
 */
import type { UdpAddress } from '@deut/common';

/** What the DHT needs from a datagram transport. */
export interface DatagramChannel {
  /** Sends one datagram; delivery is best effort, failures are counted, never thrown. */
  send(to: UdpAddress, data: Uint8Array): void;
  /** Sets the one receive handler; `from` is the sender as the network reports it. */
  onDatagram(handler: (data: Uint8Array, from: UdpAddress) => void): void;
  /** Stops receiving. The underlying socket stays open: whoever made it closes it. */
  close(): void;
}

/** The part of node:dgram's Socket (and of deut's TunnelSocket) the adapter uses. */
export interface DgramLike {
  send(msg: Uint8Array, port: number, address: string, callback?: (error: Error | null, bytes?: number) => void): void;
  on(event: 'message', listener: (msg: Buffer, rinfo: { address: string; port: number }) => void): unknown;
  off(event: 'message', listener: (msg: Buffer, rinfo: { address: string; port: number }) => void): unknown;
}

/**
 * A channel over a dgram-shaped socket that is already bound (or that binds on first send,
 * as dgram and TunnelSocket do). `onSendError` hears asynchronous send failures; a
 * datagram socket reports them per send, and the DHT treats them as losses.
 */
export function channelFromSocket(socket: DgramLike, onSendError: (error: Error) => void = () => undefined): DatagramChannel {
  let handler: ((data: Uint8Array, from: UdpAddress) => void) | undefined;
  const listener = (msg: Buffer, rinfo: { address: string; port: number }): void => {
    handler?.(msg, { host: rinfo.address, port: rinfo.port });
  };
  socket.on('message', listener);
  return {
    send(to, data) {
      try {
        socket.send(data, to.port, to.host, (error) => {
          if (error !== null && error !== undefined) onSendError(error);
        });
      } catch (error) {
        // dgram throws synchronously on a closed socket or a bad port: a loss, not a crash.
        onSendError(error instanceof Error ? error : new Error(String(error)));
      }
    },
    onDatagram(h) {
      handler = h;
    },
    close() {
      handler = undefined;
      socket.off('message', listener);
    },
  };
}

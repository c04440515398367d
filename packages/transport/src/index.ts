/**
 * @deut/transport: the DatagramSocket interface the link layer and tunnel endpoints send
 * through (PROTOCOL.md §3.1: datagrams of any size up to the UDP maximum; their layout is
 * @deut/wire's), its node:dgram implementation (bindUdp) and an in-memory network with
 * seeded loss, duplication, delay, reordering and partitions (MemoryNetwork) for tests.
 * Also the UDP payload limits and the closed unions of its error codes.
 */
export type { DatagramSocket, MessageHandler, SocketOptions, SocketStats } from './socket.js';
export { MAX_UDP6_PAYLOAD_BYTES, MAX_UDP_PAYLOAD_BYTES } from './socket.js';
export type { TransportConfigErrorCode, TransportErrorCode } from './errors.js';
export type { UdpSocketOptions } from './udp.js';
export { bindUdp, openSocketCount } from './udp.js';
export type {
  LinkConditions,
  LinkSelector,
  MemoryNetworkOptions,
  MemoryNetworkStats,
  WireEvent,
  WireFate,
} from './memory.js';
export { EPHEMERAL_PORT_FIRST, MemoryNetwork } from './memory.js';

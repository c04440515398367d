export * from './exit-policy.js';
export { EXIT_REFUSED, EndpointExits, exitRefusedReasonName, type EndpointExitsOptions, type SocketFactory } from './exits.js';
export { Messenger, type MessengerOptions, type RequestHandler, type RequestOptions } from './messenger.js';
export { PeerTable, subnetGroup, type PeerRecord } from './peers.js';
export { RetryLimiter } from './retry-limiter.js';
export {
  HANDSHAKE_ATTEMPTS_UNVERIFIED,
  PEX_CONTACTS_IN_FLIGHT,
  PEX_CONTACT_BUDGET,
  PEX_DISTRUST_AFTER,
  PEX_DISTRUST_MS,
  PEX_UNANSWERED_MEMORY_MS,
  PeerVetting,
  type PeerVettingOptions,
} from './peer-vetting.js';
export { TunnelPool, type TunnelInfo, type TunnelPoolOptions } from './pool.js';
export { DeutNode, type DatagramInfo, type DeutNodeEvents, type DeutNodeOptions } from './node.js';
export { DhtRole, type DeutDhtOptions } from './dht-role.js';
export {
  TunnelSocket,
  type TunnelSocketAddress,
  type TunnelSocketEvents,
  type TunnelSocketHost,
  type TunnelSocketMessage,
  type TunnelSocketOptions,
  type TunnelSocketRemoteInfo,
  type TunnelSocketSendCallback,
} from './tunnel-socket.js';
export * from './testnet.js';

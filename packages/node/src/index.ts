/**
 * @deut/node: the deut runtime (ARCHITECTURE.md "Roles"). {@link DeutNode} runs every role of
 * one node at once: relay and endpoint of others' tunnels, and as a master a tunnel pool,
 * request/response messaging, a dgram-shaped TunnelSocket and a DHT node over its tunnels.
 * The pieces are exported too (exit policy, endpoint exits, messenger, pool, peer table and
 * vetting), with each one's closed union of counter names and the package's error codes.
 */
export * from './exit-policy.js';
export type { NodeAbortedErrorCode, NodeConfigErrorCode, NodeErrorCode, NodeTimeoutErrorCode, TunnelSocketErrorCode } from './errors.js';
export {
  ENDPOINT_EXITS_DROP_REASONS,
  EXIT_REFUSED,
  EndpointExits,
  exitRefusedReasonName,
  type EndpointExitsCounter,
  type EndpointExitsDropReason,
  type EndpointExitsOptions,
  type SocketFactory,
} from './exits.js';
export { MESSENGER_DROP_REASONS, Messenger, type MessengerCounter, type MessengerDropReason, type MessengerOptions, type RequestHandler, type RequestOptions } from './messenger.js';
export { PeerTable, subnetGroup, type PeerRecord } from './peers.js';
export { RetryLimiter } from './retry-limiter.js';
export {
  HANDSHAKE_ATTEMPTS_UNVERIFIED,
  PEX_CONTACTS_IN_FLIGHT,
  PEX_CONTACT_BUDGET,
  PEX_DISTRUST_AFTER,
  PEX_DISTRUST_MS,
  PEX_UNANSWERED_MEMORY_MS,
  PEER_VETTING_DROP_REASONS,
  PeerVetting,
  type PeerVettingCounter,
  type PeerVettingDropReason,
  type PeerVettingOptions,
} from './peer-vetting.js';
export { TunnelPool, type PoolCounter, type TunnelInfo, type TunnelPoolOptions } from './pool.js';
export { BOOTSTRAP_WARN_EVERY_MS, DeutNode, NODE_DROP_REASONS, type DatagramInfo, type NodeCounter, type NodeDropReason, type DeutNodeEvents, type DeutNodeOptions } from './node.js';
export {
  HEARTBEAT_TOP_DROPS,
  PROGRESS_PHASES,
  Progress,
  formatHeartbeat,
  formatMilestone,
  progressPlan,
  type Heartbeat,
  type ProgressMilestone,
  type ProgressPhase,
  type ProgressRoles,
  type ProgressSnapshot,
  type ProgressStep,
} from './progress.js';
export { DhtRole, type DeutDhtOptions } from './dht-role.js';
export {
  TunnelSocket,
  type TunnelSocketAddress,
  type TunnelSocketCounter,
  type TunnelSocketEvents,
  type TunnelSocketHost,
  type TunnelSocketMessage,
  type TunnelSocketOptions,
  type TunnelSocketRemoteInfo,
  type TunnelSocketSendCallback,
} from './tunnel-socket.js';
export * from './testnet.js';

/**
 * @deut/tunnel: the tunnel layer above the link (PROTOCOL.md §4-§6, §8), without policy.
 *
 * - `TunnelEngine`, one per node, plays every role in tunnels: hop of others' tunnels,
 *   their endpoint, and master of its own. The node plugs in its decisions (`HopPolicy`),
 *   its exits (`EndpointSink`) and the consumer of its own tunnels (`MasterSink`).
 * - `OwnedTunnel`: a built tunnel as its master holds it (layered cell crypto).
 * - build-crypto: the build records and replies of both path modes.
 * - fragments: datagrams cut into cell frames and reassembled with bounded memory.
 * - The tunnel timers and limits (constants) and the counter names (`TunnelCounter`,
 *   `ReassemblyCounter`).
 */
export * from './constants.js';
export * from './counters.js';
export * from './build-crypto.js';
export * from './fragments.js';
export * from './owned-tunnel.js';
export { TunnelEngine, type TunnelEngineOptions, type TunnelEngineStats } from './engine.js';
export { DESTROY_REASONS, destroyReasonName, type DestroyReason, type PeerCandidate, type RefusalReason } from './context.js';
export type { EndpointSender, EndpointSink, EndpointTunnel } from './endpoint.js';
export { BuildError, type BuildFailure, type BuildPlan, type MasterSink } from './master.js';
export { buildTimeAcceptable, type HopPolicy } from './relay.js';

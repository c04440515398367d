/**
 * @deut/link: the link layer of deut (docs/PROTOCOL.md §3). `Link` owns the node port and
 * gives the tunnel layer encrypted, authenticated, fixed-size datagrams to its peers:
 * Noise XX handshakes hidden by Elligator2, cookies under load, key pinning (`KnownPeers`),
 * rekeying and liveness. Exported besides: the link's timers and limits (constants.ts),
 * its closed counter and error-code unions, and `InitiatorHandshake` for tests that speak
 * the handshake by hand. Byte layouts are @deut/wire's.
 */
export * from './constants.js';
export { LINK_DROP_REASONS, type LinkCounter, type LinkDropReason } from './counters.js';
export type { KnownPeersErrorCode, LinkErrorCode, LinkProtocolErrorCode } from './errors.js';
export { KnownPeers } from './known-peers.js';
export {
  Link,
  type LinkEvents,
  type LinkOptions,
  type LinkPayloadEvent,
  type LinkPeer,
  type LinkPayloadHandler,
  type LinkSendOptions,
  type LinkSessionInfo,
  type LinkStats,
} from './link.js';
export { InitiatorHandshake, type HandshakeOutcome } from './handshake.js';

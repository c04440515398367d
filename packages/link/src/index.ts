export * from './constants.js';
export { KnownPeers } from './known-peers.js';
export { Link, type LinkEvents, type LinkOptions, type LinkPayloadEvent, type LinkPeer, type LinkPayloadHandler, type LinkSendOptions, type LinkSessionInfo } from './link.js';
export { InitiatorHandshake, type HandshakeOutcome } from './handshake.js';

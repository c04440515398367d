/**
 * @deut/wire: every deut message type as a typed value with a validated encoder and
 * decoder, and the protocol's size constants (docs/PROTOCOL.md §3-§7, §10). No
 * cryptography here: wire lays out and checks bytes; decoders throw only ProtocolError.
 */
export * from './constants.js';
export type { WireErrorCode } from './checks.js';
export * from './address.js';
export * from './handshake.js';
export * from './handshake-datagram.js';
export * from './data-datagram.js';
export * from './link-frame.js';
export * from './tunnel-messages.js';
export * from './build-records.js';
export * from './cell-frames.js';
export * from './envelope.js';
export * from './peer-exchange.js';
export * from './dht.js';

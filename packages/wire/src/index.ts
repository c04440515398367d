/**
 * @deut/wire: every deut message type as a typed value with a validated encoder and
 * decoder, the protocol's size constants (docs/PROTOCOL.md §3-§7, §10), and where each
 * field sits in the link's handshake and data datagrams (handshake-datagram.ts,
 * data-datagram.ts, §3.1-§3.4). Every size is defined here once; the other packages take
 * theirs from here or as parameters. No cryptography here: wire lays out and checks bytes;
 * decoders throw only ProtocolError, with a code from WireErrorCode.
 */
export * from './constants.js';
export { WIRE_ERROR_CODES, wireDropCode, type WireBugCode, type WireErrorCode } from './checks.js';
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

/**
 * @deut/dht: Kademlia over an injected datagram channel (PROTOCOL.md §11); knows nothing of
 * tunnels (@deut/node runs it through a master's). Exports node ids and the XOR metric, the
 * routing table, the value store, the Noise IK RPC, iterative lookups, the {@link DhtNode}
 * that ties them together, contact strings, and the closed unions of its counter names and
 * error codes.
 */
export * from './id.js';
export * from './routing-table.js';
export * from './store.js';
export * from './channel.js';
export * from './rpc.js';
export * from './lookup.js';
export * from './dht-node.js';
export * from './contact-string.js';
export type { DhtAbortedErrorCode, DhtConfigErrorCode, DhtErrorCode, DhtProtocolErrorCode, DhtTimeoutErrorCode, DhtTransportErrorCode } from './errors.js';

/** @deut/dht: Kademlia over an injected datagram channel (PROTOCOL.md §11); knows nothing of tunnels. */
export * from './id.js';
export * from './routing-table.js';
export * from './store.js';
export * from './channel.js';
export * from './rpc.js';
export * from './lookup.js';
export * from './dht-node.js';
export * from './contact-string.js';

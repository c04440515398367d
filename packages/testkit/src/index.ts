export * from './testnet.js';
export * from './dht.js';

export * from './testnet.js';

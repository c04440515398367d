export * from './constants.js';
export * from './counters.js';
export * from './build-crypto.js';
export * from './fragments.js';
export * from './owned-tunnel.js';
export * from './engine.js';

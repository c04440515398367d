export * from './errors.js';
export * from './logger.js';
export * from './redact.js';
export * from './clock.js';
export * from './counters.js';
export * from './address.js';
export * from './replay-window.js';
export * from './rate-limit.js';

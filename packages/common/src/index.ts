export * from './errors.js';
export * from './logger.js';
export * from './redact.js';
export * from './clock.js';
export * from './counters.js';
export * from './address.js';

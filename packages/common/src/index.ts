/**
 * @deut/common: what every other package shares and nothing of the protocol. Errors with
 * stable codes and kinds (`DeutError`, `ProtocolError`), the injected `Logger` (silent by
 * default) and redaction of addresses and keys, `Clock` (the system clock and a `ManualClock`
 * for tests), typed `Counters`, the RFC 6479 `ReplayWindow`, token-bucket rate limits, and UDP
 * addresses with their one canonical map key. It imports no other package.
 */
export * from './errors.js';
export * from './logger.js';
export * from './redact.js';
export * from './clock.js';
export * from './counters.js';
export * from './address.js';
export * from './replay-window.js';
export * from './rate-limit.js';
export * from './seeded-random.js';

/**
 * One error type for the whole project: a stable string `code` callers can branch on,
 * a coarse `kind` for policy (retry a timeout, never retry a config error), and the
 * original error chained as `cause`. Modelled on arti's ErrorKind and hyperdht's errors.js.
 */

/** Coarse classes of failure; policy code switches on these, not on messages. */
export type ErrorKind = 'protocol' | 'timeout' | 'transport' | 'config' | 'crypto' | 'bug' | 'aborted';

/** The project's error: `code` is stable across releases, `message` is for humans. */
export class DeutError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DeutError';
    this.kind = kind;
    this.code = code;
  }
}

/**
 * Thrown by every decoder for input that does not parse or validate. Socket handlers
 * catch exactly this type, count it under `code`, and drop the datagram; anything else
 * escaping a decoder is a bug.
 */
export class ProtocolError extends DeutError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super('protocol', code, message, options);
    this.name = 'ProtocolError';
  }
}

/** Raised when a request failed after several attempts; keeps every attempt's error (arti's RetryError). */
export class RetryError extends DeutError {
  readonly attempts: readonly unknown[];

  constructor(code: string, message: string, attempts: readonly unknown[]) {
    super('timeout', code, message, { cause: attempts[attempts.length - 1] });
    this.name = 'RetryError';
    this.attempts = attempts;
  }
}

/** Factory for protocol errors, so call sites read `throw protocolError('BAD_LENGTH', ...)`. */
export function protocolError(code: string, message: string): ProtocolError {
  return new ProtocolError(code, message);
}

/** Factory for configuration mistakes made by a user, never by a peer. */
export function configError(code: string, message: string): DeutError {
  return new DeutError('config', code, message);
}

/** Factory for failures of a cryptographic operation (bad key, failed authentication). */
export function cryptoError(code: string, message: string): DeutError {
  return new DeutError('crypto', code, message);
}

/** Factory for timeouts. */
export function timeoutError(code: string, message: string): DeutError {
  return new DeutError('timeout', code, message);
}

/** Factory for socket and network failures. */
export function transportError(code: string, message: string, cause?: unknown): DeutError {
  return new DeutError('transport', code, message, cause === undefined ? undefined : { cause });
}

/** Factory for broken invariants: these are our bugs, never the peer's fault. */
export function bugError(code: string, message: string): DeutError {
  return new DeutError('bug', code, message);
}

/** Factory for operations cancelled through an AbortSignal or by close(). */
export function abortedError(code: string, message: string): DeutError {
  return new DeutError('aborted', code, message);
}

/** Exhaustiveness check for `switch` over a union: fails the build if a case is missing. */
export function assertNever(value: never, what = 'value'): never {
  throw bugError('UNREACHABLE', `unexpected ${what}: ${String(value)}`);
}

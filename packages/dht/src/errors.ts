/**
 * The stable codes of the errors this package throws, as closed unions (as `WireErrorCode` is
 * for @deut/wire), and the @deut/common factories narrowed to them: a caller branches on
 * `error.code`, so a code misspelt or renamed at the throw must fail the build, not the caller.
 * A call whose authenticated answer does not parse also rejects with the wire decoder's own
 * ProtocolError, whose code is a `WireErrorCode`.
 */
import {
  abortedError as commonAbortedError,
  configError as commonConfigError,
  protocolError as commonProtocolError,
  timeoutError as commonTimeoutError,
  transportError as commonTransportError,
} from '@deut/common';
import type { DeutError, ProtocolError } from '@deut/common';

/** Codes of `kind: 'config'` errors: a bad option or contact string, or a value our own store refuses. */
export type DhtConfigErrorCode = 'BAD_K' | 'BAD_TTL' | 'BAD_CONTACT' | 'PUT_REFUSED';

/** Codes of `kind: 'protocol'` errors: an id, key or bucket index of the wrong size. */
export type DhtProtocolErrorCode = 'BAD_ID_LENGTH' | 'BAD_KEY_LENGTH' | 'BAD_BUCKET';

/** Codes of `kind: 'aborted'` errors: the caller's signal, or the node or RPC closing. */
export type DhtAbortedErrorCode = 'ABORTED' | 'CLOSED';

/** Codes of `kind: 'timeout'` errors: one call, or a whole lookup. */
export type DhtTimeoutErrorCode = 'CALL_TIMEOUT' | 'LOOKUP_TIMEOUT';

/** Codes of `kind: 'transport'` errors: too many calls in flight, a wrong answer type, no node stored a put. */
export type DhtTransportErrorCode = 'OVERLOADED' | 'BAD_ANSWER' | 'PUT_FAILED';

/** Every code of a DeutError thrown by @deut/dht (beside the wire decoders' WireErrorCode). */
export type DhtErrorCode = DhtConfigErrorCode | DhtProtocolErrorCode | DhtAbortedErrorCode | DhtTimeoutErrorCode | DhtTransportErrorCode;

/** A configuration mistake made by the user. */
export function configError(code: DhtConfigErrorCode, message: string): DeutError {
  return commonConfigError(code, message);
}

/** An id or key of the wrong size. */
export function protocolError(code: DhtProtocolErrorCode, message: string): ProtocolError {
  return commonProtocolError(code, message);
}

/** An operation cancelled by its signal or by close(). */
export function abortedError(code: DhtAbortedErrorCode, message: string): DeutError {
  return commonAbortedError(code, message);
}

/** A call or lookup that ran out of time. */
export function timeoutError(code: DhtTimeoutErrorCode, message: string): DeutError {
  return commonTimeoutError(code, message);
}

/** A failure of the calls themselves. */
export function transportError(code: DhtTransportErrorCode, message: string): DeutError {
  return commonTransportError(code, message);
}

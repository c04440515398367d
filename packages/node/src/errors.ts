/**
 * The stable codes of the errors this package throws, as closed unions (as `WireErrorCode` is
 * for @deut/wire), and the @deut/common factories narrowed to them: a caller branches on
 * `error.code`, so a code misspelt or renamed at the throw must fail the build, not the caller.
 */
import { RetryError, abortedError as commonAbortedError, configError as commonConfigError, timeoutError as commonTimeoutError } from '@deut/common';
import type { DeutError } from '@deut/common';

/**
 * Codes of `kind: 'config'` errors: an option out of range, or a call the node's roles do
 * not allow (`NOT_A_MASTER`, `DHT_OFF`, `DHT_NEEDS_MASTER`), or a send with no tunnel up.
 */
export type NodeConfigErrorCode = 'BAD_OPTION' | 'BAD_HOPS' | 'BAD_FANOUT' | 'DHT_NEEDS_MASTER' | 'DHT_OFF' | 'NOT_A_MASTER' | 'NO_TUNNELS';

/** Codes of `kind: 'aborted'` errors: the caller's signal, or the node closing. */
export type NodeAbortedErrorCode = 'ABORTED' | 'CLOSED';

/** Codes of `kind: 'timeout'` errors: one request attempt, or a whole request (a RetryError). */
export type NodeTimeoutErrorCode = 'NO_TUNNELS' | 'ATTEMPT_TIMEOUT' | 'REQUEST_TIMEOUT';

/**
 * Codes of TunnelSocket's errors: node:dgram's where dgram has one, so a UDP library branches
 * on them as it would on dgram's; `ERR_DEUT_*` where deut refuses what dgram would do.
 */
export type TunnelSocketErrorCode =
  | 'ERR_SOCKET_DGRAM_NOT_RUNNING'
  | 'ERR_SOCKET_ALREADY_BOUND'
  | 'ERR_SOCKET_BAD_PORT'
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_BUFFER_OUT_OF_BOUNDS'
  | 'EMSGSIZE'
  | 'ERR_DEUT_UNSUPPORTED'
  | 'ERR_DEUT_HOSTNAME_REFUSED'
  | 'NO_TUNNELS';

/** Every code of a DeutError thrown by @deut/node. */
export type NodeErrorCode = NodeConfigErrorCode | NodeAbortedErrorCode | NodeTimeoutErrorCode | TunnelSocketErrorCode;

/** A configuration mistake made by the user. */
export function configError(code: NodeConfigErrorCode, message: string): DeutError {
  return commonConfigError(code, message);
}

/** An operation cancelled by its signal or by close(). */
export function abortedError(code: NodeAbortedErrorCode, message: string): DeutError {
  return commonAbortedError(code, message);
}

/** An attempt that went unanswered. */
export function timeoutError(code: Exclude<NodeTimeoutErrorCode, 'REQUEST_TIMEOUT'>, message: string): DeutError {
  return commonTimeoutError(code, message);
}

/** A request that failed on every attempt, with each attempt's error. */
export function retryError(code: Extract<NodeTimeoutErrorCode, 'REQUEST_TIMEOUT'>, message: string, attempts: readonly unknown[]): RetryError {
  return new RetryError(code, message, attempts);
}


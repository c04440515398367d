/**
 * The codes of every error @deut/transport throws or reports, as closed unions (the
 * `WireErrorCode` habit): callers branch on `code`, so a code is part of the API.
 */
import { configError, transportError, type DeutError } from '@deut/common';

/**
 * Codes of the errors of kind `transport`, thrown or reported through `onError`.
 *
 * - `BAD_ADDRESS`: a bind or destination address that is not a usable host and port
 * - `BAD_HANDLER`: onMessage given something other than a function
 * - `BIND_FAILED`: the address is in use, or no ephemeral port is free
 * - `NETWORK_CLOSED`: bind on a closed MemoryNetwork
 * - `SOCKET_CLOSED`: send on a closed socket
 * - `SEND_FAILED`: the network refused a datagram (reported, not thrown)
 * - `SOCKET_ERROR`: the UDP socket failed (reported)
 * - `HANDLER_FAILED`: the message handler threw (reported)
 */
export type TransportErrorCode =
  | 'BAD_ADDRESS'
  | 'BAD_HANDLER'
  | 'BIND_FAILED'
  | 'NETWORK_CLOSED'
  | 'SOCKET_CLOSED'
  | 'SEND_FAILED'
  | 'SOCKET_ERROR'
  | 'HANDLER_FAILED';

/**
 * Codes of the configuration errors (kind `config`).
 *
 * - `BAD_OPTION`: a socket or network option out of range
 * - `BAD_CONDITIONS`: MemoryNetwork link conditions out of range
 */
export type TransportConfigErrorCode = 'BAD_OPTION' | 'BAD_CONDITIONS';

/** An error of kind `transport`. */
export function socketError(code: TransportErrorCode, message: string, cause?: unknown): DeutError {
  return transportError(code, message, cause);
}

/** An error of kind `config`. */
export function transportConfigError(code: TransportConfigErrorCode, message: string): DeutError {
  return configError(code, message);
}

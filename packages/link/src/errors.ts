/**
 * The codes of every error @deut/link throws or rejects with, as closed unions (the
 * `WireErrorCode` habit): callers branch on `code`, so a code is part of the API.
 */
import { ProtocolError, abortedError, configError, cryptoError, timeoutError, type DeutError } from '@deut/common';

/**
 * Codes of the `ProtocolError`s handshake.ts throws for a handshake that cannot finish;
 * the link counts each as a drop (`drop:handshake-version`, ...).
 *
 * - `HANDSHAKE_VERSION`: the peers share no link protocol version (§9)
 * - `HANDSHAKE_STATE`: a message out of order, or one that left a key unset
 */
export type LinkProtocolErrorCode = (typeof LINK_PROTOCOL_ERROR_CODES)[number];

/** Every {@link LinkProtocolErrorCode}, for the receive path's drop reasons. */
export const LINK_PROTOCOL_ERROR_CODES = ['HANDSHAKE_VERSION', 'HANDSHAKE_STATE'] as const;

/**
 * Codes a `connect()` rejects with, or `send()`/`connect()` throw on a closed link.
 *
 * - `LINK_CLOSED` (kind `aborted`): the link is, or was meanwhile, closed
 * - `LINK_PEER_CAP` (kind `timeout`): MAX_LINK_PEERS peers have state already
 * - `LINK_UNREACHABLE` (kind `timeout`): no answer after the handshake's attempts
 * - `PIN_MISMATCH` (kind `crypto`): the peer offered a key other than the pinned or expected one (§3.7)
 * - `KEY_MISMATCH` (kind `crypto`): the caller expects a key other than the one the address is bound to
 */
export type LinkErrorCode = 'LINK_CLOSED' | 'LINK_PEER_CAP' | 'LINK_UNREACHABLE' | 'PIN_MISMATCH' | 'KEY_MISMATCH';

/**
 * Codes of the configuration errors KnownPeers throws (kind `config`).
 *
 * - `BAD_KEY_LENGTH`: a key to pin that is not 32 bytes
 * - `KNOWN_PEERS_MALFORMED`: a pin file that does not parse
 * - `KNOWN_PEERS_UNREADABLE`: a pin file that cannot be read
 */
export type KnownPeersErrorCode = 'BAD_KEY_LENGTH' | 'KNOWN_PEERS_MALFORMED' | 'KNOWN_PEERS_UNREADABLE';

/** The ProtocolError handshake.ts throws: remote input that ends a handshake. */
export function handshakeError(code: LinkProtocolErrorCode, message: string): ProtocolError {
  return new ProtocolError(code, message);
}

/** A link error of the kind its code implies. */
export function linkError(code: LinkErrorCode, message: string): DeutError {
  switch (code) {
    case 'LINK_CLOSED':
      return abortedError(code, message);
    case 'LINK_PEER_CAP':
    case 'LINK_UNREACHABLE':
      return timeoutError(code, message);
    case 'PIN_MISMATCH':
    case 'KEY_MISMATCH':
      return cryptoError(code, message);
  }
}

/** A KnownPeers configuration error. */
export function knownPeersError(code: KnownPeersErrorCode, message: string): DeutError {
  return configError(code, message);
}

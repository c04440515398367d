/**
 * The names `Link.stats().counters` may hold (PROTOCOL.md §3): a closed union, so a test or
 * a metric that reads a counter nothing increments fails to compile instead of reading 0.
 * Every drop of remote input is counted under `drop:<reason>`.
 */
import { prefixedCodes } from '@deut/common';
import { NOISE_ERROR_CODES, type NoiseErrorCode } from '@deut/crypto';
import type { WireErrorCode } from '@deut/wire';
import { LINK_PROTOCOL_ERROR_CODES, type LinkProtocolErrorCode } from './errors.js';

/**
 * The codes of the ProtocolErrors that handling a datagram can throw: a link frame or a
 * handshake payload that does not decode (@deut/wire), a Noise message that does not
 * authenticate (@deut/crypto), a handshake that cannot finish (handshake.ts).
 */
export const DATAGRAM_ERROR_CODES = [
  'BAD_LENGTH',
  'BAD_TYPE',
  'BAD_FIELD',
  'BAD_PADDING',
  ...NOISE_ERROR_CODES,
  ...LINK_PROTOCOL_ERROR_CODES,
] as const satisfies readonly (WireErrorCode | NoiseErrorCode | LinkProtocolErrorCode)[];

/**
 * Why a datagram, a payload or a queued send was dropped. Besides the link's own reasons,
 * a `ProtocolError` thrown while handling a datagram is counted under its code in lower
 * case (DATAGRAM_ERROR_CODES). A const array, so metrics can list every reason at 0.
 */
export const LINK_DROP_REASONS = [
  'size',
  'replay',
  'decrypt',
  'unrecognized',
  'rate-limited',
  'pending-cap',
  'peer-cap',
  'cookie-extra',
  'pin-mismatch',
  'expected-key-mismatch',
  'no-handler',
  'queue-full',
  'queue-dropped',
  'internal-error',
  'low-order-key',
  ...prefixedCodes('', DATAGRAM_ERROR_CODES),
] as const;

/** One of {@link LINK_DROP_REASONS}. */
export type LinkDropReason = (typeof LINK_DROP_REASONS)[number];

/** Counter names of {@link Link.stats}. */
export type LinkCounter =
  | 'datagrams-in'
  | 'pin-write-failed'
  | 'pins-full'
  | 'datagrams-out'
  | 'payloads-in'
  | 'payloads-out'
  | 'keepalives-in'
  | 'keepalives-out'
  | 'handler-errors'
  | 'handshakes-initiated'
  | 'handshakes-responded'
  | 'handshakes-completed'
  | 'handshakes-cookie-admitted'
  | 'handshake-retransmits'
  | 'handshake-retransmit-answered'
  | 'handshake-timeouts'
  | 'handshake-restarts'
  | 'handshake-pending-expired'
  | 'cookies-sent'
  | 'cookies-received'
  | 'rekeys'
  | 'liveness-handshakes'
  | 'liveness-keepalives'
  | `drop:${LinkDropReason}`;

/**
 * The names of the tunnel engine's counters (PROTOCOL.md §8: every drop of remote input is
 * counted), as closed unions: a test or a metrics exporter that names a counter the engine
 * never increments fails to compile instead of reading a silent 0.
 */
import { prefixedCodes } from '@deut/common';
import { BUILD_REFUSAL_REASONS, WIRE_ERROR_CODES, type BuildRefusalReason, type WireErrorCode } from '@deut/wire';

/**
 * Codes of the `ProtocolError`s that handling one tunnel message can raise: the wire's, and
 * `LOW_ORDER_KEY` from a relayer build's ephemeral key (build-crypto.ts).
 */
export type TunnelErrorCode = WireErrorCode | 'LOW_ORDER_KEY';

/**
 * Why remote input was dropped without an answer: `decode-*` for a payload that does not
 * decode (the wire's code, lower-cased), a bare lower-cased code for one that decodes but
 * fails later, `internal-error` for a bug of ours, and the named checks of each role. A
 * const array, so metrics can list every reason at 0.
 */
export const TUNNEL_DROP_REASONS = [
  ...prefixedCodes('decode-', WIRE_ERROR_CODES),
  ...prefixedCodes('', [...WIRE_ERROR_CODES, 'LOW_ORDER_KEY'] satisfies TunnelErrorCode[]),
  'internal-error',
  'build-duplicate-id',
  'build-rate-limited',
  'build-bad-record',
  'build-replay',
  'build-response-unknown',
  'cell-unknown-tunnel',
  'cell-not-ready',
  'cell-replay',
  'cell-bad-tag',
  'destroy-unknown-tunnel',
] as const;

/** One of {@link TUNNEL_DROP_REASONS}. */
export type TunnelDropReason = (typeof TUNNEL_DROP_REASONS)[number];

/** Every {@link BuildRefusalCause}: metrics list them all at 0. */
export const BUILD_REFUSAL_CAUSES = [...BUILD_REFUSAL_REASONS, 'transit-cap', 'neighbour-cap'] as const;

/**
 * Why a hop refused a build, as counted: the reason it replied with, or for `overloaded`
 * from the engine's own caps, which cap (the reply cannot say, the count can).
 */
export type BuildRefusalCause = (typeof BUILD_REFUSAL_CAUSES)[number];

/** Why a master's build failed, as counted: the refusing hop's reason, or a reply that did not verify. */
export type BuildFailureCause = BuildRefusalReason | 'invalid';

/** Every counter of a TunnelEngine (`stats().counters`). */
export type TunnelCounter =
  | `drop:${TunnelDropReason}`
  // A hop's builds.
  | 'build-key-exchanges'
  | `build-refused-${BuildRefusalCause}`
  | 'builds-forwarded'
  | 'endpoints-opened'
  | 'transit-build-expired'
  | 'transit-expired'
  // A master's builds.
  | 'builds-started'
  | 'builds-succeeded'
  | 'builds-timed-out'
  | `builds-failed-${BuildFailureCause}`
  // Cells.
  | 'cells-relayed'
  | 'cells-sent'
  | 'cells-received'
  | 'endpoint-cells-sent'
  | 'endpoint-cells-received'
  // Teardown.
  | 'destroys-received'
  | 'tunnels-torn-down-bad-cell'
  | 'neighbours-lost';

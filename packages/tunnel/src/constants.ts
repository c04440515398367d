/**
 * Tunnel-layer timers and limits (PROTOCOL.md §4-§5, §8, §10). Sizes of bytes on the wire
 * live in @deut/wire.
 */

/** Default tunnel lifetime (I2P, Tor: 10 minutes). */
export const TUNNEL_LIFETIME_MS = 600_000;
/** Longest lifetime a hop accepts. */
export const MAX_TUNNEL_LIFETIME_MS = 900_000;
/** How long a hop keeps a forwarded build waiting for its response. */
export const BUILD_HOP_TIMEOUT_MS = 10_000;
/** How long the master waits for a build response by default. */
export const BUILD_TIMEOUT_MS = 5_000;
/** A master-mode build request older than this is refused. */
export const BUILD_MAX_AGE_S = 120;
/** Tolerated clock difference between master and hop, both directions. */
export const CLOCK_SKEW_S = 60;
/** Per-hop replay window of cell sequence values. */
export const CELL_REPLAY_WINDOW = 256;
/** Originators start cell counters below this (PROTOCOL.md §5.3). */
export const CELL_COUNTER_START_LIMIT = 2 ** 47;
/** Transit tunnels a node carries at most by default (i2pd: 10,000). */
export const MAX_TRANSIT_TUNNELS = 10_000;
/** Transit tunnels one previous hop may hold at most by default: a quarter of the table. */
export const MAX_TRANSIT_PER_NEIGHBOUR = 2_500;
/** Housekeeping period: expiry of tunnels, pending builds and the replay cache. */
export const TUNNEL_TICK_MS = 1_000;

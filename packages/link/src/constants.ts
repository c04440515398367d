/**
 * Link-layer timers and limits (PROTOCOL.md §3 and §10). Sizes of bytes on the wire live
 * in @deut/wire; these are the behaviour knobs of the link state machine.
 */

/** First handshake retransmission delay; doubles per attempt up to HANDSHAKE_RETRY_MAX_MS. */
export const HANDSHAKE_RETRY_MS = 1000;
/** Longest wait between two handshake transmissions. */
export const HANDSHAKE_RETRY_MAX_MS = 8000;

/** The wait after a handshake message's `sent`-th transmission (1-based): 1, 2, 4, 8, 8, 8 s. */
export function handshakeRetryDelayMs(sent: number): number {
  return Math.min(HANDSHAKE_RETRY_MS * 2 ** Math.max(0, sent - 1), HANDSHAKE_RETRY_MAX_MS);
}
/**
 * msg1 (or unconfirmed msg3) transmissions before a peer is declared unreachable: about
 * 31 s in all (the last sent after 23 s). Each stage needs a round trip, so at 20% loss each attempt succeeds only 64%
 * of the time; six attempts bring a stage's failure to 0.2%.
 */
export const HANDSHAKE_ATTEMPTS = 6;
/** Lifetime of a responder's half-open handshake state. */
export const HANDSHAKE_PENDING_MS = 5000;
/**
 * How long after its first transmission a handshake message may still be retransmitted:
 * the sum of the waits between HANDSHAKE_ATTEMPTS transmissions (23 s), plus one wait for
 * the last one to arrive. A responder answers a retransmitted msg3 for this long, because
 * the initiator retransmits msg3 until it hears from the new session, and only that answer
 * can stop it; nothing else would reach it, since it sends nothing on an unconfirmed session.
 */
export const HANDSHAKE_RETRANSMIT_SPAN_MS = Array.from({ length: HANDSHAKE_ATTEMPTS }, (_, i) => handshakeRetryDelayMs(i + 1)).reduce((sum, wait) => sum + wait, 0);
/** How long one cookie secret is used; the previous one is still accepted (PROTOCOL.md §3.3, WireGuard: 2 min). */
export const COOKIE_SECRET_MS = 120_000;
/** Bytes of a cookie secret, a BLAKE2b key. */
export const COOKIE_SECRET_BYTES = 32;
/** Global cap on half-open responder handshakes. */
export const MAX_PENDING_HANDSHAKES = 1024;
/** A session older than this is rekeyed by whichever side next sends on it. */
export const REKEY_AFTER_MS = 120_000;
/** A session that has sent this many datagrams is rekeyed. */
export const REKEY_AFTER_MESSAGES = 2 ** 24;
/** A session older than this is discarded for sending and receiving. */
export const REJECT_AFTER_MS = 180_000;
/** Hard stop on one session's counter; never reached in practice. */
export const REJECT_AFTER_MESSAGES = 2 ** 40;
/** Sessions kept per peer for receiving: previous, current, next. */
export const MAX_SESSIONS_PER_PEER = 3;
/** Payloads queued per peer while its handshake runs. */
export const LINK_SEND_QUEUE = 64;
/** Link data replay window, in counters. */
export const LINK_REPLAY_WINDOW = 4096;
/**
 * Liveness (PROTOCOL.md §3.8): a peer the layer above still needs and that has been silent
 * this long gets a keepalive, at most once per this period; a peer that receives one and
 * has sent nothing for half of it answers with one.
 */
export const KEEPALIVE_MS = 10_000;
/**
 * A needed peer silent this long (three keepalive periods: at 10% loss a live peer stays
 * this silent about once in a thousand windows, and then only costs a handshake) is checked
 * with a new handshake; when that fails after HANDSHAKE_ATTEMPTS the peer is unreachable.
 */
export const LIVENESS_TIMEOUT_MS = 30_000;
/** How often the link's housekeeping runs (retransmits, expiry). */
export const LINK_TICK_MS = 250;
/** Upper bound on peers with any state (sessions or handshakes). */
export const MAX_LINK_PEERS = 16_384;
/** Link protocol versions this implementation speaks. */
export const LINK_MIN_VERSION = 1;
export const LINK_MAX_VERSION = 1;
/** Pins made meanwhile are written to the known-peers file at most this often (and at close). */
export const PIN_FLUSH_MS = 1_000;

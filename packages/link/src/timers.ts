/**
 * The link's clocks (PROTOCOL.md §3.3 "Retransmission", §3.6, §3.8, §10): the tick every
 * LINK_TICK_MS that retransmits handshake messages and gives up after their attempts,
 * expires half-open handshakes, old sessions and remembered answers, and frees idle
 * peers; and the heartbeat the layer above calls for a peer it still needs, which sends
 * keepalives and starts liveness handshakes.
 */
import { addressKey, type UdpAddress } from '@deut/common';
import { HANDSHAKE_PENDING_MS, KEEPALIVE_MS, LINK_TICK_MS, LIVENESS_TIMEOUT_MS, PIN_FLUSH_MS, handshakeRetryDelayMs } from './constants.js';
import { linkError } from './errors.js';
import { initiate } from './peer-handshakes.js';
import { expireSessions, maybeRekey, sendingSession } from './peer-sessions.js';
import { failPeer, type Initiating, type LinkState, type PeerState } from './peer-state.js';
import { sendReply, socketSend } from './send.js';

/** Runs tick() every LINK_TICK_MS until the link closes. */
export function schedule(state: LinkState): void {
  state.timer = state.clock.setTimeout(() => {
    tick(state);
    if (!state.closed) schedule(state);
  }, LINK_TICK_MS);
}

/** Stops the tick. */
export function stopTimers(state: LinkState): void {
  if (state.timer !== undefined) state.clock.clearTimeout(state.timer);
}

/**
 * Writes new pins to the known-peers file, at most once per PIN_FLUSH_MS. A write that fails
 * (disk full, file removed with its folder) is one warning and a counter, and is tried again
 * next time; pins stay in force in memory either way.
 */
export function flushPins(state: LinkState, now: number): void {
  if (now < state.pinsFlushAt) return;
  state.pinsFlushAt = now + PIN_FLUSH_MS;
  try {
    state.knownPeers.flush();
  } catch (error) {
    state.counters.add('pin-write-failed');
    state.logger.warn('link: cannot write the known-peers file; pins stay in memory and the write is retried', { error: String(error) });
  }
}

/** One round of housekeeping over every peer. */
export function tick(state: LinkState): void {
  const now = state.clock.now();
  flushPins(state, now);
  for (const peer of state.peers.values()) {
    const initiating = peer.initiating;
    if (initiating !== undefined && now >= initiating.nextAt) retransmit(state, peer, initiating, now);
    if (peer.responding !== undefined && now >= peer.responding.expiresAt) {
      peer.responding = undefined;
      state.pending--;
      state.counters.add('handshake-pending-expired');
    }
    expireSessions(peer, now);
    for (const [fingerprint, entry] of peer.replies) if (entry.until <= now) peer.replies.delete(fingerprint);
    if (peer.sessions.length === 0 && peer.initiating === undefined && peer.responding === undefined && peer.queue.length === 0 && peer.waiters.length === 0) {
      state.peers.delete(peer.key);
    }
  }
}

/** Fresh msg1s one handshake may start over with when its msg3 went unanswered (see retransmit). */
const MAX_HANDSHAKE_RESTARTS = 2;

/**
 * The handshake message's wait is over: send it again, start over from msg1 if msg3 can no
 * longer be answered, or give the peer up after its attempts.
 */
function retransmit(state: LinkState, peer: PeerState, initiating: Initiating, now: number): void {
  const restarts = initiating.restarts ?? 0;
  const lastSentAt = initiating.nextAt - handshakeRetryDelayMs(initiating.attempts);
  if (initiating.stage === 'msg3' && initiating.session !== undefined && lastSentAt - initiating.session.establishedAt >= HANDSHAKE_PENDING_MS && restarts < MAX_HANDSHAKE_RESTARTS) {
    // The responder forgets a half-open handshake HANDSHAKE_PENDING_MS after its last msg1. A
    // msg3 copy sent after that is answered only if an earlier copy got through (with the
    // remembered keepalive); when even that copy went unanswered, none got through, and the
    // rest are dropped there as unrecognized. Retransmitting them until 31 s only wedged the
    // link (a bootstrap first contacted in lossy start-up answered 31 s late): start over
    // from msg1, keeping the queue and the waiters.
    peer.sessions = peer.sessions.filter((s) => s !== initiating.session);
    state.counters.add('handshake-restarts');
    initiate(state, peer);
    if (peer.initiating !== undefined) peer.initiating.restarts = restarts + 1;
    return;
  }
  if (initiating.attempts >= initiating.maxAttempts) {
    peer.initiating = undefined;
    if (initiating.session !== undefined) peer.sessions = peer.sessions.filter((s) => s !== initiating.session);
    state.counters.add('handshake-timeouts');
    // A liveness check starts again only a full timeout after this failure, however often heartbeat() is called.
    peer.lastLivenessCheckAt = now;
    failPeer(state, peer, linkError('LINK_UNREACHABLE', `no handshake answer after ${initiating.attempts} attempts`), true);
    return;
  }
  initiating.nextAt = now + handshakeRetryDelayMs(initiating.attempts + 1);
  initiating.attempts++;
  state.counters.add('handshake-retransmits');
  const open = initiating.openDatagram;
  const alternate = initiating.stage === 'msg1' && open !== undefined && initiating.attempts % 2 === 0;
  initiating.cookieUsed = false;
  socketSend(state, alternate ? open : initiating.datagram, peer.address);
}

/** See {@link Link.heartbeat}. */
export function heartbeat(state: LinkState, to: UdpAddress): void {
  if (state.closed) return;
  const peer = state.peers.get(addressKey(to));
  if (peer === undefined || !peer.sessions.some((s) => s.confirmed)) return;
  const now = state.clock.now();
  const silentFor = now - peer.lastReceivedAt;
  if (silentFor >= LIVENESS_TIMEOUT_MS && peer.initiating === undefined && now - peer.lastLivenessCheckAt >= LIVENESS_TIMEOUT_MS) {
    peer.lastLivenessCheckAt = now;
    state.counters.add('liveness-handshakes');
    initiate(state, peer);
    return;
  }
  if (silentFor < KEEPALIVE_MS || now - peer.lastKeepaliveAt < KEEPALIVE_MS) return;
  const session = sendingSession(peer, now);
  if (session === undefined) {
    if (peer.initiating === undefined) initiate(state, peer);
    return;
  }
  peer.lastKeepaliveAt = now;
  state.counters.add('liveness-keepalives');
  sendReply(state, peer, { kind: 'keepalive', session });
  maybeRekey(state, peer, session, now);
}

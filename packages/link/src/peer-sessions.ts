/**
 * A peer's set of sessions (PROTOCOL.md §3.3, §3.6, §3.7): whose key a finished handshake
 * may start one with (expected key, then pin, then trust on first use), the newest
 * MAX_SESSIONS_PER_PEER kept for receiving, the one we send on, when a send or a keepalive
 * triggers a rekey, and when old sessions are dropped. One session's own crypto is
 * session.ts.
 */
import { constantTimeEqual } from '@deut/crypto';
import { MAX_SESSIONS_PER_PEER, REJECT_AFTER_MS, REKEY_AFTER_MESSAGES, REKEY_AFTER_MS } from './constants.js';
import type { HandshakeOutcome } from './handshake.js';
import type { LinkSessionInfo } from './link.js';
import { initiate } from './peer-handshakes.js';
import { boundKey, type LinkState, type PeerState } from './peer-state.js';
import { transmit } from './send.js';
import { LinkSession } from './session.js';

/**
 * PROTOCOL.md §3.7: the key the address is bound to (its pin, else its live sessions' key,
 * else the key a caller expected), else trust on first use. A rekey is held to the identity
 * of the sessions it replaces, pinned or not.
 */
export function acceptKey(state: LinkState, peer: PeerState, offered: Uint8Array, ephemeral: boolean): boolean {
  const expected = boundKey(state, peer);
  if (expected !== undefined) {
    if (constantTimeEqual(expected, offered)) return true;
    state.drop('pin-mismatch');
    const pinnedAt = state.knownPeers.get(peer.key) !== undefined ? state.knownPeers.location(peer.key) : undefined;
    state.logger.warn(
      pinnedAt === undefined
        ? `link: peer ${peer.key} offered a key other than the one it is bound to (its live sessions, or the one a tunnel named); refused`
        : `link: peer ${peer.key} offered a key other than its pin (${pinnedAt}); refused. If its key changed on purpose, remove the pin: deut pins remove ${peer.key} --known-peers ${state.knownPeers.file ?? ''}`,
      { peer: peer.key, ...(pinnedAt !== undefined ? { pin: pinnedAt } : {}) },
    );
    state.events.emit('pin-mismatch', { address: peer.address, expected: expected.slice(), offered: offered.slice() });
    return false;
  }
  if (!ephemeral && !state.knownPeers.pin(peer.key, offered)) state.counters.add('pins-full');
  return true;
}

/** A finished handshake's session, newest first; the oldest past MAX_SESSIONS_PER_PEER is forgotten. */
export function addSession(state: LinkState, peer: PeerState, outcome: HandshakeOutcome): LinkSession {
  const session = new LinkSession(outcome.keys, outcome.sessionId, outcome.remoteStatic, outcome.initiator, outcome.version, state.clock.now());
  peer.sessions.unshift(session);
  if (peer.sessions.length > MAX_SESSIONS_PER_PEER) peer.sessions.length = MAX_SESSIONS_PER_PEER;
  state.counters.add('handshakes-completed');
  return session;
}

/** Both sides hold the session's keys: tell the listeners and waiters, and send what was queued. */
export function onConfirmed(state: LinkState, peer: PeerState, session: LinkSession): void {
  const now = state.clock.now();
  const info = sessionInfo(peer, session, now);
  state.events.emit('session', info);
  for (const waiter of peer.waiters.splice(0)) waiter.resolve(info);
  const queued = peer.queue.splice(0);
  for (const payload of queued) transmit(state, peer, session, payload, now);
}

/** The newest confirmed session that may still send, if any. */
export function sendingSession(peer: PeerState, now: number): LinkSession | undefined {
  const oldest = now - REJECT_AFTER_MS;
  for (const s of peer.sessions) if (s.confirmed && s.establishedAt > oldest && !s.exhausted) return s;
  return undefined;
}

/** §3.6: whoever next sends on a session old or used enough starts the next one. */
export function maybeRekey(state: LinkState, peer: PeerState, session: LinkSession, now: number): void {
  if (peer.initiating !== undefined) return;
  if (now - session.establishedAt >= REKEY_AFTER_MS || session.sent >= REKEY_AFTER_MESSAGES) {
    state.counters.add('rekeys');
    initiate(state, peer);
  }
}

/** Forgets sessions past REJECT_AFTER_MS, for receiving too. */
export function expireSessions(peer: PeerState, now: number): void {
  const oldest = now - REJECT_AFTER_MS;
  if (peer.sessions.some((s) => s.establishedAt <= oldest)) peer.sessions = peer.sessions.filter((s) => s.establishedAt > oldest);
}

/** A session as `sessions()` and the `session` event show it at `now`. */
export function sessionInfo(peer: PeerState, session: LinkSession, now: number): LinkSessionInfo {
  return {
    address: peer.address,
    publicKey: session.remoteStatic,
    sessionId: session.sessionId,
    initiator: session.initiator,
    confirmed: session.confirmed,
    version: session.version,
    establishedAt: session.establishedAt,
    sent: session.sent,
    received: session.received,
    current: sendingSession(peer, now) === session,
  };
}

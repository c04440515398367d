/**
 * The handshake state machines of the link runtime (PROTOCOL.md §3.3): initiating (msg1,
 * then msg2 → msg3, a cookie reply acted on once per transmission), responding (msg1
 * admitted per source and globally, and under load only with a valid cookie, cookie.ts;
 * half-open state until msg3), and the answers to retransmitted handshake datagrams.
 * The messages themselves are handshake.ts; retransmitting on a timer is timers.ts.
 */
import type { UdpAddress } from '@deut/common';
import { HANDSHAKE_ATTEMPTS, HANDSHAKE_PENDING_MS, HANDSHAKE_RETRANSMIT_SPAN_MS, handshakeRetryDelayMs, MAX_PENDING_HANDSHAKES } from './constants.js';
import { linkError } from './errors.js';
import { InitiatorHandshake, ResponderHandshake, handshakeFingerprint, mac1Matches, msg1Ephemeral } from './handshake.js';
import { acceptKey, addSession, onConfirmed } from './peer-sessions.js';
import { boundKey, createPeer, failPeer, type Initiating, type LinkState, type PeerState, type Reply, type Responding } from './peer-state.js';
import { sendReply, socketSend } from './send.js';

/** Handshake answers remembered per peer, for retransmissions. */
const MAX_REMEMBERED_REPLIES = 4;

/**
 * Starts a handshake as initiator and sends msg1, expecting the key the address is bound to
 * (a rekey or a liveness check expects the current sessions' key, pinned or not).
 * `maxAttempts`: fewer msg1 for addresses nobody has vouched for (§4.7).
 */
export function initiate(state: LinkState, peer: PeerState, maxAttempts = HANDSHAKE_ATTEMPTS): void {
  const pinned = boundKey(state, peer);
  const handshake = new InitiatorHandshake(state.identity, state.payload, pinned, state.openMac1Key);
  peer.initiating = {
    handshake,
    stage: 'msg1',
    datagram: handshake.msg1,
    openDatagram: handshake.msg1Open,
    cookieUsed: false,
    attempts: 1,
    maxAttempts: Number.isInteger(maxAttempts) ? Math.max(1, Math.min(HANDSHAKE_ATTEMPTS, maxAttempts)) : HANDSHAKE_ATTEMPTS,
    nextAt: state.clock.now() + handshakeRetryDelayMs(1),
  };
  state.counters.add('handshakes-initiated');
  socketSend(state, handshake.msg1, peer.address);
}

/** true if `data` is a msg1 addressed to us: by our key, or (if we take strangers) on first contact. */
export function isMsg1(state: LinkState, data: Uint8Array): boolean {
  return mac1Matches(data, state.ownMac1Key) || (state.acceptFirstContact && mac1Matches(data, state.openMac1Key));
}

/** Answers a msg1: the same msg2 again, a cookie reply under load, or a new half-open handshake. */
export function onMsg1(state: LinkState, from: UdpAddress, key: string, existing: PeerState | undefined, data: Uint8Array): void {
  const ephemeral = msg1Ephemeral(data);
  if (existing?.responding?.ephemeral === ephemeral) {
    state.counters.add('handshake-retransmit-answered');
    reopenHalfOpen(state, existing.responding);
    return socketSend(state, existing.responding.handshake.msg2, existing.address);
  }
  if (!state.perSource.take(from.host)) return state.drop('rate-limited');
  if (!state.global.take()) {
    // Under load: no key exchange for a source that has not shown it receives at its address.
    if (!state.cookies.mac2Valid(data, from)) {
      state.counters.add('cookies-sent');
      return socketSend(state, state.cookies.reply(data, from), from);
    }
    state.counters.add('handshakes-cookie-admitted');
  }
  const replacing = existing?.responding !== undefined;
  if (!replacing && state.pending >= MAX_PENDING_HANDSHAKES) return state.drop('pending-cap');
  const peer = existing ?? createPeer(state, from, key);
  if (peer === undefined) return;
  const handshake = new ResponderHandshake(state.identity, state.payload, data);
  if (!replacing) state.pending++;
  const now = state.clock.now();
  peer.responding = { handshake, createdAt: now, expiresAt: now + HANDSHAKE_PENDING_MS, ephemeral };
  remember(state, peer, data, { kind: 'datagram', bytes: handshake.msg2 });
  state.counters.add('handshakes-responded');
  socketSend(state, handshake.msg2, peer.address);
}

/**
 * msg1 came again, so our msg2 was lost and msg3 can only follow the copy we send now: the
 * half-open window starts again. Bounded by the initiator's own retry span, so replaying
 * one msg1 cannot hold a half-open slot longer than a genuine initiator would.
 */
function reopenHalfOpen(state: LinkState, responding: Responding): void {
  responding.expiresAt = Math.min(state.clock.now() + HANDSHAKE_PENDING_MS, responding.createdAt + HANDSHAKE_RETRANSMIT_SPAN_MS);
}

/** The responder is under load: send msg1 again at once, now carrying mac2. */
export function onCookie(state: LinkState, peer: PeerState, initiating: Initiating, cookie: Uint8Array): void {
  if (initiating.cookieUsed) return state.drop('cookie-extra');
  state.counters.add('cookies-received');
  const { msg1, msg1Open } = initiating.handshake.msg1WithCookie(cookie);
  initiating.datagram = msg1;
  initiating.openDatagram = msg1Open;
  initiating.cookieUsed = true;
  socketSend(state, msg1, peer.address);
}

/** The responder answered: check its key, then send msg3 and start the (unconfirmed) session. */
export function onMsg2(state: LinkState, peer: PeerState, initiating: Initiating, data: Uint8Array): void {
  // A forged msg2 throws here and leaves the Noise state untouched (it rolls back).
  const { remoteStatic, remotePayload } = initiating.handshake.readMsg2(data);
  peer.lastReceivedAt = state.clock.now();
  if (!acceptKey(state, peer, remoteStatic, remotePayload.ephemeralIdentity)) {
    peer.initiating = undefined;
    failPeer(state, peer, linkError('PIN_MISMATCH', 'peer offered a key that differs from its pinned key'), false);
    return;
  }
  const { msg3, outcome } = initiating.handshake.writeMsg3();
  const session = addSession(state, peer, outcome);
  remember(state, peer, data, { kind: 'datagram', bytes: msg3 });
  // The peer answered: whoever named its address, it is no amplification victim.
  Object.assign(initiating, { stage: 'msg3', datagram: msg3, attempts: 1, maxAttempts: HANDSHAKE_ATTEMPTS, nextAt: state.clock.now() + handshakeRetryDelayMs(1), session });
  socketSend(state, msg3, peer.address);
}

/** The initiator finished: check its key, start the session and confirm it with a keepalive. */
export function onMsg3(state: LinkState, peer: PeerState, responding: Responding, data: Uint8Array): void {
  peer.responding = undefined;
  state.pending--;
  const outcome = responding.handshake.readMsg3(data);
  peer.lastReceivedAt = state.clock.now();
  if (!acceptKey(state, peer, outcome.remoteStatic, outcome.remotePayload.ephemeralIdentity)) return;
  const session = addSession(state, peer, outcome);
  // Our confirming keepalive may be lost, and the initiator then retransmits msg3 for as long
  // as its retries last: answer those for that long, not just for our half-open window (a
  // 5-second memory once left an initiator retransmitting msg3 into silence for 31 s).
  remember(state, peer, data, { kind: 'keepalive', session }, HANDSHAKE_RETRANSMIT_SPAN_MS);
  sendReply(state, peer, { kind: 'keepalive', session });
  onConfirmed(state, peer, session);
}

/**
 * Answers `data` if it is a handshake datagram we answered lately (its answer was lost):
 * with the same bytes, or a fresh keepalive. true if it was one.
 */
export function answerRetransmission(state: LinkState, peer: PeerState, data: Uint8Array): boolean {
  const remembered = peer.replies.get(handshakeFingerprint(data));
  if (remembered === undefined || remembered.until <= state.clock.now()) return false;
  state.counters.add('handshake-retransmit-answered');
  const responding = peer.responding;
  if (responding !== undefined && remembered.reply.kind === 'datagram' && remembered.reply.bytes === responding.handshake.msg2) reopenHalfOpen(state, responding);
  sendReply(state, peer, remembered.reply);
  return true;
}

function remember(state: LinkState, peer: PeerState, request: Uint8Array, reply: Reply, forMs = HANDSHAKE_PENDING_MS): void {
  if (peer.replies.size >= MAX_REMEMBERED_REPLIES) {
    const oldest = peer.replies.keys().next();
    if (oldest.done !== true) peer.replies.delete(oldest.value);
  }
  peer.replies.set(handshakeFingerprint(request), { reply, until: state.clock.now() + forMs });
}

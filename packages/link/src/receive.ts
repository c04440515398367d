/**
 * Receiving on the node port (PROTOCOL.md §3.5): what a datagram is, decided by the
 * cheapest check that passes (size, then each of the source's sessions, then the mac1 of
 * the handshake messages we expect, then a msg1 to us), and where it goes. Remote input is
 * never trusted: every drop is counted under a reason and nothing escapes the socket
 * handler. A data datagram costs no allocation here beyond its frame's decode.
 */
import { DeutError, addressKey, type UdpAddress } from '@deut/common';
import { DATAGRAM_BYTES, decodeLinkFrame } from '@deut/wire';
import { KEEPALIVE_MS } from './constants.js';
import { DATAGRAM_ERROR_CODES, type LinkDropReason } from './counters.js';
import { answerRetransmission, isMsg1, onCookie, onMsg1, onMsg2, onMsg3 } from './peer-handshakes.js';
import { onConfirmed, sendingSession } from './peer-sessions.js';
import type { LinkState, PeerState } from './peer-state.js';
import { sendReply } from './send.js';
import type { LinkSession } from './session.js';

const lower = <C extends string>(code: C): Lowercase<C> => code.toLowerCase() as Lowercase<C>;

/**
 * The drop reason of each error code a datagram's handling can throw because of what the
 * datagram holds: the ProtocolErrors of the decoders and handshakes, and X25519's refusal of
 * a key of low order, which a stranger can send on purpose (an all-zero representative with
 * the open mac1 is enough). Any other error is a fault of ours.
 */
const DATAGRAM_DROPS: ReadonlyMap<string, LinkDropReason> = new Map<string, LinkDropReason>([
  ...DATAGRAM_ERROR_CODES.map((code) => [code, lower(code)] as const),
  ['LOW_ORDER_KEY', 'low-order-key'],
]);

/** The socket's message handler. */
export function onDatagram(state: LinkState, data: Uint8Array, from: UdpAddress): void {
  if (state.closed) return;
  state.counters.add('datagrams-in');
  try {
    classify(state, data, from);
  } catch (error) {
    const reason = error instanceof DeutError ? DATAGRAM_DROPS.get(error.code) : undefined;
    if (reason !== undefined) {
      state.drop(reason);
    } else {
      state.drop('internal-error');
      state.logger.error('link: unexpected error handling a datagram', { error: String(error) });
    }
  }
}

/** PROTOCOL.md §3.5: cheapest check first, stop at the first that passes. */
function classify(state: LinkState, data: Uint8Array, from: UdpAddress): void {
  if (data.length !== DATAGRAM_BYTES) return state.drop('size');
  const key = addressKey(from);
  const peer = state.peers.get(key);
  let failure: 'replay' | 'decrypt' | undefined;
  if (peer !== undefined) {
    for (const session of peer.sessions) {
      const result = session.open(data);
      if (result instanceof Uint8Array) return onFrame(state, peer, session, result);
      if (failure !== 'replay') failure = result;
    }
    const initiating = peer.initiating;
    if (initiating?.stage === 'msg1' && initiating.handshake.isMsg2(data)) return onMsg2(state, peer, initiating, data);
    if (initiating?.stage === 'msg1') {
      const cookie = initiating.handshake.openCookieReply(data);
      if (cookie !== null) return onCookie(state, peer, initiating, cookie);
    }
    const responding = peer.responding;
    if (responding !== undefined && responding.handshake.isMsg3(data)) return onMsg3(state, peer, responding, data);
    if (answerRetransmission(state, peer, data)) return;
  }
  if (isMsg1(state, data)) return onMsg1(state, from, key, peer, data);
  state.drop(failure ?? 'unrecognized');
}

/** A data datagram opened on `session`: confirm the session if new, then a keepalive or a payload. */
function onFrame(state: LinkState, peer: PeerState, session: LinkSession, plaintext: Uint8Array): void {
  const now = state.clock.now();
  peer.lastReceivedAt = now;
  const wasConfirmed = session.confirmed;
  if (!session.confirmed) {
    session.confirmed = true;
    if (peer.initiating?.session === session) peer.initiating = undefined;
    onConfirmed(state, peer, session);
  }
  const frame = decodeLinkFrame(plaintext);
  if (frame.type === 'keepalive') {
    state.counters.add('keepalives-in');
    // §3.8: a peer checking on us hears back, unless we spoke to it lately anyway.
    // The keepalive that confirms a new session (§3.3) needs no answer.
    if (wasConfirmed && now - peer.lastSentAt >= KEEPALIVE_MS / 2) {
      const sending = sendingSession(peer, now);
      if (sending !== undefined) sendReply(state, peer, { kind: 'keepalive', session: sending });
    }
    return;
  }
  state.counters.add('payloads-in');
  state.observer?.({ direction: 'in', peer: peer.address, payload: frame.payload });
  const handler = state.handler;
  if (handler === undefined) return state.drop('no-handler');
  try {
    // One LinkPeer per session, not per datagram: it is immutable, and relays keep it.
    session.from ??= { address: peer.address, publicKey: session.remoteStatic, sessionId: session.sessionId };
    handler(frame.payload, session.from);
  } catch (error) {
    state.counters.add('handler-errors');
    state.logger.error('link: payload handler threw', { error: String(error) });
  }
}

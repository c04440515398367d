/**
 * Sending on the node port (PROTOCOL.md §3.1, §3.4, §3.8): a payload goes out on the
 * peer's sending session, or waits in its queue while a handshake runs; keepalives and
 * remembered handshake answers go out here too. Every datagram leaves through socketSend,
 * which counts it. The per-payload path seals into one reused frame buffer and allocates
 * only the datagram itself.
 */
import type { UdpAddress } from '@deut/common';
import { encodeLinkFrame, encodeLinkFrameInto } from '@deut/wire';
import { LINK_SEND_QUEUE } from './constants.js';
import { initiate } from './peer-handshakes.js';
import { maybeRekey, sendingSession } from './peer-sessions.js';
import type { LinkState, PeerState, Reply } from './peer-state.js';
import type { LinkSession } from './session.js';

const KEEPALIVE_FRAME = encodeLinkFrame({ type: 'keepalive' });

/** Sends `payload` to the peer now if a session can carry it, else queues it and starts a handshake. */
export function sendPayload(state: LinkState, peer: PeerState, payload: Uint8Array): void {
  // One clock reading per send: the session choice and the rekey check share it.
  const now = state.clock.now();
  const session = sendingSession(peer, now);
  if (session !== undefined) {
    transmit(state, peer, session, payload, now);
    maybeRekey(state, peer, session, now);
    return;
  }
  if (peer.queue.length >= LINK_SEND_QUEUE) {
    state.drop('queue-full');
  } else {
    peer.queue.push(payload.slice());
  }
  if (peer.initiating === undefined) initiate(state, peer);
}

/** Seals one payload on `session` and sends it. */
export function transmit(state: LinkState, peer: PeerState, session: LinkSession, payload: Uint8Array, now: number): void {
  state.counters.add('payloads-out');
  peer.lastSentAt = now;
  // A copy: callers may reuse their payload buffer as soon as send() returns.
  state.observer?.({ direction: 'out', peer: peer.address, payload: payload.slice() });
  // The frame is built in one reused buffer: seal() encrypts it into a new datagram at once.
  encodeLinkFrameInto({ type: 'payload', payload }, state.frame);
  socketSend(state, session.seal(state.frame), peer.address);
}

/** A keepalive is sealed anew each time: resending old bytes would be refused as a replay. */
export function sendReply(state: LinkState, peer: PeerState, reply: Reply): void {
  if (reply.kind === 'datagram') return socketSend(state, reply.bytes, peer.address);
  state.counters.add('keepalives-out');
  peer.lastSentAt = state.clock.now();
  socketSend(state, reply.session.seal(KEEPALIVE_FRAME), peer.address);
}

/** Hands one datagram to the socket. */
export function socketSend(state: LinkState, datagram: Uint8Array, to: UdpAddress): void {
  state.counters.add('datagrams-out');
  state.socket.send(datagram, to);
}

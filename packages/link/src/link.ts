/**
 * The link (PROTOCOL.md §3): encrypted, authenticated, fixed-size datagrams between this
 * node and its peers on the one node port, carrying opaque payloads for the tunnel layer.
 * This file is the public face; the work is split by concern as wireguard-go's device/ is:
 * receive.ts (classifying and dispatching datagrams, §3.5), send.ts, peer-handshakes.ts
 * (initiating, responding, cookies under load, §3.3), peer-sessions.ts (the session set,
 * pinning and rekey, §3.6-§3.7) and timers.ts (retransmission, expiry, liveness, §3.8),
 * all over the shared state of peer-state.ts.
 */
import { EventEmitter } from 'node:events';
import type { CounterSnapshot, Clock, Logger, RateLimit, UdpAddress } from '@deut/common';
import { cryptoReady, type KeyPair } from '@deut/crypto';
import type { DatagramSocket } from '@deut/transport';
import { MAX_LINK_PAYLOAD } from '@deut/wire';
import type { LinkCounter } from './counters.js';
import type { KnownPeers } from './known-peers.js';
import { linkError } from './errors.js';
import { initiate } from './peer-handshakes.js';
import { sendingSession, sessionInfo } from './peer-sessions.js';
import { LinkState, peerFor, rejectWaiters } from './peer-state.js';
import { onDatagram } from './receive.js';
import { sendPayload } from './send.js';
import { flushPins, heartbeat, schedule, stopTimers } from './timers.js';

/** Options of {@link Link.create}. */
export interface LinkOptions {
  /** The node port; the link owns it from now on and closes it in close(). */
  readonly socket: DatagramSocket;
  /** This node's static identity. */
  readonly identity: KeyPair;
  /** Tell peers not to pin our key (masters regenerate it at every start). @default false */
  readonly ephemeralIdentity?: boolean;
  /** Pins of peer keys. @default an in-memory store */
  readonly knownPeers?: KnownPeers;
  /** Answer msg1 from nodes that do not know our key yet. @default true */
  readonly acceptFirstContact?: boolean;
  /** msg1 admission per source IP. @default { perSecond: 2, burst: 20 } */
  readonly handshakeRatePerSource?: RateLimit;
  /**
   * msg1 answered with a key exchange for the whole node; past it the node is *under load*
   * and answers msg1 with a cookie unless it echoes a valid one (PROTOCOL.md §3.3).
   * @default { perSecond: 500, burst: 1000 }
   */
  readonly handshakeRateGlobal?: RateLimit;
  /** @default systemClock */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly logger?: Logger;
  /**
   * Sees every payload this link carries, in and out, after decryption and before
   * encryption: what this node, as a party, sees. For tests and metrics; never logs.
   */
  readonly observer?: (event: LinkPayloadEvent) => void;
}

/** One payload carried by the link, as seen by an observer. */
export interface LinkPayloadEvent {
  readonly direction: 'in' | 'out';
  readonly peer: UdpAddress;
  readonly payload: Uint8Array;
}

/** The authenticated peer a payload came from. */
export interface LinkPeer {
  readonly address: UdpAddress;
  readonly publicKey: Uint8Array;
  readonly sessionId: string;
}

/** A live session, as shown by `sessions()` and `deut status`. */
export interface LinkSessionInfo extends LinkPeer {
  readonly initiator: boolean;
  readonly confirmed: boolean;
  readonly version: number;
  readonly establishedAt: number;
  readonly sent: number;
  readonly received: number;
  /**
   * The session this link sends on to the peer now (the newest confirmed one still
   * usable): at most one per peer; the others are kept only to receive stragglers. An
   * operator ruling out a man in the middle checks that the other end holds this id: it is
   * usually the one marked there too, but after both ends rekeyed at once each sends on
   * the session the other started.
   */
  readonly current: boolean;
}

/** Options of a send or connect. */
export interface LinkSendOptions {
  /** Refuse the peer unless its static key is exactly this (a hop told its next hop's key). */
  readonly expectedKey?: Uint8Array;
  /**
   * msg1 transmissions before giving up, if this call starts the handshake (PROTOCOL.md §4.7:
   * an address we only heard of from a neighbour gets fewer than HANDSHAKE_ATTEMPTS).
   * @default HANDSHAKE_ATTEMPTS
   */
  readonly handshakeAttempts?: number;
}

/** Events a link emits. */
export interface LinkEvents {
  session: [info: LinkSessionInfo];
  'pin-mismatch': [event: { address: UdpAddress; expected: Uint8Array; offered: Uint8Array }];
  unreachable: [event: { address: UdpAddress }];
}

/** Handler of payloads arriving over links. */
export type LinkPayloadHandler = (payload: Uint8Array, from: LinkPeer) => void;

/** What {@link Link.stats} returns. */
export interface LinkStats {
  /** Datagrams, handshakes and drops by reason. */
  readonly counters: CounterSnapshot<LinkCounter>;
  /** Peers with any state (sessions, handshakes, queued sends). */
  readonly peers: number;
  readonly sessions: number;
  /** Half-open responder handshakes. */
  readonly pendingHandshakes: number;
}

/** Encrypted, authenticated, fixed-size links between this node and its peers. */
export class Link extends EventEmitter<LinkEvents> {
  readonly #state: LinkState;

  private constructor(options: LinkOptions) {
    super();
    const state = new LinkState(options, this);
    this.#state = state;
    state.socket.onMessage((data, from) => onDatagram(state, data, from));
    schedule(state);
  }

  /** Starts a link on `options.socket`. */
  static async create(options: LinkOptions): Promise<Link> {
    await cryptoReady();
    return new Link(options);
  }

  /** The node port's address. */
  get address(): UdpAddress {
    return this.#state.socket.local;
  }

  /** This node's static public key. */
  get publicKey(): Uint8Array {
    return this.#state.identity.publicKey;
  }

  /** Sets the one handler of incoming payloads. */
  onPayload(handler: LinkPayloadHandler): void {
    this.#state.handler = handler;
  }

  /**
   * Sends one payload (≤ MAX_LINK_PAYLOAD, 1173 bytes) to `to`, starting a handshake if there
   * is no session. The payload is copied (sealed, or queued) before this returns: the caller
   * may reuse it. Like UDP, it never fails loudly: a payload that cannot be delivered is
   * dropped and counted, and an unreachable peer is reported through the `unreachable` event.
   * @throws RangeError for a payload over MAX_LINK_PAYLOAD; DeutError `LINK_CLOSED` once closed
   */
  send(to: UdpAddress, payload: Uint8Array, options: LinkSendOptions = {}): void {
    this.#assertOpen();
    if (payload.length > MAX_LINK_PAYLOAD) throw new RangeError(`link payload over ${MAX_LINK_PAYLOAD} bytes`);
    const peer = peerFor(this.#state, to, options);
    if (typeof peer !== 'string') sendPayload(this.#state, peer, payload);
  }

  /**
   * Resolves once a confirmed session with `to` exists (running a handshake if needed).
   * Rejects with a DeutError whose code is a {@link LinkErrorCode}.
   */
  connect(to: UdpAddress, options: LinkSendOptions = {}): Promise<LinkSessionInfo> {
    this.#assertOpen();
    const state = this.#state;
    const peer = peerFor(state, to, options);
    if (peer === 'peer-cap') return Promise.reject(linkError('LINK_PEER_CAP', 'too many link peers'));
    if (peer === 'key-mismatch') return Promise.reject(linkError('KEY_MISMATCH', 'the peer at this address is bound to another key (pinned, or a live session)'));
    const now = state.clock.now();
    const session = sendingSession(peer, now);
    if (session !== undefined) return Promise.resolve(sessionInfo(peer, session, now));
    return new Promise((resolve, reject) => {
      peer.waiters.push({ resolve, reject });
      if (peer.initiating === undefined) initiate(state, peer, options.handshakeAttempts);
    });
  }

  /**
   * The layer above still needs `to` (it carries tunnels through it): keep the link alive
   * and find out if the peer died (PROTOCOL.md §3.8). Call it about once a second per needed
   * peer. A peer silent for KEEPALIVE_MS gets a keepalive; one silent for LIVENESS_TIMEOUT_MS
   * gets a new handshake, and if that fails the `unreachable` event fires. Peers with no
   * confirmed session are left to their handshake's own retries.
   */
  heartbeat(to: UdpAddress): void {
    heartbeat(this.#state, to);
  }

  /** Live sessions, newest first per peer. */
  sessions(): LinkSessionInfo[] {
    const out: LinkSessionInfo[] = [];
    const now = this.#state.clock.now();
    for (const peer of this.#state.peers.values()) for (const session of peer.sessions) out.push(sessionInfo(peer, session, now));
    return out;
  }

  /** Counters (datagrams, handshakes, drops by reason) and table sizes. */
  stats(): LinkStats {
    const state = this.#state;
    let sessions = 0;
    for (const peer of state.peers.values()) sessions += peer.sessions.length;
    return { counters: state.counters.snapshot(), peers: state.peers.size, sessions, pendingHandshakes: state.pending };
  }

  /** Stops timers, fails pending connects, forgets sessions and closes the socket. */
  async close(): Promise<void> {
    const state = this.#state;
    if (state.closed) return;
    state.closed = true;
    stopTimers(state);
    flushPins(state, Number.POSITIVE_INFINITY);
    for (const peer of state.peers.values()) rejectWaiters(peer, linkError('LINK_CLOSED', 'link closed'));
    state.peers.clear();
    state.pending = 0;
    await state.socket.close();
  }

  #assertOpen(): void {
    if (this.#state.closed) throw linkError('LINK_CLOSED', 'link is closed');
  }
}

/**
 * The link runtime (PROTOCOL.md §3): owns the node port, classifies every datagram
 * (§3.5), runs handshakes with retransmission, pins keys, rekeys, and carries opaque
 * payloads for the tunnel layer. Remote input is never trusted: every drop is counted
 * under a reason and nothing escapes the socket handler.
 */
import { EventEmitter } from 'node:events';
import {
  Counters,
  KeyedRateLimiter,
  ProtocolError,
  TokenBucket,
  abortedError,
  addressKey,
  cryptoError,
  silentLogger,
  systemClock,
  timeoutError,
  type Clock,
  type DeutError,
  type Logger,
  type RateLimit,
  type TimerHandle,
  type UdpAddress,
} from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { constantTimeEqual, cryptoReady, type KeyPair } from '@deut/crypto';
import type { DatagramSocket } from '@deut/transport';
import {
  DATAGRAM_BYTES,
  LINK_FRAME_BYTES,
  MAX_LINK_PAYLOAD,
  decodeLinkFrame,
  encodeLinkFrame,
  encodeLinkFrameInto,
  type HandshakePayload,
} from '@deut/wire';
import {
  HANDSHAKE_ATTEMPTS,
  HANDSHAKE_PENDING_MS,
  HANDSHAKE_RETRANSMIT_SPAN_MS,
  handshakeRetryDelayMs,
  KEEPALIVE_MS,
  LIVENESS_TIMEOUT_MS,
  LINK_MAX_VERSION,
  LINK_MIN_VERSION,
  LINK_SEND_QUEUE,
  LINK_TICK_MS,
  MAX_LINK_PEERS,
  MAX_PENDING_HANDSHAKES,
  MAX_SESSIONS_PER_PEER,
  REJECT_AFTER_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_MS,
} from './constants.js';
import {
  InitiatorHandshake,
  ResponderHandshake,
  handshakeFingerprint,
  mac1Matches,
  msg1Ephemeral,
  openMac1Key,
  responderMac1Key,
  type HandshakeOutcome,
} from './handshake.js';
import { CookieIssuer } from './cookie.js';
import { KnownPeers } from './known-peers.js';
import { LinkSession } from './session.js';

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

type Reply = { readonly kind: 'datagram'; readonly bytes: Uint8Array } | { readonly kind: 'keepalive'; readonly session: LinkSession };

interface Initiating {
  readonly handshake: InitiatorHandshake;
  stage: 'msg1' | 'msg3';
  datagram: Uint8Array;
  /** msg1 under the open mac1 key, sent on alternate attempts when we pinned the responder. */
  openDatagram: Uint8Array | undefined;
  /** A cookie reply was acted on since the last transmission: at most one resend per send. */
  cookieUsed: boolean;
  attempts: number;
  /** Transmissions of the current stage before the handshake is abandoned. */
  maxAttempts: number;
  nextAt: number;
  session?: LinkSession;
  /** Times this handshake started over from msg1 after msg3 outlived the responder's half-open state. */
  restarts?: number;
}

interface Responding {
  readonly handshake: ResponderHandshake;
  readonly createdAt: number;
  /** Moves on when a retransmitted msg1 is answered, never past createdAt + HANDSHAKE_RETRANSMIT_SPAN_MS. */
  expiresAt: number;
  /** msg1's ephemeral representative: a retransmitted msg1 (whatever its mac1) gets the same msg2. */
  readonly ephemeral: string;
}

interface PeerState {
  readonly address: UdpAddress;
  readonly key: string;
  sessions: LinkSession[];
  initiating?: Initiating | undefined;
  responding?: Responding | undefined;
  queue: Uint8Array[];
  waiters: Array<{ resolve: (info: LinkSessionInfo) => void; reject: (error: DeutError) => void }>;
  expectedKey?: Uint8Array | undefined;
  /** Handshake datagrams we answered recently, by fingerprint: retransmissions get the same answer. */
  replies: Map<string, { reply: Reply; until: number }>;
  /** When an authenticated datagram (handshake or data) last came from the peer. */
  lastReceivedAt: number;
  /** When we last sent the peer a data datagram (payload or keepalive). */
  lastSentAt: number;
  /** When heartbeat() last sent the peer a keepalive (§3.8). */
  lastKeepaliveAt: number;
  /** When heartbeat() last started a liveness handshake, or one failed (§3.8). */
  lastLivenessCheckAt: number;
}

const MAX_REMEMBERED_REPLIES = 4;
/** Fresh msg1s one handshake may start over with when its msg3 went unanswered (see #tick). */
const MAX_HANDSHAKE_RESTARTS = 2;
const KEEPALIVE_FRAME = encodeLinkFrame({ type: 'keepalive' });

/** Encrypted, authenticated, fixed-size links between this node and its peers. */
export class Link extends EventEmitter<LinkEvents> {
  readonly #socket: DatagramSocket;
  readonly #identity: KeyPair;
  readonly #knownPeers: KnownPeers;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #observer: ((event: LinkPayloadEvent) => void) | undefined;
  readonly #payload: HandshakePayload;
  readonly #acceptFirstContact: boolean;
  readonly #ownMac1Key: Uint8Array;
  readonly #openMac1Key: Uint8Array;
  readonly #perSource: KeyedRateLimiter;
  readonly #global: TokenBucket;
  readonly #cookies: CookieIssuer;
  readonly #peers = new Map<string, PeerState>();
  readonly #counters = new Counters<string>();
  /** The link frame being sealed (sending is synchronous). */
  readonly #frame = new Uint8Array(LINK_FRAME_BYTES);
  #pending = 0;
  #handler: LinkPayloadHandler | undefined;
  #timer: TimerHandle | undefined;
  #closed = false;

  private constructor(options: LinkOptions) {
    super();
    this.#socket = options.socket;
    this.#identity = options.identity;
    this.#knownPeers = options.knownPeers ?? KnownPeers.inMemory();
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#observer = options.observer;
    this.#acceptFirstContact = options.acceptFirstContact ?? true;
    this.#payload = { minVersion: LINK_MIN_VERSION, maxVersion: LINK_MAX_VERSION, ephemeralIdentity: options.ephemeralIdentity ?? false };
    this.#ownMac1Key = responderMac1Key(this.#identity.publicKey);
    this.#openMac1Key = openMac1Key();
    const now = (): number => this.#clock.now();
    this.#perSource = new KeyedRateLimiter(options.handshakeRatePerSource ?? { perSecond: 2, burst: 20 }, now);
    this.#global = new TokenBucket(options.handshakeRateGlobal ?? { perSecond: 500, burst: 1000 }, now);
    this.#cookies = new CookieIssuer(this.#clock);
    this.#socket.onMessage((data, from) => this.#onDatagram(data, from));
    this.#schedule();
  }

  /** Starts a link on `options.socket`. */
  static async create(options: LinkOptions): Promise<Link> {
    await cryptoReady();
    return new Link(options);
  }

  /** The node port's address. */
  get address(): UdpAddress {
    return this.#socket.local;
  }

  /** This node's static public key. */
  get publicKey(): Uint8Array {
    return this.#identity.publicKey;
  }

  /** Sets the one handler of incoming payloads. */
  onPayload(handler: LinkPayloadHandler): void {
    this.#handler = handler;
  }

  /**
   * Sends one payload (≤ 1173 bytes) to `to`, starting a handshake if there is no session.
   * The payload is copied (sealed, or queued) before this returns: the caller may reuse it.
   * Like UDP, it never fails loudly: a payload that cannot be delivered is dropped and
   * counted, and an unreachable peer is reported through the `unreachable` event.
   */
  send(to: UdpAddress, payload: Uint8Array, options: LinkSendOptions = {}): void {
    this.#assertOpen();
    if (payload.length > MAX_LINK_PAYLOAD) throw new RangeError(`link payload over ${MAX_LINK_PAYLOAD} bytes`);
    const peer = this.#peerFor(to, options);
    if (peer === undefined) return;
    // One clock reading per send: the session choice and the rekey check share it.
    const now = this.#clock.now();
    const session = this.#sendingSession(peer, now);
    if (session !== undefined) {
      this.#transmit(peer, session, payload, now);
      this.#maybeRekey(peer, session, now);
      return;
    }
    if (peer.queue.length >= LINK_SEND_QUEUE) {
      this.#drop('queue-full');
    } else {
      peer.queue.push(payload.slice());
    }
    if (peer.initiating === undefined) this.#initiate(peer);
  }

  /** Resolves once a confirmed session with `to` exists (running a handshake if needed). */
  connect(to: UdpAddress, options: LinkSendOptions = {}): Promise<LinkSessionInfo> {
    this.#assertOpen();
    const peer = this.#peerFor(to, options);
    if (peer === undefined) return Promise.reject(timeoutError('LINK_PEER_CAP', 'too many link peers'));
    const session = this.#sendingSession(peer, this.#clock.now());
    if (session !== undefined) return Promise.resolve(this.#info(peer, session));
    return new Promise((resolve, reject) => {
      peer.waiters.push({ resolve, reject });
      if (peer.initiating === undefined) this.#initiate(peer, false, options.handshakeAttempts);
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
    if (this.#closed) return;
    const peer = this.#peers.get(addressKey(to));
    if (peer === undefined || !peer.sessions.some((s) => s.confirmed)) return;
    const now = this.#clock.now();
    const silentFor = now - peer.lastReceivedAt;
    if (silentFor >= LIVENESS_TIMEOUT_MS && peer.initiating === undefined && now - peer.lastLivenessCheckAt >= LIVENESS_TIMEOUT_MS) {
      peer.lastLivenessCheckAt = now;
      this.#counters.add('liveness-handshakes');
      this.#initiate(peer, true);
      return;
    }
    if (silentFor < KEEPALIVE_MS || now - peer.lastKeepaliveAt < KEEPALIVE_MS) return;
    const session = this.#sendingSession(peer, now);
    if (session === undefined) {
      if (peer.initiating === undefined) this.#initiate(peer, true);
      return;
    }
    peer.lastKeepaliveAt = now;
    this.#counters.add('liveness-keepalives');
    this.#sendReply(peer, { kind: 'keepalive', session });
    this.#maybeRekey(peer, session, now);
  }

  /** Live sessions, newest first per peer. */
  sessions(): LinkSessionInfo[] {
    const out: LinkSessionInfo[] = [];
    for (const peer of this.#peers.values()) for (const session of peer.sessions) out.push(this.#info(peer, session));
    return out;
  }

  /** Counters (datagrams, handshakes, drops by reason) and table sizes. */
  stats(): { counters: CounterSnapshot<string>; peers: number; sessions: number; pendingHandshakes: number } {
    let sessions = 0;
    for (const peer of this.#peers.values()) sessions += peer.sessions.length;
    return { counters: this.#counters.snapshot(), peers: this.#peers.size, sessions, pendingHandshakes: this.#pending };
  }

  /** Stops timers, fails pending connects, forgets sessions and closes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    for (const peer of this.#peers.values()) this.#rejectWaiters(peer, abortedError('LINK_CLOSED', 'link closed'));
    this.#peers.clear();
    this.#pending = 0;
    await this.#socket.close();
  }

  // ---- receiving -------------------------------------------------------------------

  #onDatagram(data: Uint8Array, from: UdpAddress): void {
    if (this.#closed) return;
    this.#counters.add('datagrams-in');
    try {
      this.#classify(data, from);
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.#drop(error.code.toLowerCase());
      } else {
        this.#drop('internal-error');
        this.#logger.error('link: unexpected error handling a datagram', { error: String(error) });
      }
    }
  }

  /** PROTOCOL.md §3.5: cheapest check first, stop at the first that passes. */
  #classify(data: Uint8Array, from: UdpAddress): void {
    if (data.length !== DATAGRAM_BYTES) return this.#drop('size');
    const key = addressKey(from);
    const peer = this.#peers.get(key);
    let failure: 'replay' | 'decrypt' | undefined;
    if (peer !== undefined) {
      for (const session of peer.sessions) {
        const result = session.open(data);
        if (result instanceof Uint8Array) return this.#onFrame(peer, session, result);
        if (failure !== 'replay') failure = result;
      }
      const initiating = peer.initiating;
      if (initiating?.stage === 'msg1' && initiating.handshake.isMsg2(data)) return this.#onMsg2(peer, initiating, data);
      if (initiating?.stage === 'msg1') {
        const cookie = initiating.handshake.openCookieReply(data);
        if (cookie !== null) return this.#onCookie(peer, initiating, cookie);
      }
      const responding = peer.responding;
      if (responding !== undefined && responding.handshake.isMsg3(data)) return this.#onMsg3(peer, responding, data);
      const remembered = peer.replies.get(handshakeFingerprint(data));
      if (remembered !== undefined && remembered.until > this.#clock.now()) {
        this.#counters.add('handshake-retransmit-answered');
        if (responding !== undefined && remembered.reply.kind === 'datagram' && remembered.reply.bytes === responding.handshake.msg2) this.#reopenHalfOpen(responding);
        return this.#sendReply(peer, remembered.reply);
      }
    }
    if (this.#isMsg1(data)) return this.#onMsg1(from, key, peer, data);
    this.#drop(failure ?? 'unrecognized');
  }

  #isMsg1(data: Uint8Array): boolean {
    return mac1Matches(data, this.#ownMac1Key) || (this.#acceptFirstContact && mac1Matches(data, this.#openMac1Key));
  }

  #onMsg1(from: UdpAddress, key: string, existing: PeerState | undefined, data: Uint8Array): void {
    const ephemeral = msg1Ephemeral(data);
    if (existing?.responding?.ephemeral === ephemeral) {
      this.#counters.add('handshake-retransmit-answered');
      this.#reopenHalfOpen(existing.responding);
      return this.#socketSend(existing.responding.handshake.msg2, existing.address);
    }
    if (!this.#perSource.take(from.host)) return this.#drop('rate-limited');
    if (!this.#global.take()) {
      // Under load: no key exchange for a source that has not shown it receives at its address.
      if (!this.#cookies.mac2Valid(data, from)) {
        this.#counters.add('cookies-sent');
        return this.#socketSend(this.#cookies.reply(data, from), from);
      }
      this.#counters.add('handshakes-cookie-admitted');
    }
    const replacing = existing?.responding !== undefined;
    if (!replacing && this.#pending >= MAX_PENDING_HANDSHAKES) return this.#drop('pending-cap');
    const peer = existing ?? this.#createPeer(from, key);
    if (peer === undefined) return;
    const handshake = new ResponderHandshake(this.#identity, this.#payload, data);
    if (!replacing) this.#pending++;
    const now = this.#clock.now();
    peer.responding = { handshake, createdAt: now, expiresAt: now + HANDSHAKE_PENDING_MS, ephemeral };
    this.#remember(peer, data, { kind: 'datagram', bytes: handshake.msg2 });
    this.#counters.add('handshakes-responded');
    this.#socketSend(handshake.msg2, peer.address);
  }

  /**
   * msg1 came again, so our msg2 was lost and msg3 can only follow the copy we send now: the
   * half-open window starts again. Bounded by the initiator's own retry span, so replaying
   * one msg1 cannot hold a half-open slot longer than a genuine initiator would.
   */
  #reopenHalfOpen(responding: Responding): void {
    responding.expiresAt = Math.min(this.#clock.now() + HANDSHAKE_PENDING_MS, responding.createdAt + HANDSHAKE_RETRANSMIT_SPAN_MS);
  }

  /** The responder is under load: send msg1 again at once, now carrying mac2. */
  #onCookie(peer: PeerState, initiating: Initiating, cookie: Uint8Array): void {
    if (initiating.cookieUsed) return this.#drop('cookie-extra');
    this.#counters.add('cookies-received');
    const { msg1, msg1Open } = initiating.handshake.msg1WithCookie(cookie);
    initiating.datagram = msg1;
    initiating.openDatagram = msg1Open;
    initiating.cookieUsed = true;
    this.#socketSend(msg1, peer.address);
  }

  #onMsg2(peer: PeerState, initiating: Initiating, data: Uint8Array): void {
    // A forged msg2 throws here and leaves the Noise state untouched (it rolls back).
    const { remoteStatic, remotePayload } = initiating.handshake.readMsg2(data);
    peer.lastReceivedAt = this.#clock.now();
    if (!this.#acceptKey(peer, remoteStatic, remotePayload.ephemeralIdentity)) {
      peer.initiating = undefined;
      this.#failPeer(peer, cryptoError('PIN_MISMATCH', 'peer offered a key that differs from its pinned key'), false);
      return;
    }
    const { msg3, outcome } = initiating.handshake.writeMsg3();
    const session = this.#addSession(peer, outcome);
    this.#remember(peer, data, { kind: 'datagram', bytes: msg3 });
    // The peer answered: whoever named its address, it is no amplification victim.
    Object.assign(initiating, { stage: 'msg3', datagram: msg3, attempts: 1, maxAttempts: HANDSHAKE_ATTEMPTS, nextAt: this.#clock.now() + handshakeRetryDelayMs(1), session });
    this.#socketSend(msg3, peer.address);
  }

  #onMsg3(peer: PeerState, responding: Responding, data: Uint8Array): void {
    peer.responding = undefined;
    this.#pending--;
    const outcome = responding.handshake.readMsg3(data);
    peer.lastReceivedAt = this.#clock.now();
    if (!this.#acceptKey(peer, outcome.remoteStatic, outcome.remotePayload.ephemeralIdentity)) return;
    const session = this.#addSession(peer, outcome);
    // Our confirming keepalive may be lost, and the initiator then retransmits msg3 for as long
    // as its retries last: answer those for that long, not just for our half-open window (a
    // 5-second memory once left an initiator retransmitting msg3 into silence for 31 s).
    this.#remember(peer, data, { kind: 'keepalive', session }, HANDSHAKE_RETRANSMIT_SPAN_MS);
    this.#sendReply(peer, { kind: 'keepalive', session });
    this.#onConfirmed(peer, session);
  }

  #onFrame(peer: PeerState, session: LinkSession, plaintext: Uint8Array): void {
    const now = this.#clock.now();
    peer.lastReceivedAt = now;
    const wasConfirmed = session.confirmed;
    if (!session.confirmed) {
      session.confirmed = true;
      if (peer.initiating?.session === session) peer.initiating = undefined;
      this.#onConfirmed(peer, session);
    }
    const frame = decodeLinkFrame(plaintext);
    if (frame.type === 'keepalive') {
      this.#counters.add('keepalives-in');
      // §3.8: a peer checking on us hears back, unless we spoke to it lately anyway.
      // The keepalive that confirms a new session (§3.3) needs no answer.
      if (wasConfirmed && now - peer.lastSentAt >= KEEPALIVE_MS / 2) {
        const sending = this.#sendingSession(peer, now);
        if (sending !== undefined) this.#sendReply(peer, { kind: 'keepalive', session: sending });
      }
      return;
    }
    this.#counters.add('payloads-in');
    this.#observer?.({ direction: 'in', peer: peer.address, payload: frame.payload });
    const handler = this.#handler;
    if (handler === undefined) return this.#drop('no-handler');
    try {
      // One LinkPeer per session, not per datagram: it is immutable, and relays keep it.
      session.from ??= { address: peer.address, publicKey: session.remoteStatic, sessionId: session.sessionId };
      handler(frame.payload, session.from);
    } catch (error) {
      this.#counters.add('handler-errors');
      this.#logger.error('link: payload handler threw', { error: String(error) });
    }
  }

  // ---- handshakes and sessions ---------------------------------------------------------

  /**
   * `sameIdentity`: a liveness check, which expects the key of the current session when nothing
   * else is pinned. `maxAttempts`: fewer msg1 for addresses nobody has vouched for (§4.7).
   */
  #initiate(peer: PeerState, sameIdentity = false, maxAttempts = HANDSHAKE_ATTEMPTS): void {
    const pinned = peer.expectedKey ?? this.#knownPeers.get(peer.key) ?? (sameIdentity ? peer.sessions.find((s) => s.confirmed)?.remoteStatic : undefined);
    const handshake = new InitiatorHandshake(this.#identity, this.#payload, pinned, this.#openMac1Key);
    peer.initiating = {
      handshake,
      stage: 'msg1',
      datagram: handshake.msg1,
      openDatagram: handshake.msg1Open,
      cookieUsed: false,
      attempts: 1,
      maxAttempts: Number.isInteger(maxAttempts) ? Math.max(1, Math.min(HANDSHAKE_ATTEMPTS, maxAttempts)) : HANDSHAKE_ATTEMPTS,
      nextAt: this.#clock.now() + handshakeRetryDelayMs(1),
    };
    this.#counters.add('handshakes-initiated');
    this.#socketSend(handshake.msg1, peer.address);
  }

  /** PROTOCOL.md §3.7: expected key, then pin, then trust on first use. */
  #acceptKey(peer: PeerState, offered: Uint8Array, ephemeral: boolean): boolean {
    const expected = peer.expectedKey ?? this.#knownPeers.get(peer.key);
    if (expected !== undefined) {
      if (constantTimeEqual(expected, offered)) return true;
      this.#drop('pin-mismatch');
      this.#logger.warn('link: peer key differs from the pinned key; refused', { peer: peer.key });
      this.emit('pin-mismatch', { address: peer.address, expected: expected.slice(), offered: offered.slice() });
      return false;
    }
    if (!ephemeral) this.#knownPeers.pin(peer.key, offered);
    return true;
  }

  #addSession(peer: PeerState, outcome: HandshakeOutcome): LinkSession {
    const session = new LinkSession(outcome.keys, outcome.sessionId, outcome.remoteStatic, outcome.initiator, outcome.version, this.#clock.now());
    peer.sessions.unshift(session);
    if (peer.sessions.length > MAX_SESSIONS_PER_PEER) peer.sessions.length = MAX_SESSIONS_PER_PEER;
    this.#counters.add('handshakes-completed');
    return session;
  }

  #onConfirmed(peer: PeerState, session: LinkSession): void {
    const info = this.#info(peer, session);
    this.emit('session', info);
    for (const waiter of peer.waiters.splice(0)) waiter.resolve(info);
    const queued = peer.queue.splice(0);
    const now = this.#clock.now();
    for (const payload of queued) this.#transmit(peer, session, payload, now);
  }

  #sendingSession(peer: PeerState, now: number): LinkSession | undefined {
    const oldest = now - REJECT_AFTER_MS;
    for (const s of peer.sessions) if (s.confirmed && s.establishedAt > oldest && !s.exhausted) return s;
    return undefined;
  }

  #maybeRekey(peer: PeerState, session: LinkSession, now: number): void {
    if (peer.initiating !== undefined) return;
    if (now - session.establishedAt >= REKEY_AFTER_MS || session.sent >= REKEY_AFTER_MESSAGES) {
      this.#counters.add('rekeys');
      this.#initiate(peer);
    }
  }

  // ---- housekeeping ----------------------------------------------------------------------

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#tick();
      if (!this.#closed) this.#schedule();
    }, LINK_TICK_MS);
  }

  #tick(): void {
    const now = this.#clock.now();
    for (const peer of this.#peers.values()) {
      const initiating = peer.initiating;
      if (initiating !== undefined && now >= initiating.nextAt) {
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
          this.#counters.add('handshake-restarts');
          this.#initiate(peer);
          peer.initiating!.restarts = restarts + 1;
        } else if (initiating.attempts >= initiating.maxAttempts) {
          peer.initiating = undefined;
          if (initiating.session !== undefined) peer.sessions = peer.sessions.filter((s) => s !== initiating.session);
          this.#counters.add('handshake-timeouts');
          // A liveness check starts again only a full timeout after this failure, however often heartbeat() is called.
          peer.lastLivenessCheckAt = now;
          this.#failPeer(peer, timeoutError('LINK_UNREACHABLE', `no handshake answer after ${initiating.attempts} attempts`), true);
        } else {
          initiating.nextAt = now + handshakeRetryDelayMs(initiating.attempts + 1);
          initiating.attempts++;
          this.#counters.add('handshake-retransmits');
          const open = initiating.openDatagram;
          const alternate = initiating.stage === 'msg1' && open !== undefined && initiating.attempts % 2 === 0;
          initiating.cookieUsed = false;
          this.#socketSend(alternate ? open : initiating.datagram, peer.address);
        }
      }
      if (peer.responding !== undefined && now >= peer.responding.expiresAt) {
        peer.responding = undefined;
        this.#pending--;
        this.#counters.add('handshake-pending-expired');
      }
      const oldest = now - REJECT_AFTER_MS;
      if (peer.sessions.some((s) => s.establishedAt <= oldest)) peer.sessions = peer.sessions.filter((s) => s.establishedAt > oldest);
      for (const [fingerprint, entry] of peer.replies) if (entry.until <= now) peer.replies.delete(fingerprint);
      if (peer.sessions.length === 0 && peer.initiating === undefined && peer.responding === undefined && peer.queue.length === 0 && peer.waiters.length === 0) {
        this.#peers.delete(peer.key);
      }
    }
  }

  // ---- helpers -------------------------------------------------------------------------

  #peerFor(to: UdpAddress, options: LinkSendOptions): PeerState | undefined {
    const key = addressKey(to);
    const peer = this.#peers.get(key) ?? this.#createPeer(to, key);
    if (peer !== undefined && options.expectedKey !== undefined) peer.expectedKey = options.expectedKey.slice();
    return peer;
  }

  #createPeer(address: UdpAddress, key: string): PeerState | undefined {
    if (this.#peers.size >= MAX_LINK_PEERS) {
      this.#drop('peer-cap');
      return undefined;
    }
    const now = this.#clock.now();
    const peer: PeerState = {
      address: { host: address.host, port: address.port },
      key,
      sessions: [],
      queue: [],
      waiters: [],
      replies: new Map(),
      lastReceivedAt: now,
      lastSentAt: -Infinity,
      lastKeepaliveAt: -Infinity,
      lastLivenessCheckAt: -Infinity,
    };
    this.#peers.set(key, peer);
    return peer;
  }

  #remember(peer: PeerState, request: Uint8Array, reply: Reply, forMs = HANDSHAKE_PENDING_MS): void {
    if (peer.replies.size >= MAX_REMEMBERED_REPLIES) {
      const oldest = peer.replies.keys().next();
      if (oldest.done !== true) peer.replies.delete(oldest.value);
    }
    peer.replies.set(handshakeFingerprint(request), { reply, until: this.#clock.now() + forMs });
  }

  /** A keepalive is sealed anew each time: resending old bytes would be refused as a replay. */
  #sendReply(peer: PeerState, reply: Reply): void {
    if (reply.kind === 'datagram') return this.#socketSend(reply.bytes, peer.address);
    this.#counters.add('keepalives-out');
    peer.lastSentAt = this.#clock.now();
    this.#socketSend(reply.session.seal(KEEPALIVE_FRAME), peer.address);
  }

  #transmit(peer: PeerState, session: LinkSession, payload: Uint8Array, now: number): void {
    this.#counters.add('payloads-out');
    peer.lastSentAt = now;
    // A copy: callers may reuse their payload buffer as soon as send() returns.
    this.#observer?.({ direction: 'out', peer: peer.address, payload: payload.slice() });
    // The frame is built in one reused buffer: seal() encrypts it into a new datagram at once.
    encodeLinkFrameInto({ type: 'payload', payload }, this.#frame);
    this.#socketSend(session.seal(this.#frame), peer.address);
  }

  #socketSend(datagram: Uint8Array, to: UdpAddress): void {
    this.#counters.add('datagrams-out');
    this.#socket.send(datagram, to);
  }

  #failPeer(peer: PeerState, error: DeutError, unreachable: boolean): void {
    if (peer.queue.length > 0) this.#drop('queue-dropped', peer.queue.length);
    peer.queue = [];
    this.#rejectWaiters(peer, error);
    if (unreachable) this.emit('unreachable', { address: peer.address });
  }

  #rejectWaiters(peer: PeerState, error: DeutError): void {
    for (const waiter of peer.waiters.splice(0)) waiter.reject(error);
  }

  #info(peer: PeerState, session: LinkSession): LinkSessionInfo {
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
    };
  }

  #drop(reason: string, count = 1): void {
    this.#counters.add(`drop:${reason}`, count);
  }

  #assertOpen(): void {
    if (this.#closed) throw abortedError('LINK_CLOSED', 'link is closed');
  }
}

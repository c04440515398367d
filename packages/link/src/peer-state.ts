/**
 * The state the link's concerns share (PROTOCOL.md §3): `LinkState`, the link-wide part
 * (socket, identity, admission limits, counters, the peer table), and one `PeerState` per
 * peer address, with its sessions (§3.6), handshakes in flight (§3.3), queued payloads and
 * liveness clocks (§3.8). receive.ts, send.ts, peer-handshakes.ts, peer-sessions.ts and
 * timers.ts are functions over these, as wireguard-go's device/ files are methods over its
 * Device and Peer; link.ts is the public face. Nothing here is exported from the package.
 */
import type { EventEmitter } from 'node:events';
import {
  Counters,
  KeyedRateLimiter,
  TokenBucket,
  addressKey,
  silentLogger,
  systemClock,
  type Clock,
  type DeutError,
  type Logger,
  type TimerHandle,
  type UdpAddress,
} from '@deut/common';
import { constantTimeEqual, type KeyPair } from '@deut/crypto';
import type { DatagramSocket } from '@deut/transport';
import { LINK_FRAME_BYTES, type HandshakePayload } from '@deut/wire';
import { LINK_MAX_VERSION, LINK_MIN_VERSION, MAX_LINK_PEERS } from './constants.js';
import { CookieIssuer } from './cookie.js';
import type { LinkCounter, LinkDropReason } from './counters.js';
import type { InitiatorHandshake, ResponderHandshake } from './handshake.js';
import { KnownPeers } from './known-peers.js';
import type { LinkEvents, LinkOptions, LinkPayloadEvent, LinkPayloadHandler, LinkSendOptions, LinkSessionInfo } from './link.js';
import { openMac1Key, responderMac1Key } from './mac-keys.js';
import type { LinkSession } from './session.js';

/** What a remembered handshake datagram is answered with: fixed bytes, or a keepalive sealed anew. */
export type Reply = { readonly kind: 'datagram'; readonly bytes: Uint8Array } | { readonly kind: 'keepalive'; readonly session: LinkSession };

/** Our handshake with a peer, as initiator (§3.3). */
export interface Initiating {
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

/** A peer's handshake with us, half open until its msg3 (§3.3 "Responder state"). */
export interface Responding {
  readonly handshake: ResponderHandshake;
  readonly createdAt: number;
  /** Moves on when a retransmitted msg1 is answered, never past createdAt + HANDSHAKE_RETRANSMIT_SPAN_MS. */
  expiresAt: number;
  /** msg1's ephemeral representative: a retransmitted msg1 (whatever its mac1) gets the same msg2. */
  readonly ephemeral: string;
}

/** Everything the link knows about one peer address. */
export interface PeerState {
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

/** The link-wide state, options resolved to their defaults. */
export class LinkState {
  readonly socket: DatagramSocket;
  readonly identity: KeyPair;
  readonly knownPeers: KnownPeers;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly observer: ((event: LinkPayloadEvent) => void) | undefined;
  /** What our handshake payload says about us (§3.3). */
  readonly payload: HandshakePayload;
  readonly acceptFirstContact: boolean;
  /** mac1 key of a msg1 addressed to us by our key, and of one on first contact (§3.3). */
  readonly ownMac1Key: Uint8Array;
  readonly openMac1Key: Uint8Array;
  /** msg1 admission per source IP, and for the whole node: past it we are under load. */
  readonly perSource: KeyedRateLimiter;
  readonly global: TokenBucket;
  readonly cookies: CookieIssuer;
  /** Where `session`, `pin-mismatch` and `unreachable` are emitted: the Link itself. */
  readonly events: EventEmitter<LinkEvents>;
  readonly peers = new Map<string, PeerState>();
  readonly counters = new Counters<LinkCounter>();
  /** The link frame being sealed (sending is synchronous). */
  readonly frame = new Uint8Array(LINK_FRAME_BYTES);
  /** Half-open responder handshakes, against MAX_PENDING_HANDSHAKES. */
  pending = 0;
  /** When new pins may next be written to the known-peers file (timers.ts `flushPins`). */
  pinsFlushAt = 0;
  handler: LinkPayloadHandler | undefined;
  /** The next tick (timers.ts). */
  timer: TimerHandle | undefined;
  closed = false;

  constructor(options: LinkOptions, events: EventEmitter<LinkEvents>) {
    this.socket = options.socket;
    this.identity = options.identity;
    this.knownPeers = options.knownPeers ?? KnownPeers.inMemory();
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.observer = options.observer;
    this.acceptFirstContact = options.acceptFirstContact ?? true;
    this.payload = { minVersion: LINK_MIN_VERSION, maxVersion: LINK_MAX_VERSION, ephemeralIdentity: options.ephemeralIdentity ?? false };
    this.ownMac1Key = responderMac1Key(this.identity.publicKey);
    this.openMac1Key = openMac1Key();
    const now = (): number => this.clock.now();
    this.perSource = new KeyedRateLimiter(options.handshakeRatePerSource ?? { perSecond: 2, burst: 20 }, now);
    this.global = new TokenBucket(options.handshakeRateGlobal ?? { perSecond: 500, burst: 1000 }, now);
    this.cookies = new CookieIssuer(this.clock);
    this.events = events;
  }

  /** Counts a drop of remote input (or of our own queued sends) under its reason. */
  drop(reason: LinkDropReason, count = 1): void {
    this.counters.add(`drop:${reason}`, count);
  }
}

/**
 * The identity the peer at this address is bound to (PROTOCOL.md §3.7): its pin, else the key
 * of its live sessions (a session binds one identity for its life, rekeys included), else the
 * key a caller told us to expect before any session. Undefined: nothing binds it yet.
 */
export function boundKey(state: LinkState, peer: PeerState): Uint8Array | undefined {
  return state.knownPeers.get(peer.key) ?? peer.sessions[0]?.remoteStatic ?? peer.expectedKey;
}

/**
 * The state of the peer at `to`, made if there is none and the peer table has room.
 * `options.expectedKey` is adopted only while nothing binds the address: a build's next hop
 * or a peer-exchange entry that names a known address with another key is remote input, and
 * must not replace the key of a pinned or live peer (which would break the link at its next
 * rekey). Such a request is refused and counted (`drop:expected-key-mismatch`).
 */
export function peerFor(state: LinkState, to: UdpAddress, options: LinkSendOptions): PeerState | 'peer-cap' | 'key-mismatch' {
  const key = addressKey(to);
  const peer = state.peers.get(key) ?? createPeer(state, to, key);
  if (peer === undefined) return 'peer-cap';
  const expected = options.expectedKey;
  if (expected === undefined) return peer;
  const bound = boundKey(state, peer);
  if (bound === undefined) {
    peer.expectedKey = expected.slice();
  } else if (!constantTimeEqual(bound, expected)) {
    state.drop('expected-key-mismatch');
    return 'key-mismatch';
  }
  return peer;
}

/** A new, empty peer; undefined (and counted) when MAX_LINK_PEERS peers have state. */
export function createPeer(state: LinkState, address: UdpAddress, key: string): PeerState | undefined {
  if (state.peers.size >= MAX_LINK_PEERS) {
    state.drop('peer-cap');
    return undefined;
  }
  const now = state.clock.now();
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
  state.peers.set(key, peer);
  return peer;
}

/** The peer's handshake failed: drop its queue, fail its connects, and maybe say it is unreachable. */
export function failPeer(state: LinkState, peer: PeerState, error: DeutError, unreachable: boolean): void {
  if (peer.queue.length > 0) state.drop('queue-dropped', peer.queue.length);
  peer.queue = [];
  rejectWaiters(peer, error);
  if (unreachable) state.events.emit('unreachable', { address: peer.address });
}

/** Fails every pending connect() to the peer. */
export function rejectWaiters(peer: PeerState, error: DeutError): void {
  for (const waiter of peer.waiters.splice(0)) waiter.reject(error);
}

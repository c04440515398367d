/**
 * DHT remote procedure calls (PROTOCOL.md §11.2): one Noise IK handshake per call. The
 * request is IK message 1, the response message 2, each carrying one DHT body. So:
 *
 * - only the holder of the callee's static key can read a request or write its response
 *   (the endpoint that forwards a tunnelled request learns neither the question nor the
 *   answer);
 * - the caller's static key is authenticated and hidden from observers, and the response
 *   has forward secrecy (ee, se);
 * - a response proves that the contact answered *at the address we sent to*, which is the
 *   only evidence the routing table accepts for an address.
 *
 * A call is matched by its 8-byte rpc id, which is bound into the handshake as prologue.
 * Lost calls are re-sent byte for byte; the callee keeps its answers for a while, keyed by
 * the request's rpc id and ephemeral key, so a retry or a fan-out copy is answered from
 * that cache without a second handshake and without doing the work twice.
 */
import type { Clock, Logger, RateLimit, TimerHandle, UdpAddress } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { Counters, KeyedRateLimiter, ProtocolError, TokenBucket, addressKey, prefixedCodes, silentLogger, systemClock } from '@deut/common';
import { NoiseHandshake, generateKeyPair, randomBytes, toHex, type KeyPair } from '@deut/crypto';
import {
  DHT_HEADER_BYTES,
  DHT_PADDED_REQUEST_BYTES,
  DHT_REQUEST_OVERHEAD_BYTES,
  DHT_RESPONSE_OVERHEAD_BYTES,
  DHT_RPC_ID_BYTES,
  WIRE_ERROR_CODES,
  decodeDhtDatagram,
  decodeDhtRequestBody,
  decodeDhtResponseBody,
  dhtPrologue,
  encodeDhtDatagram,
  encodeDhtRequestBody,
  encodeDhtResponseBody,
  type DhtDatagram,
  type DhtRequestBody,
  type DhtResponseBody,
  wireDropCode,
} from '@deut/wire';
import type { DatagramChannel } from './channel.js';
import { abortedError, timeoutError, transportError } from './errors.js';
import { nodeIdFromPublicKey } from './id.js';

/** A node we can call: where it is and the key it must answer under. */
export interface RemoteNode {
  readonly publicKey: Uint8Array;
  readonly address: UdpAddress;
}

/** A peer whose key the handshake authenticated, and the address it was heard at. */
export interface VerifiedPeer {
  /** nodeIdFromPublicKey(publicKey). */
  readonly id: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly address: UdpAddress;
}

/**
 * Answers one authenticated request; undefined sends no answer (e.g. over a rate limit).
 * `maxBodyBytes` is the largest answer body that keeps the answer datagram no larger than
 * the request (PROTOCOL.md §11.2); a larger answer is not sent.
 */
export type DhtRequestHandler = (body: DhtRequestBody, from: VerifiedPeer, maxBodyBytes: number) => DhtResponseBody | undefined;

/** The result of a call. */
export interface DhtReply {
  readonly body: DhtResponseBody;
  /** The callee, at the address we sent to: proven to hold its key and to answer there. */
  readonly from: VerifiedPeer;
  /** Time from the first send to the answer, in ms. */
  readonly rttMs: number;
}

/** Options of one call. */
export interface CallOptions {
  readonly signal?: AbortSignal | undefined;
  /** Sends of the same request before giving up. @default the RPC's `attempts` */
  readonly attempts?: number;
}

/** Options of {@link DhtRpc}. */
export interface DhtRpcOptions {
  /** This node's DHT key pair (X25519). Never the link identity: see PROTOCOL.md §11.1. */
  readonly identity: KeyPair;
  readonly channel: DatagramChannel;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /**
   * Request types padded to DHT_PADDED_REQUEST_BYTES, so that their answers may be that
   * large. @default find-node and find-value
   */
  readonly padded?: ReadonlySet<DhtRequestBody['type']>;
  /** Sends of one request before it fails. @default 3 */
  readonly attempts?: number;
  /** Calls in flight at once; more are refused at once. @default 2,048 */
  readonly maxPending?: number;
  /** Requests admitted per source address, before any key exchange. @default 100/s, burst 400 */
  readonly perSourceLimit?: RateLimit;
  /** Requests admitted in total, before any key exchange. @default 2,000/s, burst 4,000 */
  readonly globalLimit?: RateLimit;
  /** How long answers are kept for retries and copies. @default 30,000 ms */
  readonly answerCacheMs?: number;
  /** Bytes of cached answers kept at most. @default 4 MiB */
  readonly answerCacheBytes?: number;
  /**
   * How long a settled call's id is remembered, so that further answers to it count as
   * duplicates or late answers rather than unmatched ones. @default 30,000 ms (the callee
   * answers copies from its cache that long)
   */
  readonly settledMemoryMs?: number;
  /** Settled call ids remembered at most (the oldest are forgotten first). @default 4,096 */
  readonly settledMemoryLimit?: number;
}

/** Counter names of {@link DhtRpc.stats}. */
export type DhtRpcCounter =
  | 'calls'
  | 'calls-answered'
  | 'calls-failed'
  | 'calls-refused-overloaded'
  | 'sends'
  | 'resends'
  | 'requests-answered'
  | 'requests-unanswered'
  | 'answers-from-cache'
  // A fan-out copy or a re-send answered too: expected, not a drop.
  | 'answers-duplicate'
  // An answer to a call that had already failed or been aborted: its attempts timed out too soon.
  | 'answers-late'
  | `drop:${DhtRpcDropReason}`;

/**
 * Why {@link DhtRpc} dropped a datagram (counted as `drop:<reason>`): malformed outside or
 * inside the handshake (by the wire code), unauthenticated, unmatched, over a rate limit, or
 * an answer larger than its request.
 */
export const DHT_RPC_DROP_REASONS = [
  ...prefixedCodes('datagram-', WIRE_ERROR_CODES),
  ...prefixedCodes('request-body-', WIRE_ERROR_CODES),
  ...prefixedCodes('answer-body-', WIRE_ERROR_CODES),
  'request-unauthenticated',
  'answer-unauthenticated',
  // An answer to no call of ours that we remember: answers to settled calls are counted apart.
  'answer-unmatched',
  'answer-over-request',
  'rate-global',
  'rate-source',
] as const;

/** One of {@link DHT_RPC_DROP_REASONS}. */
export type DhtRpcDropReason = (typeof DHT_RPC_DROP_REASONS)[number];

/**
 * Bounds of the attempt timeout (RFC 6298 style). The floor is well above a tunnel's idle
 * round trip (a few ms) because a callee's queue, not the path, dominates under load: a
 * floor near the idle RTT turns every burst into re-sends and evictions.
 */
const MIN_ATTEMPT_MS = 500;
const MAX_ATTEMPT_MS = 5_000;
const INITIAL_ATTEMPT_MS = 1_000;

/** Requests whose answers can outgrow them unpadded (NODES, VALUES). */
const PADDED_BY_DEFAULT: ReadonlySet<DhtRequestBody['type']> = new Set(['find-node', 'find-value']);
/** Request body length that makes a request datagram exactly DHT_PADDED_REQUEST_BYTES. */
const PADDED_BODY_BYTES = DHT_PADDED_REQUEST_BYTES - DHT_HEADER_BYTES - DHT_REQUEST_OVERHEAD_BYTES;

interface Pending {
  readonly rpcId: Uint8Array;
  readonly to: RemoteNode;
  readonly datagram: Uint8Array;
  readonly body: Uint8Array;
  /** Kept to rebuild the handshake if a forged answer spoils it. */
  readonly ephemeral: KeyPair;
  handshake: NoiseHandshake;
  readonly sentAt: number;
  attemptsLeft: number;
  resent: boolean;
  timer: TimerHandle | undefined;
  resolve(reply: DhtReply): void;
  reject(error: Error): void;
}

interface CachedAnswer {
  readonly datagram: Uint8Array;
  readonly until: number;
}

/** Calls other DHT nodes and answers their calls, over one datagram channel. */
export class DhtRpc {
  readonly #identity: KeyPair;
  readonly #channel: DatagramChannel;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #attempts: number;
  readonly #maxPending: number;
  readonly #perSource: KeyedRateLimiter;
  readonly #global: TokenBucket;
  readonly #answerCacheMs: number;
  readonly #answerCacheBytes: number;
  readonly #padded: ReadonlySet<DhtRequestBody['type']>;
  readonly #pending = new Map<string, Pending>();
  /** Calls settled lately, by rpc id: insertion order is time order, so expiry works from the front. */
  readonly #settled = new Map<string, { readonly until: number; readonly answered: boolean }>();
  readonly #settledMemoryMs: number;
  readonly #settledMemoryLimit: number;
  /** Insertion order is time order, so expiry and eviction work from the front. */
  readonly #answers = new Map<string, CachedAnswer>();
  #answerBytes = 0;
  readonly #counters = new Counters<DhtRpcCounter>();
  #handler: DhtRequestHandler = () => undefined;
  /** Hears of every datagram received, before any check: a hook for tests and metrics. */
  observer: ((datagram: Uint8Array, from: UdpAddress) => void) | undefined;
  #srtt: number | undefined;
  #rttvar = 0;
  #closed = false;

  constructor(options: DhtRpcOptions) {
    this.#identity = options.identity;
    this.#channel = options.channel;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#attempts = options.attempts ?? 3;
    this.#maxPending = options.maxPending ?? 2_048;
    const now = (): number => this.#clock.now();
    this.#perSource = new KeyedRateLimiter(options.perSourceLimit ?? { perSecond: 100, burst: 400 }, now);
    this.#global = new TokenBucket(options.globalLimit ?? { perSecond: 2_000, burst: 4_000 }, now);
    this.#answerCacheMs = options.answerCacheMs ?? 30_000;
    this.#answerCacheBytes = options.answerCacheBytes ?? 4 * 1024 * 1024;
    this.#padded = options.padded ?? PADDED_BY_DEFAULT;
    this.#settledMemoryMs = options.settledMemoryMs ?? 30_000;
    this.#settledMemoryLimit = options.settledMemoryLimit ?? 4_096;
    this.#channel.onDatagram((data, from) => this.#receive(data, from));
  }

  /** Sets the handler of authenticated requests. */
  handle(handler: DhtRequestHandler): void {
    this.#handler = handler;
  }

  /**
   * Calls `to` and resolves with its authenticated answer.
   * @throws DeutError `CALL_TIMEOUT` (kind timeout) after the last attempt, `OVERLOADED`
   *   (transport) with too many calls in flight, `ABORTED`, `CLOSED`
   */
  call(to: RemoteNode, body: DhtRequestBody, options: CallOptions = {}): Promise<DhtReply> {
    if (this.#closed) return Promise.reject(abortedError('CLOSED', 'dht rpc closed'));
    if (options.signal?.aborted === true) return Promise.reject(abortedError('ABORTED', 'call aborted'));
    if (this.#pending.size >= this.#maxPending) {
      this.#counters.add('calls-refused-overloaded');
      return Promise.reject(transportError('OVERLOADED', `${this.#maxPending} dht calls in flight`));
    }
    const rpcId = randomBytes(DHT_RPC_ID_BYTES);
    const key = toHex(rpcId);
    const unpadded = encodeDhtRequestBody(body);
    const padding = this.#padded.has(body.type) ? Math.max(0, PADDED_BODY_BYTES - unpadded.length) : 0;
    const plaintext = padding > 0 ? encodeDhtRequestBody({ ...body, padding }) : unpadded;
    const ephemeral = generateKeyPair();
    const handshake = this.#initiate(rpcId, to.publicKey, ephemeral);
    const datagram = encodeDhtDatagram({ kind: 'request', rpcId, message: handshake.writeMessage(plaintext) });
    this.#counters.add('calls');
    return new Promise<DhtReply>((resolve, reject) => {
      const signal = options.signal;
      const onAbort = (): void => pending.reject(abortedError('ABORTED', 'call aborted'));
      const settle = (answered: boolean): boolean => {
        if (this.#pending.get(key) !== pending) return false;
        this.#pending.delete(key);
        this.#rememberSettled(key, answered);
        if (pending.timer !== undefined) this.#clock.clearTimeout(pending.timer);
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const pending: Pending = {
        rpcId,
        to,
        datagram,
        body: plaintext,
        ephemeral,
        handshake,
        sentAt: this.#clock.now(),
        attemptsLeft: Math.max(1, options.attempts ?? this.#attempts),
        resent: false,
        timer: undefined,
        resolve: (reply) => {
          if (settle(true)) resolve(reply);
        },
        reject: (error) => {
          if (settle(false)) reject(error);
        },
      };
      this.#pending.set(key, pending);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#sendAttempt(key, pending, 0);
    });
  }

  /** How long the first send of a call waits for its answer now (adapts to round trips). */
  get attemptTimeoutMs(): number {
    return this.#attemptTimeout();
  }

  /** Calls in flight, answers cached, and counters (drops by reason as `drop:*`). */
  stats(): { pending: number; cachedAnswers: number; cachedAnswerBytes: number; attemptTimeoutMs: number; counters: CounterSnapshot<DhtRpcCounter> } {
    return {
      pending: this.#pending.size,
      cachedAnswers: this.#answers.size,
      cachedAnswerBytes: this.#answerBytes,
      attemptTimeoutMs: this.#attemptTimeout(),
      counters: this.#counters.snapshot(),
    };
  }

  /** Fails every call in flight and stops receiving. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#channel.close();
    for (const pending of [...this.#pending.values()]) pending.reject(abortedError('CLOSED', 'dht rpc closed'));
    this.#answers.clear();
    this.#answerBytes = 0;
    this.#settled.clear();
  }

  #rememberSettled(key: string, answered: boolean): void {
    const now = this.#clock.now();
    for (const [id, entry] of this.#settled) {
      if (entry.until > now && this.#settled.size < this.#settledMemoryLimit) break;
      this.#settled.delete(id);
    }
    this.#settled.set(key, { until: now + this.#settledMemoryMs, answered });
  }

  #initiate(rpcId: Uint8Array, remoteStaticKey: Uint8Array, ephemeral: KeyPair): NoiseHandshake {
    return new NoiseHandshake({
      pattern: 'IK',
      initiator: true,
      prologue: dhtPrologue(rpcId),
      staticKeyPair: this.#identity,
      remoteStaticKey,
      // A copy: the handshake zeroes the ephemeral it was given when it completes.
      ephemeralKeyPair: { publicKey: ephemeral.publicKey.slice(), privateKey: ephemeral.privateKey.slice() },
    });
  }

  #sendAttempt(key: string, pending: Pending, attempt: number): void {
    pending.attemptsLeft--;
    pending.resent ||= attempt > 0;
    this.#counters.add(attempt === 0 ? 'sends' : 'resends');
    this.#channel.send(pending.to.address, pending.datagram);
    const wait = Math.min(MAX_ATTEMPT_MS, this.#attemptTimeout() * 2 ** attempt);
    pending.timer = this.#clock.setTimeout(() => {
      if (this.#pending.get(key) !== pending) return;
      if (pending.attemptsLeft > 0) return this.#sendAttempt(key, pending, attempt + 1);
      this.#counters.add('calls-failed');
      pending.reject(timeoutError('CALL_TIMEOUT', `no answer after ${attempt + 1} attempts`));
    }, wait);
  }

  /** RFC 6298: smoothed RTT plus four deviations, within bounds. */
  #attemptTimeout(): number {
    if (this.#srtt === undefined) return INITIAL_ATTEMPT_MS;
    return Math.min(MAX_ATTEMPT_MS, Math.max(MIN_ATTEMPT_MS, Math.round(this.#srtt + 4 * this.#rttvar)));
  }

  #sampleRtt(rtt: number): void {
    if (this.#srtt === undefined) {
      this.#srtt = rtt;
      this.#rttvar = rtt / 2;
      return;
    }
    this.#rttvar = 0.75 * this.#rttvar + 0.25 * Math.abs(this.#srtt - rtt);
    this.#srtt = 0.875 * this.#srtt + 0.125 * rtt;
  }

  #drop(reason: DhtRpcDropReason): void {
    this.#counters.add(`drop:${reason}`);
  }

  #receive(data: Uint8Array, from: UdpAddress): void {
    if (this.#closed) return;
    this.observer?.(data, from);
    let datagram: DhtDatagram;
    try {
      datagram = decodeDhtDatagram(data);
    } catch (error) {
      if (error instanceof ProtocolError) return this.#drop(`datagram-${wireDropCode(error)}`);
      throw error;
    }
    if (datagram.kind === 'response') this.#receiveAnswer(datagram);
    else this.#receiveRequest(datagram, data.length, from);
  }

  #receiveAnswer(datagram: DhtDatagram): void {
    const key = toHex(datagram.rpcId);
    const pending = this.#pending.get(key);
    if (pending === undefined) {
      // Fan-out sends each call through several tunnels and the callee answers every copy:
      // the second answer of a healthy call lands here. Unauthenticated, like an unmatched one.
      const settled = this.#settled.get(key);
      if (settled === undefined || settled.until <= this.#clock.now()) return this.#drop('answer-unmatched');
      this.#counters.add(settled.answered ? 'answers-duplicate' : 'answers-late');
      return;
    }
    let plaintext: Uint8Array;
    try {
      plaintext = pending.handshake.readMessage(datagram.message);
    } catch {
      // Whoever saw the request (the endpoint, say) can forge an answer with its rpc id;
      // it fails here and the real answer may still come, so rebuild the spoiled handshake.
      this.#drop('answer-unauthenticated');
      pending.handshake = this.#initiate(pending.rpcId, pending.to.publicKey, pending.ephemeral);
      pending.handshake.writeMessage(pending.body);
      return;
    }
    let body: DhtResponseBody;
    try {
      body = decodeDhtResponseBody(plaintext);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      // Authenticated but malformed: the callee itself is broken; the call fails now.
      this.#drop(`answer-body-${wireDropCode(error)}`);
      this.#counters.add('calls-failed');
      pending.reject(error);
      return;
    }
    const rttMs = this.#clock.now() - pending.sentAt;
    // Karn's rule: an answer to a re-sent request does not say which send it answers.
    if (!pending.resent) this.#sampleRtt(rttMs);
    this.#counters.add('calls-answered');
    const publicKey = pending.to.publicKey;
    pending.resolve({ body, rttMs, from: { id: nodeIdFromPublicKey(publicKey), publicKey, address: pending.to.address } });
  }

  #receiveRequest(datagram: DhtDatagram, requestBytes: number, from: UdpAddress): void {
    const now = this.#clock.now();
    // The rpc id and the ephemeral key name one request: identical copies share an answer,
    // a forgery with a copied rpc id does not.
    const cacheKey = toHex(datagram.rpcId) + toHex(datagram.message.subarray(0, 32));
    const cached = this.#answers.get(cacheKey);
    if (cached !== undefined && cached.until > now) {
      // The key names the request, not its length: a cut-down copy gets nothing larger than itself.
      if (cached.datagram.length > requestBytes) return this.#drop('answer-over-request');
      this.#counters.add('answers-from-cache');
      this.#channel.send(from, cached.datagram);
      return;
    }
    // Limits come before the key exchange: they are what keeps a flood from costing DHs.
    if (!this.#global.take()) return this.#drop('rate-global');
    if (!this.#perSource.take(addressKey(from))) return this.#drop('rate-source');
    const handshake = new NoiseHandshake({ pattern: 'IK', initiator: false, prologue: dhtPrologue(datagram.rpcId), staticKeyPair: this.#identity });
    let plaintext: Uint8Array;
    try {
      plaintext = handshake.readMessage(datagram.message);
    } catch {
      return this.#drop('request-unauthenticated');
    }
    let body: DhtRequestBody;
    try {
      body = decodeDhtRequestBody(plaintext);
    } catch (error) {
      if (error instanceof ProtocolError) return this.#drop(`request-body-${wireDropCode(error)}`);
      throw error;
    }
    const publicKey = handshake.remoteStaticKey;
    if (publicKey === null) return this.#drop('request-unauthenticated');
    let answer: DhtResponseBody | undefined;
    const maxBodyBytes = requestBytes - DHT_HEADER_BYTES - DHT_RESPONSE_OVERHEAD_BYTES;
    try {
      answer = this.#handler(body, { id: nodeIdFromPublicKey(publicKey), publicKey, address: from }, maxBodyBytes);
    } catch (error) {
      this.#logger.error('dht: request handler failed', { error: String(error) });
      answer = undefined;
    }
    if (answer === undefined) {
      this.#counters.add('requests-unanswered');
      return;
    }
    const answerBody = encodeDhtResponseBody(answer);
    // Never more bytes to an unauthenticated address than it sent (PROTOCOL.md §11.2).
    if (answerBody.length > maxBodyBytes) return this.#drop('answer-over-request');
    const reply = encodeDhtDatagram({ kind: 'response', rpcId: datagram.rpcId, message: handshake.writeMessage(answerBody) });
    this.#cacheAnswer(cacheKey, reply, now);
    this.#counters.add('requests-answered');
    this.#channel.send(from, reply);
  }

  #cacheAnswer(key: string, datagram: Uint8Array, now: number): void {
    for (const [k, entry] of this.#answers) {
      if (entry.until > now && this.#answerBytes + datagram.length <= this.#answerCacheBytes) break;
      this.#answers.delete(k);
      this.#answerBytes -= entry.datagram.length;
    }
    this.#answers.set(key, { datagram, until: now + this.#answerCacheMs });
    this.#answerBytes += datagram.length;
  }
}

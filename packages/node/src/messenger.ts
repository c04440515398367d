/**
 * Messages between masters (PROTOCOL.md §7): each request has a
 * random id, goes out through `fanout` distinct tunnels chosen at random, and names some of
 * our endpoints to reply to. The reply may come back through any tunnel from any address
 * and is matched by id. Receivers deliver each id once and answer duplicates from a cache.
 * Unanswered requests are retried through other tunnels with backoff until their deadline.
 */
import {
  Counters,
  ProtocolError,
  silentLogger,
  systemClock,
  type Clock,
  type Logger,
  type TimerHandle,
  type UdpAddress,
} from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { randomBytes } from '@deut/crypto';
import type { OwnedTunnel } from '@deut/tunnel';
import {
  MAX_ENVELOPE_BYTES,
  MAX_REPLY_TO,
  MESSAGE_ID_BYTES,
  decodeEnvelope,
  encodeEnvelope,
  encodeTooLarge,
  envelopeBytes,
  tooLargeSize,
  type Envelope,
} from '@deut/wire';
import { abortedError, retryError, timeoutError } from './errors.js';
import type { TunnelPool } from './pool.js';
import { sample } from './random.js';
import { RetryLimiter } from './retry-limiter.js';

/** Serves requests arriving at this master's endpoints; return the reply (or nothing). */
export type RequestHandler = (payload: Uint8Array, from: UdpAddress) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/**
 * Longest wait of a retry: a reply later than this is rarer than a loss, so another
 * attempt serves the request better than more patience.
 */
export const MAX_ATTEMPT_WAIT_MS = 4_000;

/** Options of a request. */
export interface RequestOptions {
  /** Give up after this long. @default 10,000 */
  readonly timeoutMs?: number;
  /**
   * First attempt's wait for a reply; grows ×1.5 per retry up to {@link MAX_ATTEMPT_WAIT_MS}
   * (or this value, if larger). @default 8 × the pool's median
   * probe round trip (a request crosses two tunnels each way), clamped to 200..1,000 ms;
   * 1,000 ms before any probe has been answered
   */
  readonly attemptTimeoutMs?: number;
  /** Cancels the request. */
  readonly signal?: AbortSignal;
}

/** Options of {@link Messenger}. */
export interface MessengerOptions {
  readonly pool: TunnelPool;
  /** Sends one datagram through a tunnel (fragmenting it). */
  readonly transmit: (tunnel: OwnedTunnel, to: UdpAddress, data: Uint8Array) => void;
  /** Tunnels each message goes through. @default 2 */
  readonly fanout?: number;
  /** How long a message id is remembered. @default 60,000 */
  readonly dedupWindowMs?: number;
  /** Most ids remembered. @default 65,536 */
  readonly dedupLimit?: number;
  /** Most retries outstanding at once; more wait in line (PROTOCOL.md §7). @default 128 */
  readonly maxRetriesInFlight?: number;
  /** @default systemClock */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly logger?: Logger;
}

interface Pending {
  readonly resolve: (reply: Uint8Array) => void;
  readonly reject: (error: Error) => void;
  timer: TimerHandle | undefined;
  readonly used: Set<number>;
  lastTunnels: OwnedTunnel[];
  /** Size the responder asked the request to be padded to (TOO_LARGE), 0 before any. */
  padTo: number;
  /** Sends the next attempt now, with the current padding. */
  resendNow: () => void;
  /** The current attempt is a retry and holds a slot of the retry limiter. */
  holdsRetrySlot: boolean;
  /** The next retry, while it waits in line for a slot. */
  queuedRetry: (() => void) | undefined;
}

interface Seen {
  readonly until: number;
  readonly messageId: Uint8Array;
  /** The encoded response, once the handler answered. */
  response: Uint8Array | undefined;
  replyTo: readonly UdpAddress[];
  /**
   * Bytes we may still send because of the latest request copy: that copy's size, spent
   * by the one answer it gets (PROTOCOL.md §7, amplification).
   */
  budget: number;
}

/** Counter names of {@link Messenger.stats}. */
export type MessengerCounter =
  | 'requests'
  | 'request-copies-sent'
  | 'requests-padded'
  | 'timeouts'
  | 'retries'
  | 'retries-deferred'
  | 'responses'
  | 'responses-unmatched'
  | 'duplicates-dropped'
  | 'too-large-unmatched'
  | 'requests-served'
  | 'oneway-received'
  | 'handler-errors'
  | MessengerReplyCounter
  | `drop:${MessengerDropReason}`;

/** Why the messenger dropped a request or its reply; metrics list them all at 0. */
export const MESSENGER_DROP_REASONS = ['no-handler', 'reply-over-request', 'no-tunnel-for-reply'] as const;

/** One of {@link MESSENGER_DROP_REASONS}. */
export type MessengerDropReason = (typeof MESSENGER_DROP_REASONS)[number];

/** What a reply was: the response itself, or TOO_LARGE asking for a padded request. */
type MessengerReplyCounter = 'response-copies-sent' | 'too-large-sent';

/** Request/response and one-way messages over a tunnel pool. */
export class Messenger {
  readonly #pool: TunnelPool;
  readonly #transmit: MessengerOptions['transmit'];
  readonly #fanout: number;
  readonly #dedupWindowMs: number;
  readonly #dedupLimit: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #pending = new Map<string, Pending>();
  /** Ids of requests we served and of responses we received, for dedup. */
  readonly #seen = new Map<string, Seen>();
  readonly #counters = new Counters<MessengerCounter>();
  readonly #retries: RetryLimiter;
  #handler: RequestHandler | undefined;

  constructor(options: MessengerOptions) {
    this.#pool = options.pool;
    this.#transmit = options.transmit;
    this.#fanout = options.fanout ?? 2;
    this.#dedupWindowMs = options.dedupWindowMs ?? 60_000;
    this.#dedupLimit = options.dedupLimit ?? 65_536;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#retries = new RetryLimiter(options.maxRetriesInFlight ?? 128);
  }

  /** Sets the handler of requests (and one-way messages) that arrive at our endpoints. */
  handle(handler: RequestHandler): void {
    this.#handler = handler;
  }

  /**
   * Sends a request to `to` (another master's endpoint, or several endpoints of the same
   * master) and resolves with the reply. With several addresses, copies and retries are
   * spread over them, so a dead endpoint costs one attempt, not the request.
   */
  async request(to: UdpAddress | readonly UdpAddress[], payload: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
    const targets: readonly UdpAddress[] = Array.isArray(to) ? to : [to as UdpAddress];
    if (targets.length === 0) throw new RangeError('request: no destination');
    const deadline = this.#clock.now() + (options.timeoutMs ?? 10_000);
    const signal = options.signal;
    if (signal?.aborted === true) throw abortedError('ABORTED', 'request aborted');
    await this.#pool.ready(1, signal);
    const messageId = randomBytes(MESSAGE_ID_BYTES);
    const key = Buffer.from(messageId).toString('hex');
    const errors: unknown[] = [];
    const firstWait = options.attemptTimeoutMs ?? this.#adaptiveAttemptTimeout();
    this.#counters.add('requests');
    return new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => finish(undefined, abortedError('ABORTED', 'request aborted'));
      const finish = (reply: Uint8Array | undefined, error?: Error): void => {
        const pending = this.#pending.get(key);
        if (pending === undefined) return;
        this.#pending.delete(key);
        if (pending.timer !== undefined) this.#clock.clearTimeout(pending.timer);
        signal?.removeEventListener('abort', onAbort);
        this.#remember(key, messageId, [], 0);
        if (reply !== undefined) resolve(reply);
        else reject(error ?? abortedError('CLOSED', 'request ended'));
        // Last: the freed slot may start another request's retry at once.
        this.#leaveRetryLine(pending);
        this.#releaseRetrySlot(pending);
      };
      let attempts = 0;
      const pending: Pending = {
        resolve: (reply) => finish(reply),
        reject: (error) => finish(undefined, error),
        timer: undefined,
        used: new Set(),
        lastTunnels: [],
        padTo: 0,
        resendNow: () => {
          if (pending.timer !== undefined) this.#clock.clearTimeout(pending.timer);
          this.#leaveRetryLine(pending);
          attempt(attempts);
        },
        holdsRetrySlot: false,
        queuedRetry: undefined,
      };
      this.#pending.set(key, pending);
      signal?.addEventListener('abort', onAbort, { once: true });
      const attempt = (n: number): void => {
        if (this.#pending.get(key) !== pending) return;
        attempts = n + 1;
        const tunnels = this.#pool.pick(this.#fanout, pending.used);
        if (tunnels.length === 0) {
          errors.push(timeoutError('NO_TUNNELS', 'no usable tunnel'));
        } else {
          const replyTo = this.#replyAddresses();
          const padding = Math.max(0, pending.padTo - envelopeBytes(replyTo.length, payload.length));
          const envelope = encodeEnvelope({ kind: 'request', messageId, replyTo, padding, payload });
          tunnels.forEach((tunnel, i) => {
            pending.used.add(tunnel.localId);
            this.#transmit(tunnel, targets[(n * tunnels.length + i) % targets.length]!, envelope);
          });
          pending.lastTunnels = tunnels;
          this.#counters.add('request-copies-sent', tunnels.length);
        }
        const wait = Math.round(Math.max(firstWait, Math.min(firstWait * 1.5 ** n, MAX_ATTEMPT_WAIT_MS)));
        pending.timer = this.#clock.setTimeout(() => attemptTimedOut(n), Math.max(0, Math.min(wait, deadline - this.#clock.now())));
      };
      const timedOut = (): void => {
        this.#counters.add('timeouts');
        pending.reject(retryError('REQUEST_TIMEOUT', `no reply after ${attempts} attempts`, errors));
      };
      const attemptTimedOut = (n: number): void => {
        if (this.#pending.get(key) !== pending) return;
        if (pending.lastTunnels.length > 0) {
          errors.push(timeoutError('ATTEMPT_TIMEOUT', `attempt ${n + 1} unanswered`));
          for (const tunnel of pending.lastTunnels) this.#pool.suspect(tunnel);
          pending.lastTunnels = [];
        }
        this.#releaseRetrySlot(pending);
        if (this.#clock.now() >= deadline) return timedOut();
        const retry = (): void => {
          pending.queuedRetry = undefined;
          pending.holdsRetrySlot = true;
          if (pending.timer !== undefined) this.#clock.clearTimeout(pending.timer);
          this.#counters.add('retries');
          attempt(attempts);
        };
        if (this.#retries.start(retry)) return;
        // Waiting in line for a slot does not move the deadline.
        pending.queuedRetry = retry;
        this.#counters.add('retries-deferred');
        pending.timer = this.#clock.setTimeout(() => {
          if (this.#pending.get(key) === pending) timedOut();
        }, Math.max(0, deadline - this.#clock.now()));
      };
      attempt(0);
    });
  }

  /**
   * Offers a datagram that arrived through one of our tunnels. Returns true if it was a
   * message envelope (consumed here), false if it is plain data for the application.
   */
  deliver(from: UdpAddress, data: Uint8Array): boolean {
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(data);
    } catch (error) {
      if (error instanceof ProtocolError) return false;
      throw error;
    }
    const key = Buffer.from(envelope.messageId).toString('hex');
    switch (envelope.kind) {
      case 'too-large': {
        const pending = this.#pending.get(key);
        const size = tooLargeSize(envelope);
        if (pending === undefined) this.#counters.add('too-large-unmatched');
        else if (size <= pending.padTo) this.#counters.add('duplicates-dropped');
        else {
          // The responder has run the handler and keeps the response: the same id, padded
          // to `size`, fetches it. Re-send at once rather than wait for the attempt timer.
          this.#counters.add('requests-padded');
          pending.padTo = size;
          pending.resendNow();
        }
        return true;
      }
      case 'response': {
        const pending = this.#pending.get(key);
        if (pending !== undefined) {
          this.#counters.add('responses');
          pending.resolve(envelope.payload);
        } else {
          this.#counters.add(this.#seen.has(key) ? 'duplicates-dropped' : 'responses-unmatched');
        }
        return true;
      }
      case 'request':
      case 'oneway':
        this.#serve(key, envelope, from, data.length);
        return true;
    }
  }

  /** Counters (requests, responses, retries, timeouts, duplicates dropped, served) and retries in flight. */
  stats(): { pending: number; remembered: number; retries: ReturnType<RetryLimiter['stats']>; counters: CounterSnapshot<MessengerCounter> } {
    return { pending: this.#pending.size, remembered: this.#seen.size, retries: this.#retries.stats(), counters: this.#counters.snapshot() };
  }

  #leaveRetryLine(pending: Pending): void {
    if (pending.queuedRetry === undefined) return;
    this.#retries.cancel(pending.queuedRetry);
    pending.queuedRetry = undefined;
  }

  #releaseRetrySlot(pending: Pending): void {
    if (!pending.holdsRetrySlot) return;
    pending.holdsRetrySlot = false;
    this.#retries.release();
  }

  /** Fails every pending request. */
  close(): void {
    for (const pending of [...this.#pending.values()]) pending.reject(abortedError('CLOSED', 'node closed'));
    this.#seen.clear();
  }

  #serve(key: string, envelope: Envelope, from: UdpAddress, bytes: number): void {
    const replyTo = envelope.replyTo.length > 0 ? envelope.replyTo : [from];
    const seen = this.#seen.get(key);
    if (seen !== undefined && seen.until > this.#clock.now()) {
      this.#counters.add('duplicates-dropped');
      // The first answer may have been lost: send it again rather than run the handler
      // twice, to the addresses this copy names (a retry names the requester's current
      // endpoints; the first copy's may be gone). A reply still being computed goes there
      // too, within the budget of this copy, the latest.
      seen.replyTo = replyTo;
      seen.budget = bytes;
      if (seen.response !== undefined) this.#answer(seen);
      return;
    }
    const handler = this.#handler;
    if (handler === undefined) return this.#counters.add('drop:no-handler');
    const entry = this.#remember(key, envelope.messageId, replyTo, bytes);
    this.#counters.add(envelope.kind === 'request' ? 'requests-served' : 'oneway-received');
    Promise.resolve()
      .then(() => handler(envelope.payload, from))
      .then(
        (reply) => {
          if (envelope.kind !== 'request' || reply === undefined) return;
          const response = encodeEnvelope({ kind: 'response', messageId: envelope.messageId, replyTo: [], payload: reply });
          entry.response = response;
          this.#answer(entry);
        },
        (error: unknown) => {
          this.#counters.add('handler-errors');
          // The application's error text may quote the request it failed on: it is logged as
          // payload (scrubbed unless --unsafe-logs); only the error's class is always shown.
          this.#logger.warn('messenger: request handler failed', { error: error instanceof Error ? error.name : typeof error, payload: String(error) });
        },
      );
  }

  /**
   * Answers the latest copy of a served request, never with more bytes than that copy had:
   * nothing authenticates its reply addresses, so a spoofer could aim a large response at
   * a victim (QUIC's anti-amplification rule, RFC 9000 §8; WireGuard answers a handshake
   * with less than it received). The response goes out in as many copies (up to `fanout`)
   * as fit; if not even one fits, a TOO_LARGE asks the requester to send the same id padded
   * to the size that lets every copy fit, and the cached response answers that copy.
   */
  #answer(entry: Seen): void {
    const response = entry.response!;
    const budget = entry.budget;
    entry.budget = 0;
    const copies = Math.min(this.#fanout, Math.floor(budget / response.length));
    if (copies > 0) return this.#reply(response, entry.replyTo, copies, 'response-copies-sent');
    const tooLarge = encodeTooLarge(entry.messageId, Math.min(MAX_ENVELOPE_BYTES, response.length * this.#fanout));
    const tooLargeCopies = Math.min(this.#fanout, Math.floor(budget / tooLarge.length));
    if (tooLargeCopies === 0) return this.#counters.add('drop:reply-over-request');
    this.#reply(tooLarge, entry.replyTo, tooLargeCopies, 'too-large-sent');
  }

  /** Sends `copies` copies of a response to reply addresses, each through a different tunnel. */
  #reply(response: Uint8Array, replyTo: readonly UdpAddress[], copies: number, counter: MessengerReplyCounter): void {
    const tunnels = this.#pool.pick(copies);
    if (tunnels.length === 0) return this.#counters.add('drop:no-tunnel-for-reply');
    const targets = sample(replyTo, tunnels.length);
    tunnels.forEach((tunnel, i) => this.#transmit(tunnel, targets[i % targets.length]!, response));
    this.#counters.add(counter, tunnels.length);
  }

  /**
   * How long the first attempt waits: holepunch's dht-rpc adapts its timeout to measured
   * round trips; a flat second would leave few attempts within a deadline on fast paths.
   */
  #adaptiveAttemptTimeout(): number {
    const rtt = this.#pool.medianRttMs();
    if (rtt === undefined) return 1_000;
    return Math.min(1_000, Math.max(200, Math.round(8 * rtt)));
  }

  /** Endpoints of random usable tunnels, for `replyTo`. */
  #replyAddresses(): UdpAddress[] {
    return this.#pool.pick(Math.min(MAX_REPLY_TO, Math.max(this.#fanout, 2))).map((t) => t.endpoint);
  }

  #remember(key: string, messageId: Uint8Array, replyTo: readonly UdpAddress[], budget: number): Seen {
    const now = this.#clock.now();
    // Insertion order is time order: drop expired ids from the front, then the oldest if full.
    for (const [id, seen] of this.#seen) {
      if (seen.until > now && this.#seen.size < this.#dedupLimit) break;
      this.#seen.delete(id);
    }
    const entry: Seen = { until: now + this.#dedupWindowMs, messageId: messageId.slice(), response: undefined, replyTo, budget };
    this.#seen.set(key, entry);
    return entry;
  }
}

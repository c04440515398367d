/**
 * The DHT role of a master (PROTOCOL.md §11): a {@link DhtNode} whose datagrams go through the
 * master's tunnels by way of a {@link TunnelSocket}, so DHT peers only ever see endpoint
 * addresses. Its DHT key is its own, never the link identity (PROTOCOL.md §11.1). When a
 * tunnel goes (rotation or death) the contact address peers hold may be gone with it, so
 * the role re-announces through the current tunnels, once per burst of departures. An
 * announce that nobody answered (every tunnel was gone: a partition, a dead uplink) is owed
 * until one is answered: it is tried again when a tunnel is built and on a backoff timer, or
 * peers would keep a dead address for us until the next rotation.
 */
import type { Clock, Logger, TimerHandle } from '@deut/common';
import { generateKeyPair, type KeyPair } from '@deut/crypto';
import { DhtNode, channelFromSocket, parseDhtContact, type DhtNodeOptions, type RemoteNode } from '@deut/dht';
import type { TunnelSocket } from './tunnel-socket.js';

/** Options of the DHT role (`DeutNode.start({ dht: { ... } })`). */
export interface DeutDhtOptions {
  /** The DHT key pair; a fresh one per start if absent (a new DHT identity each run). */
  readonly identity?: KeyPair;
  /** Nodes to join through: contacts or `<public key hex>@host:port` strings. */
  readonly bootstrap?: ReadonlyArray<RemoteNode | string>;
  /** Copies of each DHT datagram, through distinct tunnels. @default the node's fanout */
  readonly fanout?: number;
  /** Wait after a tunnel goes before re-announcing, so one rotation wave costs one announce. @default 1,000 ms */
  readonly announceDelayMs?: number;
  /** Longest wait between tries of an announce nobody answered (the wait doubles from announceDelayMs). @default 30,000 ms */
  readonly announceRetryMaxMs?: number;
  /** Kademlia tuning. */
  readonly tuning?: Omit<DhtNodeOptions, 'identity' | 'channel' | 'bootstrap' | 'clock' | 'logger'>;
}

/** A master's DHT node over its tunnels. */
export class DhtRole {
  readonly dht: DhtNode;
  readonly #socket: TunnelSocket;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #announceDelayMs: number;
  readonly #announceRetryMaxMs: number;
  #announceTimer: TimerHandle | undefined;
  #announceDueAt = 0;
  #announcing = false;
  /** An announce was asked for while one ran: the running one may have used the old tunnels. */
  #announceAgain = false;
  /** The latest announce reached nobody: peers may hold only dead addresses for us. */
  #announceOwed = false;
  #retryDelayMs: number;
  #closed = false;

  constructor(socket: TunnelSocket, options: DeutDhtOptions, clock: Clock, logger: Logger) {
    this.#socket = socket;
    this.#clock = clock;
    this.#logger = logger;
    this.#announceDelayMs = options.announceDelayMs ?? 1_000;
    this.#announceRetryMaxMs = Math.max(this.#announceDelayMs, options.announceRetryMaxMs ?? 30_000);
    this.#retryDelayMs = this.#announceDelayMs;
    // Bound now, so requests are heard before we send anything; unref'd, because the node's
    // own port keeps the process alive and the DHT must not outlive the node.
    socket.bind();
    socket.unref();
    const bootstrap = (options.bootstrap ?? []).map((b) => (typeof b === 'string' ? parseDhtContact(b) : b));
    this.dht = new DhtNode({
      ...options.tuning,
      identity: options.identity ?? generateKeyPair(),
      channel: channelFromSocket(socket, (error) => logger.debug('dht: send failed', { error: error.message })),
      bootstrap,
      clock,
      logger,
    });
    if (bootstrap.length > 0) {
      this.dht.join().catch((error: unknown) => logger.warn('dht: join failed; retrying at the next upkeep', { error: String(error) }));
    }
  }

  /** One of our tunnels went: re-announce through the others once the wave has passed. */
  tunnelGone(): void {
    this.#schedule(this.#announceDelayMs);
  }

  /** A tunnel was built: if our last announce reached nobody, this tunnel may reach them now. */
  tunnelBuilt(): void {
    if (this.#announceOwed) this.#schedule(this.#announceDelayMs);
  }

  /** Arms the announce timer for `delayMs` from now, unless it is armed to fire sooner. */
  #schedule(delayMs: number): void {
    if (this.#closed) return;
    const dueAt = this.#clock.now() + delayMs;
    if (this.#announceTimer !== undefined) {
      if (this.#announceDueAt <= dueAt) return;
      this.#clock.clearTimeout(this.#announceTimer);
    }
    this.#announceDueAt = dueAt;
    this.#announceTimer = this.#clock.setTimeout(() => {
      this.#announceTimer = undefined;
      void this.#announce();
    }, delayMs);
  }

  async #announce(): Promise<void> {
    if (this.#closed) return;
    if (this.#announcing) {
      this.#announceAgain = true;
      return;
    }
    // An empty table is join's to fill (it retries at the next upkeep): nobody to tell, and
    // whoever contacts us later verifies the address they heard us from.
    if (this.dht.table.size === 0) return;
    this.#announcing = true;
    let answered = 0;
    try {
      answered = await this.dht.announce();
    } catch (error) {
      this.#logger.debug('dht: announce failed', { error: String(error) });
    }
    this.#announcing = false;
    if (this.#closed) return;
    this.#announceOwed = answered === 0;
    if (this.#announceAgain) {
      this.#announceAgain = false;
      this.#schedule(this.#announceDelayMs);
    } else if (this.#announceOwed) {
      this.#logger.debug('dht: announce reached nobody; trying again', { inMs: this.#retryDelayMs });
      this.#schedule(this.#retryDelayMs);
      this.#retryDelayMs = Math.min(this.#retryDelayMs * 2, this.#announceRetryMaxMs);
    } else {
      this.#retryDelayMs = this.#announceDelayMs;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#announceTimer !== undefined) this.#clock.clearTimeout(this.#announceTimer);
    this.dht.close();
    this.#socket.close();
  }
}

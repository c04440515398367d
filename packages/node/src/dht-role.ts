/**
 * The DHT role of a master (DESIGN.md §4): a {@link DhtNode} whose datagrams go through the
 * master's tunnels by way of a {@link TunnelSocket}, so DHT peers only ever see endpoint
 * addresses. Its DHT key is its own, never the link identity (PROTOCOL.md §11.1). When a
 * tunnel goes (rotation or death) the contact address peers hold may be gone with it, so
 * the role re-announces through the current tunnels, once per burst of departures.
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
  #announceTimer: TimerHandle | undefined;
  #closed = false;

  constructor(socket: TunnelSocket, options: DeutDhtOptions, clock: Clock, logger: Logger) {
    this.#socket = socket;
    this.#clock = clock;
    this.#logger = logger;
    this.#announceDelayMs = options.announceDelayMs ?? 1_000;
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
    if (this.#closed || this.#announceTimer !== undefined) return;
    this.#announceTimer = this.#clock.setTimeout(() => {
      this.#announceTimer = undefined;
      if (this.#closed || this.dht.table.size === 0) return;
      this.dht.announce().catch((error: unknown) => this.#logger.debug('dht: announce failed', { error: String(error) }));
    }, this.#announceDelayMs);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#announceTimer !== undefined) this.#clock.clearTimeout(this.#announceTimer);
    this.dht.close();
    this.#socket.close();
  }
}

/**
 * The deut runtime: one node plays every role at once (ARCHITECTURE.md "Roles"). It owns the node port
 * and its link layer, the tunnel engine (relay, endpoint, master), the endpoint ports, peer
 * exchange, and, as a master, a tunnel pool and messaging. Public API of issue #3.
 */
import { EventEmitter } from 'node:events';
import { networkInterfaces } from 'node:os';
import {
  Counters,
  DeutError,
  KeyedRateLimiter,
  ProtocolError,
  TokenBucket,
  addressKey,
  prefixedCodes,
  silentLogger,
  systemClock,
  type Clock,
  type Logger,
  type RateLimit,
  type TimerHandle,
  type UdpAddress,
} from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { REASSEMBLY_DROP_REASONS } from '@deut/tunnel';
import { WIRE_ERROR_CODES, wireDropCode } from '@deut/wire';
import { cryptoReady, generateKeyPair, type KeyPair } from '@deut/crypto';
import { parseDhtContact, type DhtNode } from '@deut/dht';
import { KnownPeers, Link, type LinkPayloadEvent, type LinkPeer } from '@deut/link';
import { bindUdp } from '@deut/transport';
import { Reassembler, TunnelEngine, fragmentDatagram, type OwnedTunnel, type PathSelection, type RefusalReason } from '@deut/tunnel';
import { MAX_HOPS, decodeCellFrame, decodePeerExchange, encodeCellFrame, encodePeerExchange, isPeerExchange, type CellFrame } from '@deut/wire';
import { configError } from './errors.js';
import { ExitPolicy, type ExitPolicyOptions } from './exit-policy.js';
import { EndpointExits, type SocketFactory } from './exits.js';
import { Messenger, type RequestHandler, type RequestOptions } from './messenger.js';
import { PeerTable, type PeerRecord } from './peers.js';
import { PEER_VETTING_DROP_REASONS, PeerVetting, type PeerVettingCounter } from './peer-vetting.js';
import { TunnelPool, type TunnelInfo } from './pool.js';
import { sample } from './random.js';
import { TunnelSocket, type TunnelSocketOptions } from './tunnel-socket.js';
import { DhtRole, type DeutDhtOptions } from './dht-role.js';
import { HEARTBEAT_TOP_DROPS, Progress, progressPlan, type Heartbeat, type ProgressMilestone, type ProgressPhase, type ProgressSnapshot } from './progress.js';

/** Options of {@link DeutNode.start}. */
export interface DeutNodeOptions {
  /** The node port. @default { host: '127.0.0.1', port: 0 } */
  readonly listen?: UdpAddress;
  /** Relayers to ask for peers first. @default [] */
  readonly bootstrap?: readonly UdpAddress[];
  /** Keep a pool of tunnels (the master role). @default true when `tunnels` is given */
  readonly master?: boolean;
  /** Tunnels in the pool. @default 8 */
  readonly tunnels?: number;
  /** Hops per tunnel, endpoint included (1-7). @default 3 */
  readonly hops?: number;
  /** Tunnels each message goes through. @default 2 */
  readonly fanout?: number;
  /** Most request retries outstanding at once; more wait in line (PROTOCOL.md §7). @default 128 */
  readonly maxRetriesInFlight?: number;
  /** @default 'master' */
  readonly pathSelection?: PathSelection;
  /** Carry others' tunnels (relay and endpoint) and be listed in peer exchange. @default true */
  readonly relay?: boolean;
  /** Let endpoints send to loopback and private addresses (test meshes). @default false */
  readonly allowPrivateExits?: boolean;
  /** Allow two hops of a path in one /16 (test meshes on loopback). @default false */
  readonly allowSameSubnet?: boolean;
  /** Static identity; a fresh one (not pinned by peers) if absent. */
  readonly identity?: KeyPair;
  /** Tell peers not to pin our key. @default true when no identity is given */
  readonly ephemeralIdentity?: boolean;
  /** @default an in-memory store */
  readonly knownPeers?: KnownPeers;
  /** How sockets are bound (real UDP, or an in-memory network in tests). @default real UDP */
  readonly sockets?: SocketFactory;
  /** @default 600,000 */
  readonly tunnelLifetimeMs?: number;
  /** Build a tunnel's replacement this long before it expires. @default 60,000 */
  readonly tunnelRotateBeforeMs?: number;
  /** Stop sending through a tunnel this long before it expires. @default 30,000 */
  readonly tunnelDrainBeforeMs?: number;
  /** @default 5,000 */
  readonly buildTimeoutMs?: number;
  /** Tunnel builds in flight at once. @default 16 */
  readonly buildConcurrency?: number;
  /** Mean time between probes of one tunnel. @default 30,000 */
  readonly probeIntervalMs?: number;
  /** How long a probe waits for its reply. @default 3,000 */
  readonly probeTimeoutMs?: number;
  /** Build requests admitted per neighbour (Tor: 3/s, burst 90). */
  readonly buildRatePerNeighbour?: RateLimit;
  /** Build requests admitted in all. @default { perSecond: 500, burst: 1000 } */
  readonly buildRateGlobal?: RateLimit;
  /** Transit tunnels carried at most. @default 10,000 */
  readonly maxTransit?: number;
  /** Transit tunnels carried at most for one previous hop. @default 2,500 */
  readonly maxTransitPerNeighbour?: number;
  /** Endpoint exit policy beyond `allowPrivateExits`. */
  readonly exit?: Omit<ExitPolicyOptions, 'allowPrivateExits' | 'ownAddresses' | 'clock'>;
  /** How often to ask a neighbour for more peers. @default 30,000 */
  readonly peerExchangeIntervalMs?: number;
  /** @default systemClock */
  readonly clock?: Clock;
  /** @default silentLogger */
  readonly logger?: Logger;
  /** Sees every link payload (tests: what this node sees as a party). */
  readonly observer?: (event: LinkPayloadEvent) => void;
  /**
   * Run a DHT node whose every call goes through this master's tunnels (PROTOCOL.md §11):
   * `true` for defaults. Requires the master role.
   */
  readonly dht?: boolean | DeutDhtOptions;
  /** How often the node emits 'heartbeat'; 0 for never. @default 300,000 (five minutes) */
  readonly heartbeatIntervalMs?: number;
}

/** Where a datagram that reached us came from, and through which of our tunnels. */
export interface DatagramInfo {
  readonly tunnel: number;
  /** Our endpoint it arrived at. */
  readonly endpoint: UdpAddress;
}

/** Events of a node. */
export interface DeutNodeEvents {
  /** A datagram (not a deut message) arrived at one of our endpoints. */
  datagram: [data: Uint8Array, from: UdpAddress, info: DatagramInfo];
  /** An endpoint refused to send one of our datagrams (exit policy or rate cap). */
  'exit-refused': [info: { tunnel: number; reason: number }];
  /** One of our tunnel builds ended (metrics: build latency and outcomes). */
  'build-ended': [outcome: { ok: boolean; ms: number; hops: number }];
  /** A start-up milestone was passed (see {@link DeutNode.progress}); each once, in order. */
  progress: [milestone: ProgressMilestone];
  /** The periodic summary of `heartbeatIntervalMs`. */
  heartbeat: [beat: Heartbeat];
}

/** Enough peers to build paths without waiting: ask often until the table has this many. */
const PEERS_WANTED = 24;
const PEER_LIST_ANSWER = 20;
const PEER_REQUEST_VALID_MS = 30_000;

/**
 * The addresses of this node's own port, which its endpoints must never send to. A node
 * listening on a wildcard address is reachable on every interface address.
 */
function ownNodeAddresses(local: UdpAddress): string[] {
  const wildcard = local.host === '0.0.0.0' || local.host === '::';
  if (!wildcard) return [addressKey(local)];
  const hosts = new Set<string>([local.host]);
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) if (local.host === '::' || entry.family === 'IPv4') hosts.add(entry.address.split('%')[0]!);
  }
  return [...hosts].map((host) => addressKey({ host, port: local.port }));
}

/**
 * Counter names of the node's own `stats().counters`: its master data path and peer
 * exchange, and {@link PeerVetting}'s, which counts into the same bag.
 */
export type NodeCounter = 'datagrams-received' | 'exit-refused' | 'peer-lists-sent' | 'peers-learned' | 'bootstrap-unanswered' | `drop:${NodeDropReason}` | PeerVettingCounter;

/** Why the node itself (not its link, engine or exits) dropped input; metrics list them all at 0. */
export const NODE_DROP_REASONS = [
  'frame-unexpected',
  ...prefixedCodes('frame-', WIRE_ERROR_CODES),
  ...prefixedCodes('reassembly-', REASSEMBLY_DROP_REASONS),
  ...prefixedCodes('pex-', WIRE_ERROR_CODES),
  'pex-unsolicited',
  ...PEER_VETTING_DROP_REASONS,
] as const;

/** One of {@link NODE_DROP_REASONS}. */
export type NodeDropReason = (typeof NODE_DROP_REASONS)[number];

/** How often start-up progress is checked until 100 %, besides the events that move it. */
const PROGRESS_CHECK_MS = 500;

/** How often one bootstrap that does not answer is warned about again. */
export const BOOTSTRAP_WARN_EVERY_MS = 300_000;

/** A deut node. */
export class DeutNode extends EventEmitter<DeutNodeEvents> {
  readonly #link: Link;
  readonly #engine: TunnelEngine;
  readonly #exits: EndpointExits;
  readonly #peers: PeerTable;
  readonly #vetting: PeerVetting;
  readonly #pool: TunnelPool | undefined;
  readonly #messenger: Messenger | undefined;
  readonly #reassembler: Reassembler;
  readonly #clock: Clock;
  readonly #options: DeutNodeOptions;
  readonly #logger: Logger;
  /** When each bootstrap that did not answer was last warned about. */
  readonly #bootstrapWarnedAt = new Map<string, number>();
  readonly #counters = new Counters<NodeCounter>();
  /** Peers we asked for a list recently: only they may answer (no unsolicited poisoning). */
  readonly #asked = new Map<string, number>();
  #pexTimer: TimerHandle | undefined;
  #closed = false;
  readonly #startedAt: number;
  readonly #progress: Progress;
  #progressTimer: TimerHandle | undefined;
  #heartbeatTimer: TimerHandle | undefined;
  /** Counts at the previous heartbeat, which the next one reports the growth of. */
  #lastBeat = { at: 0, cellsRelayed: 0, drops: new Map<string, number>() };
  #dhtRole: DhtRole | undefined;

  /** The tunnels this master keeps (absent on a node that is not a master). */
  readonly tunnels: { ready(n?: number, signal?: AbortSignal): Promise<void>; list(): TunnelInfo[] };

  private constructor(link: Link, identity: KeyPair, options: DeutNodeOptions, sockets: SocketFactory) {
    super();
    this.#link = link;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#startedAt = this.#clock.now();
    this.#lastBeat.at = this.#startedAt;
    const logger = options.logger ?? silentLogger;
    this.#logger = logger;
    const self = addressKey(link.address);
    this.#peers = new PeerTable(self, () => this.#clock.now());
    this.#vetting = new PeerVetting({
      peers: this.#peers,
      contact: (peer, attempts) => this.#link.connect(peer.address, { expectedKey: peer.publicKey, handshakeAttempts: attempts }),
      clock: this.#clock,
      counters: this.#counters,
    });
    const policy = new ExitPolicy({ ...options.exit, allowPrivateExits: options.allowPrivateExits ?? false, ownAddresses: ownNodeAddresses(link.address), clock: this.#clock });
    const listenHost = link.address.host;
    this.#exits = new EndpointExits({
      policy,
      sockets,
      bindHost: listenHost,
      reportHost: listenHost === '0.0.0.0' || listenHost === '::' ? '::' : listenHost,
      clock: this.#clock,
      // The exits and the engine need each other: the engine is made with the exits as its
      // endpoint sink, and the exits send through this forwarder, which runs only for an
      // endpoint tunnel the engine opened, so never before the engine exists.
      tunnels: { sendFromEndpoint: (tunnel, plaintext) => this.#engine.sendFromEndpoint(tunnel, plaintext) },
      logger,
    });
    const relay = options.relay ?? true;
    const now = (): number => this.#clock.now();
    const perNeighbour = new KeyedRateLimiter(options.buildRatePerNeighbour ?? { perSecond: 3, burst: 90 }, now);
    const global = new TokenBucket(options.buildRateGlobal ?? { perSecond: 500, burst: 1000 }, now);
    this.#engine = new TunnelEngine({
      link,
      identity,
      clock: this.#clock,
      logger,
      ...(options.maxTransit !== undefined ? { maxTransit: options.maxTransit } : {}),
      ...(options.maxTransitPerNeighbour !== undefined ? { maxTransitPerNeighbour: options.maxTransitPerNeighbour } : {}),
      policy: {
        allowBuildFrom: (from: LinkPeer) => perNeighbour.take(from.address.host) && global.take(),
        admit: (): RefusalReason | undefined => (relay ? undefined : 'overloaded'),
        pickNextHop: (exclude) => this.#peers.pick(1, { exclude, sameSubnet: true })[0],
      },
      endpoints: this.#exits,
      // The reassembler and the pool are made below; these run only for tunnels built later.
      master: {
        tunnelFrame: (tunnel, plaintext) => this.#onTunnelFrame(tunnel, plaintext),
        tunnelClosed: (tunnel, reason) => {
          this.#reassembler.forget(String(tunnel.localId));
          this.#pool?.tunnelClosed(tunnel, reason);
        },
      },
    });
    this.#reassembler = new Reassembler({ clock: this.#clock, onDrop: (reason) => this.#counters.add(`drop:reassembly-${reason}`) });
    const master = options.master ?? options.tunnels !== undefined;
    if (master) {
      this.#pool = new TunnelPool({
        engine: this.#engine,
        peers: this.#peers,
        self,
        target: options.tunnels ?? 8,
        hops: options.hops ?? 3,
        pathSelection: options.pathSelection ?? 'master',
        allowSameSubnet: options.allowSameSubnet ?? false,
        clock: this.#clock,
        logger,
        ...(options.tunnelLifetimeMs !== undefined ? { lifetimeMs: options.tunnelLifetimeMs } : {}),
        ...(options.tunnelRotateBeforeMs !== undefined ? { rotateBeforeMs: options.tunnelRotateBeforeMs } : {}),
        ...(options.tunnelDrainBeforeMs !== undefined ? { drainBeforeMs: options.tunnelDrainBeforeMs } : {}),
        ...(options.buildTimeoutMs !== undefined ? { buildTimeoutMs: options.buildTimeoutMs } : {}),
        ...(options.buildConcurrency !== undefined ? { buildConcurrency: options.buildConcurrency } : {}),
        ...(options.probeIntervalMs !== undefined ? { probeIntervalMs: options.probeIntervalMs } : {}),
        ...(options.probeTimeoutMs !== undefined ? { probeTimeoutMs: options.probeTimeoutMs } : {}),
      });
      this.#pool.onBuildEnded = (outcome) => {
        if (outcome.ok) this.#dhtRole?.tunnelBuilt();
        this.emit('build-ended', outcome);
        if (outcome.ok) this.#checkProgress();
      };
      this.#pool.onTunnelGone = (tunnel) => {
        this.#reassembler.forget(String(tunnel.localId));
        this.#dhtRole?.tunnelGone();
      };
      this.#messenger = new Messenger({
        pool: this.#pool,
        transmit: (tunnel, to, data) => this.#transmit(tunnel, to, data),
        fanout: options.fanout ?? 2,
        ...(options.maxRetriesInFlight === undefined ? {} : { maxRetriesInFlight: options.maxRetriesInFlight }),
        clock: this.#clock,
        logger,
      });
    }
    link.onPayload((payload, from) => (isPeerExchange(payload) ? this.#onPeerExchange(payload, from) : this.#engine.handle(payload, from)));
    const pool = this.#pool;
    this.tunnels = {
      ready: (n, signal) => (pool === undefined ? Promise.reject(configError('NOT_A_MASTER', 'this node keeps no tunnels')) : pool.ready(n, signal)),
      list: () => pool?.list() ?? [],
    };
    for (const address of options.bootstrap ?? []) this.#askForPeers(address);
    this.#schedulePeerExchange(1_000);
    if (options.dht !== undefined && options.dht !== false) {
      const dht = options.dht === true ? {} : options.dht;
      this.#dhtRole = new DhtRole(this.createSocket({ fanout: dht.fanout ?? options.fanout ?? 2 }), dht, this.#clock, logger);
    }
    const plan = progressPlan({ master, dht: this.#dhtRole !== undefined, bootstrap: (options.bootstrap ?? []).length > 0 });
    this.#progress = new Progress(plan, this.#clock, (milestone) => this.emit('progress', milestone));
    // The port is bound by now; the milestone is passed before anyone can listen, so
    // progress().passed is where a caller finds it (the daemon replays that list).
    this.#progress.update((phase) => phase === 'bound');
    this.#scheduleProgressCheck();
    const heartbeatMs = options.heartbeatIntervalMs ?? 300_000;
    if (heartbeatMs > 0) this.#scheduleHeartbeat(heartbeatMs);
  }

  /** Starts a node: binds its port, and begins peer exchange and (as a master) building tunnels. */
  static async start(options: DeutNodeOptions = {}): Promise<DeutNode> {
    await cryptoReady();
    const hops = options.hops ?? 3;
    if (!Number.isInteger(hops) || hops < 1 || hops > MAX_HOPS) throw configError('BAD_HOPS', `hops must be 1..${MAX_HOPS}`);
    const fanout = options.fanout ?? 2;
    if (!Number.isInteger(fanout) || fanout < 1 || fanout > 8) throw configError('BAD_FANOUT', 'fanout must be 1..8');
    const master = options.master ?? options.tunnels !== undefined;
    if (options.dht !== undefined && options.dht !== false && !master) {
      throw configError('DHT_NEEDS_MASTER', 'the DHT runs through tunnels: start a master (tunnels or master: true)');
    }
    // Contacts are checked before anything is bound or started.
    if (typeof options.dht === 'object') for (const b of options.dht.bootstrap ?? []) if (typeof b === 'string') parseDhtContact(b);
    const sockets: SocketFactory = options.sockets ?? { bind: (address) => bindUdp(address) };
    const socket = await sockets.bind(options.listen ?? { host: '127.0.0.1', port: 0 });
    const identity = options.identity ?? generateKeyPair();
    const link = await Link.create({
      socket,
      identity,
      ephemeralIdentity: options.ephemeralIdentity ?? options.identity === undefined,
      knownPeers: options.knownPeers ?? KnownPeers.inMemory(),
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
      ...(options.observer !== undefined ? { observer: options.observer } : {}),
    });
    try {
      return new DeutNode(link, identity, options, sockets);
    } catch (error) {
      // A bad option found while wiring the roles must not leave the port bound.
      await link.close();
      throw error;
    }
  }

  /**
   * The DHT node running through our tunnels (`put`, `get`, `findNode`, ...).
   * @throws DeutError (config) `DHT_OFF` unless the node was started with `dht`
   */
  get dht(): DhtNode {
    if (this.#dhtRole === undefined) throw configError('DHT_OFF', 'this node was started without dht');
    return this.#dhtRole.dht;
  }

  /** The node port. */
  get address(): UdpAddress {
    return this.#link.address;
  }

  /** The node's static public key. */
  get publicKey(): Uint8Array {
    return this.#link.publicKey;
  }

  /** The link layer (sessions, for `deut status`). */
  get link(): Link {
    return this.#link;
  }

  /** Serves requests that arrive at this master's endpoints. */
  handle(handler: RequestHandler): void {
    this.#requireMaster().handle(handler);
  }

  /**
   * Sends a request to another master's endpoint (or several of its endpoints, tried in
   * turn) and resolves with its reply.
   */
  request(to: UdpAddress | readonly UdpAddress[], payload: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
    return this.#requireMaster().request(to, payload, options);
  }

  /**
   * Sends one datagram to any UDP destination, from one of our endpoints: a random one, or
   * the tunnel `options.tunnel` (a `DatagramInfo.tunnel`), so that an answer to a peer
   * leaves from the endpoint the peer contacted.
   */
  async send(to: UdpAddress, payload: Uint8Array, options: { signal?: AbortSignal; tunnel?: number } = {}): Promise<void> {
    const pool = this.#pool;
    if (pool === undefined) throw configError('NOT_A_MASTER', 'this node keeps no tunnels');
    await pool.ready(1, options.signal);
    const tunnel = (options.tunnel !== undefined ? pool.usableById(options.tunnel) : undefined) ?? pool.pickOne();
    if (tunnel === undefined) throw configError('NO_TUNNELS', 'no usable tunnel');
    this.#transmit(tunnel, to, payload);
  }

  /**
   * A UDP socket shaped like node:dgram's whose datagrams leave from and arrive at this
   * master's endpoints, for UDP libraries that take a socket (see {@link TunnelSocket}).
   */
  createSocket(options: TunnelSocketOptions = {}): TunnelSocket {
    const pool = this.#pool;
    if (pool === undefined) throw configError('NOT_A_MASTER', 'this node keeps no tunnels');
    return new TunnelSocket(
      {
        ready: (signal) => pool.ready(1, signal),
        usable: () => pool.usable(),
        transmit: (tunnel, to, data) => this.#transmit(tunnel, to, data),
        subscribe: (listener) => {
          this.on('datagram', listener);
          return () => this.off('datagram', listener);
        },
      },
      options,
    );
  }

  /** The relayers this node knows (from peer exchange), with their keys and standing. */
  peers(): PeerRecord[] {
    return this.#peers.all();
  }

  /**
   * How far the node has come since it started (README "Operator guide"): the latest
   * milestone's percentage and phase, every milestone passed with its time, what is left.
   * Each passed milestone is also an event 'progress'.
   */
  progress(): ProgressSnapshot {
    return this.#progress.snapshot();
  }

  /** Every counter and table size of the node. */
  stats(): {
    address: UdpAddress;
    peers: number;
    link: ReturnType<Link['stats']>;
    tunnels: ReturnType<TunnelEngine['stats']>;
    exits: ReturnType<EndpointExits['stats']>;
    pool: ReturnType<TunnelPool['stats']> | undefined;
    messages: ReturnType<Messenger['stats']> | undefined;
    /** Inbound reassembly of this node's own tunnels (a master's). */
    reassembly: ReturnType<Reassembler['stats']>;
    counters: CounterSnapshot<NodeCounter>;
  } {
    return {
      address: this.address,
      peers: this.#peers.size,
      link: this.#link.stats(),
      tunnels: this.#engine.stats(),
      exits: this.#exits.stats(),
      pool: this.#pool?.stats(),
      messages: this.#messenger?.stats(),
      reassembly: this.#reassembler.stats(),
      counters: this.#counters.snapshot(),
    };
  }

  /** Tears down every tunnel (TunnelDestroy), closes every port and socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pexTimer !== undefined) this.#clock.clearTimeout(this.#pexTimer);
    if (this.#progressTimer !== undefined) this.#clock.clearTimeout(this.#progressTimer);
    if (this.#heartbeatTimer !== undefined) this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#vetting.close();
    this.#dhtRole?.close();
    this.#pool?.close();
    this.#messenger?.close();
    this.#engine.close();
    await this.#exits.closeAll();
    // Let the DESTROY datagrams leave before the socket goes.
    await new Promise((resolve) => setImmediate(resolve));
    await this.#link.close();
  }

  // ---- master data path ---------------------------------------------------------------

  #transmit(tunnel: OwnedTunnel, to: UdpAddress, data: Uint8Array): void {
    for (const frame of fragmentDatagram(tunnel.nextDatagramId(), to, data)) this.#engine.send(tunnel, encodeCellFrame(frame));
  }

  #onTunnelFrame(tunnel: OwnedTunnel, plaintext: Uint8Array): void {
    this.#pool?.heardFrom(tunnel);
    let frame: CellFrame;
    try {
      frame = decodeCellFrame(plaintext);
    } catch (error) {
      if (error instanceof ProtocolError) return this.#counters.add(`drop:frame-${wireDropCode(error)}`);
      throw error;
    }
    switch (frame.type) {
      case 'datagram': {
        const datagram = this.#reassembler.add(String(tunnel.localId), frame);
        if (datagram === undefined) return;
        this.#counters.add('datagrams-received');
        if (this.#messenger?.deliver(datagram.address, datagram.data) === true) return;
        this.emit('datagram', datagram.data, datagram.address, { tunnel: tunnel.localId, endpoint: tunnel.endpoint });
        return;
      }
      case 'probe-reply':
        return this.#pool?.probeAnswered(tunnel, frame.probeId);
      case 'exit-refused':
        this.#counters.add('exit-refused');
        this.emit('exit-refused', { tunnel: tunnel.localId, reason: frame.reason });
        return;
      case 'probe':
        return this.#counters.add('drop:frame-unexpected');
    }
  }

  // ---- peer exchange (PROTOCOL.md §4.7) ---------------------------------------------------

  #onPeerExchange(payload: Uint8Array, from: LinkPeer): void {
    let message;
    try {
      message = decodePeerExchange(payload);
    } catch (error) {
      if (error instanceof ProtocolError) return this.#counters.add(`drop:pex-${wireDropCode(error)}`);
      throw error;
    }
    const fromKey = addressKey(from.address);
    if (message.type === 'peer-request') {
      if (message.relay) this.#peers.add(from.address, from.publicKey);
      // Only relayers we reached ourselves: a victim address one neighbour slipped us is not passed on.
      const entries = this.#peers.verified().filter((p) => p.key !== fromKey);
      const peers = sample(entries, PEER_LIST_ANSWER).map((p) => ({ address: p.address, publicKey: p.publicKey }));
      this.#link.send(from.address, encodePeerExchange({ type: 'peer-list', peers }));
      this.#counters.add('peer-lists-sent');
      return;
    }
    const askedAt = this.#asked.get(fromKey);
    if (askedAt === undefined || this.#clock.now() - askedAt > PEER_REQUEST_VALID_MS) return this.#counters.add('drop:pex-unsolicited');
    this.#asked.delete(fromKey);
    this.#counters.add('peers-learned', this.#vetting.learn(fromKey, message.peers));
  }

  #askForPeers(address: UdpAddress): void {
    if (this.#closed) return;
    const key = addressKey(address);
    this.#asked.set(key, this.#clock.now());
    this.#link.connect(address).then(
      (session) => {
        if (this.#closed) return;
        // Bootstrap nodes and every peer we ask are relayers we authenticated ourselves.
        this.#peers.add(address, session.publicKey);
        this.#link.send(address, encodePeerExchange({ type: 'peer-request', relay: this.#options.relay ?? true }));
        this.#checkProgress();
      },
      (error: unknown) => {
        this.#asked.delete(key);
        this.#bootstrapUnanswered(address, error);
      },
    );
  }

  /**
   * A bootstrap relayer that does not answer leaves a new node with nobody to learn relayers
   * from: one warning per bootstrap per BOOTSTRAP_WARN_EVERY_MS names it and what to check.
   */
  #bootstrapUnanswered(address: UdpAddress, error: unknown): void {
    const bootstrap = this.#options.bootstrap ?? [];
    const key = addressKey(address);
    const index = bootstrap.findIndex((b) => addressKey(b) === key);
    if (index < 0 || this.#closed) return;
    this.#counters.add('bootstrap-unanswered');
    const now = this.#clock.now();
    if ((this.#bootstrapWarnedAt.get(key) ?? -Infinity) > now - BOOTSTRAP_WARN_EVERY_MS) return;
    this.#bootstrapWarnedAt.set(key, now);
    const why = error instanceof DeutError ? error.code : 'no answer';
    this.#logger.warn(
      `peer exchange: bootstrap ${index + 1} of ${bootstrap.length} (--bootstrap ${key}) does not answer (${why}): check that a deut relayer runs there, that UDP reaches it, and that its key has not changed`,
      { bootstrap: key, error: why },
    );
  }

  #schedulePeerExchange(ms: number): void {
    this.#pexTimer = this.#clock.setTimeout(() => {
      if (this.#closed) return;
      const now = this.#clock.now();
      for (const [key, at] of this.#asked) if (now - at > PEER_REQUEST_VALID_MS) this.#asked.delete(key);
      const wanting = this.#peers.size < PEERS_WANTED;
      const candidates = this.#peers.verified().map((p) => p.address);
      const bootstrap = this.#options.bootstrap ?? [];
      const target = sample(candidates.length > 0 ? candidates : bootstrap, 1)[0];
      if (target !== undefined) this.#askForPeers(target);
      this.#schedulePeerExchange(wanting ? 2_000 : (this.#options.peerExchangeIntervalMs ?? 30_000));
    }, ms);
  }

  // ---- progress and heartbeat ----------------------------------------------------------

  /** Whether `phase` holds now; the tracker keeps it passed once it held. */
  #holds(phase: ProgressPhase): boolean {
    const pool = this.#pool;
    switch (phase) {
      case 'bound':
        return true;
      case 'peers-known':
        return this.#peers.size > 0;
      case 'peers-verified':
        // Every hop of a path is a distinct relayer other than us.
        return this.#peers.verified().length >= (this.#options.hops ?? 3);
      case 'first-tunnel':
        return pool !== undefined && pool.usable().length > 0;
      case 'pool-full':
        return pool !== undefined && pool.usable().length >= (this.#options.tunnels ?? 8);
      case 'dht-joined':
        // A node with no DHT bootstrap stays here until another DHT node contacts it: until
        // then its puts store nowhere, which is what this milestone is about.
        return (this.#dhtRole?.dht.table.size ?? 0) > 0;
      case 'done':
        return false;
    }
  }

  #checkProgress(): void {
    if (this.#closed || this.#progress.done) return;
    this.#progress.update((phase) => this.#holds(phase));
  }

  /** Polls until 100 %: peer verification and DHT joins have no event of their own to hook. */
  #scheduleProgressCheck(): void {
    this.#progressTimer = undefined;
    this.#checkProgress();
    if (this.#closed || this.#progress.done) return;
    this.#progressTimer = this.#clock.setTimeout(() => this.#scheduleProgressCheck(), PROGRESS_CHECK_MS);
  }

  #scheduleHeartbeat(ms: number): void {
    this.#heartbeatTimer = this.#clock.setTimeout(() => {
      if (this.#closed) return;
      this.emit('heartbeat', this.#heartbeat());
      this.#scheduleHeartbeat(ms);
    }, ms);
  }

  /** Drop counters of every layer, as `layer:reason` (the layers of deut_drops_total). */
  #dropCounts(): Map<string, number> {
    const s = this.stats();
    const layers: Array<[string, CounterSnapshot<string> | undefined]> = [
      ['link', s.link.counters],
      ['engine', s.tunnels.counters],
      ['node', s.counters],
      ['exits', s.exits.counters],
      ['messenger', s.messages?.counters],
      ['dht', this.#dhtRole?.dht.stats().rpc.counters],
    ];
    const drops = new Map<string, number>();
    for (const [layer, counters] of layers) {
      for (const [name, value] of Object.entries<number | undefined>(counters ?? {})) {
        if (name.startsWith('drop:') && value !== undefined && value > 0) drops.set(`${layer}:${name.slice('drop:'.length)}`, value);
      }
    }
    return drops;
  }

  #heartbeat(): Heartbeat {
    const now = this.#clock.now();
    const engine = this.#engine.stats();
    const cellsRelayed = engine.counters['cells-relayed'] ?? 0;
    const drops = this.#dropCounts();
    const grown: Array<{ reason: string; count: number }> = [];
    for (const [reason, value] of drops) {
      const count = value - (this.#lastBeat.drops.get(reason) ?? 0);
      if (count > 0) grown.push({ reason, count });
    }
    grown.sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
    const beat: Heartbeat = {
      uptimeMs: now - this.#startedAt,
      sinceMs: now - this.#lastBeat.at,
      tunnels: { owned: engine.owned, usable: this.#pool?.usable().length ?? 0, transit: engine.relaying, endpoints: engine.endpoints },
      cellsRelayed: cellsRelayed - this.#lastBeat.cellsRelayed,
      drops: { total: grown.reduce((sum, d) => sum + d.count, 0), top: grown.slice(0, HEARTBEAT_TOP_DROPS) },
      peers: { known: this.#peers.size, verified: this.#peers.verified().length },
    };
    this.#lastBeat = { at: now, cellsRelayed, drops };
    return beat;
  }

  #requireMaster(): Messenger {
    if (this.#messenger === undefined) throw configError('NOT_A_MASTER', 'this node keeps no tunnels (start it with tunnels or master: true)');
    return this.#messenger;
  }
}

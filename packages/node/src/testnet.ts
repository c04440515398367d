/**
 * A deut network in one process, for `deut mesh` and for tests of applications built on
 * deut (hyperdht ships its testnet the same way): relayers and masters over the in-memory
 * network or real UDP on 127.0.0.0/8, an observer per node recording every link payload it
 * sees, a plain UDP echo server, abrupt kills and partitions for crash tests, and the DHT
 * helpers a testnet of `dht: true` masters needs. It lives in the product, not in the
 * dev-only `@deut/testkit`, because `deut mesh` runs it; the attack scaffolding, the engine
 * mesh and the network-namespace mesh stay there.
 *
 * Exports: {@link createTestnet}, {@link withTestnet}, {@link KillableSocket},
 * {@link dhtContactOf}, {@link joinDht}, and the waits {@link until} and {@link withDeadline}.
 */
import { addressKey, type Clock, type UdpAddress } from '@deut/common';
import type { LinkPayloadEvent } from '@deut/link';
import type { RemoteNode } from '@deut/dht';
import { MemoryNetwork, bindUdp, openSocketCount, type DatagramSocket, type LinkConditions, type MessageHandler, type SocketStats } from '@deut/transport';
import { DeutNode, type DeutNodeOptions } from './node.js';

/** Options of {@link createTestnet}. */
export interface TestnetOptions {
  /** Relayer nodes (the first is everyone's bootstrap). @default 20 */
  readonly relays?: number;
  /** Master nodes. @default 2 */
  readonly masters?: number;
  /** @default 'memory' */
  readonly transport?: 'memory' | 'udp';
  /** Seed of the in-memory network. @default 1 */
  readonly seed?: number;
  /** Loss, delay, duplication, reordering of the in-memory network. */
  readonly conditions?: LinkConditions;
  /** Tunnels per master. @default 8 */
  readonly tunnels?: number;
  /** Options for every master (hops, fanout, pathSelection, ...). */
  readonly master?: Partial<DeutNodeOptions>;
  /** Options for every relayer. */
  readonly relay?: Partial<DeutNodeOptions>;
  /** Record every link payload each node sees. @default false */
  readonly observe?: boolean;
  /** Wait for every master's pool to be full before returning. @default true */
  readonly waitForTunnels?: boolean;
  /** How long to wait for the pools. @default 60,000 ms */
  readonly tunnelsTimeoutMs?: number;
  readonly clock?: Clock;
}

/** A node of the testnet. */
export interface TestnetNode {
  readonly node: DeutNode;
  readonly role: 'relay' | 'master';
  /** Link payloads seen, when `observe` is on. */
  readonly seen: LinkPayloadEvent[];
  /** Every socket the node has open: its node port and its endpoint ports (closed ones leave). */
  readonly sockets: KillableSocket[];
}

/** A running testnet. */
export interface Testnet {
  readonly relays: TestnetNode[];
  readonly masters: TestnetNode[];
  readonly nodes: TestnetNode[];
  readonly bootstrap: UdpAddress;
  /** The in-memory network, when `transport` is 'memory'. */
  readonly network: MemoryNetwork | undefined;
  /** The node whose node port is `address`. */
  byAddress(address: UdpAddress): TestnetNode | undefined;
  /** Starts a plain UDP echo server (not a deut node) that records who sent what. */
  echoServer(): Promise<EchoServer>;
  /** Silences a node at once, as a crash would: no TunnelDestroy, no more datagrams in or out. */
  kill(node: TestnetNode): void;
  /** Cuts a node off the network, as a dead uplink would: it keeps running, but nothing goes in or out (sockets it opens meanwhile too) until {@link Testnet.heal}. */
  partition(node: TestnetNode): void;
  /** Puts a partitioned node back on the network. */
  heal(node: TestnetNode): void;
  /**
   * Starts one more master (next free 127.0.2.x host) with the testnet's master options and
   * `extra`, waits for its tunnels, and adds it to `masters`; close() closes it too.
   */
  addMaster(extra?: Partial<DeutNodeOptions>): Promise<TestnetNode>;
  /** Closes every node and socket. */
  close(): Promise<void>;
}

/** A plain UDP echo server. */
export interface EchoServer {
  readonly address: UdpAddress;
  readonly received: Array<{ data: Uint8Array; from: UdpAddress }>;
  close(): Promise<void>;
}

/** A socket that a test can kill or cut off: sends and deliveries then vanish silently. */
export class KillableSocket implements DatagramSocket {
  #dead = false;
  /** Cut off for now (a partition); unlike a kill, this can be undone. */
  cut = false;
  #handler: MessageHandler | undefined;

  /** `onClosed` runs once the socket is closed (the testnet forgets it then). */
  constructor(
    private readonly inner: DatagramSocket,
    private readonly onClosed: () => void = () => undefined,
  ) {
    inner.onMessage((data, from) => {
      if (!this.#dead && !this.cut) this.#handler?.(data, from);
    });
  }

  get local(): UdpAddress {
    return this.inner.local;
  }

  get stats(): SocketStats {
    return this.inner.stats;
  }

  get dead(): boolean {
    return this.#dead;
  }

  kill(): void {
    this.#dead = true;
  }

  send(data: Uint8Array, to: UdpAddress): void {
    if (!this.#dead && !this.cut) this.inner.send(data, to);
  }

  onMessage(handler: MessageHandler): void {
    this.#handler = handler;
  }

  close(): Promise<void> {
    this.onClosed();
    return this.inner.close();
  }
}

/** Starts `relays` relayers and `masters` masters on hosts 127.0.1.x and 127.0.2.x. */
export async function createTestnet(options: TestnetOptions = {}): Promise<Testnet> {
  const transport = options.transport ?? 'memory';
  const network = transport === 'memory' ? new MemoryNetwork({ seed: options.seed ?? 1, ...(options.conditions ? { conditions: options.conditions } : {}), ...(options.clock ? { clock: options.clock } : {}) }) : undefined;
  const nodes: TestnetNode[] = [];
  const extraSockets: DatagramSocket[] = [];
  /** The socket lists of partitioned nodes: a socket bound on one starts cut off. */
  const partitioned = new Set<KillableSocket[]>();
  const bindRaw = (address: UdpAddress): Promise<DatagramSocket> => (network !== undefined ? Promise.resolve(network.bind(address)) : bindUdp(address));

  const start = async (role: 'relay' | 'master', host: string, extra: Partial<DeutNodeOptions>, bootstrap: UdpAddress[]): Promise<TestnetNode> => {
    const sockets: KillableSocket[] = [];
    const seen: LinkPayloadEvent[] = [];
    const factory: NonNullable<DeutNodeOptions['sockets']> = {
      bind: async (address) => {
        // Closed sockets leave the list: endpoint ports come and go with every tunnel, and a
        // long run must not keep them all (the soak test found exactly that).
        const socket = new KillableSocket(await bindRaw(address), () => {
          const at = sockets.indexOf(socket);
          if (at >= 0) sockets.splice(at, 1);
        });
        socket.cut = partitioned.has(sockets);
        sockets.push(socket);
        return socket;
      },
    };
    const node = await DeutNode.start({
      listen: { host, port: 0 },
      bootstrap,
      sockets: factory,
      allowPrivateExits: true,
      allowSameSubnet: true,
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.observe === true ? { observer: (event: LinkPayloadEvent) => seen.push({ ...event, payload: event.payload.slice() }) } : {}),
      ...extra,
    });
    const entry = { node, role, seen, sockets };
    nodes.push(entry);
    return entry;
  };

  const close = async (): Promise<void> => {
    await Promise.allSettled(nodes.map((n) => n.node.close()));
    await Promise.allSettled(extraSockets.map((s) => s.close()));
    await network?.close();
  };

  try {
    const relayCount = options.relays ?? 20;
    const first = await start('relay', '127.0.1.1', { relay: true, ...options.relay }, []);
    const bootstrap = first.node.address;
    const relays = [first];
    for (let i = 1; i < relayCount; i++) relays.push(await start('relay', `127.0.1.${i + 1}`, { relay: true, ...options.relay }, [bootstrap]));
    await until(() => first.node.stats().peers >= relayCount - 1, 30_000, 'relayers announced to the bootstrap').catch((error: unknown) => {
      // Say who is missing and what its link did, so a failure explains itself.
      const report = relays.slice(1).map((r) => ({ relay: addressKey(r.node.address), peers: r.node.stats().peers, link: r.node.stats().link, node: r.node.stats().counters }));
      throw new Error(`${String(error)}: the bootstrap knows ${first.node.stats().peers} of ${relayCount - 1}; relayers ${JSON.stringify(report)}; bootstrap link ${JSON.stringify(first.node.stats().link.counters)}, node ${JSON.stringify(first.node.stats().counters)}`);
    });
    const masters: TestnetNode[] = [];
    const startMaster = (extra: Partial<DeutNodeOptions> = {}): Promise<TestnetNode> =>
      start('master', `127.0.2.${masters.length + 1}`, { relay: false, tunnels: options.tunnels ?? 8, ...options.master, ...extra }, [bootstrap]);
    for (let i = 0; i < (options.masters ?? 2); i++) masters.push(await startMaster());
    if (options.waitForTunnels !== false) {
      const timeoutMs = options.tunnelsTimeoutMs ?? 60_000;
      await Promise.all(masters.map((m) => withDeadline(m.node.tunnels.ready(options.tunnels ?? 8), timeoutMs, 'tunnel pools to fill'))).catch((error: unknown) => {
        // Say how far each pool got, so a failure explains itself.
        throw new Error(`${String(error)}: ${JSON.stringify(masters.map((m) => m.node.stats().pool))}`);
      });
    }
    return {
      relays,
      masters,
      nodes,
      bootstrap,
      network,
      byAddress: (address) => nodes.find((n) => addressKey(n.node.address) === addressKey(address)),
      echoServer: async () => {
        const socket = await bindRaw({ host: '127.0.3.1', port: 0 });
        extraSockets.push(socket);
        const received: EchoServer['received'] = [];
        socket.onMessage((data, from) => {
          received.push({ data, from });
          socket.send(data, from);
        });
        return { address: socket.local, received, close: () => socket.close() };
      },
      kill: (node) => {
        for (const socket of node.sockets) socket.kill();
      },
      partition: (node) => {
        partitioned.add(node.sockets);
        for (const socket of node.sockets) socket.cut = true;
      },
      heal: (node) => {
        partitioned.delete(node.sockets);
        for (const socket of node.sockets) socket.cut = false;
      },
      addMaster: async (extra = {}) => {
        const master = await startMaster(extra);
        masters.push(master);
        await withDeadline(master.node.tunnels.ready(extra.tunnels ?? options.master?.tunnels ?? options.tunnels ?? 8), 60_000, 'the new master\'s tunnels');
        return master;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Polls `predicate` on the event loop until it holds; rejects after `ms`. */
export async function until(predicate: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Rejects if `promise` has not settled within `ms`, while keeping the event loop alive. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `body` on a fresh testnet and closes it afterwards, also on failure. The event loop
 * is held open meanwhile (node timers are unref'd and the in-memory network has no handles,
 * so an await on a bare promise would otherwise end the process). After a clean run every
 * UDP socket the testnet opened must have closed (a leak check).
 * @throws Error `SOCKET_LEAK` when sockets stayed open
 */
export async function withTestnet(options: TestnetOptions, body: (net: Testnet) => Promise<void>): Promise<void> {
  const keep = setInterval(() => undefined, 1000);
  const socketsBefore = openSocketCount();
  try {
    const net = await createTestnet(options);
    try {
      await body(net);
    } finally {
      await net.close();
    }
    await until(() => openSocketCount() === socketsBefore, 5_000, 'the testnet sockets to close').catch(() => undefined);
    if (openSocketCount() !== socketsBefore) {
      throw Object.assign(new Error(`${openSocketCount() - socketsBefore} UDP sockets of the testnet stayed open`), { code: 'SOCKET_LEAK' });
    }
  } finally {
    clearInterval(keep);
  }
}

/** The DHT contact of a master: its DHT key at the endpoint of its first tunnel. */
export function dhtContactOf(node: DeutNode): RemoteNode {
  const endpoint = node.tunnels.list()[0]?.endpoint;
  if (endpoint === undefined) throw new Error('dhtContactOf: the node has no tunnel yet');
  return { publicKey: node.dht.publicKey, address: endpoint };
}

/**
 * Joins every node but the first to the DHT through the first, `concurrency` at a time (a
 * real network grows one node at a time; all at once, every node would bootstrap from a
 * network that does not exist yet).
 */
export async function joinDht(nodes: readonly DeutNode[], options: { concurrency?: number; timeoutMs?: number } = {}): Promise<void> {
  const [first, ...rest] = nodes;
  if (first === undefined) return;
  const via = [dhtContactOf(first)];
  const concurrency = options.concurrency ?? 4;
  for (let i = 0; i < rest.length; i += concurrency) {
    await withDeadline(
      Promise.all(rest.slice(i, i + concurrency).map((node) => node.dht.join({ via }))),
      options.timeoutMs ?? 60_000,
      `DHT join of nodes ${i + 1}..${Math.min(i + concurrency, rest.length)}`,
    );
  }
}

/**
 * Scaffolding for attack tests (issue #8): a socket that counts bytes per remote address and
 * lets a test inject datagrams from any source (a spoofer's view), a clock skewed from a
 * shared one, and a small mesh of Link + TunnelEngine nodes on a ManualClock whose admission
 * policy the test controls.
 */
import type { ManualClock} from '@deut/common';
import { addressKey, type Clock, type TimerHandle, type UdpAddress } from '@deut/common';
import { generateKeyPair, type KeyPair } from '@deut/crypto';
import { Link, type LinkOptions, type LinkPeer } from '@deut/link';
import type { DatagramSocket, MemoryNetwork, MessageHandler, SocketStats } from '@deut/transport';
import { TunnelEngine, type DestroyReason, type EndpointTunnel, type OwnedTunnel, type PeerCandidate, type RefusalReason, type TunnelPolicy } from '@deut/tunnel';
import { withDeadline } from './testnet.js';

/** Datagrams and bytes to or from one address. */
export interface Traffic {
  datagrams: number;
  bytes: number;
}

/**
 * Wraps a socket: counts what it sends to and receives from each address, and `inject`s
 * datagrams as if they came from any address, as a spoofer on the path would.
 */
export class SpyingSocket implements DatagramSocket {
  readonly #sent = new Map<string, Traffic>();
  readonly #received = new Map<string, Traffic>();
  #handler: MessageHandler | undefined;

  constructor(readonly inner: DatagramSocket) {
    inner.onMessage((data, from) => this.#arrive(data, from));
  }

  get local(): UdpAddress {
    return this.inner.local;
  }

  get stats(): SocketStats {
    return this.inner.stats;
  }

  send(data: Uint8Array, to: UdpAddress): void {
    add(this.#sent, addressKey(to), data.length);
    this.inner.send(data, to);
  }

  onMessage(handler: MessageHandler): void {
    this.#handler = handler;
  }

  /** Hands `data` to the owner as if it had arrived from `from`. */
  inject(data: Uint8Array, from: UdpAddress): void {
    this.#arrive(data, from);
  }

  /** What was sent to `to`. */
  sentTo(to: UdpAddress): Traffic {
    return { ...(this.#sent.get(addressKey(to)) ?? { datagrams: 0, bytes: 0 }) };
  }

  /** What arrived (or was injected) from `from`. */
  receivedFrom(from: UdpAddress): Traffic {
    return { ...(this.#received.get(addressKey(from)) ?? { datagrams: 0, bytes: 0 }) };
  }

  /** Addresses anything was sent to. */
  destinations(): string[] {
    return [...this.#sent.keys()];
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  #arrive(data: Uint8Array, from: UdpAddress): void {
    add(this.#received, addressKey(from), data.length);
    this.#handler?.(data, from);
  }
}

function add(table: Map<string, Traffic>, key: string, bytes: number): void {
  const entry = table.get(key) ?? { datagrams: 0, bytes: 0 };
  entry.datagrams++;
  entry.bytes += bytes;
  table.set(key, entry);
}

/** A clock that reads `offsetMs` away from `base` and shares its timers (a node whose clock is off). */
export class SkewedClock implements Clock {
  constructor(
    private readonly base: Clock,
    public offsetMs: number,
  ) {}

  now(): number {
    return this.base.now() + this.offsetMs;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    return this.base.setTimeout(callback, ms);
  }

  clearTimeout(handle: TimerHandle): void {
    this.base.clearTimeout(handle);
  }
}

/** One node of an {@link EngineMesh}. */
export interface EngineMeshNode {
  readonly name: string;
  readonly link: Link;
  readonly engine: TunnelEngine;
  readonly socket: SpyingSocket;
  readonly identity: KeyPair;
  readonly clock: SkewedClock;
  readonly candidate: PeerCandidate;
  /** Rewrites a payload before the engine sees it, or drops it (null). */
  intercept: ((payload: Uint8Array, from: LinkPeer) => Uint8Array | null) | undefined;
  /** Every tunnel payload the link delivered (copies), in order. */
  readonly inbox: Array<{ payload: Uint8Array; from: LinkPeer }>;
  /** Build-rate admission of this node as a hop. @default always */
  allowBuildFrom: (from: LinkPeer) => boolean;
  /** Endpoints opened and not yet closed, by handle: the "ports" this node holds. */
  readonly openEndpoints: Map<number, EndpointTunnel>;
  readonly closedEndpoints: Array<{ handle: number; reason: DestroyReason }>;
  readonly endpointFrames: Uint8Array[];
  readonly ownClosed: OwnedTunnel[];
  /** As a master: inbound cell plaintext of its own tunnels. */
  readonly ownFrames: Array<{ tunnel: OwnedTunnel; plaintext: Uint8Array }>;
  count(name: string): number;
}

/** Options of {@link createEngineMesh}. */
export interface EngineMeshOptions {
  readonly network: MemoryNetwork;
  readonly clock: ManualClock;
  /** Per node: engine caps and link options. */
  readonly engine?: { maxTransit?: number; maxTransitPerNeighbour?: number };
  readonly link?: Partial<Omit<LinkOptions, 'socket' | 'identity' | 'clock'>>;
}

/** A mesh of Link + TunnelEngine nodes on hosts 127.0.5.x of an in-memory network. */
export interface EngineMesh {
  readonly nodes: EngineMeshNode[];
  /** Adds a node; `name` is for messages only. */
  add(name: string, options?: { engine?: EngineMeshOptions['engine']; link?: EngineMeshOptions['link'] }): Promise<EngineMeshNode>;
  /** Runs deliveries until the wire is quiet. */
  settle(): Promise<void>;
  /** Advances the clock in 250 ms steps, settling after each. */
  advance(ms: number): Promise<void>;
  /** Builds a master-mode tunnel; rejects with the BuildError. */
  build(master: EngineMeshNode, hops: readonly EngineMeshNode[], lifetimeMs?: number): Promise<OwnedTunnel>;
  close(): Promise<void>;
}

/** Starts an empty engine mesh; `add` nodes to it. */
export function createEngineMesh(options: EngineMeshOptions): EngineMesh {
  const { network, clock } = options;
  const nodes: EngineMeshNode[] = [];
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 8; i++) {
      await network.idle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const add = async (name: string, extra: { engine?: EngineMeshOptions['engine']; link?: EngineMeshOptions['link'] } = {}): Promise<EngineMeshNode> => {
    const socket = new SpyingSocket(network.bind({ host: `127.0.5.${nodes.length + 1}`, port: 7000 }));
    const identity = generateKeyPair();
    const nodeClock = new SkewedClock(clock, 0);
    const link = await Link.create({ ...options.link, ...extra.link, socket, identity, clock: nodeClock });
    const caps = { ...options.engine, ...extra.engine };
    let nextPort = 40_000;
    const policy: TunnelPolicy = {
      allowBuildFrom: (from) => node.allowBuildFrom(from),
      admit: (): RefusalReason | undefined => undefined,
      openEndpoint: (tunnel) => {
        node.openEndpoints.set(tunnel.handle, tunnel);
        return Promise.resolve({ host: socket.local.host, port: nextPort++ });
      },
      closeEndpoint: (tunnel, reason) => {
        node.openEndpoints.delete(tunnel.handle);
        node.closedEndpoints.push({ handle: tunnel.handle, reason });
      },
      endpointFrame: (_tunnel, plaintext) => void node.endpointFrames.push(plaintext.slice()),
      pickNextHop: () => undefined,
    };
    const engine = new TunnelEngine({
      link,
      identity,
      clock: nodeClock,
      policy,
      ...(caps.maxTransit !== undefined ? { maxTransit: caps.maxTransit } : {}),
      ...(caps.maxTransitPerNeighbour !== undefined ? { maxTransitPerNeighbour: caps.maxTransitPerNeighbour } : {}),
    });
    const node: EngineMeshNode = {
      name,
      link,
      engine,
      socket,
      identity,
      clock: nodeClock,
      candidate: { address: socket.local, publicKey: identity.publicKey },
      intercept: undefined,
      inbox: [],
      allowBuildFrom: () => true,
      openEndpoints: new Map(),
      closedEndpoints: [],
      endpointFrames: [],
      ownClosed: [],
      ownFrames: [],
      count: (counter) => engine.stats().counters[counter] ?? 0,
    };
    engine.onTunnelClosed = (tunnel) => void node.ownClosed.push(tunnel);
    engine.onTunnelFrame = (tunnel, plaintext) => void node.ownFrames.push({ tunnel, plaintext: plaintext.slice() });
    link.onPayload((payload, from) => {
      node.inbox.push({ payload: payload.slice(), from });
      const delivered = node.intercept === undefined ? payload : node.intercept(payload.slice(), from);
      if (delivered !== null) engine.handle(delivered, from);
    });
    nodes.push(node);
    return node;
  };
  return {
    nodes,
    add,
    settle,
    advance: async (ms) => {
      for (let done = 0; done < ms; done += 250) {
        clock.advance(Math.min(250, ms - done));
        await settle();
      }
    },
    build: async (master, hops, lifetimeMs = 600_000) => {
      const building = master.engine.build({ mode: 'master', hops: hops.map((h) => h.candidate), lifetimeMs });
      building.catch(() => undefined);
      await settle();
      return withDeadline(building, 5_000, 'a build over a quiet in-memory network');
    },
    close: async () => {
      for (const node of nodes) node.engine.close();
      await settle();
      await Promise.all(nodes.map((node) => node.link.close()));
    },
  };
}

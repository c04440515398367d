/**
 * A hand-built mesh of Link + TunnelEngine nodes on the in-memory network and a ManualClock.
 * The test holds each node's link handler, so it can hand a hop exactly the bytes a malicious
 * neighbour could send over its authenticated link; it sets each node's admission answer and
 * endpoint setup, skews each node's clock, kills its socket, and sees every payload, endpoint
 * frame and owned tunnel that ended (with its reason).
 */
import { ManualClock, addressKey, type UdpAddress } from '@deut/common';
import { generateKeyPair, type KeyPair } from '@deut/crypto';
import { Link, type LinkPeer } from '@deut/link';
import { MemoryNetwork } from '@deut/transport';
import { TunnelEngine, type DestroyReason, type EndpointTunnel, type OwnedTunnel, type PeerCandidate, type RefusalReason, type TunnelCounter } from '@deut/tunnel';
import { SkewedClock, SpyingSocket } from './attack.js';
import { KillableSocket, withDeadline } from '@deut/node';

/** Inbox entries kept per node: enough for any test, bounded for long property runs. */
const INBOX_LIMIT = 10_000;

/** A node's socket: counts traffic per address like a {@link SpyingSocket}, and can be killed. */
export class MeshSocket extends SpyingSocket {
  readonly #killable: KillableSocket;

  constructor(killable: KillableSocket) {
    super(killable);
    this.#killable = killable;
  }

  /** From now on the node neither sends nor receives anything (a crashed host). */
  kill(): void {
    this.#killable.kill();
  }
}

/** One node of an {@link EngineMesh}. */
export interface EngineMeshNode {
  readonly name: string;
  readonly host: string;
  readonly link: Link;
  readonly engine: TunnelEngine;
  /** The node's socket: sending on it sends from the node's address. */
  readonly socket: MeshSocket;
  /** The node's static key pair (link and tunnel identity). */
  readonly identity: KeyPair;
  /** The node's own clock: the mesh's, `offsetMs` away (a node whose clock is off). */
  readonly clock: SkewedClock;
  readonly candidate: PeerCandidate;
  /** Tunnel-layer payloads the link delivered (copies), in order, with the sender's mesh name (or address). */
  readonly inbox: Array<{ payload: Uint8Array; from: LinkPeer; sender: string }>;
  /** Rewrites a tunnel-layer payload before the engine sees it, or drops it (null). */
  intercept: ((payload: Uint8Array, from: LinkPeer) => Uint8Array | null) | undefined;
  /** Admission answer of this node as a hop (undefined admits). */
  refuse: RefusalReason | undefined;
  /** Endpoint setup, replaceable by a test (the default records the tunnel and binds at once). */
  openEndpoint: (tunnel: EndpointTunnel) => Promise<UdpAddress | RefusalReason>;
  /** Every endpoint tunnel the default `openEndpoint` opened. */
  readonly endpoints: EndpointTunnel[];
  /** Plaintext that left this node's endpoints toward the world. */
  readonly endpointFrames: Uint8Array[];
  readonly closedEndpoints: Array<{ handle: number; reason: DestroyReason }>;
  /** As a master: inbound plaintext of owned tunnels, and owned tunnels that ended. */
  readonly ownFrames: Array<{ tunnel: OwnedTunnel; plaintext: Uint8Array }>;
  readonly ownClosed: Array<{ tunnel: OwnedTunnel; reason: DestroyReason }>;
  /** An engine counter (0 if never counted). */
  count(name: TunnelCounter): number;
}

/** Options of {@link createEngineMesh}. */
export interface EngineMeshOptions {
  /** Nodes to add at once, by name. */
  readonly nodes?: readonly string[];
  /** A network and its clock shared with other parties of a test; without it the mesh makes (and closes) its own. */
  readonly shared?: { readonly network: MemoryNetwork; readonly clock: ManualClock };
  /** Seed of the network the mesh makes. @default 7 */
  readonly seed?: number;
}

/** Options of {@link EngineMesh.build}. */
export interface MeshBuildOptions {
  /** @default 600_000 */
  readonly lifetimeMs?: number;
  /** The master's build timeout. @default the engine's */
  readonly timeoutMs?: number;
}

/** A mesh of Link + TunnelEngine nodes on hosts 127.0.4.x of an in-memory network. */
export interface EngineMesh {
  readonly clock: ManualClock;
  readonly network: MemoryNetwork;
  readonly nodes: EngineMeshNode[];
  /** Adds a node; `name` names it in inbox entries and messages. */
  add(name: string): Promise<EngineMeshNode>;
  /** Runs deliveries until the wire is quiet (zero-delay delivery needs no clock). */
  settle(): Promise<void>;
  /** Advances the clock in 250 ms steps, settling after each. */
  advance(ms: number): Promise<void>;
  /** Builds a master-mode tunnel from `master` through `hops`; rejects with the BuildError. */
  build(master: EngineMeshNode, hops: readonly EngineMeshNode[], options?: MeshBuildOptions): Promise<OwnedTunnel>;
  /** Tunnel state held by every engine together (transit, owned, pending). */
  totalState(): number;
  /** Closes every engine and link, and the network if the mesh made it. */
  close(): Promise<void>;
}

/** Starts an engine mesh with `options.nodes`; `add` more to it. */
export async function createEngineMesh(options: EngineMeshOptions = {}): Promise<EngineMesh> {
  const clock = options.shared?.clock ?? new ManualClock();
  const network = options.shared?.network ?? new MemoryNetwork({ seed: options.seed ?? 7, clock });
  const nodes: EngineMeshNode[] = [];
  const nameOf = (from: LinkPeer): string => nodes.find((n) => addressKey(n.candidate.address) === addressKey(from.address))?.name ?? addressKey(from.address);

  const settle = async (): Promise<void> => {
    for (let i = 0; i < 8; i++) {
      await network.idle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };

  const add = async (name: string): Promise<EngineMeshNode> => {
    const host = `127.0.4.${nodes.length + 1}`;
    const socket = new MeshSocket(new KillableSocket(network.bind({ host, port: 7000 })));
    const identity = generateKeyPair();
    const nodeClock = new SkewedClock(clock, 0);
    const link = await Link.create({ socket, identity, clock: nodeClock });
    const node: EngineMeshNode = {
      name,
      host,
      link,
      socket,
      identity,
      clock: nodeClock,
      candidate: { address: socket.local, publicKey: identity.publicKey },
      inbox: [],
      intercept: undefined,
      refuse: undefined,
      openEndpoint: (tunnel) => {
        node.endpoints.push(tunnel);
        return Promise.resolve({ host, port: 40_000 + tunnel.handle });
      },
      endpoints: [],
      endpointFrames: [],
      closedEndpoints: [],
      ownFrames: [],
      ownClosed: [],
      engine: new TunnelEngine({
        link,
        identity,
        clock: nodeClock,
        policy: { allowBuildFrom: () => true, admit: () => node.refuse, pickNextHop: () => undefined },
        endpoints: {
          open: (tunnel) => node.openEndpoint(tunnel),
          close: (tunnel, reason) => void node.closedEndpoints.push({ handle: tunnel.handle, reason }),
          frame: (_tunnel, plaintext) => void node.endpointFrames.push(plaintext.slice()),
        },
        master: {
          tunnelFrame: (tunnel, plaintext) => void node.ownFrames.push({ tunnel, plaintext: plaintext.slice() }),
          tunnelClosed: (tunnel, reason) => void node.ownClosed.push({ tunnel, reason }),
        },
      }),
      count: (counterName) => node.engine.stats().counters[counterName] ?? 0,
    };
    link.onPayload((payload, from) => {
      if (node.inbox.length < INBOX_LIMIT) node.inbox.push({ payload: payload.slice(), from, sender: nameOf(from) });
      const delivered = node.intercept === undefined ? payload : node.intercept(payload.slice(), from);
      if (delivered !== null) node.engine.handle(delivered, from);
    });
    nodes.push(node);
    return node;
  };

  for (const name of options.nodes ?? []) await add(name);
  return {
    clock,
    network,
    nodes,
    add,
    settle,
    advance: async (ms) => {
      for (let done = 0; done < ms; done += 250) {
        clock.advance(Math.min(250, ms - done));
        await settle();
      }
    },
    build: async (master, hops, { lifetimeMs = 600_000, timeoutMs } = {}) => {
      const building = master.engine.build({ mode: 'master', hops: hops.map((h) => h.candidate), lifetimeMs, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
      building.catch(() => undefined);
      await settle();
      return withDeadline(building, 5_000, 'a build over a quiet in-memory network');
    },
    totalState: () =>
      nodes.reduce((sum, n) => {
        const s = n.engine.stats();
        return sum + s.transit + s.owned + s.pendingBuilds;
      }, 0),
    close: async () => {
      for (const node of nodes) node.engine.close();
      await settle();
      await Promise.all(nodes.map((node) => node.link.close()));
      if (options.shared === undefined) await network.close();
    },
  };
}

/** Makes `node` alter the next payload of tunnel message `type` from `from` with `change`, once. */
export function tamperOnce(node: EngineMeshNode, type: number, from: EngineMeshNode, change: (payload: Uint8Array) => Uint8Array): void {
  node.intercept = (payload, sender) => {
    if (payload[0] !== type || addressKey(sender.address) !== addressKey(from.candidate.address)) return payload;
    node.intercept = undefined;
    return change(payload);
  };
}

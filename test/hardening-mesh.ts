/**
 * A hand-built mesh of Link + TunnelEngine on the in-memory network and a ManualClock, for
 * the hardening tests: the test holds each node's link handler, so it can hand a hop exactly
 * the bytes a malicious neighbour could send over its authenticated link, and it sees every
 * endpoint frame and every owned tunnel that ended (with its reason).
 */
import fc from 'fast-check';
import { ManualClock, addressKey, type UdpAddress } from '@deut/common';
import { generateKeyPair, type KeyPair } from '@deut/crypto';
import { Link, type LinkPeer } from '@deut/link';
import { KillableSocket, withDeadline } from '@deut/testkit';
import { MemoryNetwork } from '@deut/transport';
import { TunnelEngine, type DestroyReason, type EndpointTunnel, type OwnedTunnel, type PeerCandidate, type RefusalReason } from '@deut/tunnel';

export interface MeshNode {
  readonly name: string;
  readonly link: Link;
  /** The node's socket: sending on it sends from the node's address. */
  readonly socket: KillableSocket;
  /** The node's static key pair (link and tunnel identity). */
  readonly identity: KeyPair;
  readonly engine: TunnelEngine;
  readonly candidate: PeerCandidate;
  /** Every tunnel-layer payload this node's link delivered (copies), with its sender's name. */
  readonly inbox: Array<{ payload: Uint8Array; from: string }>;
  /** Rewrites a tunnel-layer payload before the engine sees it, or drops it (null). */
  intercept: ((payload: Uint8Array, from: LinkPeer) => Uint8Array | null) | undefined;
  /** Admission answer of this node as a hop (undefined admits). */
  refuse: RefusalReason | undefined;
  /** Endpoint setup, replaceable by a test (the default binds at once). */
  openEndpoint: (tunnel: EndpointTunnel) => Promise<UdpAddress | RefusalReason>;
  readonly endpoints: EndpointTunnel[];
  /** Plaintext that left this node's endpoints toward the world. */
  readonly endpointFrames: Uint8Array[];
  readonly closedEndpoints: Array<{ handle: number; reason: DestroyReason }>;
  /** As a master: inbound plaintext of owned tunnels, and owned tunnels that ended. */
  readonly ownFrames: Uint8Array[];
  readonly ownClosed: Array<{ tunnel: OwnedTunnel; reason: DestroyReason }>;
  count(name: string): number;
}

export interface Mesh {
  readonly clock: ManualClock;
  readonly network: MemoryNetwork;
  readonly nodes: MeshNode[];
  /** Runs deliveries until the wire is quiet (zero-delay delivery needs no clock). */
  settle(): Promise<void>;
  /** Advances the clock in 250 ms steps, settling after each. */
  advance(ms: number): Promise<void>;
  /** Builds a master-mode tunnel from `master` through `hops`. */
  build(master: MeshNode, hops: readonly MeshNode[], lifetimeMs?: number): Promise<OwnedTunnel>;
  /** Tunnel state held by every engine together (transit, owned, pending). */
  totalState(): number;
  close(): Promise<void>;
}

export async function createMesh(names: readonly string[], seed = 7): Promise<Mesh> {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed, clock });
  const nodes: MeshNode[] = [];
  for (const [i, name] of names.entries()) {
    const host = `127.0.4.${i + 1}`;
    const socket = new KillableSocket(network.bind({ host, port: 7000 }));
    const identity = generateKeyPair();
    const link = await Link.create({ socket, identity, clock });
    const node: MeshNode = {
      name,
      link,
      socket,
      identity,
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
        clock,
        policy: {
          allowBuildFrom: () => true,
          admit: () => node.refuse,
          openEndpoint: (tunnel) => node.openEndpoint(tunnel),
          closeEndpoint: (tunnel, reason) => void node.closedEndpoints.push({ handle: tunnel.handle, reason }),
          endpointFrame: (_tunnel, plaintext) => void node.endpointFrames.push(plaintext.slice()),
          pickNextHop: () => undefined,
        },
      }),
      count: (counterName) => node.engine.stats().counters[counterName] ?? 0,
    };
    node.engine.onTunnelFrame = (_tunnel, plaintext) => void node.ownFrames.push(plaintext.slice());
    node.engine.onTunnelClosed = (tunnel, reason) => void node.ownClosed.push({ tunnel, reason });
    link.onPayload((payload, from) => {
      const sender = nodes.find((n) => addressKey(n.candidate.address) === addressKey(from.address));
      if (node.inbox.length < 10_000) node.inbox.push({ payload: payload.slice(), from: sender?.name ?? addressKey(from.address) });
      const delivered = node.intercept === undefined ? payload : node.intercept(payload.slice(), from);
      if (delivered !== null) node.engine.handle(delivered, from);
    });
    nodes.push(node);
  }
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 8; i++) {
      await network.idle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return {
    clock,
    network,
    nodes,
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
    totalState: () =>
      nodes.reduce((sum, n) => {
        const s = n.engine.stats();
        return sum + s.transit + s.owned + s.pendingBuilds;
      }, 0),
    close: async () => {
      for (const node of nodes) node.engine.close();
      await settle();
      await Promise.all(nodes.map((node) => node.link.close()));
      await network.close();
    },
  };
}

/** Makes `node` alter the next payload of tunnel message `type` from `from` with `change`, once. */
export function tamperOnce(node: MeshNode, type: number, from: MeshNode, change: (payload: Uint8Array) => Uint8Array): void {
  node.intercept = (payload, sender) => {
    if (payload[0] !== type || addressKey(sender.address) !== addressKey(from.candidate.address)) return payload;
    node.intercept = undefined;
    return change(payload);
  };
}

/**
 * fc.assert, with the failing assertion's own message in the error (fast-check keeps it
 * as `cause`, which the test reporter does not print).
 */
export async function assertProperty<Ts>(property: fc.IAsyncProperty<Ts> | fc.IProperty<Ts>, params: fc.Parameters<Ts>): Promise<void> {
  try {
    await fc.assert(property, params);
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : '';
    throw new Error(`${error instanceof Error ? error.message.split('\n').slice(0, 3).join('\n') : String(error)}\ncause: ${cause}`);
  }
}

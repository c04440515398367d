/**
 * Test scaffolding for links: a socket wrapper that records what a node sends and lets a
 * test hold, reorder, mutate and inject datagrams, plus a factory for linked pairs over
 * either transport (one test, two networks: wireguard-go's bindtest habit).
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { ManualClock, type Clock, type UdpAddress } from '@deut/common';
import { generateKeyPair, type KeyPair } from '@deut/crypto';
import { MemoryNetwork, bindUdp, type DatagramSocket, type MessageHandler, type SocketStats } from '@deut/transport';
import { KnownPeers, Link, type LinkOptions } from '../src/index.js';

/** Wraps a socket: `sent` records outgoing datagrams; with `holding`, arrivals wait in `held`. */
export class ControlledSocket implements DatagramSocket {
  readonly sent: Array<{ data: Uint8Array; to: UdpAddress }> = [];
  readonly held: Array<{ data: Uint8Array; from: UdpAddress }> = [];
  recording = false;
  holding = false;
  #handler: MessageHandler | undefined;

  constructor(readonly inner: DatagramSocket) {
    inner.onMessage((data, from) => {
      if (this.holding) this.held.push({ data, from });
      else this.#handler?.(data, from);
    });
  }

  get local(): UdpAddress {
    return this.inner.local;
  }

  get stats(): SocketStats {
    return this.inner.stats;
  }

  send(data: Uint8Array, to: UdpAddress): void {
    if (this.recording) this.sent.push({ data: data.slice(), to });
    this.inner.send(data, to);
  }

  onMessage(handler: MessageHandler): void {
    this.#handler = handler;
  }

  /** Hands a datagram to the node as if it had arrived from `from`. */
  deliver(data: Uint8Array, from: UdpAddress): void {
    this.#handler?.(data, from);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export type TransportName = 'memory' | 'udp';

/** Creates sockets on one network of the named kind; `close()` releases everything. */
export function createNetwork(kind: TransportName, options: { clock?: Clock; seed?: number } = {}) {
  const memory = kind === 'memory' ? new MemoryNetwork({ seed: options.seed ?? 1, ...(options.clock ? { clock: options.clock } : {}) }) : undefined;
  let nextHost = 1;
  const bind = async (): Promise<ControlledSocket> => {
    const host = `127.0.0.${nextHost++}`;
    const inner = memory !== undefined ? memory.bind({ host, port: 7000 }) : await bindUdp({ host, port: 0 });
    return new ControlledSocket(inner);
  };
  return { memory, bind, close: async () => memory?.close() };
}

/** A node: its link, its socket wrapper and its identity. */
export interface TestNode {
  readonly link: Link;
  readonly socket: ControlledSocket;
  readonly identity: KeyPair;
  readonly knownPeers: KnownPeers;
  readonly received: Array<{ payload: Uint8Array; from: UdpAddress }>;
}

/** Starts a link on a fresh socket of `network`, recording every payload it receives. */
export async function startNode(
  network: { bind: () => Promise<ControlledSocket> },
  options: Partial<Omit<LinkOptions, 'socket'>> = {},
): Promise<TestNode> {
  const socket = await network.bind();
  const identity = options.identity ?? generateKeyPair();
  const knownPeers = options.knownPeers ?? KnownPeers.inMemory();
  const link = await Link.create({ ...options, socket, identity, knownPeers });
  const received: TestNode['received'] = [];
  link.onPayload((payload, from) => received.push({ payload, from: from.address }));
  return { link, socket, identity, knownPeers, received };
}

/**
 * Runs `body` with two started nodes on a fresh network, A already connected to B (both
 * ends have the session), and closes everything afterwards, also on failure.
 */
export async function withConnectedPair(
  body: (a: TestNode, b: TestNode, network: ReturnType<typeof createNetwork>) => Promise<void>,
  options: { transport?: TransportName; a?: Partial<Omit<LinkOptions, 'socket'>>; b?: Partial<Omit<LinkOptions, 'socket'>> } = {},
): Promise<void> {
  const network = createNetwork(options.transport ?? 'memory');
  const a = await startNode(network, options.a);
  const b = await startNode(network, options.b);
  try {
    await a.link.connect(b.link.address);
    await until(() => b.link.sessions().length === 1, 10_000, 'session at the responder');
    await body(a, b, network);
  } finally {
    await Promise.all([a.link.close(), b.link.close()]);
    await network.close();
  }
}

/**
 * Runs `body` with two started, unconnected nodes on a fresh in-memory network driven by a
 * manual clock, and closes everything afterwards, also on failure.
 */
export async function withClockedPair(body: (a: TestNode, b: TestNode, clock: ManualClock) => Promise<void>): Promise<void> {
  const clock = new ManualClock();
  const network = createNetwork('memory', { clock });
  const a = await startNode(network, { clock });
  const b = await startNode(network, { clock });
  try {
    await body(a, b, clock);
  } finally {
    await Promise.all([a.link.close(), b.link.close()]);
    await network.close();
  }
}

/** Moves `clock` on by `ms` in link ticks (250 ms), letting deliveries run; stops early once `done()` holds. */
export async function advanceClock(clock: ManualClock, ms: number, done: () => boolean = () => false): Promise<void> {
  for (let passed = 0; passed < ms && !done(); passed += 250) {
    clock.advance(250);
    await flush();
  }
}

/** Resolves when `predicate` holds, polling on the event loop; rejects after `ms`. */
export async function until(predicate: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * Holds the event loop open for the whole test file. Link timers are unref'd (a real node's
 * UDP socket keeps the process alive), so on the in-memory network a test waiting for a
 * retransmission would otherwise end early; a stuck wait now fails by its test's timeout.
 */
export function holdEventLoopOpen(): () => void {
  const keep = setInterval(() => undefined, 1000);
  return () => clearInterval(keep);
}

/** Lets queued deliveries (setImmediate) run. */
export async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Garbage collection on demand, without needing --expose-gc on the command line. */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Pearson chi-square statistic of byte values against the uniform distribution. */
export function byteChiSquare(chunks: readonly Uint8Array[]): number {
  const counts = new Array<number>(256).fill(0);
  let total = 0;
  for (const chunk of chunks) {
    for (const byte of chunk) counts[byte]!++;
    total += chunk.length;
  }
  const expected = total / 256;
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
}

/** Chi-square critical value for 255 degrees of freedom at p = 0.001. */
export const CHI_SQUARE_255_P001 = 330.52;

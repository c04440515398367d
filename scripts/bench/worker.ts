/**
 * One process of a benchmark, started by workers.ts with a role and its options, then told
 * what to do over the IPC channel. Roles: a deut node (`deut`), a master that builds its own
 * paths (`master`), and the no-crypto baselines written for the benchmark: a UDP forwarder,
 * an echo or ack server, a counting sink and a plain UDP client.
 */
import { performance } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';
import { parseAddress, systemClock, type UdpAddress } from '@deut/common';
import { cryptoReady, fromHex, generateKeyPair, toHex } from '@deut/crypto';
import { Link } from '@deut/link';
import { DeutNode } from '@deut/node';
import { bindUdp, type DatagramSocket, type MessageHandler, type SocketStats } from '@deut/transport';
import { Reassembler, TunnelEngine, fragmentDatagram, type OwnedTunnel } from '@deut/tunnel';
import { decodeCellFrame, encodeCellFrame } from '@deut/wire';
import { blast, bulk, rtt, type Carrier } from './traffic.js';

/** A message from the parent: a command with JSON arguments. */
interface Command {
  readonly id: number;
  readonly cmd: string;
  readonly args: Record<string, unknown>;
}

type Handler = (args: Record<string, unknown>) => Promise<unknown>;

const UNLIMITED = { perSecond: 1e9, burst: 1e9 };
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

function addressArg(value: unknown): UdpAddress {
  if (typeof value !== 'string') throw new Error('address argument missing');
  return parseAddress(value);
}

function numberArg(value: unknown, fallback?: number): number {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (fallback !== undefined) return fallback;
  throw new Error('number argument missing');
}

function text(address: UdpAddress): string {
  return `${address.host}:${address.port}`;
}

/** Heap, typed-array backing stores (outside the heap) and RSS after two full collections (the worker runs with --expose-gc). */
function memory(): { heapUsed: number; arrayBuffers: number; rss: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const usage = process.memoryUsage();
  return { heapUsed: usage.heapUsed, arrayBuffers: usage.arrayBuffers, rss: usage.rss };
}

/**
 * A socket that can record what it is asked to send instead of sending it, so a master can
 * seal cells ahead of time and a blast measures only the relay, not the master's sealing.
 */
class CaptureSocket implements DatagramSocket {
  captured: Array<{ data: Uint8Array; to: UdpAddress }> | undefined;
  constructor(readonly inner: DatagramSocket) {}
  get local(): UdpAddress {
    return this.inner.local;
  }
  get stats(): SocketStats {
    return this.inner.stats;
  }
  send(data: Uint8Array, to: UdpAddress): void {
    if (this.captured !== undefined) this.captured.push({ data: data.slice(), to });
    else this.inner.send(data, to);
  }
  onMessage(handler: MessageHandler): void {
    this.inner.onMessage(handler);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A socket that accepts everything and sends nothing: endpoint ports that cost no descriptor. */
class NullSocket implements DatagramSocket {
  static #nextPort = 1;
  readonly local: UdpAddress;
  readonly stats: SocketStats = { sent: 0, received: 0, sendErrors: 0, handlerErrors: 0, bytesSent: 0, bytesReceived: 0 };
  constructor(host: string) {
    this.local = { host, port: 1 + (NullSocket.#nextPort++ % 65_000) };
  }
  send(): void {}
  onMessage(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function deutRole(options: Record<string, unknown>): Promise<{ info: unknown; handlers: Record<string, Handler> }> {
  const host = String(options.host);
  const nullExits = options.nullExits === true;
  let bound = false;
  const node = await DeutNode.start({
    listen: { host, port: 0 },
    identity: generateKeyPair(),
    relay: true,
    allowPrivateExits: true,
    allowSameSubnet: true,
    buildRatePerNeighbour: UNLIMITED,
    buildRateGlobal: UNLIMITED,
    maxTransit: 250_000,
    exit: {
      perTunnel: { packets: UNLIMITED, bytes: UNLIMITED },
      perMaster: { packets: UNLIMITED, bytes: UNLIMITED },
      maxPorts: 100_000,
    },
    sockets: {
      bind: async (address) => {
        const first = !bound;
        bound = true;
        if (!first && nullExits) return new NullSocket(host);
        return bindUdp(address, first ? { recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES } : {});
      },
    },
  });
  return {
    info: { address: text(node.address), publicKey: toHex(node.publicKey) },
    handlers: {
      memory: () => Promise.resolve({ ...memory(), transit: node.stats().tunnels.transit, endpoints: node.stats().tunnels.endpoints }),
      stats: () => Promise.resolve(node.stats()),
      // For finding where transit memory goes (PERFORMANCE.md): a heap snapshot file.
      snapshot: (args) => Promise.resolve(writeHeapSnapshot(String(args.path))),
    },
  };
}

async function masterRole(options: Record<string, unknown>): Promise<{ info: unknown; handlers: Record<string, Handler> }> {
  const host = String(options.host);
  const socket = new CaptureSocket(await bindUdp({ host, port: 0 }, { recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES }));
  const identity = generateKeyPair();
  const link = await Link.create({ socket, identity, ephemeralIdentity: true });
  const reassembler = new Reassembler({ clock: systemClock });
  let onData: (data: Uint8Array) => void = () => undefined;
  const engine = new TunnelEngine({
    link,
    identity,
    maxTransit: 0,
    policy: { allowBuildFrom: () => false, admit: () => 'overloaded', pickNextHop: () => undefined },
    endpoints: { open: () => Promise.resolve('overloaded'), close: () => undefined, frame: () => undefined },
    master: {
      tunnelFrame: (tunnel, plaintext) => {
        const frame = decodeCellFrame(plaintext);
        if (frame.type !== 'datagram') return;
        const datagram = reassembler.add(String(tunnel.localId), frame);
        if (datagram !== undefined) onData(datagram.data);
      },
      tunnelClosed: () => undefined,
    },
  });
  link.onPayload((payload, from) => engine.handle(payload, from));
  const tunnels: OwnedTunnel[] = [];
  const carrier = (to: UdpAddress): Carrier => ({
    send: (data) => {
      const tunnel = tunnels[0];
      if (tunnel === undefined) throw new Error('no tunnel built');
      for (const frame of fragmentDatagram(tunnel.nextDatagramId(), to, data)) engine.send(tunnel, encodeCellFrame(frame));
    },
    onData: (listener) => {
      onData = listener;
    },
  });
  let prepared: Array<{ data: Uint8Array; to: UdpAddress }> = [];
  return {
    info: { address: text(link.address) },
    handlers: {
      build: async (args) => {
        const hops = (args.hops as Array<{ address: string; publicKey: string }>).map((h) => ({ address: parseAddress(h.address), publicKey: fromHex(h.publicKey) }));
        const count = numberArg(args.count, 1);
        const concurrency = numberArg(args.concurrency, 32);
        let started = 0;
        let failed = 0;
        const began = performance.now();
        const cpuBefore = process.cpuUsage();
        const one = async (): Promise<void> => {
          while (started < count) {
            started++;
            try {
              tunnels.push(await engine.build({ mode: 'master', hops, timeoutMs: 60_000 }));
            } catch {
              failed++;
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(concurrency, count) }, one));
        const cpu = process.cpuUsage(cpuBefore);
        return { built: count - failed, failed, ms: performance.now() - began, cpuMs: (cpu.user + cpu.system) / 1000 };
      },
      prepare: (args) => {
        const n = numberArg(args.count);
        const to = addressArg(args.to);
        const payload = new Uint8Array(numberArg(args.size, 64));
        socket.captured = [];
        try {
          for (let i = 0; i < n; i++) {
            const tunnel = tunnels[i % tunnels.length]!;
            for (const frame of fragmentDatagram(tunnel.nextDatagramId(), to, payload)) engine.send(tunnel, encodeCellFrame(frame));
          }
          prepared = socket.captured;
        } finally {
          socket.captured = undefined;
        }
        return Promise.resolve(prepared.length);
      },
      blast: (args) => blast(socket.inner, prepared, numberArg(args.burst, 64)),
      rtt: (args) => rtt(carrier(addressArg(args.to)), numberArg(args.count), numberArg(args.size)),
      bulk: (args) => bulk(carrier(addressArg(args.to)), numberArg(args.count), numberArg(args.size), numberArg(args.window)),
    },
  };
}

/** The plain UDP client of the baselines: the same traffic as the master, without deut. */
async function clientRole(options: Record<string, unknown>): Promise<{ info: unknown; handlers: Record<string, Handler> }> {
  const socket = await bindUdp({ host: String(options.host), port: 0 }, { recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
  let prepared: Array<{ data: Uint8Array; to: UdpAddress }> = [];
  const carrier = (via: UdpAddress): Carrier => ({
    send: (data) => socket.send(data, via),
    onData: (listener) => socket.onMessage((data) => listener(data)),
  });
  return {
    info: { address: text(socket.local) },
    handlers: {
      prepare: (args) => {
        const to = addressArg(args.to);
        const size = numberArg(args.size, 1200);
        prepared = Array.from({ length: numberArg(args.count) }, () => ({ data: new Uint8Array(size).fill(7), to }));
        return Promise.resolve(prepared.length);
      },
      blast: (args) => blast(socket, prepared, numberArg(args.burst, 64)),
      rtt: (args) => rtt(carrier(addressArg(args.via)), numberArg(args.count), numberArg(args.size)),
      bulk: (args) => bulk(carrier(addressArg(args.via)), numberArg(args.count), numberArg(args.size), numberArg(args.window)),
    },
  };
}

/**
 * The no-crypto UDP forwarder: whatever comes from `next` goes back to the last peer that
 * sent something else, and everything else goes on to `next`.
 */
async function forwarderRole(options: Record<string, unknown>): Promise<{ info: unknown; handlers: Record<string, Handler> }> {
  const socket = await bindUdp({ host: String(options.host), port: 0 }, { recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
  let next: UdpAddress | undefined;
  let previous: UdpAddress | undefined;
  socket.onMessage((data, from) => {
    if (next === undefined) return;
    if (from.port === next.port && from.host === next.host) {
      if (previous !== undefined) socket.send(data, previous);
      return;
    }
    previous = from;
    socket.send(data, next);
  });
  return {
    info: { address: text(socket.local) },
    handlers: {
      next: (args) => {
        next = addressArg(args.next);
        return Promise.resolve(true);
      },
    },
  };
}

/** Echo (the whole datagram back) or ack (its first 8 bytes back) server. */
async function echoRole(options: Record<string, unknown>): Promise<{ info: unknown; handlers: Record<string, Handler> }> {
  const socket = await bindUdp({ host: String(options.host), port: 0 }, { recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
  const ack = options.ack === true;
  socket.onMessage((data, from) => socket.send(ack ? data.subarray(0, 8) : data, from));
  return { info: { address: text(socket.local) }, handlers: {} };
}

/** Counts the datagrams that reach an address, and when the first and last came. */
async function sinkRole(options: Record<string, unknown>): Promise<{ info: unknown; handlers: Record<string, Handler> }> {
  const socket = await bindUdp({ host: String(options.host), port: numberArg(options.port, 0) }, { recvBufferSize: SOCKET_BUFFER_BYTES });
  let count = 0;
  let first = 0;
  let last = 0;
  socket.onMessage(() => {
    const now = performance.now();
    if (count === 0) first = now;
    last = now;
    count++;
  });
  return {
    info: { address: text(socket.local) },
    handlers: {
      reset: () => {
        count = 0;
        return Promise.resolve(true);
      },
      read: () => Promise.resolve({ count, ms: last - first }),
    },
  };
}

const ROLES: Record<string, (options: Record<string, unknown>) => Promise<{ info: unknown; handlers: Record<string, Handler> }>> = {
  deut: deutRole,
  master: masterRole,
  client: clientRole,
  forwarder: forwarderRole,
  echo: echoRole,
  sink: sinkRole,
};

async function main(): Promise<void> {
  const [role, json] = process.argv.slice(2);
  const start = ROLES[role ?? ''];
  if (start === undefined || process.send === undefined) throw new Error(`bench worker: unknown role ${String(role)} or no IPC channel`);
  await cryptoReady();
  const { info, handlers } = await start(JSON.parse(json ?? '{}') as Record<string, unknown>);
  process.on('message', (message: Command) => {
    const handler = handlers[message.cmd];
    const answer = handler === undefined ? Promise.reject(new Error(`unknown command ${message.cmd}`)) : handler(message.args);
    answer.then(
      (result) => process.send?.({ id: message.id, result }),
      (error: unknown) => process.send?.({ id: message.id, error: String(error) }),
    );
  });
  // The parent's channel holds the event loop; when the parent goes, so does this worker.
  process.on('disconnect', () => process.exit(0));
  // A clean exit on SIGTERM, so that a worker run with --cpu-prof writes its profile.
  process.on('SIGTERM', () => process.exit(0));
  process.send({ ready: info });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

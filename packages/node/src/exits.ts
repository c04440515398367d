/**
 * The endpoint role (PROTOCOL.md §5.5, §6; SECURITY.md §3.10): for each endpoint tunnel a UDP
 * port of its own, from which the master's datagrams leave "as if originated by this node",
 * and on which everything that arrives is passed back down the tunnel with its source
 * address. The exit policy decides what may leave; fragments are reassembled with bounds.
 */
import { Counters, ProtocolError, addressKey, prefixedCodes, silentLogger, type Clock, type Logger, type UdpAddress } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import { REASSEMBLY_DROP_REASONS } from '@deut/tunnel';
import { WIRE_ERROR_CODES, wireDropCode } from '@deut/wire';
import type { DatagramSocket } from '@deut/transport';
import { Reassembler, fragmentDatagram, type EndpointSender, type EndpointSink, type EndpointTunnel, type RefusalReason } from '@deut/tunnel';
import { MAX_DATAGRAM_BYTES, decodeCellFrame, encodeCellFrame, type CellFrame } from '@deut/wire';
import { EXIT_REFUSALS, type ExitPolicy } from './exit-policy.js';
import { randomU32 } from './random.js';

/** Binds UDP sockets: real ones, or ports of an in-memory network in tests. */
export interface SocketFactory {
  bind(address: UdpAddress): Promise<DatagramSocket>;
}

/** EXIT_REFUSED reasons (PROTOCOL.md §6). */
export const EXIT_REFUSED = { policy: 1, rate: 2, 'send-failed': 3 } as const;

/** The name of an EXIT_REFUSED reason code, or undefined for a code this version does not know. */
export function exitRefusedReasonName(code: number): keyof typeof EXIT_REFUSED | undefined {
  return (Object.keys(EXIT_REFUSED) as Array<keyof typeof EXIT_REFUSED>).find((name) => EXIT_REFUSED[name] === code);
}

interface OpenExit {
  readonly tunnel: EndpointTunnel;
  readonly socket: DatagramSocket;
  readonly upstreamKey: string;
  /** Next inbound datagram id (PROTOCOL.md §6: a counter per tunnel and direction). */
  datagramId: number;
}

/** Options of {@link EndpointExits}. */
export interface EndpointExitsOptions {
  readonly policy: ExitPolicy;
  readonly sockets: SocketFactory;
  /** Host to bind endpoint ports on (the node's listen host). */
  readonly bindHost: string;
  /** Host reported to masters; '::' when the node does not know its public address. */
  readonly reportHost: string;
  readonly clock: Clock;
  /** What carries these exits' cells back toward their masters (the tunnel engine). */
  readonly tunnels: EndpointSender;
  /** @default silentLogger */
  readonly logger?: Logger;
}

/** Why {@link EndpointExits} dropped a datagram, a frame or a port request (counted as `drop:<reason>`); metrics list them all at 0. */
export const ENDPOINT_EXITS_DROP_REASONS = [
  'port-cap',
  'no-port',
  'frame-unexpected',
  ...prefixedCodes('frame-', WIRE_ERROR_CODES),
  ...prefixedCodes('reassembly-', REASSEMBLY_DROP_REASONS),
  ...prefixedCodes('exit-', EXIT_REFUSALS),
  'exit-rate',
  'inbound-rate',
  'inbound-too-big',
] as const;

/** One of {@link ENDPOINT_EXITS_DROP_REASONS}. */
export type EndpointExitsDropReason = (typeof ENDPOINT_EXITS_DROP_REASONS)[number];

/** Counter names of {@link EndpointExits.stats}. */
export type EndpointExitsCounter =
  | 'ports-opened'
  | 'ports-closed'
  | 'probes-answered'
  | 'datagrams-exited'
  | 'datagrams-entered'
  | `drop:${EndpointExitsDropReason}`;

/** All endpoint ports of one node: the engine's endpoint sink. */
export class EndpointExits implements EndpointSink {
  readonly #options: EndpointExitsOptions;
  readonly #logger: Logger;
  readonly #open = new Map<number, OpenExit>();
  readonly #reassembler: Reassembler;
  readonly #counters = new Counters<EndpointExitsCounter>();
  readonly #tunnels: EndpointSender;

  constructor(options: EndpointExitsOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#tunnels = options.tunnels;
    this.#reassembler = new Reassembler({ clock: options.clock, onDrop: (reason) => this.#drop(`reassembly-${reason}`) });
  }

  /** Binds a port for a new endpoint tunnel. */
  async open(tunnel: EndpointTunnel): Promise<UdpAddress | RefusalReason> {
    const policy = this.#options.policy;
    if (!policy.reservePort()) {
      this.#drop('port-cap');
      return 'overloaded';
    }
    let socket: DatagramSocket;
    try {
      socket = await this.#options.sockets.bind({ host: this.#options.bindHost, port: 0 });
    } catch (error) {
      policy.releasePort();
      this.#logger.warn('exit: cannot bind an endpoint port', { error: String(error) });
      return 'exit-policy';
    }
    const exit: OpenExit = { tunnel, socket, upstreamKey: addressKey(tunnel.upstream.address), datagramId: randomU32() };
    this.#open.set(tunnel.handle, exit);
    socket.onMessage((data, from) => this.#inbound(exit, data, from));
    this.#counters.add('ports-opened');
    return { host: this.#options.reportHost, port: socket.local.port };
  }

  /** Releases the port of an endpoint tunnel. */
  close(tunnel: EndpointTunnel): void {
    const exit = this.#open.get(tunnel.handle);
    if (exit === undefined) return;
    this.#open.delete(tunnel.handle);
    this.#reassembler.forget(String(tunnel.handle));
    // The keys admitPacket used for this tunnel, both directions.
    this.#options.policy.forgetTunnel(`t${tunnel.handle}`);
    this.#options.policy.forgetTunnel(`in${tunnel.handle}`);
    this.#options.policy.releasePort();
    this.#counters.add('ports-closed');
    exit.socket.close().catch((error: unknown) => this.#logger.warn('exit: closing a port failed', { error: String(error) }));
  }

  /** Cell plaintext from the master. */
  frame(tunnel: EndpointTunnel, plaintext: Uint8Array): void {
    const exit = this.#open.get(tunnel.handle);
    if (exit === undefined) return this.#drop('no-port');
    let frame: CellFrame;
    try {
      frame = decodeCellFrame(plaintext);
    } catch (error) {
      if (error instanceof ProtocolError) return this.#drop(`frame-${wireDropCode(error)}`);
      throw error;
    }
    switch (frame.type) {
      case 'datagram': {
        const datagram = this.#reassembler.add(String(tunnel.handle), frame);
        if (datagram !== undefined) this.#exit(exit, frame.datagramId, datagram.address, datagram.data);
        return;
      }
      case 'probe':
        this.#reply(exit, { type: 'probe-reply', probeId: frame.probeId });
        this.#counters.add('probes-answered');
        return;
      case 'probe-reply':
      case 'exit-refused':
        return this.#drop('frame-unexpected');
    }
  }

  /** Number of ports held. */
  get portsHeld(): number {
    return this.#open.size;
  }

  /** Counters of this role. */
  stats(): { ports: number; reassembly: ReturnType<Reassembler['stats']>; policy: ReturnType<ExitPolicy['stats']>; counters: CounterSnapshot<EndpointExitsCounter> } {
    return { ports: this.#open.size, reassembly: this.#reassembler.stats(), policy: this.#options.policy.stats(), counters: this.#counters.snapshot() };
  }

  /** Closes every port (the engine also reports each close; this is for shutdown). */
  async closeAll(): Promise<void> {
    const sockets = [...this.#open.values()].map((exit) => exit.socket);
    for (const exit of [...this.#open.values()]) this.close(exit.tunnel);
    await Promise.allSettled(sockets.map((s) => s.close()));
  }

  #exit(exit: OpenExit, datagramId: number, to: UdpAddress, data: Uint8Array): void {
    const policy = this.#options.policy;
    const verdict = policy.checkDestination(to);
    if (verdict !== 'ok') {
      this.#drop(`exit-${verdict}`);
      return this.#reply(exit, { type: 'exit-refused', datagramId, reason: EXIT_REFUSED.policy });
    }
    if (!policy.admitPacket(`t${exit.tunnel.handle}`, exit.upstreamKey, data.length)) {
      this.#drop('exit-rate');
      return this.#reply(exit, { type: 'exit-refused', datagramId, reason: EXIT_REFUSED.rate });
    }
    exit.socket.send(data, to);
    this.#counters.add('datagrams-exited');
  }

  #inbound(exit: OpenExit, data: Uint8Array, from: UdpAddress): void {
    if (this.#open.get(exit.tunnel.handle) !== exit) return;
    // The same per-tunnel budget bounds what outsiders can push down a tunnel.
    if (!this.#options.policy.admitPacket(`in${exit.tunnel.handle}`, `in:${exit.upstreamKey}`, data.length)) return this.#drop('inbound-rate');
    if (data.length > MAX_DATAGRAM_BYTES) return this.#drop('inbound-too-big');
    const datagramId = exit.datagramId;
    exit.datagramId = (datagramId + 1) >>> 0;
    for (const frame of fragmentDatagram(datagramId, from, data)) this.#tunnels.sendFromEndpoint(exit.tunnel, encodeCellFrame(frame));
    this.#counters.add('datagrams-entered');
  }

  #reply(exit: OpenExit, frame: CellFrame): void {
    this.#tunnels.sendFromEndpoint(exit.tunnel, encodeCellFrame(frame));
  }

  #drop(reason: EndpointExitsDropReason): void {
    this.#counters.add(`drop:${reason}`);
  }
}

/**
 * A mesh of separate hosts on one machine: one network namespace per host, each with one
 * veth into a bridge that lives in a hub namespace of its own. Every address and link is
 * inside namespaces this mesh created; the machine's own namespace is never touched, and
 * `close()` deletes them all (deleting a namespace destroys its veths and the bridge).
 * Needs root and iproute2 (`ip netns`); impairment uses netem where the kernel has it and a
 * random DROP rule in each receiver's INPUT chain otherwise (iptables); captures use tcpdump.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One host of the mesh. */
export interface NetnsHost {
  readonly index: number;
  /** Namespace name. */
  readonly ns: string;
  /** Its address on the mesh's /24. */
  readonly address: string;
}

/** How loss is applied: netem on the bridge ports, or iptables in each receiver. */
export type ImpairmentMethod = 'netem' | 'iptables-random-drop';

/** One UDP packet seen on the bridge. */
export interface CapturedPacket {
  readonly src: string;
  readonly srcPort: number;
  readonly dst: string;
  readonly dstPort: number;
  /** UDP payload bytes. */
  readonly payload: Uint8Array;
}

/** Ethernet + IP + UDP + the largest datagram we send, with room: whole packets, no more. */
const CAPTURE_SNAPLEN = 1600;
/** The kernel capture ring, large enough that a starved tcpdump on a loaded machine loses nothing. */
const CAPTURE_BUFFER_KIB = 32 * 1024;

/** True when this process can create network namespaces (root and iproute2). */
export async function netnsAvailable(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  try {
    await run('ip', ['netns', 'list']);
    return true;
  } catch {
    return false;
  }
}

let meshes = 0;

/** A running namespace mesh. */
export class NetnsMesh {
  readonly hosts: NetnsHost[];
  readonly hub: string;
  readonly #children = new Set<ChildProcess>();
  #closed = false;

  private constructor(hub: string, hosts: NetnsHost[]) {
    this.hub = hub;
    this.hosts = hosts;
  }

  /** Creates `hosts` namespaces on a bridge, addressed `10.77.<net>.1..n`. */
  static async create(options: { hosts: number; net?: number }): Promise<NetnsMesh> {
    const prefix = `dt${process.pid % 100_000}x${meshes++}`;
    const hub = `${prefix}-hub`;
    const net = options.net ?? 77;
    const hosts = Array.from({ length: options.hosts }, (_, i) => ({ index: i + 1, ns: `${prefix}-h${i + 1}`, address: `10.77.${net}.${i + 1}` }));
    const mesh = new NetnsMesh(hub, hosts);
    try {
      await ip(['netns', 'add', hub]);
      // ageing_time 0: the bridge learns no addresses and floods every frame, like a hub.
      // A learning bridge switches unicast port to port, and tcpdump on br0 then sees only
      // the frames flooded before it learned: a capture that silently misses most packets.
      await ip(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge', 'ageing_time', '0']);
      await ip(['-n', hub, 'link', 'set', 'br0', 'up']);
      for (const host of hosts) {
        await ip(['netns', 'add', host.ns]);
        await ip(['-n', host.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `p${host.index}`, 'netns', hub]);
        await ip(['-n', hub, 'link', 'set', `p${host.index}`, 'master', 'br0', 'up']);
        await ip(['-n', host.ns, 'addr', 'add', `${host.address}/24`, 'dev', 'eth0']);
        await ip(['-n', host.ns, 'link', 'set', 'eth0', 'up']);
        await ip(['-n', host.ns, 'link', 'set', 'lo', 'up']);
      }
    } catch (error) {
      await mesh.close();
      throw error;
    }
    return mesh;
  }

  /** Starts `command` inside `host`'s namespace; it is killed by close(). */
  spawn(host: NetnsHost, command: readonly string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', host.ns, ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Runs `command` inside `host`'s namespace to completion. */
  async exec(host: NetnsHost, command: readonly string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
    const child = this.spawn(host, command);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? -1)));
    clearTimeout(killer);
    return { code, stdout, stderr };
  }

  /** Which loss method works here: netem if the kernel has it, else iptables in the receivers. */
  async impairmentMethod(): Promise<ImpairmentMethod> {
    try {
      await ip(['-n', this.hub, 'link', 'add', 'probe0', 'type', 'dummy']);
      try {
        await run('ip', ['netns', 'exec', this.hub, 'tc', 'qdisc', 'add', 'dev', 'probe0', 'root', 'netem', 'loss', '1%']);
        return 'netem';
      } finally {
        await ip(['-n', this.hub, 'link', 'del', 'probe0']).catch(() => undefined);
      }
    } catch {
      return 'iptables-random-drop';
    }
  }

  /** Drops `loss` (0..1) of the UDP datagrams every host receives. Returns the method used. */
  async impairLoss(loss: number): Promise<ImpairmentMethod> {
    const method = await this.impairmentMethod();
    for (const host of this.hosts) {
      if (method === 'netem') {
        // netem on the bridge port towards the host shapes what the host receives.
        await run('ip', ['netns', 'exec', this.hub, 'tc', 'qdisc', 'add', 'dev', `p${host.index}`, 'root', 'netem', 'loss', `${(loss * 100).toFixed(2)}%`]);
      } else {
        // In INPUT, not OUTPUT: a DROP in OUTPUT makes sendto() fail with EPERM instead of losing the datagram.
        await run('ip', ['netns', 'exec', host.ns, 'iptables', '-A', 'INPUT', '-p', 'udp', '-m', 'statistic', '--mode', 'random', '--probability', loss.toFixed(4), '-j', 'DROP']);
      }
    }
    return method;
  }

  /**
   * Starts tcpdump on the bridge; `stop()` returns every UDP packet it saw, or throws if it lost any.
   * Immediate mode: otherwise libpcap hands packets over a ring block at a time, and the block
   * still open at SIGINT (the last second: a scenario's final echo) is lost without being counted.
   */
  async capture(file: string): Promise<{ stop(): Promise<CapturedPacket[]> }> {
    const child = this.spawn({ index: 0, ns: this.hub, address: '' }, ['tcpdump', '-i', 'br0', '-n', '-s', String(CAPTURE_SNAPLEN), '-B', String(CAPTURE_BUFFER_KIB), '--immediate-mode', '-U', '-w', file, 'udp']);
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    // tcpdump says "listening on br0" once it captures.
    const deadline = Date.now() + 10_000;
    while (!stderr.includes('listening on')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`tcpdump did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      stop: async () => {
        child.kill('SIGINT');
        await new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
        // A capture that missed packets proves nothing about them: refuse it rather than
        // let "never seen" pass for "never sent".
        const dropped = /(\d+) packets? dropped by kernel/.exec(stderr);
        if (dropped === null || dropped[1] !== '0') throw new Error(`the capture lost packets: ${stderr.trim()}`);
        return parsePcap(await readFile(file));
      },
    };
  }

  /** Kills every process started here and deletes every namespace. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const child of this.#children) child.kill('SIGKILL');
    await Promise.all([...this.#children].map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve(undefined) : c.once('exit', resolve)))));
    for (const ns of [...this.hosts.map((h) => h.ns), this.hub]) await ip(['netns', 'del', ns]).catch(() => undefined);
  }
}

async function ip(args: readonly string[]): Promise<void> {
  await run('ip', [...args]);
}

/** The UDP packets of a pcap file of Ethernet frames (what tcpdump writes for a bridge). */
export function parsePcap(bytes: Uint8Array): CapturedPacket[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 24) return [];
  const magic = view.getUint32(0, true);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  const packets: CapturedPacket[] = [];
  for (let at = 24; at + 16 <= bytes.length; ) {
    const included = view.getUint32(at + 8, little);
    const frame = bytes.subarray(at + 16, at + 16 + included);
    at += 16 + included;
    if (frame.length < 14 + 20 + 8 || frame[12] !== 0x08 || frame[13] !== 0x00) continue; // IPv4 only
    const ipHeader = (frame[14]! & 0x0f) * 4;
    if (frame[14 + 9] !== 17) continue; // UDP
    if ((((frame[14 + 6]! & 0x1f) << 8) | frame[14 + 7]!) !== 0) continue; // a later IP fragment: no UDP header
    const udp = 14 + ipHeader;
    const dot = (o: number): string => `${frame[o]}.${frame[o + 1]}.${frame[o + 2]}.${frame[o + 3]}`;
    const udpLength = (frame[udp + 4]! << 8) | frame[udp + 5]!;
    packets.push({
      src: dot(14 + 12),
      dst: dot(14 + 16),
      srcPort: (frame[udp]! << 8) | frame[udp + 1]!,
      dstPort: (frame[udp + 2]! << 8) | frame[udp + 3]!,
      payload: frame.subarray(udp + 8, udp + udpLength),
    });
  }
  return packets;
}

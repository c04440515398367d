/**
 * A mesh of separate hosts on one machine: one network namespace per host, each with one
 * veth into a bridge that lives in a hub namespace of its own. Every address and link is
 * inside namespaces this mesh created; the machine's own namespace is never touched, and
 * `close()` deletes them all (deleting a namespace destroys its veths and the bridge).
 * Needs root and iproute2 (`ip netns`). Impairment uses netem where the kernel has it and
 * otherwise the userspace impairer (impairer.ts) behind an NFQUEUE rule in each receiver's
 * INPUT chain; without gcc and libnetfilter_queue, only loss works, by a random DROP rule.
 * Captures use tcpdump.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { checkImpairment, impairerArgs, impairerBinary, netemArgs, type Impairment } from './impairer.js';

const run = promisify(execFile);

/** One host of the mesh. */
export interface NetnsHost {
  readonly index: number;
  /** Namespace name. */
  readonly ns: string;
  /** Its address on the mesh's /24. */
  readonly address: string;
}

/**
 * How impairment is applied: netem on the bridge port towards each host; the userspace
 * impairer behind NFQUEUE in each receiver; or, lacking both, loss only by a random DROP
 * rule in each receiver.
 */
export type ImpairmentMethod = 'netem' | 'nfqueue' | 'iptables-random-drop';

/** NFQUEUE number of the impairer; queues are per namespace, so one number serves every host. */
const IMPAIR_QUEUE = 7;
/** The rule that feeds the impairer: UDP from the wire only, so its re-sent duplicates (on lo) pass. */
const NFQUEUE_RULE = ['INPUT', '-i', 'eth0', '-p', 'udp', '-j', 'NFQUEUE', '--queue-num', String(IMPAIR_QUEUE), '--queue-bypass'];

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
  /** Running impairers by namespace, with what they printed. */
  readonly #impairers = new Map<string, { child: ChildProcess; stderr: string }>();
  /** iptables rules added per namespace (by impairment), to remove on unimpair. */
  readonly #rules = new Map<string, string[][]>();
  #method: Promise<ImpairmentMethod> | undefined;
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
      // tcpdump puts br0 in promiscuous mode, and a bridge in that mode passes every frame it
      // forwards up to its own device too: the capture sees port-to-port unicast.
      await ip(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge']);
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

  /** Starts `command` inside `host`'s namespace (with a stdin pipe if asked); it is killed by close(). */
  spawn(host: NetnsHost, command: readonly string[], options: { stdin?: boolean } = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', host.ns, ...command], { stdio: [options.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
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

  /**
   * Which impairment works here, decided once per mesh: netem if the kernel has it, else the
   * userspace impairer if it builds (gcc, libnetfilter_queue), else loss only by iptables.
   */
  impairmentMethod(): Promise<ImpairmentMethod> {
    this.#method ??= (async () => {
      if (await this.#netemWorks()) return 'netem';
      try {
        await impairerBinary();
        return 'nfqueue';
      } catch {
        return 'iptables-random-drop';
      }
    })();
    return this.#method;
  }

  async #netemWorks(): Promise<boolean> {
    try {
      await ip(['-n', this.hub, 'link', 'add', 'probe0', 'type', 'dummy']);
    } catch {
      return false;
    }
    try {
      await run('ip', ['netns', 'exec', this.hub, 'tc', 'qdisc', 'add', 'dev', 'probe0', 'root', 'netem', 'loss', '1%']);
      return true;
    } catch {
      return false;
    } finally {
      await ip(['-n', this.hub, 'link', 'del', 'probe0']).catch(() => undefined);
    }
  }

  /**
   * Impairs the UDP that `host` receives (replacing any earlier impairment of it): netem on
   * its bridge port, or the userspace impairer in its namespace. Returns the method used.
   */
  async impair(host: NetnsHost, spec: Impairment): Promise<ImpairmentMethod> {
    checkImpairment(spec);
    const method = await this.impairmentMethod();
    await this.unimpair(host);
    if (method === 'netem') {
      const args = netemArgs(spec);
      if (args.length > 0) await run('ip', ['netns', 'exec', this.hub, 'tc', 'qdisc', 'replace', 'dev', `p${host.index}`, 'root', 'netem', ...args]);
    } else if (method === 'nfqueue') {
      await this.#startImpairer(host, spec);
    } else {
      if ((spec.delayMs ?? 0) > 0 || (spec.duplicate ?? 0) > 0 || (spec.reorder ?? 0) > 0) {
        throw new Error('only loss can be impaired here: the kernel has no netem, and the userspace impairer did not build (gcc, libnetfilter-queue-dev)');
      }
      // In INPUT, not OUTPUT: a DROP in OUTPUT makes sendto() fail with EPERM instead of losing the datagram.
      if ((spec.loss ?? 0) > 0) await this.#addRule(host, ['INPUT', '-p', 'udp', '-m', 'statistic', '--mode', 'random', '--probability', (spec.loss ?? 0).toFixed(4), '-j', 'DROP']);
    }
    return method;
  }

  /** Removes `host`'s impairment, if any; the impairer passes what it still holds before it exits. */
  async unimpair(host: NetnsHost): Promise<void> {
    for (const rule of this.#rules.get(host.ns) ?? []) await run('ip', ['netns', 'exec', host.ns, 'iptables', '-D', ...rule]).catch(() => undefined);
    this.#rules.delete(host.ns);
    const impairer = this.#impairers.get(host.ns);
    if (impairer !== undefined) {
      this.#impairers.delete(host.ns);
      impairer.child.kill('SIGTERM');
      await exited(impairer.child);
    }
    if ((await this.impairmentMethod()) === 'netem') await run('ip', ['netns', 'exec', this.hub, 'tc', 'qdisc', 'del', 'dev', `p${host.index}`, 'root']).catch(() => undefined);
  }

  /** What `host`'s impairer has counted so far (received, dropped, delayed, reordered, duplicated), if one runs. */
  async impairerReport(host: NetnsHost): Promise<string | undefined> {
    const impairer = this.#impairers.get(host.ns);
    if (impairer === undefined) return undefined;
    const before = impairer.stderr.length;
    impairer.child.kill('SIGUSR1');
    const deadline = Date.now() + 5_000;
    while (!impairer.stderr.slice(before).includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return impairer.stderr.slice(before).trim();
  }

  /** Kills `host`'s impairer with SIGKILL and leaves its rule in place, as a crash would (for tests of --queue-bypass). */
  async crashImpairer(host: NetnsHost): Promise<void> {
    const impairer = this.#impairers.get(host.ns);
    if (impairer === undefined) throw new Error(`no impairer runs in ${host.ns}`);
    this.#impairers.delete(host.ns);
    impairer.child.kill('SIGKILL');
    await exited(impairer.child);
  }

  async #startImpairer(host: NetnsHost, spec: Impairment): Promise<void> {
    const child = this.spawn(host, [await impairerBinary(), ...impairerArgs(spec, IMPAIR_QUEUE, host.index)]);
    const impairer = { child, stderr: '' };
    this.#impairers.set(host.ns, impairer);
    child.stderr?.on('data', (c: Buffer) => (impairer.stderr += c.toString()));
    // The rule goes in only once the impairer listens on the queue: until then traffic is unimpaired, never lost.
    await new Promise<void>((resolve, reject) => {
      let stdout = '';
      child.stdout?.on('data', (c: Buffer) => {
        stdout += c.toString();
        if (stdout.includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`the impairer in ${host.ns} exited (${code}): ${impairer.stderr}`)));
    });
    await this.#addRule(host, NFQUEUE_RULE);
  }

  async #addRule(host: NetnsHost, rule: string[]): Promise<void> {
    await run('ip', ['netns', 'exec', host.ns, 'iptables', '-A', ...rule]);
    this.#rules.set(host.ns, [...(this.#rules.get(host.ns) ?? []), rule]);
  }

  /** Drops `loss` (0..1) of the UDP datagrams every host receives. Returns the method used. */
  async impairLoss(loss: number): Promise<ImpairmentMethod> {
    let method: ImpairmentMethod = await this.impairmentMethod();
    for (const host of this.hosts) method = await this.impair(host, { loss });
    return method;
  }

  /**
   * Cuts `host` off the bridge: its port leaves the bridge, so everything it sends vanishes
   * and nothing reaches it, while its own sends still succeed (as behind a dead router).
   */
  async partition(host: NetnsHost): Promise<void> {
    await ip(['-n', this.hub, 'link', 'set', `p${host.index}`, 'nomaster']);
  }

  /** Puts a partitioned `host` back on the bridge. */
  async heal(host: NetnsHost): Promise<void> {
    await ip(['-n', this.hub, 'link', 'set', `p${host.index}`, 'master', 'br0', 'up']);
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
    await Promise.all([...this.#children].map(exited));
    for (const ns of [...this.hosts.map((h) => h.ns), this.hub]) await ip(['netns', 'del', ns]).catch(() => undefined);
  }
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
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

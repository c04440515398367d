/**
 * The standard mesh on separate hosts: a bootstrap relayer with a public DHT node, six
 * relayers, a UDP echo server and two masters running `deut scenario dht-pair`, each
 * `deut` a real process in its own network namespace, with a capture of the bridge. Used
 * by test/netns.test.ts and by scripts/netns-mesh.ts.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Impairment } from './impairer.js';
import { NetnsMesh, type CapturedPacket, type ImpairmentMethod, type NetnsHost } from './netns.js';

/** Options of {@link runNetnsScenario}. */
export interface NetnsScenarioOptions {
  /** Path of the deut CLI (packages/cli/dist/src/bin.js). */
  readonly bin: string;
  /** Share of UDP datagrams each host drops on receipt (a shorthand for `impairment: { loss }`). @default 0 */
  readonly loss?: number;
  /** What every host's incoming UDP suffers. @default none */
  readonly impairment?: Impairment;
  /** The masters' scenario names; they are the payload canaries. */
  readonly names: readonly [string, string];
  /** Progress lines. @default none */
  readonly log?: (line: string) => void;
  /** Distinguishes concurrent meshes (third octet of 10.77.x.0/24). @default 77 */
  readonly net?: number;
  /** Each master's whole budget for its scenario (`--timeout-seconds`). @default 150 */
  readonly timeoutSeconds?: number;
}

/** What a run produced, for assertions or a report. */
export interface NetnsScenarioResult {
  readonly masters: readonly NetnsHost[];
  readonly bootstrap: NetnsHost;
  readonly echo: NetnsHost;
  readonly results: ReadonlyArray<{ code: number; stdout: string; stderr: string }>;
  readonly packets: CapturedPacket[];
  /** The raw capture, to search for canaries. */
  readonly pcap: Buffer;
  readonly impairment: ImpairmentMethod | 'none';
  /** Namespace-name prefix of the mesh, to check that none is left. */
  readonly prefix: string;
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `50 ms ± 10 ms delay, 10.0% loss, ...` */
export function describeImpairment(spec: Impairment): string {
  const parts: string[] = [];
  if ((spec.delayMs ?? 0) > 0) parts.push(`${spec.delayMs} ms${(spec.jitterMs ?? 0) > 0 ? ` ± ${spec.jitterMs} ms` : ''} delay`);
  for (const key of ['loss', 'duplicate', 'reorder'] as const) if ((spec[key] ?? 0) > 0) parts.push(`${((spec[key] ?? 0) * 100).toFixed(1)}% ${key === 'loss' ? 'loss' : key === 'duplicate' ? 'duplicated' : 'reordered'}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

/** Builds the mesh, runs the scenario, tears everything down (also on failure). */
export async function runNetnsScenario(options: NetnsScenarioOptions, signal?: AbortSignal): Promise<NetnsScenarioResult> {
  const log = options.log ?? (() => undefined);
  const node = process.execPath;
  const dir = mkdtempSync(join(tmpdir(), 'deut-netns-'));
  const mesh = await NetnsMesh.create({ hosts: 10, ...(options.net !== undefined ? { net: options.net } : {}) });
  const onAbort = (): void => void mesh.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const [bootstrap, ...rest] = mesh.hosts as [NetnsHost, ...NetnsHost[]];
    const relays = rest.slice(0, 6);
    const echo = rest[6]!;
    const masters = rest.slice(7, 9);
    log(`${mesh.hosts.length} namespaces on a bridge: bootstrap ${bootstrap.address}, relayers ${relays.map((r) => r.address).join(' ')}, echo ${echo.address}, masters ${masters.map((m) => m.address).join(' ')}`);
    let impairment: ImpairmentMethod | 'none' = 'none';
    const spec: Impairment = options.impairment ?? ((options.loss ?? 0) > 0 ? { loss: options.loss ?? 0 } : {});
    if (Object.values(spec).some((v) => v !== undefined && v > 0)) {
      for (const host of mesh.hosts) impairment = await mesh.impair(host, spec);
      log(`impairment on every host: ${describeImpairment(spec)}, by ${impairment}${impairment === 'netem' ? '' : ' (the kernel has no netem)'}`);
    }
    const controlFile = (host: NetnsHost): string => join(dir, `${host.ns}.json`);
    const common = ['--allow-private-exits', '--allow-same-subnet', '--log-level', 'warn'];
    const daemon = (host: NetnsHost, args: string[]): void => {
      mesh.spawn(host, [node, options.bin, 'run', '--listen', `${host.address}:7500`, '--control', '127.0.0.1:7501', '--control-file', controlFile(host), ...common, ...args]);
    };
    const contactFile = join(dir, 'dht.contact');
    daemon(bootstrap, ['--dht-listen', `${bootstrap.address}:7600`, '--dht-contact-file', contactFile]);
    await waitFor('the bootstrap', 30_000, () => existsSync(contactFile));
    for (const relay of relays) daemon(relay, ['--bootstrap', `${bootstrap.address}:7500`]);
    mesh.spawn(echo, [node, '-e', `const s = require('node:dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(9000, '${echo.address}')`]);
    await waitFor('the relayers', 30_000, async () => (await Promise.all(relays.map((r) => mesh.exec(r, [node, options.bin, 'status', '--json', '--control-file', controlFile(r)])))).every((r) => r.code === 0));
    log('relayers up; capturing on the bridge; the masters start');
    const pcapFile = join(dir, 'bridge.pcap');
    const capture = await mesh.capture(pcapFile);
    const contact = readFileSync(contactFile, 'utf8').trim();
    const timeoutSeconds = options.timeoutSeconds ?? 150;
    const scenario = (host: NetnsHost, name: string, peer: string): ReturnType<NetnsMesh['exec']> =>
      mesh.exec(host, [node, options.bin, 'scenario', 'dht-pair', '--name', name, '--peer', peer, '--listen', `${host.address}:7500`, '--bootstrap', `${bootstrap.address}:7500`,
        '--no-relay', '--tunnels', '3', '--dht-bootstrap', contact, '--echo', `${echo.address}:9000`, ...common, '--timeout-seconds', String(timeoutSeconds)], (timeoutSeconds + 50) * 1000);
    const [a, b] = options.names;
    const results = await Promise.all([scenario(masters[0]!, a, b), scenario(masters[1]!, b, a)]);
    const packets = await capture.stop();
    for (const r of results) for (const line of r.stdout.trim().split('\n')) log(line);
    return { masters, bootstrap, echo, results, packets, pcap: readFileSync(pcapFile), impairment, prefix: mesh.hub.replace(/-hub$/, '') };
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await mesh.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `deut mesh` (and `npm start`): a self-contained deut network on loopback doing real work.
 * Relayers find each other by peer exchange; masters build 3-hop tunnels, join the DHT
 * through them, put values and get each other's; one sends a datagram to a plain UDP echo
 * server. It ends with what each party saw, and exits 0 only if every check held.
 *
 * In-process by default (every node in this process, on real loopback UDP sockets);
 * `--processes` runs each node as its own `deut run` and drives it through its control API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { addressKey, type UdpAddress } from '@deut/common';
import { toHex } from '@deut/crypto';
import { keyFromBytes } from '@deut/dht';
import { bindUdp } from '@deut/transport';
import { createTestnet, dhtContactOf, joinDht, until, withDeadline, type DeutNode } from '@deut/node';
import { callControl } from './control-client.js';
import { EXIT } from './daemon.js';

/** Options of {@link runMesh}. */
export interface MeshOptions {
  readonly relays: number;
  readonly masters: number;
  readonly processes: boolean;
}

const TUNNELS = 4;
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const bytes = (value: string): Uint8Array => new TextEncoder().encode(value);

function say(message: string): void {
  process.stdout.write(`  ${message}\n`);
}

/** Prints the check and throws if it failed. */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
  say(`ok: ${what}`);
}

/** Runs the mesh; resolves with the exit code. */
export async function runMesh(options: MeshOptions): Promise<number> {
  if (!Number.isInteger(options.relays) || options.relays < 4 || options.relays > 64) {
    process.stderr.write('deut mesh: --relays must be 4..64 (3-hop paths need at least 3 relayers besides the bootstrap)\n');
    return EXIT.usage;
  }
  if (!Number.isInteger(options.masters) || options.masters < 2 || options.masters > 32) {
    process.stderr.write('deut mesh: --masters must be 2..32\n');
    return EXIT.usage;
  }
  const keep = setInterval(() => undefined, 1_000);
  try {
    await (options.processes ? meshOfProcesses(options) : meshInProcess(options));
    process.stdout.write('\nmesh complete: every check held\n');
    return EXIT.ok;
  } catch (error) {
    process.stdout.write(`\nmesh FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.failure;
  } finally {
    clearInterval(keep);
  }
}

// ---- every node in this process ----------------------------------------------------------

async function meshInProcess(options: MeshOptions): Promise<void> {
  process.stdout.write(`deut mesh: ${options.relays} relayers and ${options.masters} masters in this process, on loopback UDP\n\n`);
  process.stdout.write('1. relayers find each other; masters build tunnels\n');
  const started = performance.now();
  const net = await createTestnet({ transport: 'udp', relays: options.relays, masters: options.masters, tunnels: TUNNELS, master: { dht: true } });
  const echo = await bindUdp({ host: '127.0.3.1', port: 0 });
  const echoSources: UdpAddress[] = [];
  echo.onMessage((data, from) => {
    echoSources.push(from);
    echo.send(data, from);
  });
  try {
    const masters = net.masters.map((m) => m.node);
    const masterHosts = new Set(masters.map((m) => m.address.host));
    const alice = masters[0]!;
    say(`bootstrap relayer ${addressKey(net.bootstrap)} knows ${net.relays[0]!.node.stats().peers} relayers through peer exchange`);
    say(`${masters.length * TUNNELS} tunnels of 3 hops up in ${(performance.now() - started).toFixed(0)} ms`);
    say(`alice is ${addressKey(alice.address)}; her endpoints: ${alice.tunnels.list().map((t) => addressKey(t.endpoint)).join(', ')}`);
    const session = alice.link.sessions()[0];
    if (session !== undefined) say(`one of alice's links: session id ${session.sessionId} (compare it at the other end to rule out a man in the middle)`);

    process.stdout.write('\n2. a datagram to a plain UDP echo server, through a tunnel\n');
    const echoed = new Promise<string>((resolve) => alice.once('datagram', (data) => resolve(text(data))));
    await alice.send(echo.local, bytes('hello through three hops'));
    check((await withDeadline(echoed, 10_000, 'the echo')) === 'hello through three hops', 'the echo came back through the tunnel');

    process.stdout.write('\n3. the masters join the DHT through their tunnels\n');
    const heardFrom = new Map<DeutNode, Set<string>>(masters.map((m) => [m, new Set<string>()]));
    for (const m of masters) m.dht.rpc.observer = (_data, from) => void heardFrom.get(m)!.add(addressKey(from));
    const joinStarted = performance.now();
    await joinDht(masters, { concurrency: 4 });
    say(`${masters.length} DHT nodes joined in ${(performance.now() - joinStarted).toFixed(0)} ms; alice's DHT contact is ${toHex(alice.dht.publicKey).slice(0, 16)}…@${addressKey(dhtContactOf(alice).address)}`);

    process.stdout.write('\n4. every master puts a value; every other master gets it\n');
    for (const [i, m] of masters.entries()) {
      const result = await m.dht.put(`mesh-key-${i}`, bytes(`value of master ${i}`));
      say(`master ${i} stored mesh-key-${i} at ${result.stored} of ${result.asked} nodes`);
    }
    let found = 0;
    const latencies: number[] = [];
    for (const [i, m] of masters.entries()) {
      for (const j of masters.keys()) {
        if (i === j) continue;
        const t0 = performance.now();
        const got = await m.dht.get(`mesh-key-${j}`);
        latencies.push(performance.now() - t0);
        if (got.values.map(text).includes(`value of master ${j}`)) found++;
      }
    }
    const pairs = masters.length * (masters.length - 1);
    latencies.sort((a, b) => a - b);
    check(found === pairs, `all ${pairs} gets found their value (median ${latencies[Math.floor(latencies.length / 2)]!.toFixed(1)} ms)`);

    process.stdout.write('\n5. what each party saw\n');
    check(echoSources.length > 0 && echoSources.every((s) => !masterHosts.has(s.host)), "the echo server saw only alice's endpoints, never alice");
    const key = keyFromBytes(bytes('mesh-key-0'));
    const holders = masters.filter((m) => m !== alice && m.dht.store.get(key, Date.now()).length > 0);
    for (const holder of holders.slice(0, 2)) {
      const seen = [...heardFrom.get(holder)!];
      say(`${addressKey(holder.address)} stores alice's value; it heard DHT traffic from ${seen.length} addresses: ${seen.slice(0, 4).join(', ')}${seen.length > 4 ? ', …' : ''}`);
    }
    const allSeen = [...heardFrom.values()].flatMap((s) => [...s]);
    check(allSeen.length > 0 && allSeen.every((a) => !masterHosts.has(a.split(':')[0]!)), 'no DHT node ever heard from a master\u2019s own address, only from endpoints');
    check(
      masters.every((m) => m.dht.table.contacts().every((c) => !masterHosts.has(c.address.host))),
      'no DHT routing table holds a master address',
    );
    const transit = net.relays.reduce((n, r) => n + r.node.stats().tunnels.transit, 0);
    say(`relayers carry ${transit} transit hops for ${masters.length * TUNNELS} tunnels; none of them can read a cell or a DHT message`);

    process.stdout.write('\n6. shutdown\n');
    await Promise.all(masters.map((m) => m.close()));
    const freed = (): boolean => net.relays.every((r) => r.node.stats().tunnels.transit === 0 && r.node.stats().exits.ports === 0);
    await until(freed, 10_000, 'relayers to free their state').catch(() => undefined);
    check(freed(), 'every relayer freed its tunnels and endpoint ports after the masters left');
  } finally {
    await net.close();
    await echo.close();
  }
}

// ---- every node its own process ----------------------------------------------------------

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly controlFile: string;
  readonly output: string[];
}

async function meshOfProcesses(options: MeshOptions): Promise<void> {
  process.stdout.write(`deut mesh --processes: ${options.relays} relayers and ${options.masters} masters, each a \`deut run\` process on loopback\n\n`);
  const dir = mkdtempSync(join(tmpdir(), 'deut-mesh-'));
  const bin = fileURLToPath(new URL('./bin.js', import.meta.url));
  const procs: Proc[] = [];
  const start = (name: string, args: string[]): Proc => {
    const controlFile = join(dir, `${name}.control.json`);
    const child = spawn(process.execPath, [bin, 'run', '--control', '127.0.0.1:0', '--control-file', controlFile, '--allow-private-exits', '--allow-same-subnet', '--log-format', 'json', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const proc = { name, child, controlFile, output: [] as string[] };
    child.stdout.on('data', (chunk: Buffer) => proc.output.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => proc.output.push(chunk.toString()));
    procs.push(proc);
    return proc;
  };
  const status = async (proc: Proc): Promise<Record<string, unknown>> => (await callControl({ file: proc.controlFile }, 'GET', '/v1/status')) as Record<string, unknown>;
  const ready = async (proc: Proc): Promise<Record<string, unknown>> => {
    let last: unknown;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited with ${proc.child.exitCode}: ${proc.output.join('')}`);
      try {
        return await status(proc);
      } catch (error) {
        last = error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error(`${proc.name} did not come up: ${String(last)}`);
  };
  try {
    process.stdout.write('1. relayers\n');
    const first = start('relay-1', ['--listen', '127.0.1.1:0']);
    const bootstrap = String((await ready(first)).address);
    for (let i = 2; i <= options.relays; i++) start(`relay-${i}`, ['--listen', `127.0.1.${i}:0`, '--bootstrap', bootstrap]);
    await Promise.all(procs.map(ready));
    say(`${options.relays} relayer processes up; bootstrap ${bootstrap}`);

    process.stdout.write('\n2. masters build tunnels and join the DHT\n');
    const masters: Proc[] = [];
    const firstMaster = start('master-1', ['--listen', '127.0.2.1:0', '--bootstrap', bootstrap, '--no-relay', '--tunnels', String(TUNNELS), '--dht']);
    masters.push(firstMaster);
    const waitTunnels = async (proc: Proc): Promise<Record<string, unknown>> => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const s = await ready(proc);
        if ((s.tunnels as { usable: number }).usable >= TUNNELS) return s;
        if (Date.now() > deadline) throw new Error(`${proc.name}: tunnels not ready`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const firstStatus = await waitTunnels(firstMaster);
    const firstTunnels = (await callControl({ file: firstMaster.controlFile }, 'GET', '/v1/tunnels')) as { owned: Array<{ endpoint: string }> };
    const contact = `${String((firstStatus.dht as { publicKey: string }).publicKey)}@${firstTunnels.owned[0]!.endpoint}`;
    for (let i = 2; i <= options.masters; i++) {
      masters.push(start(`master-${i}`, ['--listen', `127.0.2.${i}:0`, '--bootstrap', bootstrap, '--no-relay', '--tunnels', String(TUNNELS), '--dht', '--dht-bootstrap', contact]));
    }
    await Promise.all(masters.map(waitTunnels));
    say(`${options.masters} master processes with ${TUNNELS} tunnels each; the DHT bootstrap contact is the first master at one of its endpoints`);

    process.stdout.write('\n3. DHT put and get across processes\n');
    for (const [i, m] of masters.entries()) {
      const put = (await withDeadline(callControl({ file: m.controlFile, timeoutMs: 60_000 }, 'POST', '/v1/dht/put', { key: `mesh-key-${i}`, value: `value of ${m.name}` }), 70_000, 'a put')) as { stored: number; asked: number };
      say(`${m.name} stored mesh-key-${i} at ${put.stored} of ${put.asked} nodes`);
    }
    let found = 0;
    for (const [i, m] of masters.entries()) {
      const j = (i + 1) % masters.length;
      const got = (await callControl({ file: m.controlFile, timeoutMs: 60_000 }, 'POST', '/v1/dht/get', { key: `mesh-key-${j}` })) as { values: Array<{ text: string | null }> };
      if (got.values.some((v) => v.text === `value of ${masters[j]!.name}`)) found++;
    }
    check(found === masters.length, `each master found the next one's value (${found}/${masters.length})`);

    process.stdout.write('\n4. what each party saw\n');
    const masterHosts = new Set(masters.map((_, i) => `127.0.2.${i + 1}`));
    for (const m of masters.slice(0, 1)) {
      const contacts = (await callControl({ file: m.controlFile, timeoutMs: 60_000 }, 'POST', '/v1/dht/find-node', { id: '00'.repeat(32) })) as Array<{ address: string }>;
      check(contacts.length > 0 && contacts.every((c) => !masterHosts.has(c.address.split(':')[0]!)), `${m.name}'s DHT knows the other masters only at endpoint addresses: ${contacts.map((c) => c.address).join(', ')}`);
    }
  } finally {
    process.stdout.write('\n5. shutdown (SIGTERM to every process)\n');
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null) return resolve();
            const killer = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
            p.child.once('exit', () => {
              clearTimeout(killer);
              resolve();
            });
            p.child.kill('SIGTERM');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  }
  const clean = procs.filter((p) => p.child.exitCode === 0).length;
  check(clean === procs.length, `${clean} of ${procs.length} processes exited 0 after SIGTERM`);
}

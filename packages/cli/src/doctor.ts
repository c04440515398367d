/**
 * `deut doctor`: what would stop `deut run` with this configuration, or weaken the node it
 * starts, found without starting one. Each check is a small function returning one or more
 * {@link DoctorCheck}s; {@link runDoctor} runs them in order. A check never changes the
 * system: ports are bound and released at once, files are only read.
 */
import dgram from 'node:dgram';
import { statSync } from 'node:fs';
import { BlockList, createServer, isIPv4, isIPv6 } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addressKey, type UdpAddress } from '@deut/common';
import { cryptoReady, readKeyFile } from '@deut/crypto';
import { KnownPeers } from '@deut/link';
import type { RunConfig } from './config.js';
import { callControl } from './control-client.js';
import { isProcessAlive, readControlFile } from './control-file.js';
import { isLoopbackIp } from './control.js';

/** How a check came out: `fail` would stop `deut run` (or defeat its purpose), `warn` weakens the node. */
export type DoctorLevel = 'ok' | 'warn' | 'fail';

/** The stable name of each check, for scripts reading `deut doctor --json`. */
export type DoctorCheckId =
  | 'key-file'
  | 'dht-key-file'
  | 'known-peers'
  | 'daemon'
  | 'port-listen'
  | 'port-control'
  | 'port-metrics'
  | 'port-dht-listen'
  | 'metrics-exposure'
  | 'bootstrap'
  | 'dht-bootstrap'
  | 'dht-contact'
  | 'clock'
  | 'test-flags';

/** One line of the report. */
export interface DoctorCheck {
  readonly id: DoctorCheckId;
  readonly level: DoctorLevel;
  /** What was checked and what was found. */
  readonly message: string;
  /** For warn and fail: what to do, naming the flag or the command. */
  readonly remedy?: string;
}

/** The whole report of {@link runDoctor}. */
export interface DoctorReport {
  readonly checks: readonly DoctorCheck[];
  /** What doctor cannot check from here, said so nobody takes silence for a pass. */
  readonly notes: readonly string[];
}

const check = (id: DoctorCheckId, level: DoctorLevel, message: string, remedy?: string): DoctorCheck => ({ id, level, message, ...(remedy !== undefined ? { remedy } : {}) });

const mode = (m: number): string => (m & 0o777).toString(8).padStart(3, '0');

/** What a running daemon on this config's control file is, if one runs. */
export interface RunningDaemon {
  readonly pid: number;
  /** Its control API address (addressKey form), from the control file. */
  readonly control: string;
  /** Its node address (addressKey form), from its status, when it answered. */
  readonly node: string | undefined;
}

/**
 * The daemon the control file names, if its process runs. Its status is asked for the node
 * address, so a held `--listen` port can be told to be its own rather than a stranger's.
 */
export async function findRunningDaemon(controlFile: string): Promise<RunningDaemon | undefined> {
  const file = await readControlFile(controlFile).catch(() => undefined);
  if (file === undefined || file.pid === process.pid || !isProcessAlive(file.pid)) return undefined;
  const status = (await callControl({ file: controlFile, timeoutMs: 3000 }, 'GET', '/v1/status').catch(() => undefined)) as { address?: unknown } | undefined;
  return { pid: file.pid, control: file.address, node: typeof status?.address === 'string' ? status.address : undefined };
}

/**
 * The node key file: readable by `readKeyFile`, mode 0600, ours, in a folder others cannot
 * write (who can write the folder can swap the key). Without one, a relayer gets a new
 * identity at every start, which every peer that pinned it then refuses.
 */
export async function checkKeyFile(id: 'key-file' | 'dht-key-file', flag: string, file: string | undefined, relay: boolean): Promise<DoctorCheck[]> {
  if (file === undefined) {
    if (id === 'dht-key-file') return [];
    return relay
      ? [check(id, 'warn', `no ${flag}: every restart is a new identity, and peers that pinned the old one refuse it`, `add ${flag} FILE (created 0600 at first start; or deut keygen --key-file FILE)`)]
      : [check(id, 'ok', `no ${flag}: a fresh identity each run (a master only, which nobody pins)`)];
  }
  const out: DoctorCheck[] = [];
  const folder = dirname(file);
  let stat;
  try {
    stat = statSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return [check(id, 'fail', `${flag} ${file}: cannot be read (${code ?? 'error'})`, `fix the path or its permissions, or pick another ${flag}`)];
    out.push(check(id, 'ok', `${flag} ${file}: does not exist yet; deut run creates it 0600 at first start`));
  }
  if (stat !== undefined) {
    const problems: DoctorCheck[] = [];
    if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0) {
      problems.push(check(id, 'fail', `${flag} ${file}: mode ${mode(stat.mode)} gives group or others access to the private key`, `chmod 600 ${file}`));
    }
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid) {
      problems.push(check(id, 'fail', `${flag} ${file}: owned by uid ${stat.uid}, not by this user (uid ${uid})`, `chown ${uid} ${file}, or run deut as its owner`));
    }
    if (problems.length === 0) {
      await cryptoReady();
      try {
        await readKeyFile(file);
        out.push(check(id, 'ok', `${flag} ${file}: parses, mode ${mode(stat.mode)}, owned by this user`));
      } catch (error) {
        problems.push(check(id, 'fail', `${flag} ${file}: ${(error as Error).message}`, `restore the file from a backup, or make a new identity: deut keygen --key-file ${file} --force`));
      }
    }
    out.push(...problems);
  }
  try {
    const dir = statSync(folder);
    // The sticky bit (as on /tmp) stops others renaming or removing our file, though not adding theirs first.
    if (process.platform !== 'win32' && (dir.mode & 0o022) !== 0 && (dir.mode & 0o1000) === 0) {
      out.push(check(id, 'fail', `${flag} folder ${folder}: mode ${mode(dir.mode)} lets group or others write it, so they could replace the key`, `chmod go-w ${folder}`));
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') out.push(check(id, 'fail', `${flag} folder ${folder}: cannot be read (${code ?? 'error'})`, `fix its permissions or pick another ${flag}`));
  }
  return out;
}

/**
 * The known-peers file: it parses (a damaged one stops `deut run`), how many pins it holds,
 * and that nobody else can write it (who writes the pins chooses whom this node trusts).
 */
export function checkKnownPeers(file: string | undefined): DoctorCheck {
  if (file === undefined) {
    return check('known-peers', 'warn', 'no --known-peers: pins last until the daemon stops, so after a restart a changed peer key is trusted again', 'add --known-peers FILE');
  }
  let store: KnownPeers;
  try {
    store = KnownPeers.load(file);
  } catch (error) {
    return check('known-peers', 'fail', `--known-peers ${file}: ${(error as Error).message}`, `fix the line it names, or remove the pin: deut pins remove HOST:PORT --known-peers ${file}`);
  }
  let stat;
  try {
    stat = statSync(file);
  } catch {
    return check('known-peers', 'ok', `--known-peers ${file}: does not exist yet; the first pin creates it`);
  }
  if (process.platform !== 'win32' && (stat.mode & 0o022) !== 0) {
    return check('known-peers', 'fail', `--known-peers ${file}: ${store.size} pins, mode ${mode(stat.mode)} lets group or others change whom this node trusts`, `chmod 600 ${file}`);
  }
  if (process.platform !== 'win32' && (stat.mode & 0o044) !== 0) {
    return check('known-peers', 'warn', `--known-peers ${file}: ${store.size} pins, mode ${mode(stat.mode)} lets group or others read which peers this node knows`, `chmod 600 ${file}`);
  }
  return check('known-peers', 'ok', `--known-peers ${file}: ${store.size} pins, mode ${mode(stat.mode)}`);
}

/**
 * Whether a daemon already runs on this config's control file: `deut run` would then be
 * refused (two daemons cannot share one control file).
 */
export function checkDaemon(controlFile: string, daemon: RunningDaemon | undefined): DoctorCheck {
  if (daemon === undefined) return check('daemon', 'ok', `no daemon runs on --control-file ${controlFile}`);
  return check(
    'daemon',
    'warn',
    `our own daemon runs already (pid ${daemon.pid}, control ${daemon.control}, --control-file ${controlFile}); a second deut run with this config is refused`,
    `deut status --control-file ${controlFile} to see it; stop it (kill ${daemon.pid}) before starting another, or give the other its own --control-file and --control`,
  );
}

/** How binding a port ended: free, or the error code. */
export type BindOutcome = 'free' | 'EADDRINUSE' | 'EACCES' | 'EADDRNOTAVAIL' | 'other';

const BIND_CODES: ReadonlySet<string> = new Set(['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL']);

function outcomeOf(error: unknown): BindOutcome {
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && BIND_CODES.has(code) ? (code as BindOutcome) : 'other';
}

/** Binds `address` (UDP or TCP) and releases it at once. */
export function tryBind(address: UdpAddress, protocol: 'udp' | 'tcp'): Promise<BindOutcome> {
  return new Promise((resolve) => {
    if (protocol === 'udp') {
      const socket = dgram.createSocket(isIPv6(address.host) ? 'udp6' : 'udp4');
      socket.once('error', (error) => {
        socket.close();
        resolve(outcomeOf(error));
      });
      socket.bind({ port: address.port, address: address.host, exclusive: true }, () => socket.close(() => resolve('free')));
    } else {
      const server = createServer();
      server.once('error', (error) => resolve(outcomeOf(error)));
      server.listen({ port: address.port, host: address.host, exclusive: true }, () => server.close(() => resolve('free')));
    }
  });
}

/** Which port check each flag is. */
const PORT_IDS = { '--listen': 'port-listen', '--control': 'port-control', '--metrics': 'port-metrics', '--dht-listen': 'port-dht-listen' } as const;

/** The flag of a port check, and the protocol `deut run` binds it with. */
export type PortFlag = keyof typeof PORT_IDS;

/**
 * Reads a bind outcome for the operator: a port held by this config's own running daemon is
 * said to be (a warning: the config is fine, the node already runs); one held by anything
 * else fails, naming the flag to change.
 */
export function portCheck(flag: PortFlag, protocol: 'udp' | 'tcp', address: UdpAddress, outcome: BindOutcome, daemon: RunningDaemon | undefined): DoctorCheck {
  const id = PORT_IDS[flag];
  const where = `${flag} ${addressKey(address)} (${protocol.toUpperCase()})`;
  switch (outcome) {
    case 'free':
      return check(id, 'ok', address.port === 0 ? `${where}: the system picks a free port` : `${where}: free`);
    case 'EACCES':
      return check(id, 'fail', `${where}: permission denied (ports below 1024 need privileges)`, `pick a port from 1024 with ${flag}, or grant CAP_NET_BIND_SERVICE`);
    case 'EADDRNOTAVAIL':
      return check(id, 'fail', `${where}: no interface of this host has ${address.host}`, `give ${flag} an address of this host (or 0.0.0.0)`);
    case 'other':
      return check(id, 'fail', `${where}: cannot be bound`, `pick another address with ${flag}`);
    case 'EADDRINUSE':
      break;
  }
  const key = addressKey(address);
  const ours = daemon !== undefined && ((flag === '--control' && daemon.control === key) || (flag === '--listen' && daemon.node === key));
  if (ours) return check(id, 'warn', `${where}: in use by our own daemon (pid ${daemon.pid}), which runs already`, `nothing, if it should run; to restart it, stop it first (kill ${daemon.pid})`);
  if (daemon !== undefined && (flag === '--metrics' || flag === '--dht-listen')) {
    return check(id, 'warn', `${where}: in use, most likely by our own daemon (pid ${daemon.pid}), which runs already`, `stop it first (kill ${daemon.pid}) to check; if the port stays in use, pick another with ${flag}`);
  }
  return check(id, 'fail', `${where}: in use by another process (not a deut daemon of this --control-file)`, `stop that process (ss -${protocol === 'udp' ? 'u' : 't'}lpn 'sport = :${address.port}' names it), or pick another port with ${flag}`);
}

/** Binds and releases every port `deut run` would, one check each. */
export async function checkPorts(config: RunConfig, daemon: RunningDaemon | undefined): Promise<DoctorCheck[]> {
  const ports: Array<[PortFlag, 'udp' | 'tcp', UdpAddress | undefined]> = [
    ['--listen', 'udp', config.listen],
    ['--control', 'tcp', config.control],
    ['--metrics', 'tcp', config.metrics],
    ['--dht-listen', 'udp', config.dhtListen],
  ];
  const out: DoctorCheck[] = [];
  for (const [flag, protocol, address] of ports) {
    if (address !== undefined) out.push(portCheck(flag, protocol, address, await tryBind(address, protocol), daemon));
  }
  return out;
}

/** The metrics endpoint anywhere but loopback: its counters help whoever watches traffic correlate it. */
export function checkMetricsExposure(metrics: UdpAddress | undefined): DoctorCheck {
  if (metrics === undefined) return check('metrics-exposure', 'ok', 'no --metrics: no metrics endpoint');
  if (isLoopbackIp(metrics.host)) return check('metrics-exposure', 'ok', `--metrics ${addressKey(metrics)}: loopback only`);
  return check(
    'metrics-exposure',
    'warn',
    `--metrics ${addressKey(metrics)} is reachable beyond this host: traffic counters and their timing help traffic analysis`,
    '--metrics 127.0.0.1:PORT, or firewall the port so only your Prometheus reaches it',
  );
}

/**
 * A node learns relayers from its `--bootstrap` nodes, or from nodes that contact it: with
 * none it is only useful as the first node of a network. A DHT joined with no contact is empty.
 */
export function checkBootstrap(config: RunConfig): DoctorCheck[] {
  const out = [
    config.bootstrap.length > 0
      ? check('bootstrap', 'ok', `--bootstrap: ${config.bootstrap.length} node${config.bootstrap.length === 1 ? '' : 's'} to learn relayers from`)
      : check(
          'bootstrap',
          'warn',
          'no --bootstrap: this node learns no relayers unless others contact it (fine only for the first node, the others\u2019 bootstrap)',
          'add --bootstrap HOST:PORT of a running relayer',
        ),
  ];
  if (config.dht && config.dhtBootstrap.length === 0) {
    out.push(check('dht-bootstrap', 'warn', '--dht with no --dht-bootstrap: this node finds no DHT node to join', 'add --dht-bootstrap <public key hex>@HOST:PORT (a public DHT node\u2019s contact)'));
  } else if (config.dht) {
    out.push(check('dht-bootstrap', 'ok', `--dht-bootstrap: ${config.dhtBootstrap.length} contact${config.dhtBootstrap.length === 1 ? '' : 's'}`));
  }
  if (config.dhtListen !== undefined && config.dhtKeyFile === undefined) {
    out.push(check('dht-contact', 'warn', '--dht-listen with no --dht-key-file: the public DHT node\u2019s contact changes at every restart, and others\u2019 --dht-bootstrap goes stale', 'add --dht-key-file FILE'));
  }
  return out;
}

/**
 * The earliest date this build can run at: the time its compiled module was written, or
 * this source's date if that is unknown. A clock before it was never set.
 */
export function buildDate(): Date {
  const written = new Date('2026-12-08T00:00:00Z');
  try {
    const mtime = statSync(fileURLToPath(import.meta.url)).mtime;
    return mtime > written ? mtime : written;
  } catch {
    return written;
  }
}

/**
 * The system clock: not before the build (an unset clock), and a reminder that peers refuse
 * tunnel builds whose time is more than 60 s off theirs (docs/PROTOCOL.md §4.5), which only
 * NTP keeps true: one host cannot measure its own skew.
 */
export function checkClock(now: Date, built: Date): DoctorCheck {
  if (now.getTime() < built.getTime()) {
    return check(
      'clock',
      'fail',
      `system clock ${now.toISOString()} is before this build (${built.toISOString()}): it was never set, and peers refuse builds skewed by more than 60 s (docs/PROTOCOL.md \u00a74.5)`,
      'set the clock and run NTP (timedatectl set-ntp true, or chrony)',
    );
  }
  return check('clock', 'ok', `system clock ${now.toISOString()} is after this build; peers refuse builds skewed by more than 60 s, so keep NTP running`);
}

const privateRanges = new BlockList();
privateRanges.addSubnet('127.0.0.0', 8, 'ipv4');
privateRanges.addSubnet('10.0.0.0', 8, 'ipv4');
privateRanges.addSubnet('172.16.0.0', 12, 'ipv4');
privateRanges.addSubnet('192.168.0.0', 16, 'ipv4');
privateRanges.addSubnet('169.254.0.0', 16, 'ipv4');
privateRanges.addSubnet('100.64.0.0', 10, 'ipv4');
privateRanges.addAddress('::1', 'ipv6');
privateRanges.addSubnet('fc00::', 7, 'ipv6');
privateRanges.addSubnet('fe80::', 10, 'ipv6');

/** True for a loopback or private IP literal; false for 0.0.0.0 and ::, which listen on every interface. */
export function isPrivateIp(host: string): boolean {
  if (isIPv4(host)) return privateRanges.check(host, 'ipv4');
  if (isIPv6(host)) return privateRanges.check(host, 'ipv6');
  return false;
}

/**
 * `--allow-private-exits` lets endpoints reach this network's private hosts for anyone with a
 * tunnel, and `--allow-same-subnet` lets one operator's /16 hold two hops of a path: both are
 * for test meshes, where every node is loopback or private.
 */
export function checkTestFlags(config: RunConfig): DoctorCheck {
  const flags = [config.allowPrivateExits ? '--allow-private-exits' : undefined, config.allowSameSubnet ? '--allow-same-subnet' : undefined].filter((f) => f !== undefined);
  if (flags.length === 0) return check('test-flags', 'ok', 'no test-mesh flags (--allow-private-exits, --allow-same-subnet)');
  if (isPrivateIp(config.listen.host)) return check('test-flags', 'ok', `${flags.join(' and ')} on a private --listen ${addressKey(config.listen)} (a test mesh)`);
  return check(
    'test-flags',
    'warn',
    `${flags.join(' and ')} on --listen ${addressKey(config.listen)}, which is not loopback or private: these are for test meshes (private exits open this network to every tunnel; same-subnet paths let one operator hold two hops)`,
    `drop ${flags.join(' and ')}`,
  );
}

/** Runs every check of `config`, in the order of the report. */
export async function runDoctor(config: RunConfig, now: Date = new Date()): Promise<DoctorReport> {
  const daemon = await findRunningDaemon(config.controlFile);
  const checks: DoctorCheck[] = [
    ...(await checkKeyFile('key-file', '--key-file', config.keyFile, config.relay)),
    ...(await checkKeyFile('dht-key-file', '--dht-key-file', config.dhtKeyFile, config.relay)),
    checkKnownPeers(config.knownPeers),
    checkDaemon(config.controlFile, daemon),
    checkMetricsExposure(config.metrics),
    ...(await checkPorts(config, daemon)),
    ...checkBootstrap(config),
    checkClock(now, buildDate()),
    checkTestFlags(config),
  ];
  return { checks, notes: ['reachability from outside is not checked: it needs a peer to probe this node (a later check)'] };
}

/** The report as text: one line per check, `ok`/`warn`/`fail` first, the remedy after "fix:". */
export function formatDoctorReport(report: DoctorReport): string {
  const lines = report.checks.map((c) => `${c.level.padEnd(4)}  ${c.message}${c.remedy !== undefined ? `; fix: ${c.remedy}` : ''}`);
  for (const note of report.notes) lines.push(`note  ${note}`);
  const count = (level: DoctorLevel): number => report.checks.filter((c) => c.level === level).length;
  lines.push(`${count('fail')} fail, ${count('warn')} warn, ${count('ok')} ok`);
  return `${lines.join('\n')}\n`;
}

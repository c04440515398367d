/**
 * What `deut tunnels`, `deut status` and `deut peers` show an operator: each tunnel's path
 * (its hops, first to endpoint, `?` for those a relayer-mode master was never told) and age;
 * which link session is the one sent on; and, in `--json`, every instant in one form (an
 * ISO 8601 UTC string in a field named `...At` or `...Until`). Real `deut run` processes on
 * 127.0.0.0/8, killed on the way out.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../packages/cli/dist/src/bin.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'deut-views-'));
const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `deut ...args` to completion (killed after 20 s) and returns its stdout; throws on a failure exit. */
function deut(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(killer);
      children.delete(child);
      if (code === 0) resolve(stdout);
      else reject(new Error(`deut ${args.join(' ')} exited ${code}: ${stderr}`));
    });
  });
}

/** A `deut run` on `host`, once its control file exists: its node address and how to ask it. */
async function daemon(name: string, host: string, args: readonly string[]): Promise<{ address: string; ask: (...command: string[]) => Promise<string> }> {
  const controlFile = join(dir, `${name}.json`);
  const child = spawn(process.execPath, [BIN, 'run', '--listen', `${host}:0`, '--control', '127.0.0.1:0', '--control-file', controlFile, '--allow-same-subnet', '--log-format', 'json', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  // The control file can be on disk before the line naming the address has come through the pipe.
  const printed = (): string | undefined => /node on udp (\S+);/.exec(output)?.[1];
  for (let waited = 0; !existsSync(controlFile) || printed() === undefined; waited += 50) {
    if (waited > 30_000 || child.exitCode !== null) throw new Error(`${name} did not start and print its address: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const address = printed()!;
  return { address, ask: (...command) => deut([...command, '--control-file', controlFile]) };
}

interface TunnelJson {
  readonly mode: string;
  readonly hops: number;
  readonly path: Array<{ known: boolean; address: string | null; publicKey: string | null }>;
  readonly ageMs: number;
}

/** Asks `tunnels --json` every 250 ms until the master has a tunnel (at most 120 s). */
async function firstTunnel(master: { ask: (...command: string[]) => Promise<string> }): Promise<TunnelJson> {
  for (let waited = 0; ; waited += 250) {
    const owned = (JSON.parse(await master.ask('tunnels', '--json')) as { owned: TunnelJson[] }).owned;
    if (owned[0] !== undefined) return owned[0];
    assert.ok(waited < 120_000, 'the master built a tunnel');
    await new Promise((r) => setTimeout(r, 250));
  }
}

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * Every time in `value`, wherever it is nested: an instant must be an ISO 8601 UTC string
 * (or null) under a name ending in At or Until, and no such string may stand anywhere else;
 * a number about time is a duration whose name ends in its unit.
 */
function assertOneTimeFormat(value: unknown, where: string): void {
  if (Array.isArray(value)) return value.forEach((v, i) => assertOneTimeFormat(v, `${where}[${i}]`));
  if (typeof value !== 'object' || value === null) return;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const at = `${where}.${key}`;
    if (/(At|Until)$/.test(key)) assert.ok(v === null || (typeof v === 'string' && ISO_UTC.test(v)), `${at} is an ISO 8601 UTC string: ${JSON.stringify(v)}`);
    else if (typeof v === 'string') assert.doesNotMatch(v, /^\d{4}-\d\d-\d\dT/, `${at} holds an instant under a name that does not say so`);
    else if (typeof v === 'number' && /time|date|expires|created|established|avoid|age/i.test(key)) assert.match(key, /(Ms|Seconds)$/, `${at} is a duration whose name says its unit, not an instant as a number (${v})`);
    assertOneTimeFormat(v, at);
  }
}

test('cli views - deut tunnels shows path and age, deut status marks the current session, JSON times are all ISO', { timeout: 240_000 }, async () => {
  const first = await daemon('relay-1', '127.0.1.1', []);
  const relays = [first];
  for (let i = 2; i <= 4; i++) relays.push(await daemon(`relay-${i}`, `127.0.1.${i}`, ['--bootstrap', first.address]));
  const master = await daemon('master', '127.0.2.1', ['--no-relay', '--tunnels', '1', '--hops', '2', '--bootstrap', first.address]);
  const relayerMode = await daemon('relayer-mode', '127.0.2.2', ['--no-relay', '--tunnels', '1', '--hops', '3', '--path-selection', 'relayer', '--bootstrap', first.address]);
  const relayAddresses = new Set(relays.map((r) => r.address));

  // A master that picked its path knows and shows every hop, first to endpoint.
  const tunnel = await firstTunnel(master);
  assert.equal(tunnel.mode, 'master');
  assert.equal(tunnel.path.length, 2);
  for (const hop of tunnel.path) assert.ok(hop.known && hop.address !== null && relayAddresses.has(hop.address), `${JSON.stringify(hop)} is one of the relayers`);
  const human = await master.ask('tunnels');
  assert.ok(human.includes(`${tunnel.path[0]!.address} \u2192 ${tunnel.path[1]!.address}`), `deut tunnels prints the path:\n${human}`);
  assert.match(human.split('\n')[0]!, /\bpath\b.*\bage\b/, 'the table has path and age columns');
  assert.match(human, / \d+s | \d+m\d\ds /, 'the age is printed');

  // A relayer-mode master knows only the first hop, and says so.
  const blind = await firstTunnel(relayerMode);
  assert.equal(blind.mode, 'relayer');
  assert.deepEqual(
    blind.path.map((h) => h.known),
    [true, false, false],
  );
  assert.deepEqual(blind.path.slice(1), [
    { known: false, address: null, publicKey: null },
    { known: false, address: null, publicKey: null },
  ]);
  assert.ok((await relayerMode.ask('tunnels')).includes(`${blind.path[0]!.address} \u2192 ? \u2192 ?`), 'unknown hops print as ?');

  // Status: one time format, and one current session per peer, marked in the table.
  const status = JSON.parse(await master.ask('status', '--json')) as { sessions: Array<{ peer: string; sessionId: string; current: boolean }> };
  assertOneTimeFormat(status, 'status');
  assert.ok(status.sessions.length >= 1);
  for (const peer of new Set(status.sessions.map((s) => s.peer))) assert.equal(status.sessions.filter((s) => s.peer === peer && s.current).length, 1, `one current session with ${peer}`);
  const current = status.sessions.find((s) => s.current)!;
  const table = await master.ask('status');
  assert.ok(
    table.split('\n').some((line) => line.startsWith('*') && line.includes(current.sessionId)),
    `deut status marks the current session with *:\n${table}`,
  );

  // The other views: the same one format.
  assertOneTimeFormat(JSON.parse(await master.ask('tunnels', '--json')), 'tunnels');
  const peers = JSON.parse(await master.ask('peers', '--json')) as Array<{ verified: unknown }>;
  assertOneTimeFormat(peers, 'peers');
  assert.ok(peers.length >= 1 && peers.every((p) => typeof p.verified === 'boolean'), 'peers say whether each relayer is verified');
  assert.match((await master.ask('peers')).split('\n')[0]!, /\bverified\b/);
});

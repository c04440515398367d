/**
 * Fault scenarios on separate hosts (network namespaces on a bridge), each with real
 * `deut run` processes. Needs root and `ip netns`; skipped elsewhere, saying why.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NetnsMesh, netnsAvailable, type NetnsHost } from '@deut/testkit';

const BIN = fileURLToPath(new URL('../../packages/cli/dist/src/bin.js', import.meta.url));
const skip = (await netnsAvailable()) ? false : 'needs root and ip netns';

interface Running {
  readonly child: ChildProcess;
  stderr: string;
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stop(running: Running): Promise<void> {
  if (running.child.exitCode !== null) return;
  running.child.kill('SIGTERM');
  await new Promise((resolve) => running.child.once('exit', resolve));
}

test('netns faults - a relayer restarted with a new key on the same address is refused by peers that pinned it, and says so; a fresh known-peers file accepts it', { skip, timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'deut-faults-'));
  const mesh = await NetnsMesh.create({ hosts: 2, net: 79 });
  const [a, b] = mesh.hosts as [NetnsHost, NetnsHost];
  const control = (host: NetnsHost, tag: string): string => join(dir, `${host.ns}-${tag}.json`);
  const start = (host: NetnsHost, tag: string, args: string[]): Running => {
    const child = mesh.spawn(host, [process.execPath, BIN, 'run', '--listen', `${host.address}:7500`, '--control', '127.0.0.1:7501', '--control-file', control(host, tag), '--allow-same-subnet', '--log-format', 'json', ...args]);
    const running: Running = { child, stderr: '' };
    child.stderr?.on('data', (c: Buffer) => (running.stderr += c.toString()));
    return running;
  };
  /** Sessions `host` holds with `peer`, with the peer's key `publicKey` if given. */
  const sessionsWith = async (host: NetnsHost, tag: string, peer: NetnsHost, publicKey?: string): Promise<number> => {
    const r = await mesh.exec(host, [process.execPath, BIN, 'status', '--json', '--control-file', control(host, tag)]);
    if (r.code !== 0) return -1;
    const status = JSON.parse(r.stdout) as { sessions: Array<{ peer: string; publicKey: string }> };
    return status.sessions.filter((s) => s.peer.startsWith(`${peer.address}:`) && (publicKey === undefined || s.publicKey === publicKey)).length;
  };
  const keygen = async (file: string): Promise<string> => {
    const r = await mesh.exec(a, [process.execPath, BIN, 'keygen', '--key-file', file]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const knownPeers = join(dir, 'a.known_peers');
  const running: Running[] = [];
  try {
    // A pins B's key on first contact (B has a key file, so it asks to be pinned).
    const aFirst = start(a, '1', ['--known-peers', knownPeers]);
    running.push(aFirst);
    const bFirst = start(b, '1', ['--key-file', join(dir, 'b-old.key'), '--bootstrap', `${a.address}:7500`]);
    running.push(bFirst);
    await waitFor('a session between A and B', 30_000, async () => (await sessionsWith(a, '1', b)) > 0).catch((error: unknown) => {
      throw new Error(`${String(error)}\nA: ${aFirst.stderr}\nB: ${bFirst.stderr}`);
    });
    assert.match(readFileSync(knownPeers, 'utf8'), new RegExp(`^${b.address.replace(/\./g, '\\.')}:7500 `, 'm'), 'A pinned B in its known-peers file');

    // B comes back on the same address with a new key.
    await stop(bFirst);
    const newKey = await keygen(join(dir, 'b-new.key'));
    const bSecond = start(b, '2', ['--key-file', join(dir, 'b-new.key'), '--bootstrap', `${a.address}:7500`]);
    running.push(bSecond);
    await waitFor('A to refuse the new key', 30_000, () => aFirst.stderr.includes('differs from the pinned key'));
    assert.equal(await sessionsWith(a, '1', b, newKey), 0, 'A holds no session with the new key');
    assert.match(aFirst.stderr, /"level":"warn".*differs from the pinned key; refused/, 'A says so in its log, at warn');

    // An operator who trusts the change starts A with a fresh known-peers file: accepted.
    await stop(aFirst);
    const aSecond = start(a, '2', ['--known-peers', join(dir, 'a-fresh.known_peers')]);
    running.push(aSecond);
    await waitFor('a session with the new key', 60_000, async () => (await sessionsWith(a, '2', b, newKey)) > 0);
    assert.ok(!aSecond.stderr.includes('differs from the pinned key'));
  } finally {
    await Promise.all(running.map(stop));
    await mesh.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

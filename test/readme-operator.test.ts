/**
 * The operator guide of README.md: it names every flag an operator of several daemons, a
 * public DHT node or a test mesh needs (with when to use it), every `deut` command it shows
 * uses flags the CLI of this build accepts, and its block of two daemons on one host runs as
 * written on 127.0.0.1. Every process is killed on the way out, also when an assertion fails.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'packages', 'cli', 'dist', 'src', 'bin.js');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

const groups = new Set<ChildProcess>();
const dirs: string[] = [];
after(() => {
  for (const child of groups) killGroup(child, 'SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** The text of a `## ` section of README.md, up to the next one. */
function section(title: string): string {
  const start = README.indexOf(`## ${title}`);
  assert.ok(start >= 0, `README.md has a section "${title}"`);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** The shell lines of every ```sh block in `text`, continuation lines joined. */
function shellLines(text: string): string[] {
  const out: string[] = [];
  for (const [, body] of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    out.push(...body!.replace(/\\\n\s*/g, '').split('\n').filter((l) => l.trim() !== ''));
  }
  return out;
}

/** The flags `deut <command...> --help` lists. */
function knownFlags(command: readonly string[]): Set<string> {
  const help = execFileSync(process.execPath, [BIN, ...command, '--help'], { encoding: 'utf8' });
  return new Set([...help.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!));
}

test('readme - the operator guide says when to use each flag of several daemons, a public DHT node and a test mesh', () => {
  const guide = section('Operator guide');
  for (const flag of ['--dht-listen', '--dht-contact-file', '--allow-same-subnet', '--allow-private-exits']) {
    const item = guide.split('\n- ').find((entry) => entry.startsWith(`\`${flag}`));
    assert.ok(item !== undefined, `the operator guide has an item on ${flag}`);
    assert.match(item, /Use\s+it/, `the item on ${flag} says when to use it`);
  }
  const twoDaemons = guide.split('\n\n').find((p) => /two daemons on one host/i.test(p));
  assert.ok(twoDaemons !== undefined, 'the operator guide says what two daemons on one host need');
  assert.match(twoDaemons, /`--control`/);
  assert.match(twoDaemons, /`--control-file`/);
});

test('readme - every deut command README.md shows uses only flags the CLI accepts', { timeout: 120_000 }, () => {
  const commands = shellLines(README).filter((l) => /^(npx )?deut /.test(l.trim()));
  assert.ok(commands.length >= 5, `README.md shows deut commands (${commands.length})`);
  const cache = new Map<string, Set<string>>();
  for (const line of commands) {
    const tokens = line.replace(/#.*$/, '').trim().replace(/^npx /, '').split(/\s+/).slice(1);
    const first = tokens.findIndex((t) => t.startsWith('-'));
    // Subcommand words: up to the first flag, before any positional argument (a quoted value, an address).
    const words = (first < 0 ? tokens : tokens.slice(0, first)).filter((w) => /^[a-z][a-z-]*$/.test(w)).slice(0, 2);
    const key = words.join(' ');
    if (!cache.has(key)) cache.set(key, knownFlags(words));
    const known = cache.get(key)!;
    for (const flag of tokens.filter((t) => t.startsWith('--')).map((t) => t.slice(2).split('=')[0]!)) {
      assert.ok(known.has(flag) || (flag.startsWith('no-') && known.has(flag.slice(3))), `README.md: deut ${key} has no flag --${flag} (${line.trim()})`);
    }
  }
});

/** A port free now on 127.0.0.1 for both UDP and TCP (the block's ports are either). */
async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
    });
    const socket = dgram.createSocket('udp4');
    const udpFree = await new Promise<boolean>((resolve) => {
      socket.once('error', () => resolve(false));
      socket.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (udpFree) return port;
  }
}

/** Runs one shell line to completion (killed after 60 s). */
function runLine(line: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', line], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    groups.add(child);
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const killer = setTimeout(() => killGroup(child, 'SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(killer);
      groups.delete(child);
      resolve({ code, output });
    });
  });
}

test('readme - the block of two daemons on one host runs as written on 127.0.0.1', { timeout: 180_000 }, async () => {
  const guide = section('Operator guide');
  const block = guide.slice(guide.search(/\*\*Two daemons on one host\*\*/));
  const lines = shellLines(block.slice(0, block.indexOf('```', block.indexOf('```sh') + 5) + 3));
  assert.ok(lines.some((l) => l.includes('deut run')), 'the block starts daemons');

  // As written, except: the README's fixed ports become free ones (other tests share this
  // machine), `npx deut` is this build's bin.js (npx is tested in cli-operator), and ~ is a
  // fresh home of its own.
  const home = mkdtempSync(join(tmpdir(), 'deut-readme-'));
  dirs.push(home);
  const ports = new Map<string, number>();
  for (const [, port] of block.matchAll(/127\.0\.0\.1:(\d+)/g)) if (!ports.has(port!)) ports.set(port!, await freePort());
  const localize = (line: string): string =>
    line.replace(/^npx deut /, `"${process.execPath}" "${BIN}" `).replace(/127\.0\.0\.1:(\d+)/g, (_m, port: string) => `127.0.0.1:${ports.get(port)!}`);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home };
  const expand = (path: string): string => path.replace(/^~/, home);
  const defaultControl = join(home, '.deut', 'control.json');
  // Without a --control flag a daemon takes the default port, shared with any other daemon
  // of this machine: the block's first daemon gets a free one by DEUT_CONTROL.
  env.DEUT_CONTROL = `127.0.0.1:${await freePort()}`;

  const daemons: ChildProcess[] = [];
  try {
    for (const line of lines.map((l) => localize(l.trim()))) {
      if (line.includes(' run ')) {
        const child = spawn('sh', ['-c', line], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
        groups.add(child);
        daemons.push(child);
        let output = '';
        child.stdout.on('data', (c: Buffer) => (output += c.toString()));
        child.stderr.on('data', (c: Buffer) => (output += c.toString()));
        const controlFile = expand(/--control-file (\S+)/.exec(line)?.[1] ?? defaultControl);
        const files = [controlFile, ...[...line.matchAll(/--dht-contact-file (\S+)/g)].map((m) => expand(m[1]!))];
        // Ready once it wrote its control file (the contact file is written before it).
        while (!files.every((f) => existsSync(f))) {
          assert.equal(child.exitCode, null, `${line}\nexited early:\n${output}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      } else {
        // Commands against a daemon: a master's tunnels may still be building, so retry a few times.
        let result = await runLine(line, env);
        for (let attempt = 0; attempt < 20 && result.code !== 0; attempt++) {
          await new Promise((r) => setTimeout(r, 500));
          result = await runLine(line, env);
        }
        assert.equal(result.code, 0, `${line}\n${result.output}`);
      }
    }
    assert.ok(daemons.length >= 2, 'the block runs two daemons');
  } finally {
    for (const child of daemons) killGroup(child, 'SIGTERM');
  }
});

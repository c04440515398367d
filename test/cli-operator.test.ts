/**
 * What an operator meets first with the `deut` command, each a defect once: the npm link of
 * the command before the first build, `keygen` into a folder that does not exist yet, a node
 * started with no role, `--version`, output cut short by a pipe (`deut status | head`), and a
 * DHT put that stored nowhere. Every process runs on 127.0.0.1 and is killed on the way out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, cliScope, type CliResult } from './cli-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cliPackage = join(root, 'packages', 'cli');
const VERSION = (JSON.parse(readFileSync(join(cliPackage, 'package.json'), 'utf8')) as { version: string }).version;

const { tempDir, deut, track } = cliScope('deut-operator');

/** Runs `node <script> ...args` to completion, like `deut` but for another entry point. */
function run(script: string, args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = track(spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A `deut run` daemon on 127.0.0.1, ready once its control file exists. */
async function daemon(dir: string, args: readonly string[], name = 'node'): Promise<{ controlFile: string; address: string; pid: number; log: () => string }> {
  const controlFile = join(dir, `${name}.json`);
  const child = spawn(process.execPath, [BIN, 'run', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--control-file', controlFile, '--log-format', 'json', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  // The control file is written before the start line is printed: wait for both.
  const started = (): string | undefined => (existsSync(controlFile) ? /node on udp (\S+);/.exec(output)?.[1] : undefined);
  for (let waited = 0; started() === undefined; waited += 50) {
    if (waited > 30_000 || child.exitCode !== null) throw new Error(`deut run did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const address = started()!;
  return { controlFile, address, pid: child.pid!, log: () => output };
}

test('cli operator - the npm link of `deut` points at a checked-in launcher, so `npx deut` works after `npm ci && npm run build`', { timeout: 60_000 }, async () => {
  // npm links a bin at install time only if its target exists then; `npm ci` comes before the
  // first build, so a target under dist/ left `npx deut` with nothing to run.
  const bins = (JSON.parse(readFileSync(join(cliPackage, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin;
  const target = bins.deut;
  assert.ok(target !== undefined, 'package.json names a deut bin');
  assert.ok(!target.replace(/^\.\//, '').startsWith('dist/'), `the bin target ${target} must not be a build output`);
  const launcher = join(cliPackage, target);
  assert.ok((statSync(launcher).mode & 0o111) !== 0, 'the launcher is executable');
  const result = await run(launcher, ['--version']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim(), VERSION);
});

test('cli operator - keygen into a folder that does not exist creates it 0700 and the key file 0600', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const keyFile = join(dir, 'var', 'lib', 'deut', 'node.key');
  const result = await deut(['keygen', '--key-file', keyFile]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout.trim(), /^[0-9a-f]{64}$/);
  assert.equal(statSync(join(dir, 'var', 'lib', 'deut')).mode & 0o777, 0o700);
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
});

test('cli operator - a node with no role (--no-relay alone) is refused with exit 2 and the flags that give it one', { timeout: 60_000 }, async () => {
  const result = await deut(['run', '--no-relay', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--control-file', join(tempDir(), 'c.json')]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--no-relay leaves this node no role: add --master/);
});

test('cli operator - --version prints the version', { timeout: 60_000 }, async () => {
  const result = await deut(['--version']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim(), VERSION);
});

test('cli operator - output cut short by a closed pipe ends the command quietly; a DHT put that stored nowhere fails and the daemon said why at start', { timeout: 120_000 }, async () => {
  const node = await daemon(tempDir(), ['--dht']);
  for (const command of [['status'], ['peers'], ['tunnels'], ['--help']]) {
    const cut = await deut([...command, '--control-file', node.controlFile], { closeStdout: true });
    assert.equal(cut.code, 0, `deut ${command.join(' ')}: ${cut.stderr}`);
    assert.doesNotMatch(cut.stderr, /EPIPE|Error|at /, `deut ${command.join(' ')} printed no stack`);
  }
  const put = await deut(['dht', 'put', 'k', 'v', '--control-file', node.controlFile]);
  assert.equal(put.code, 1, 'a put that stored nowhere fails');
  assert.match(put.stderr, /stored nowhere: the node knows no DHT node/);
  assert.match(node.log(), /no --dht-bootstrap given/, 'the daemon warned at start');
});

test('cli operator - send to an address the endpoint refuses says why instead of "sent"', { timeout: 180_000 }, async () => {
  const dir = tempDir();
  // The relayer keeps the default exit policy; everything here is on loopback, so it refuses.
  const relayer = await daemon(dir, [], 'relayer');
  const master = await daemon(dir, ['--no-relay', '--tunnels', '1', '--hops', '1', '--allow-same-subnet', '--bootstrap', relayer.address], 'master');
  for (let waited = 0; ; waited += 250) {
    const tunnels = await deut(['tunnels', '--json', '--control-file', master.controlFile]);
    if (tunnels.code === 0 && (JSON.parse(tunnels.stdout) as { owned: unknown[] }).owned.length > 0) break;
    assert.ok(waited < 120_000, `the master built no tunnel: ${master.log()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const sent = await deut(['send', '127.0.0.1:9', 'hello', '--control-file', master.controlFile]);
  assert.equal(sent.code, 1, sent.stdout);
  assert.doesNotMatch(sent.stdout, /sent/);
  assert.match(sent.stderr, /endpoint refused: exit policy \(loopback\); endpoints send to public addresses only, unless started with --allow-private-exits/);
});

test('cli operator - pins list and remove work on a known-peers file, and key show prints a key file\'s public key', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const file = join(dir, 'known_peers');
  const one = Buffer.alloc(32, 1);
  const two = Buffer.alloc(32, 2);
  writeFileSync(file, `# pins\n127.0.0.1:7500 ${one.toString('base64')}\n10.1.2.3:7600 ${two.toString('base64')}\n`);
  const listed = await deut(['pins', 'list', '--known-peers', file, '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout), [
    { address: '127.0.0.1:7500', publicKey: one.toString('hex'), at: `${file}:2` },
    { address: '10.1.2.3:7600', publicKey: two.toString('hex'), at: `${file}:3` },
  ]);
  const removed = await deut(['pins', 'remove', '10.1.2.3:7600', '--known-peers', file]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.doesNotMatch(readFileSync(file, 'utf8'), /10\.1\.2\.3/);
  assert.match(readFileSync(file, 'utf8'), /^127\.0\.0\.1:7500 /m, 'the other pin stays');
  const missing = await deut(['pins', 'remove', '10.1.2.3:7600', '--known-peers', file]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /has no pin for 10\.1\.2\.3:7600/);
  const keyFile = join(dir, 'node.key');
  const made = await deut(['keygen', '--key-file', keyFile]);
  const shown = await deut(['key', 'show', '--key-file', keyFile]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout.trim(), made.stdout.trim(), 'the same hex the key was announced with');
});

test('cli operator - SIGHUP reloads the known-peers file (a pin removed meanwhile is gone) and does not stop the daemon', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const file = join(dir, 'known_peers');
  writeFileSync(file, `10.1.2.3:7600 ${Buffer.alloc(32, 2).toString('base64')}\n10.1.2.4:7600 ${Buffer.alloc(32, 3).toString('base64')}\n`);
  const node = await daemon(dir, ['--known-peers', file]);
  const removed = await deut(['pins', 'remove', '10.1.2.3:7600', '--known-peers', file]);
  assert.equal(removed.code, 0, removed.stderr);
  const pid = node.pid;
  process.kill(pid, 'SIGHUP');
  for (let waited = 0; !/SIGHUP: reloaded the known-peers file \(1 pins\)/.test(node.log()); waited += 50) {
    assert.ok(waited < 20_000, `no reload line: ${node.log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const status = await deut(['status', '--json', '--control-file', node.controlFile]);
  assert.equal(status.code, 0, `the daemon still answers after SIGHUP: ${status.stderr}`);
});

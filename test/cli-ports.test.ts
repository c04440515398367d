/**
 * `deut run` meeting a port it cannot have, and an address flag given a host name: each
 * was a defect once. A port in use made a message that named neither the flag nor (in JSON
 * logs) the address; `localhost:7500` was refused as if it were not HOST:PORT at all. Every
 * process runs on 127.0.0.1 and is killed on the way out, also when an assertion fails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, cliScope, type CliResult } from './cli-process.js';

const DHT_KEY = 'ab'.repeat(32);

const { tempDir, deut: run, track, heldUdpPort, heldTcpPort } = cliScope('deut-ports');

/** Runs `deut ...args` to completion, with `env` added to the environment. */
const deut = (args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> => run(args, { env });

/** Free flags for the ports a case does not test: all on 127.0.0.1, the system's choice. */
function otherPorts(dir: string, flag: string): string[] {
  const out = ['--control-file', join(dir, 'control.json')];
  if (flag !== '--listen') out.push('--listen', '127.0.0.1:0');
  if (flag !== '--control') out.push('--control', '127.0.0.1:0');
  return out;
}

for (const { flag, udp } of [
  { flag: '--listen', udp: true },
  { flag: '--dht-listen', udp: true },
  { flag: '--control', udp: false },
  { flag: '--metrics', udp: false },
]) {
  test(`ports - ${flag} in use: one stderr line names the flag and the address, and so does the JSON log`, { timeout: 90_000 }, async () => {
    const dir = tempDir();
    const port = udp ? await heldUdpPort() : await heldTcpPort();
    const address = `127.0.0.1:${port}`;
    const result = await deut(['run', ...otherPorts(dir, flag), flag, address, '--log-format', 'json']);
    assert.equal(result.code, 1, `exit 1 (a failure, not a usage error)\n${result.stderr}`);
    assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
    const lines = result.stderr.trim().split('\n');
    const plain = lines.filter((l) => l.startsWith('deut run:'));
    assert.equal(plain.length, 1, `one plain line on stderr:\n${result.stderr}`);
    assert.equal(plain[0], `deut run: ${flag} ${address}: address already in use: another process (another deut daemon?) has that port; stop it or pick another port`);
    // The JSON log line of the failure carries the flag and the operator's own address as
    // they are, without --unsafe-logs: it is this operator's setting, not a peer's address.
    const records = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const failed = records.find((r) => r.message === 'start failed');
    assert.ok(failed !== undefined, `a "start failed" log record:\n${result.stderr}`);
    assert.equal(failed.flag, flag);
    assert.equal(failed.listen, address);
    assert.doesNotMatch(JSON.stringify(failed), /scrubbed/);
  });
}

test('ports - a --metrics port in use is still named with --log-format pretty and leaves no control file', { timeout: 90_000 }, async () => {
  const dir = tempDir();
  const port = await heldTcpPort();
  const result = await deut(['run', ...otherPorts(dir, '--metrics'), '--metrics', `127.0.0.1:${port}`, '--log-format', 'pretty']);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, new RegExp(`^deut run: --metrics 127\\.0\\.0\\.1:${port}: address already in use`, 'm'));
  assert.match(result.stderr, new RegExp(`flag=--metrics listen=127\\.0\\.0\\.1:${port}`));
  // The control API was up before the metrics port failed; its file went with it.
  assert.ok(!existsSync(join(dir, 'control.json')), 'the control file is removed');
});

const HOSTNAME = /"localhost" is a host name, and deut takes IP addresses only \(it resolves no names\): write an IP literal such as 127\.0\.0\.1:7500 or \[::1\]:7500/;

for (const [flag, value] of [
  ['--listen', 'localhost:7500'],
  ['--bootstrap', 'localhost:7500'],
  ['--control', 'localhost:7501'],
  ['--metrics', 'localhost:9100'],
  ['--dht-listen', 'localhost:7600'],
  ['--dht-bootstrap', `${DHT_KEY}@localhost:7600`],
] as const) {
  test(`hostnames - ${flag} ${value} is refused plainly: an IP literal is required`, { timeout: 60_000 }, async () => {
    const dir = tempDir();
    const result = await deut(['run', '--control-file', join(dir, 'control.json'), flag, value]);
    assert.equal(result.code, 2, `exit 2 (usage)\n${result.stderr}`);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line:\n${result.stderr}`);
    assert.ok(lines[0]!.startsWith(`deut run: ${flag}: `), lines[0]);
    assert.match(lines[0]!, HOSTNAME);
  });
}

test('hostnames - the environment and the config file are held to the same rule, one line per field', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const file = join(dir, 'deut.json');
  writeFileSync(file, JSON.stringify({ metrics: 'localhost:9100', bootstrap: ['127.0.0.1:7500', 'relay.example:7500'] }));
  const result = await deut(['run', '--config', file, '--control-file', join(dir, 'control.json')], { DEUT_LISTEN: 'localhost:7500' });
  assert.equal(result.code, 2, result.stderr);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 3, result.stderr);
  assert.ok(lines.some((l) => l.startsWith('deut run: DEUT_LISTEN: ') && HOSTNAME.test(l)), result.stderr);
  assert.ok(lines.some((l) => l.startsWith('deut run: config file field metrics: ') && HOSTNAME.test(l)), result.stderr);
  assert.ok(lines.some((l) => l.startsWith('deut run: config file field bootstrap: relay.example:7500: "relay.example" is a host name')), result.stderr);
});

test('hostnames - IP literals, v4 and v6, still pass (the rule refuses names only)', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  // --no-relay with no master role is refused after every address parsed: exit 2 for that, not for an address.
  const result = await deut([
    'run', '--no-relay', '--control-file', join(dir, 'control.json'),
    '--listen', '127.0.0.1:7500', '--bootstrap', '[::1]:7500', '--bootstrap', '127.0.0.2:7500', '--control', '[::1]:7501', '--metrics', '127.0.0.1:9100', '--dht-listen', '[::1]:7600',
    '--dht-bootstrap', `${DHT_KEY}@127.0.0.1:7600`,
  ]);
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  assert.match(result.stderr, /--no-relay leaves this node no role/);
});

test('ports - a second daemon on the first one\'s control file is told to give it its own --control-file and --control', { timeout: 90_000 }, async () => {
  const dir = tempDir();
  const controlFile = join(dir, 'control.json');
  const first = spawn(process.execPath, [BIN, 'run', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--control-file', controlFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(first);
  try {
    let output = '';
    first.stderr.on('data', (c: Buffer) => (output += c.toString()));
    await new Promise<void>((resolve, reject) => {
      first.stdout.on('data', (c: Buffer) => {
        output += c.toString();
        if (output.includes('; control ')) resolve();
      });
      first.once('exit', (code) => reject(new Error(`the first daemon exited (${code}):\n${output}`)));
    });
    const second = await deut(['run', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--control-file', controlFile]);
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, /^deut run: control file .* belongs to process \d+, which is running: another daemon\? Stop it, or give this one its own --control-file and --control port/m);
  } finally {
    first.kill('SIGKILL');
  }
});

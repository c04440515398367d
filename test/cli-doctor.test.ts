/**
 * `deut doctor` and `deut completion`: doctor reads a `deut run` configuration and says what
 * would stop or weaken the node, one line per check with the remedy, without starting it.
 * Every process and socket is on 127.0.0.1 and is killed or closed on the way out, also when
 * an assertion fails; a non-loopback --metrics is checked through the pure check, unbound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { checkMetricsExposure, type DoctorReport } from '@deut/cli';
import { BIN, cliScope } from './cli-process.js';

const { tempDir, deut, track, heldUdpPort, heldTcpPort } = cliScope('deut-doctor');

/** A folder 0700 holding a fresh key file, and the flags of a healthy relayer using it. */
async function healthy(): Promise<{ dir: string; key: string; flags: string[] }> {
  const dir = join(tempDir(), 'deut');
  mkdirSync(dir, { mode: 0o700 });
  const key = join(dir, 'node.key');
  const made = await deut(['keygen', '--key-file', key]);
  assert.equal(made.code, 0, made.stderr);
  const flags = [
    '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--control-file', join(dir, 'control.json'),
    '--key-file', key, '--known-peers', join(dir, 'known_peers'), '--bootstrap', '127.0.0.1:7500',
  ];
  return { dir, key, flags };
}

/** The report of `deut doctor --json ...flags`, and its exit code. */
async function doctorJson(flags: readonly string[]): Promise<{ code: number | null; report: DoctorReport }> {
  const result = await deut(['doctor', '--json', ...flags]);
  assert.equal(result.stderr, '', 'nothing on stderr');
  return { code: result.code, report: JSON.parse(result.stdout) as DoctorReport };
}

test('doctor - a healthy configuration is all ok, exits 0, and says reachability needs a peer', { timeout: 60_000 }, async () => {
  const { flags } = await healthy();
  const result = await deut(['doctor', ...flags]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const lines = result.stdout.trim().split('\n');
  const checks = lines.filter((l) => !l.startsWith('note') && !/^\d+ fail/.test(l));
  assert.ok(checks.length >= 8, result.stdout);
  for (const line of checks) assert.match(line, /^ok {4}/, `every check is ok:\n${result.stdout}`);
  assert.match(result.stdout, /--key-file .*node\.key: parses, mode 600, owned by this user/);
  assert.match(result.stdout, /--known-peers .*: does not exist yet/);
  assert.match(result.stdout, /--listen 127\.0\.0\.1:0 \(UDP\)/);
  assert.match(result.stdout, /--control 127\.0\.0\.1:0 \(TCP\)/);
  assert.match(result.stdout, /system clock .* keep NTP running/);
  assert.match(result.stdout, /^note {2}reachability .* needs a peer/m);
  assert.match(result.stdout, /^0 fail, 0 warn, \d+ ok$/m);
});

test('doctor - a key file with mode 0644 fails with the chmod remedy and exit 1', { timeout: 60_000 }, async () => {
  const { key, flags } = await healthy();
  chmodSync(key, 0o644);
  const result = await deut(['doctor', ...flags]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  const line = result.stdout.split('\n').find((l) => l.includes('--key-file'));
  assert.equal(line, `fail  --key-file ${key}: mode 644 gives group or others access to the private key; fix: chmod 600 ${key}`);
});

for (const { flag, udp } of [
  { flag: '--listen', udp: true },
  { flag: '--control', udp: false },
  { flag: '--metrics', udp: false },
  { flag: '--dht-listen', udp: true },
]) {
  test(`doctor - ${flag} on a port another socket holds fails, naming the flag`, { timeout: 60_000 }, async () => {
    const { flags } = await healthy();
    const port = udp ? await heldUdpPort() : await heldTcpPort();
    const given = flags.filter((f, i) => f !== flag && flags[i - 1] !== flag);
    const { code, report } = await doctorJson([...given, flag, `127.0.0.1:${port}`, ...(flag === '--dht-listen' ? ['--dht-key-file', join(tempDir(), 'dht.key')] : [])]);
    assert.equal(code, 1);
    const failed = report.checks.filter((c) => c.level === 'fail');
    assert.equal(failed.length, 1, JSON.stringify(report, null, 2));
    assert.equal(failed[0]!.id, `port-${flag.slice(2)}`);
    assert.match(failed[0]!.message, new RegExp(`^${flag} 127\\.0\\.0\\.1:${port} \\(${udp ? 'UDP' : 'TCP'}\\): in use by another process`));
    assert.match(failed[0]!.remedy ?? '', new RegExp(`pick another port with ${flag}$`));
  });
}

test('doctor - ports held by a running deut run of the same config are reported as that daemon', { timeout: 90_000 }, async () => {
  const { dir, flags } = await healthy();
  // The daemon takes ports the system picks, and doctor is given the ones it got: no window
  // in which a released port could be taken by someone else.
  const daemon = track(spawn(process.execPath, [BIN, 'run', ...flags], { stdio: ['ignore', 'pipe', 'pipe'] }));
  try {
    let output = '';
    daemon.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const [nodeAddress, controlAddress] = await new Promise<[string, string]>((resolve, reject) => {
      daemon.stdout!.on('data', (c: Buffer) => {
        output += c.toString();
        const started = /node on udp (127\.0\.0\.1:\d+); control (127\.0\.0\.1:\d+)\n/.exec(output);
        if (started !== null) resolve([started[1]!, started[2]!]);
      });
      daemon.once('exit', (code) => reject(new Error(`the daemon exited (${code}):\n${output}`)));
    });
    const controlPort = controlAddress.split(':')[1]!;
    const config = [...flags];
    config.splice(config.indexOf('--listen'), 2, '--listen', nodeAddress);
    config.splice(config.indexOf('--control'), 2, '--control', controlAddress);
    const { code, report } = await doctorJson(config);
    assert.equal(code, 0, `our own daemon running is no failure\n${JSON.stringify(report, null, 2)}`);
    const byId = new Map(report.checks.map((c) => [c.id, c]));
    const pid = String(daemon.pid);
    assert.equal(byId.get('daemon')?.level, 'warn');
    assert.match(byId.get('daemon')!.message, new RegExp(`^our own daemon runs already \\(pid ${pid}, control 127\\.0\\.0\\.1:${controlPort}, --control-file ${join(dir, 'control.json').replace(/[.\\/]/g, '\\$&')}\\)`));
    for (const id of ['port-listen', 'port-control'] as const) {
      assert.equal(byId.get(id)?.level, 'warn', id);
      assert.match(byId.get(id)!.message, new RegExp(`: in use by our own daemon \\(pid ${pid}\\), which runs already$`), id);
    }
  } finally {
    daemon.kill('SIGKILL');
  }
});

test('doctor - --metrics beyond loopback warns (the pure check: no non-loopback bind in a test)', () => {
  const exposed = checkMetricsExposure({ host: '0.0.0.0', port: 9100 });
  assert.equal(exposed.level, 'warn');
  assert.match(exposed.message, /^--metrics 0\.0\.0\.0:9100 is reachable beyond this host: .*traffic analysis/);
  assert.match(exposed.remedy ?? '', /--metrics 127\.0\.0\.1:PORT/);
  assert.equal(checkMetricsExposure({ host: '127.0.0.1', port: 9100 }).level, 'ok');
  assert.equal(checkMetricsExposure({ host: '::1', port: 9100 }).level, 'ok');
  assert.equal(checkMetricsExposure(undefined).level, 'ok');
});

test('doctor - a relayer without --key-file warns that every restart is a new identity; a master alone does not', { timeout: 60_000 }, async () => {
  const { flags } = await healthy();
  const keyless = flags.filter((f, i) => f !== '--key-file' && flags[i - 1] !== '--key-file');
  const relayer = await doctorJson(keyless);
  assert.equal(relayer.code, 0);
  const warned = relayer.report.checks.find((c) => c.id === 'key-file');
  assert.equal(warned?.level, 'warn');
  assert.match(warned.message, /^no --key-file: every restart is a new identity/);
  assert.match(warned.remedy ?? '', /--key-file FILE/);
  const master = await doctorJson([...keyless, '--no-relay', '--tunnels', '2']);
  assert.equal(master.report.checks.find((c) => c.id === 'key-file')?.level, 'ok');
});

test('doctor - --json parses: every check has an id, a level and a message, and warn/fail a remedy', { timeout: 60_000 }, async () => {
  const { flags } = await healthy();
  const { code, report } = await doctorJson([...flags.slice(0, flags.indexOf('--bootstrap')), '--allow-same-subnet']);
  assert.equal(code, 0);
  assert.ok(report.checks.length >= 8);
  for (const c of report.checks) {
    assert.ok(['ok', 'warn', 'fail'].includes(c.level), JSON.stringify(c));
    assert.equal(typeof c.id, 'string');
    assert.equal(typeof c.message, 'string');
    if (c.level !== 'ok') assert.equal(typeof c.remedy, 'string', JSON.stringify(c));
  }
  assert.equal(report.checks.find((c) => c.id === 'bootstrap')?.level, 'warn');
  assert.equal(report.checks.find((c) => c.id === 'test-flags')?.level, 'ok', 'a test flag on loopback is a test mesh');
  assert.deepEqual(report.notes.length, 1);
});

test('doctor - a bad value exits 2 as deut run does, naming the flag', { timeout: 60_000 }, async () => {
  const result = await deut(['doctor', '--listen', 'localhost:7500', '--control-file', join(tempDir(), 'control.json')]);
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /^deut doctor: --listen: "localhost" is a host name/);
  assert.equal(result.stdout, '');
});

test('completion - deut completion prints yargs\u2019 script, and its query lists every command', { timeout: 60_000 }, async () => {
  const bash = await deut(['completion'], { env: { SHELL: '/bin/bash' } });
  assert.equal(bash.code, 0, bash.stderr);
  assert.match(bash.stdout, /complete .*-F _deut_yargs_completions deut/);
  assert.match(bash.stdout, /deut --get-yargs-completions/);
  const zsh = await deut(['completion'], { env: { SHELL: '/bin/zsh' } });
  assert.equal(zsh.code, 0, zsh.stderr);
  assert.match(zsh.stdout, /^#compdef deut/m);
  const commands = await deut(['--get-yargs-completions', 'deut', '']);
  assert.equal(commands.code, 0, commands.stderr);
  const listed = new Set(commands.stdout.trim().split('\n'));
  for (const name of ['run', 'doctor', 'status', 'tunnels', 'peers', 'send', 'dht', 'mesh', 'pins', 'key', 'keygen', 'completion']) {
    assert.ok(listed.has(name), `${name} in\n${commands.stdout}`);
  }
  const doctorFlags = await deut(['--get-yargs-completions', 'deut', 'doctor', '--']);
  assert.match(doctorFlags.stdout, /^--key-file$/m);
  assert.match(doctorFlags.stdout, /^--json$/m);
});

/**
 * The `deut` command as operators run it: real `deut run` processes on loopback, read and
 * driven through the control API by the CLI's own subcommands; configuration mistakes;
 * keygen; what the logs and metrics may show.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CONFIG_FIELDS, flagName } from '@deut/cli';
import { cliScope, type CliResult, type Daemon } from './cli-process.js';

const { tempDir, deut, daemon } = cliScope('deut-cli');

async function statusOf(d: Daemon): Promise<Record<string, unknown>> {
  const result = await deut(['status', '--json', '--control-file', d.controlFile], { ms: 20_000 });
  if (result.code !== 0) throw new Error(`status of ${d.name}: ${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${String(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stop(d: Daemon): Promise<number | null> {
  if (d.child.exitCode !== null) return d.child.exitCode;
  d.child.kill('SIGTERM');
  const killer = setTimeout(() => d.child.kill('SIGKILL'), 15_000);
  const code = await d.exited;
  clearTimeout(killer);
  return code;
}

function canBindUdp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, host, () => s.close(() => resolve(true)));
  });
}

function canBindTcp(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

const CANARY = 'CANARY-SECRET-7f3a';

// ---- a mesh of processes -------------------------------------------------------------------

test('cli - a mesh of deut run processes: status, tunnels, dht put/get, send, metrics, clean SIGTERM', { timeout: 240_000 }, async (t: TestContext) => {
  const dir = tempDir();
  const daemons: Daemon[] = [];
  const echo = dgram.createSocket('udp4');
  const echoed: string[] = [];
  echo.on('message', (msg, rinfo) => {
    echoed.push(`${rinfo.address}:${rinfo.port}`);
    echo.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => echo.bind(0, '127.0.3.1', resolve));
  try {
    const bootstrapNode = daemon('relay-1', dir, ['--listen', '127.0.1.1:0', '--log-format', 'json']);
    daemons.push(bootstrapNode);
    const bootstrap = String((await waitFor('the bootstrap relayer', 30_000, () => statusOf(bootstrapNode))).address);
    for (let i = 2; i <= 7; i++) daemons.push(daemon(`relay-${i}`, dir, ['--listen', `127.0.1.${i}:0`, '--bootstrap', bootstrap, '--log-format', 'json']));
    const masterArgs = (i: number, extra: string[]): string[] => ['--listen', `127.0.2.${i}:0`, '--bootstrap', bootstrap, '--no-relay', '--tunnels', '3', '--dht', '--log-format', 'json', ...extra];
    const alice = daemon('alice', dir, masterArgs(1, ['--metrics', '127.0.0.1:0']));
    daemons.push(alice);
    const aliceStatus = await waitFor('alice\u2019s pool', 60_000, async () => {
      const s = await statusOf(alice);
      return (s.tunnels as { usable: number }).usable >= 3 ? s : undefined;
    });
    const tunnels = JSON.parse((await deut(['tunnels', '--json', '--control-file', alice.controlFile])).stdout) as { owned: Array<{ endpoint: string }> };
    const contact = `${(aliceStatus.dht as { publicKey: string }).publicKey}@${tunnels.owned[0]!.endpoint}`;
    const bob = daemon('bob', dir, masterArgs(2, ['--dht-bootstrap', contact]));
    daemons.push(bob);
    const bobStatus = await waitFor('bob\u2019s pool and DHT', 60_000, async () => {
      const s = await statusOf(bob);
      return (s.tunnels as { usable: number }).usable >= 3 && (s.dht as { contacts: number }).contacts >= 1 ? s : undefined;
    });
    assert.equal((bobStatus.roles as { dht: boolean }).dht, true);
    assert.ok((bobStatus.sessions as unknown[]).length >= 1, 'status lists link sessions');

    // Human status output shows the session ids.
    const human = await deut(['status', '--control-file', alice.controlFile]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /link sessions/);
    const sessionId = (aliceStatus.sessions as Array<{ sessionId: string }>)[0]!.sessionId;
    assert.ok(human.stdout.includes(sessionId), 'the human status prints session ids');

    // DHT across the two masters, through the CLI.
    const put = await deut(['dht', 'put', 'cli-key', 'cli-value', '--control-file', bob.controlFile]);
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout, /stored at [1-9]\d* of/);
    const got = await deut(['dht', 'get', 'cli-key', '--control-file', alice.controlFile]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout.trim(), 'cli-value');
    const missing = await deut(['dht', 'get', 'no-such-key', '--control-file', alice.controlFile]);
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /no value found/);

    // A datagram to a plain UDP echo server, through alice's tunnels.
    const echoPort = echo.address().port;
    const sent = await deut(['send', `127.0.3.1:${echoPort}`, 'ping through deut', '--wait-reply', '--control-file', alice.controlFile]);
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, /reply: ping through deut/);
    assert.ok(echoed.length > 0 && echoed.every((from) => from.startsWith('127.0.1.')), `the echo server saw only endpoints: ${echoed.join(', ')}`);

    // Metrics scrape and parse.
    const metricsUrl = /metrics (http:\/\/[^\s;]+)/.exec(alice.output.stdout)?.[1];
    assert.ok(metricsUrl !== undefined, `alice printed her metrics address: ${alice.output.stdout}`);
    const scrape = await (await fetch(metricsUrl)).text();
    const samples = scrape.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.ok(samples.every((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+-]+|NaN|[+-]Inf$/.test(l)), 'every sample line parses');
    assert.match(scrape, /^deut_tunnels\{role="owned"\} 3$/m);
    assert.match(scrape, /^deut_link_sessions \d+$/m);
    assert.match(scrape, /^deut_link_bytes_total\{direction="sent"\} [1-9]\d*$/m);
    assert.match(scrape, /^deut_tunnel_build_seconds_count\{outcome="succeeded"\} [1-9]\d*$/m);
    assert.match(scrape, /^deut_dht_lookups_total\{kind="get"\} [1-9]\d*$/m);

    // SIGTERM: every process exits 0, and every port it held can be bound again.
    const held: Array<{ udp: string; control: string }> = [];
    for (const d of daemons) {
      const s = await statusOf(d);
      const control = (JSON.parse(readFileSync(d.controlFile, 'utf8')) as { address: string }).address;
      held.push({ udp: String(s.address), control });
    }
    const codes = await Promise.all(daemons.map(stop));
    assert.deepEqual(codes, daemons.map(() => 0), 'every daemon exited 0 after SIGTERM');
    for (const { udp, control } of held) {
      const [uh, up] = udp.split(':');
      const [ch, cp] = control.split(':');
      assert.ok(await canBindUdp(uh!, Number(up)), `${udp} is free again`);
      assert.ok(await canBindTcp(ch!, Number(cp)), `control ${control} is free again`);
    }
    for (const d of daemons) assert.throws(() => statSync(d.controlFile), 'the control file is removed on shutdown');
    t.diagnostic(`${daemons.length} processes; echo seen from ${new Set(echoed).size} endpoint(s)`);
  } finally {
    await Promise.all(daemons.map(stop));
    echo.close();
  }
});

// ---- user mistakes -------------------------------------------------------------------------

test('cli - bad values, unknown flags, unreadable key files and missing cookies give clear errors and the right exit codes', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  const noStack = (r: CliResult): void => assert.ok(!/\n\s+at /.test(r.stderr), `no stack trace:\n${r.stderr}`);

  const bad = await deut(['run', '--tunnels', 'abc', '--hops', '9', '--listen', 'nowhere', '--control', '10.0.0.1:7501', '--path-selection', 'random']);
  assert.equal(bad.code, 2);
  noStack(bad);
  for (const flag of ['--tunnels', '--hops', '--listen', '--control', '--path-selection']) assert.match(bad.stderr, new RegExp(`${flag}: `), `one line for ${flag}`);
  assert.equal(bad.stderr.trim().split('\n').length, 5, 'exactly one line per bad field');

  const unknown = await deut(['run', '--tunels', '3']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Unknown argument/i);
  noStack(unknown);

  const envBad = await deut(['run'], { env: { DEUT_FANOUT: '99' } });
  assert.equal(envBad.code, 2);
  assert.match(envBad.stderr, /DEUT_FANOUT: expected an integer 1\.\.8/);

  const configFile = join(dir, 'deut.json');
  writeFileSync(configFile, JSON.stringify({ tunnels: 0, colour: 'blue' }));
  const fileBad = await deut(['run', '--config', configFile]);
  assert.equal(fileBad.code, 2);
  assert.match(fileBad.stderr, /config file field tunnels: expected an integer 1\.\.256/);
  assert.match(fileBad.stderr, /unknown field "colour"/);
  // Precedence: the flag overrides the file's bad value, the environment overrides the file.
  writeFileSync(configFile, JSON.stringify({ tunnels: 0 }));
  const overridden = await deut(['run', '--config', configFile, '--tunnels', '2', '--hops', '0']);
  assert.equal(overridden.code, 2);
  assert.doesNotMatch(overridden.stderr, /tunnels/);
  assert.match(overridden.stderr, /--hops/);

  const keyFile = join(dir, 'node.key');
  writeFileSync(keyFile, 'not a key', { mode: 0o600 });
  const badKey = await deut(['run', '--key-file', keyFile, '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--control-file', join(dir, 'c.json')]);
  assert.equal(badKey.code, 2, badKey.stderr);
  assert.match(badKey.stderr, /deut run: .*key/i);
  noStack(badKey);
  if (process.getuid?.() !== 0) {
    chmodSync(keyFile, 0o000);
    const unreadable = await deut(['run', '--key-file', keyFile, '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--control-file', join(dir, 'c.json')]);
    assert.equal(unreadable.code, 2);
  }

  const noDaemon = await deut(['status', '--control-file', join(dir, 'nothing.json')]);
  assert.equal(noDaemon.code, 2);
  assert.match(noDaemon.stderr, /nothing\.json/);
  noStack(noDaemon);

  // A running daemon refuses the control API without its cookie.
  const d = daemon('lonely', dir, ['--listen', '127.0.0.1:0']);
  try {
    await waitFor('the daemon', 30_000, () => statusOf(d));
    const control = (JSON.parse(readFileSync(d.controlFile, 'utf8')) as { address: string }).address;
    const res = await fetch(`http://${control}/v1/status`);
    assert.equal(res.status, 401);
    assert.equal(statSync(d.controlFile).mode & 0o777, 0o600, 'the cookie file is readable by its owner only');
    const forged = join(dir, 'forged.json');
    writeFileSync(forged, JSON.stringify({ version: 1, address: control, cookie: '00'.repeat(32), pid: 1 }));
    const wrong = await deut(['status', '--control-file', forged]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /unauthori[sz]ed|cookie/i);
  } finally {
    assert.equal(await stop(d), 0);
  }
});

test('cli - keygen writes a 0600 key file and prints its public key; help lists every flag', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const keyFile = join(dir, 'k.key');
  const first = await deut(['keygen', '--key-file', keyFile]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout.trim(), /^[0-9a-f]{64}$/);
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  const again = await deut(['keygen', '--key-file', keyFile]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /--force/);
  const forced = await deut(['keygen', '--key-file', keyFile, '--force']);
  assert.equal(forced.code, 0);
  assert.notEqual(forced.stdout.trim(), first.stdout.trim());

  const help = await deut(['--help']);
  assert.equal(help.code, 0);
  for (const command of ['run', 'status', 'tunnels', 'peers', 'send', 'dht', 'mesh', 'keygen']) assert.match(help.stdout, new RegExp(`deut ${command}`));
  const runHelp = await deut(['run', '--help']);
  for (const field of CONFIG_FIELDS) assert.ok(runHelp.stdout.includes(`--${flagName(field)}`), `run --help lists --${flagName(field)}`);
  const none = await deut([]);
  assert.equal(none.code, 2);
});

// ---- logs and metrics never carry secrets ----------------------------------------------------

test('cli - canary payloads, addresses and keys appear in no log level and no metric without --unsafe-logs', { timeout: 240_000 }, async () => {
  const dir = tempDir();
  const daemons: Daemon[] = [];
  const echo = dgram.createSocket('udp4');
  echo.on('message', (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((resolve) => echo.bind(0, '127.0.3.2', resolve));
  try {
    const logArgs = ['--log-level', 'debug', '--log-format', 'json'];
    const first = daemon('relay-1', dir, ['--listen', '127.0.1.11:0', ...logArgs]);
    daemons.push(first);
    const bootstrap = String((await waitFor('bootstrap', 30_000, () => statusOf(first))).address);
    for (let i = 2; i <= 4; i++) daemons.push(daemon(`relay-${i}`, dir, ['--listen', `127.0.1.${10 + i}:0`, '--bootstrap', bootstrap, ...logArgs]));
    const master = daemon('master', dir, ['--listen', '127.0.2.11:0', '--bootstrap', bootstrap, '--no-relay', '--tunnels', '2', '--dht', '--metrics', '127.0.0.1:0', ...logArgs]);
    const unsafe = daemon('unsafe', dir, ['--listen', '127.0.2.12:0', '--bootstrap', bootstrap, '--no-relay', '--tunnels', '2', '--unsafe-logs', ...logArgs]);
    daemons.push(master, unsafe);
    await waitFor('the master pools', 60_000, async () => {
      const a = await statusOf(master);
      const b = await statusOf(unsafe);
      return (a.tunnels as { usable: number }).usable >= 2 && (b.tunnels as { usable: number }).usable >= 2 ? true : undefined;
    });
    const masterStatus = await statusOf(master);
    const secrets = [CANARY, String(masterStatus.publicKey), '127.0.1.11', '127.0.2.11'];
    const echoPort = echo.address().port;
    for (const d of [master, unsafe]) {
      const r = await deut(['send', `127.0.3.2:${echoPort}`, `payload ${CANARY}`, '--wait-reply', '--control-file', d.controlFile]);
      assert.equal(r.code, 0, r.stderr);
    }
    await deut(['dht', 'put', `key-${CANARY}`, `value-${CANARY}`, '--control-file', master.controlFile]);
    const metricsUrl = /metrics (http:\/\/[^\s;]+)/.exec(master.output.stdout)?.[1];
    assert.ok(metricsUrl !== undefined);
    const metrics = await (await fetch(metricsUrl)).text();
    await Promise.all(daemons.map(stop));

    const safeLogs = daemons.filter((d) => d !== unsafe).map((d) => d.output.stderr).join('\n');
    assert.ok(safeLogs.includes('"level":"debug"') || safeLogs.includes('"level":"info"'), 'the daemons logged');
    for (const secret of secrets) {
      assert.ok(!safeLogs.includes(secret), `"${secret}" is in no safe log`);
      assert.ok(!metrics.includes(secret), `"${secret}" is in no metric`);
    }
    assert.ok(!/\b127\.0\.\d+\.\d+\b/.test(safeLogs), 'no loopback address at all in safe logs');
    assert.match(unsafe.output.stderr, /127\.0\.\d+\.\d+/, 'with --unsafe-logs addresses do appear: the redaction is what hid them');
  } finally {
    await Promise.all(daemons.map(stop));
    echo.close();
  }
});


// ---- the scenario the docker and netns meshes run -------------------------------------------

test('cli - two scenario masters prove the mesh to each other through a public DHT bootstrap node', { timeout: 240_000 }, async () => {
  const dir = tempDir();
  const daemons: Daemon[] = [];
  const echo = dgram.createSocket('udp4');
  echo.on('message', (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((resolve) => echo.bind(0, '127.0.3.3', resolve));
  try {
    const contactFile = join(dir, 'dht.contact');
    const first = daemon('bootstrap', dir, ['--listen', '127.0.1.31:0', '--dht-listen', '127.0.1.31:0', '--dht-key-file', join(dir, 'dht.key'), '--dht-contact-file', contactFile]);
    daemons.push(first);
    const status = await waitFor('the bootstrap', 30_000, () => statusOf(first));
    const contact = readFileSync(contactFile, 'utf8').trim();
    assert.equal((status.publicDht as { contact: string }).contact, contact, 'status shows the public DHT contact the file holds');
    assert.match(contact, /^[0-9a-f]{64}@127\.0\.1\.31:\d+$/);
    for (let i = 2; i <= 5; i++) daemons.push(daemon(`relay-${i}`, dir, ['--listen', `127.0.1.${30 + i}:0`, '--bootstrap', String(status.address)]));
    const scenario = (name: string, peer: string, host: string): Promise<CliResult> =>
      deut(
        ['scenario', 'dht-pair', '--name', name, '--peer', peer, '--listen', `${host}:0`, '--bootstrap', String(status.address), '--no-relay', '--tunnels', '3',
          '--dht-bootstrap', contact, '--echo', `127.0.3.3:${echo.address().port}`, '--allow-private-exits', '--allow-same-subnet', '--timeout-seconds', '120'],
        { ms: 180_000 },
      );
    const [a, b] = await Promise.all([scenario('a', 'b', '127.0.2.31'), scenario('b', 'a', '127.0.2.32')]);
    for (const r of [a, b]) {
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /both directions work/);
      assert.match(r.stdout, /came back through the tunnels/);
      assert.match(r.stdout, /PASS/);
    }
  } finally {
    await Promise.all(daemons.map(stop));
    echo.close();
  }
});

test('cli - run creates its key file (0600) on first start and keeps its public key across restarts', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const keyFile = join(dir, 'node.key');
  const publicKeys: string[] = [];
  for (const round of [1, 2]) {
    const d = daemon(`keyed-${round}`, dir, ['--listen', '127.0.0.1:0', '--key-file', keyFile]);
    try {
      const status = await waitFor('the daemon', 30_000, () => statusOf(d));
      publicKeys.push(String(status.publicKey));
    } finally {
      assert.equal(await stop(d), 0, d.output.stderr);
    }
  }
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.equal(publicKeys[0], publicKeys[1], 'the same identity after a restart');
});

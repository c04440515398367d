/**
 * docker-compose.yml is checked without a Docker engine (none runs on our build machines):
 * a compose parser validates it, and every `deut` command line in it uses only flags that
 * the CLI of this very build accepts, so the file cannot go stale when a flag is renamed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COMPOSE = `${ROOT}docker-compose.yml`;
const BIN = `${ROOT}packages/cli/dist/src/bin.js`;

interface Service {
  readonly entrypoint?: string[];
  readonly command?: string[] | string;
  readonly image?: string;
  readonly build?: unknown;
  readonly environment?: Record<string, string> | string[];
  readonly volumes?: Array<string | { source?: string; target: string; read_only?: boolean }>;
}

/** The flags `deut <command...> --help` lists. */
function knownFlags(command: readonly string[]): Set<string> {
  const help = execFileSync(process.execPath, [BIN, ...command, '--help'], { encoding: 'utf8' });
  return new Set([...help.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!));
}

/** The deut command line of a service: its subcommand words and its flags. */
function deutCommandOf(service: Service): { words: string[]; flags: string[] } | undefined {
  const command = service.command;
  let tokens: string[];
  if (service.entrypoint?.[0] === 'sh') {
    const script = Array.isArray(command) ? command.join(' ') : (command ?? '');
    const at = script.indexOf('bin.js');
    if (at < 0) return undefined;
    tokens = script.slice(at + 'bin.js'.length).trim().split(/\s+/);
  } else if (service.entrypoint === undefined) {
    tokens = Array.isArray(command) ? command : (command ?? '').split(/\s+/);
  } else {
    return undefined;
  }
  const words = tokens.filter((t) => !t.startsWith('-')).slice(0, tokens.findIndex((t) => t.startsWith('-')));
  const flags = tokens.filter((t) => t.startsWith('--')).map((t) => t.slice(2).split('=')[0]!);
  return { words, flags };
}

test('compose - docker-compose.yml passes an engine-free compose parser', { timeout: 60_000 }, () => {
  const result = spawnSync('docker-compose', ['-f', COMPOSE, 'config', '-q'], { encoding: 'utf8' });
  assert.ok(result.error === undefined, `docker-compose is needed (Debian package docker-compose; .ci/run installs it): ${String(result.error)}`);
  assert.equal(result.status, 0, result.stderr);
});

test('compose - every deut command in docker-compose.yml uses only flags the CLI accepts', { timeout: 60_000 }, () => {
  const compose = parse(readFileSync(COMPOSE, 'utf8'), { merge: true }) as { services: Record<string, Service> };
  const checked: string[] = [];
  for (const [name, service] of Object.entries(compose.services)) {
    const line = deutCommandOf(service);
    if (line === undefined) continue;
    assert.ok(line.words.length > 0, `${name}: names a deut command`);
    const known = knownFlags(line.words);
    for (const flag of line.flags) {
      const ok = known.has(flag) || (flag.startsWith('no-') && known.has(flag.slice(3)));
      assert.ok(ok, `${name}: deut ${line.words.join(' ')} has no flag --${flag}`);
    }
    checked.push(`${name} (deut ${line.words.join(' ')}, ${line.flags.length} flags)`);
  }
  for (const required of ['bootstrap', 'relay-1', 'master-a', 'master-b']) assert.ok(checked.some((c) => c.startsWith(`${required} `)), `${required} runs deut`);
  // And the parser agrees a stale flag would be caught: a made-up one is refused.
  assert.ok(!knownFlags(['run']).has('no-such-flag'));
});

test('compose - six relayers besides the bootstrap, and the network has a fixed subnet', () => {
  const compose = parse(readFileSync(COMPOSE, 'utf8'), { merge: true }) as {
    services: Record<string, Service>;
    networks: Record<string, { ipam?: { config?: Array<{ subnet?: string }> } }>;
  };
  assert.equal(relayersOf(compose.services).filter(([name]) => name !== 'bootstrap').length, 6);
  assert.equal(compose.networks.deutnet?.ipam?.config?.[0]?.subnet, '172.28.0.0/24');
});

/** The services that relay: `deut run` without --no-relay. */
function relayersOf(services: Record<string, Service>): Array<[string, Service]> {
  return Object.entries(services).filter(([, service]) => {
    const line = deutCommandOf(service);
    return line !== undefined && line.words[0] === 'run' && !line.flags.includes('no-relay');
  });
}

/** The value of `--flag=value` or `--flag value` in a service's command, else its DEUT_* environment variable. */
function settingOf(service: Service, flag: string, env: string): string | undefined {
  const tokens = Array.isArray(service.command) ? service.command : (service.command ?? '').split(/\s+/);
  for (const [i, token] of tokens.entries()) {
    if (token.startsWith(`--${flag}=`)) return token.slice(flag.length + 3);
    if (token === `--${flag}`) return tokens[i + 1];
  }
  const environment = service.environment;
  if (Array.isArray(environment)) return environment.find((e) => e.startsWith(`${env}=`))?.slice(env.length + 1);
  return environment?.[env];
}

/**
 * Every relayer keeps its node key on a named volume (a file in the container's own layer is
 * gone when the container is recreated) and no two share a key: peers pin relayers' keys on
 * first use, so a relayer that comes back with a new key is refused as an impostor.
 */
function checkRelayerKeys(compose: { services: Record<string, Service>; volumes?: Record<string, unknown> }): void {
  const relayers = relayersOf(compose.services);
  assert.ok(relayers.length > 0, 'the compose file has relayers');
  const seen = new Map<string, string>();
  for (const [name, service] of relayers) {
    const keyFile = settingOf(service, 'key-file', 'DEUT_KEY_FILE');
    assert.ok(keyFile !== undefined, `${name}: a relayer without --key-file is a new node at every start, which peers that pinned it refuse`);
    const mounts = (service.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':') : [v.source ?? '', v.target, v.read_only === true ? 'ro' : 'rw']));
    const mount = mounts.find(([, target]) => target !== undefined && (keyFile.startsWith(`${target.replace(/\/$/, '')}/`)));
    assert.ok(mount !== undefined, `${name}: --key-file ${keyFile} is on no volume, so the key is lost when the container is recreated`);
    const [source, target, mode] = mount;
    assert.ok(Object.hasOwn(compose.volumes ?? {}, source!), `${name}: ${source} (mounted at ${target}) is not a named volume of the compose file`);
    assert.notEqual(mode, 'ro', `${name}: the key volume must be writable: the first start creates the key`);
    const where = `${source}:${keyFile.slice(target!.replace(/\/$/, '').length)}`;
    assert.ok(!seen.has(where), `${name} and ${seen.get(where)} share the key file ${where}: they would be one identity`);
    seen.set(where, name);
  }
}

test('compose - every relayer keeps its own node key on a named volume (--key-file), so a restart keeps its identity', () => {
  const compose = parse(readFileSync(COMPOSE, 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
  checkRelayerKeys(compose);
  // And the check has teeth: each way of losing the key is caught.
  const relayer = relayersOf(compose.services).find(([name]) => name !== 'bootstrap')!;
  const [name, service] = relayer;
  const withService = (changed: Service): typeof compose => ({ ...compose, services: { ...compose.services, [name]: changed } });
  const command = (service.command as string[]).filter((t) => !t.startsWith('--key-file'));
  assert.throws(() => checkRelayerKeys(withService({ ...service, command })), /without --key-file/);
  assert.throws(() => checkRelayerKeys(withService({ ...service, volumes: [] })), /on no volume/);
  assert.throws(() => checkRelayerKeys(withService({ ...service, volumes: ['./keys:/keys'] })), /not a named volume/);
  const other = relayersOf(compose.services).find(([n]) => n !== name && n !== 'bootstrap')!;
  assert.throws(() => checkRelayerKeys(withService({ ...service, volumes: other[1].volumes! })), /share the key file/);
});

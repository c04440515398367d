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
  for (const required of ['bootstrap', 'relay', 'master-a', 'master-b']) assert.ok(checked.some((c) => c.startsWith(`${required} `)), `${required} runs deut`);
  // And the parser agrees a stale flag would be caught: a made-up one is refused.
  assert.ok(!knownFlags(['run']).has('no-such-flag'));
});

test('compose - the relayer service scales to six by default and the network has a fixed subnet', () => {
  const compose = parse(readFileSync(COMPOSE, 'utf8'), { merge: true }) as {
    services: Record<string, { deploy?: { replicas?: number }; networks?: unknown }>;
    networks: Record<string, { ipam?: { config?: Array<{ subnet?: string }> } }>;
  };
  assert.equal(compose.services.relay?.deploy?.replicas, 6);
  assert.equal(compose.networks.deutnet?.ipam?.config?.[0]?.subnet, '172.28.0.0/24');
});

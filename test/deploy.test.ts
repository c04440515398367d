/**
 * The deployment files an operator installs: the systemd unit passes `systemd-analyze verify`
 * (its directives parse, its commands exist) once pointed at this checkout, runs the relayer
 * as an unprivileged user with its key in a 0700 state folder, reloads on SIGHUP, and keeps
 * its sandbox. Nothing is started: the machine that runs the tests has no systemd as PID 1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN } from './cli-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const UNIT = join(root, 'deploy', 'systemd', 'deut-relay.service');

/** `key=value` lines of a unit file, by key (a key may repeat). */
function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('[')) continue;
    const at = line.indexOf('=');
    const key = line.slice(0, at);
    out.set(key, [...(out.get(key) ?? []), line.slice(at + 1)]);
  }
  return out;
}

test('deploy - the systemd unit passes systemd-analyze verify when pointed at this checkout', { timeout: 60_000 }, () => {
  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  assert.equal(analyze.status, 0, 'systemd-analyze is needed (Debian package systemd; .ci/run installs it)');
  const dir = mkdtempSync(join(tmpdir(), 'deut-unit-'));
  try {
    const unit = join(dir, 'deut-relay.service');
    const text = readFileSync(UNIT, 'utf8');
    assert.match(text, /\/opt\/deut\/packages\/cli\/dist\/src\/bin\.js/, 'the unit runs the built command from /opt/deut');
    writeFileSync(unit, text.replaceAll('/opt/deut/packages/cli/dist/src/bin.js', BIN).replaceAll('/usr/bin/node', process.execPath));
    const verified = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8', timeout: 30_000 });
    // verify exits 0 for directives it ignores: any word on stderr is a fault of the unit.
    assert.equal(verified.status, 0, verified.stderr);
    assert.equal(verified.stderr.trim(), '', 'systemd-analyze had nothing to say');

    // And it does catch a broken unit, so the check above means something.
    writeFileSync(unit, readFileSync(unit, 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=everything'));
    assert.notEqual(spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8', timeout: 30_000 }).stderr.trim(), '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('deploy - the systemd unit runs as an unprivileged user, keeps its key in a 0700 state folder, reloads on SIGHUP and keeps its sandbox', () => {
  const unit = directives(readFileSync(UNIT, 'utf8'));
  const one = (key: string): string | undefined => unit.get(key)?.at(-1);
  assert.equal(one('User'), 'deut');
  assert.equal(one('StateDirectory'), 'deut');
  assert.equal(one('StateDirectoryMode'), '0700');
  assert.equal(one('UMask'), '0077');
  const start = one('ExecStart') ?? '';
  for (const flag of ['--key-file /var/lib/deut/', '--known-peers /var/lib/deut/', '--control-file /run/deut/']) assert.ok(start.includes(flag), `ExecStart has ${flag}`);
  assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID', 'systemctl reload sends SIGHUP (the known-peers file is reloaded)');
  for (const [key, value] of [
    ['NoNewPrivileges', 'yes'],
    ['CapabilityBoundingSet', ''],
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['PrivateTmp', 'yes'],
    ['PrivateDevices', 'yes'],
    ['RestrictNamespaces', 'yes'],
    ['SystemCallFilter', '@system-service'],
    ['SystemCallErrorNumber', 'EPERM'],
  ] as const) {
    assert.equal(one(key), value, `${key}=${value}`);
  }
  // V8's JIT and WebAssembly need writable code pages: this one would kill the relayer at start.
  assert.equal(unit.get('MemoryDenyWriteExecute'), undefined);
});

test('deploy - the Kubernetes manifests are valid objects (kubernetes-models schemas) for a relayer fleet with persistent keys, a UDP Service and probes', async () => {
  const { parseAllDocuments } = await import('yaml');
  const { StatefulSet } = await import('kubernetes-models/apps/v1');
  const { Service } = await import('kubernetes-models/v1');
  const text = readFileSync(join(root, 'deploy', 'kubernetes', 'deut-relay.yaml'), 'utf8');
  const docs = parseAllDocuments(text).map((d) => d.toJS() as { kind: string });
  const byKind = new Map(docs.map((d) => [d.kind, d]));
  assert.deepEqual([...byKind.keys()].sort(), ['Service', 'StatefulSet']);
  // The schemas catch what kubectl would refuse (types, required fields, enums).
  const set = new StatefulSet(byKind.get('StatefulSet') as ConstructorParameters<typeof StatefulSet>[0]);
  set.validate();
  const service = new Service(byKind.get('Service') as ConstructorParameters<typeof Service>[0]);
  service.validate();
  const broken = structuredClone(byKind.get('StatefulSet')) as unknown as { spec: { replicas: unknown } };
  broken.spec.replicas = 'three';
  assert.throws(() => new StatefulSet(broken as unknown as ConstructorParameters<typeof StatefulSet>[0]).validate(), /replicas/);

  assert.deepEqual(service.spec?.ports?.map((p) => [p.protocol, p.port]), [['UDP', 7500]]);
  const pod = set.spec!.template.spec!;
  const container = pod.containers[0]!;
  const args = container.args ?? [];
  assert.ok(args.includes('--key-file=/keys/node.key') && args.includes('--known-peers=/keys/known_peers'), 'keys and pins on the volume');
  assert.ok(set.spec!.volumeClaimTemplates?.some((t) => t.metadata?.name === 'keys'), 'one persistent volume per relayer');
  assert.ok(container.volumeMounts?.some((m) => m.name === 'keys' && m.mountPath === '/keys'));
  for (const probe of [container.livenessProbe, container.readinessProbe]) assert.deepEqual(probe?.exec?.command?.slice(1), ['/app/packages/cli/dist/src/bin.js', 'status', '--json']);
  assert.equal(container.env?.find((e) => e.name === 'DEUT_CONTROL_FILE')?.value, '/run/deut/control.json', 'the probes find the control file on a writable volume');
  assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
  assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
  assert.equal(pod.securityContext?.runAsNonRoot, true);
  // The image's deut user: the pod runs as it, so the volumes it writes are its own.
  assert.match(readFileSync(join(root, 'Dockerfile'), 'utf8'), new RegExp(`useradd --system --uid ${pod.securityContext?.runAsUser} `));
});

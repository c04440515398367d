/**
 * The mesh on separate hosts (network namespaces on a bridge), with what only separate hosts
 * can show: a capture on the bridge proves that (1) no packet from a master's address reaches
 * the DHT peers or the UDP echo server, only endpoint addresses do; (2) every datagram between
 * deut node ports has the same size; (3) no payload canary appears anywhere on the wire.
 * Needs root and `ip netns` (CI runs as root); skipped elsewhere, saying why.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { netnsAvailable, runNetnsScenario, type NetnsScenarioResult } from '@deut/testkit';

const BIN = fileURLToPath(new URL('../../packages/cli/dist/src/bin.js', import.meta.url));
const skip = (await netnsAvailable()) ? false : 'needs root and ip netns';

function assertWhatTheWireShows(t: TestContext, run: NetnsScenarioResult, canaries: readonly string[]): void {
  for (const r of run.results) assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const { packets } = run;
  const masters = new Set(run.masters.map((m) => m.address));
  const toEcho = packets.filter((p) => p.dst === run.echo.address);
  const toPublicDht = packets.filter((p) => p.dst === run.bootstrap.address && p.dstPort === 7600);
  assert.ok(toEcho.length > 0 && toPublicDht.length > 0, `the capture saw echo (${toEcho.length}) and DHT (${toPublicDht.length}) traffic`);
  // (1) The echo server and the DHT hear only endpoints; a master sends only link datagrams to node ports.
  for (const p of [...toEcho, ...toPublicDht]) assert.ok(!masters.has(p.src), `${p.src} (a master) reached ${p.dst}:${p.dstPort}`);
  const fromMasters = packets.filter((p) => masters.has(p.src));
  assert.ok(fromMasters.length > 0 && fromMasters.every((p) => p.dstPort === 7500), 'a master only ever sends to node ports');
  // (2) Every datagram between node ports is 1200 bytes.
  const link = packets.filter((p) => p.srcPort === 7500 && p.dstPort === 7500);
  assert.deepEqual([...new Set(link.map((p) => p.payload.length))], [1200], 'one size for every link datagram');
  // (3) The canaries (the masters' names, inside every DHT key and value they store) never appear.
  for (const canary of canaries) assert.equal(run.pcap.indexOf(canary), -1, `${canary} appears in the capture`);
  // Nothing of the mesh is left behind.
  assert.ok(!execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(run.prefix), 'no namespace of the mesh is left');
  t.diagnostic(`${packets.length} UDP packets on the bridge: ${link.length} link datagrams (all 1200 bytes), ${toEcho.length} to the echo server, ${toPublicDht.length} to the public DHT node; impairment: ${run.impairment}`);
}

test('netns mesh - separate hosts: DHT peers and the echo server hear only endpoints, one datagram size, no canary on the wire', { skip, timeout: 300_000 }, async (t: TestContext) => {
  const names = ['canary-a-7f3a19', 'canary-b-7f3a19'] as const;
  assertWhatTheWireShows(t, await runNetnsScenario({ bin: BIN, names, net: 77 }), names);
});

test('netns mesh - 10% loss on every host: the scenario still passes (loss by netem, or iptables where the kernel has no netem)', { skip, timeout: 300_000 }, async (t: TestContext) => {
  const names = ['canary-c-51be02', 'canary-d-51be02'] as const;
  const run = await runNetnsScenario({ bin: BIN, names, loss: 0.1, net: 78 });
  assert.notEqual(run.impairment, 'none');
  assertWhatTheWireShows(t, run, names);
});

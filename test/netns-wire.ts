/**
 * What only separate hosts can show, asserted on a run of the namespace mesh: a capture on
 * the bridge proves that (1) no packet from a master's address reaches the DHT peers or the
 * UDP echo server, only endpoint addresses do; (2) every datagram between deut node ports
 * has the same size; (3) no payload canary appears anywhere on the wire. Shared by
 * netns.test.ts and netns-faults.test.ts.
 */
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { NetnsScenarioResult } from '@deut/testkit';

export function assertWhatTheWireShows(t: TestContext, run: NetnsScenarioResult, canaries: readonly string[]): void {
  // Each master's progress lines, with their times: where a slow run spent them.
  for (const r of run.results) for (const line of r.stdout.trim().split('\n')) t.diagnostic(line);
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

/**
 * Row 3, build cost: whole tunnel builds (the master's records, every hop's handshake, the
 * reply slots back, the master reading them) in one process, at 1, 3 and 7 hops; the
 * figure is hop handshakes per second of CPU, against X25519 operations per second of the
 * same library measured in alternation with it.
 */
import { performance } from 'node:perf_hooks';
import { generateKeyPair, x25519, type KeyPair } from '@deut/crypto';
import {
  acceptRecord,
  addResponseSlot,
  openRecord,
  prepareMasterBuild,
  readMasterResponse,
  sealReplySlot,
  transformRequestRecords,
  wipeAcceptance,
  type HopAcceptance,
} from '@deut/tunnel';
import type { BuildInstructions } from '@deut/wire';
import { alternate } from './stats.js';
import { makeRow, type RowResult } from './table.js';
import type { BenchConfig } from './config.js';

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

function instructions(hops: readonly KeyPair[], i: number, now: number): BuildInstructions {
  const next = hops[i + 1];
  const timeSeconds = Math.floor(now / 1000);
  if (next === undefined) return { role: 'endpoint', timeSeconds, lifetimeSeconds: 600 };
  return { role: 'relay', timeSeconds, lifetimeSeconds: 600, next: { address: { host: '127.0.0.1', port: 7000 + i }, staticKey: next.publicKey } };
}

/** Hop-side and whole-build CPU of `builds` builds through `hops`. */
function buildMany(hops: readonly KeyPair[], builds: number): { hopCpuMs: number; totalCpuMs: number } {
  let hopCpuMs = 0;
  const totalStart = process.cpuUsage();
  for (let b = 0; b < builds; b++) {
    const now = Date.now();
    const build = prepareMasterBuild(hops.map((hop, i) => ({ staticKey: hop.publicKey, instructions: instructions(hops, i, now) })));
    const hopStart = process.cpuUsage();
    let records = build.records;
    const accepted: HopAcceptance[] = [];
    for (const hop of hops) {
      const opened = openRecord(hop, records);
      if (opened === null) throw new Error('a record did not open');
      accepted.push(acceptRecord(hop, opened));
      records = transformRequestRecords(records, opened.requestLayerKey);
    }
    let slots: Uint8Array | undefined;
    for (let i = accepted.length - 1; i >= 0; i--) {
      const acceptance = accepted[i]!;
      slots = addResponseSlot(slots, sealReplySlot(acceptance, { status: 'accepted', reason: 'none', endpoint: i === accepted.length - 1 ? { host: '127.0.0.1', port: 9 } : null }), acceptance.responseLayerKey);
      wipeAcceptance(acceptance);
    }
    hopCpuMs += cpuMs(hopStart);
    const outcomes = readMasterResponse(build, slots!);
    if (outcomes.some((o) => o.status !== 'accepted')) throw new Error('a build was not accepted');
  }
  return { hopCpuMs, totalCpuMs: cpuMs(totalStart) };
}

/** X25519 operations per second of CPU. */
function x25519Rate(ops: number): number {
  const a = generateKeyPair();
  const b = generateKeyPair();
  const start = process.cpuUsage();
  for (let i = 0; i < ops; i++) x25519(a.privateKey, b.publicKey);
  return ops / (cpuMs(start) / 1000);
}

/** Row 3 at 1, 3 and 7 hops. */
export async function buildRow(config: BenchConfig): Promise<RowResult[]> {
  const rows: RowResult[] = [];
  const handshakes = config.quick ? 300 : 3_000;
  for (const hopCount of [1, 3, 7]) {
    const hops = Array.from({ length: hopCount }, () => generateKeyPair());
    const builds = Math.ceil(handshakes / hopCount);
    buildMany(hops, 10);
    const buildRates: number[] = [];
    const started = performance.now();
    const result = await alternate(
      config.runs,
      () => {
        const { hopCpuMs, totalCpuMs } = buildMany(hops, builds);
        buildRates.push(builds / (totalCpuMs / 1000));
        return Promise.resolve((builds * hopCount) / (hopCpuMs / 1000));
      },
      () => Promise.resolve(x25519Rate(handshakes * 2)),
    );
    config.log(`row 3: ${hopCount} hops in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    rows.push(
      makeRow({
        row: 3,
        name: 'hop handshakes/s per core',
        size: `${hopCount} hops`,
        unit: 'handshakes/s',
        deut: result.a,
        baselineName: 'X25519 ops/s',
        baseline: result.b,
        goal: { on: 'value', op: '>=', target: 5_000 },
        note: 'hop side of a master-mode build: open record, accept, transform records, seal reply slot, response step; CPU time, one process',
      }),
      makeRow({
        row: 3,
        name: 'whole builds/s per core',
        size: `${hopCount} hops`,
        unit: 'builds/s',
        deut: buildRates,
        baselineName: 'X25519 ops/s',
        baseline: result.b,
        note: 'master sealing + every hop + master reading the response, all in one process',
      }),
    );
  }
  return rows;
}

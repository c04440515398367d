/** Tests of how the pool picks tunnels for messages: uniform, but around tunnels in doubt. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock, silentLogger } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { OwnedTunnel, type BuildPlan, type TunnelEngine } from '@deut/tunnel';
import { tunnelId } from '@deut/wire';
import { PeerTable } from '../src/peers.js';
import { NO_PATH_WARN_AFTER_MS, NO_PATH_WARN_EVERY_MS, TunnelPool } from '../src/pool.js';

await cryptoReady();

/** A pool of two-hop tunnels whose builds succeed at once, on a manual clock. */
function startPool(target: number, options: { peers?: number; named?: number; hops?: number; failFirst?: number } = {}): { pool: TunnelPool; clock: ManualClock; peers: PeerTable } {
  const clock = new ManualClock();
  const peers = new PeerTable('127.0.0.1:1', () => clock.now());
  for (let i = 0; i < (options.peers ?? 6); i++) peers.add({ host: `10.${i}.0.1`, port: 7000 }, generateKeyPair().publicKey);
  for (let i = 0; i < (options.named ?? 0); i++) peers.add({ host: `10.${100 + i}.0.1`, port: 7000 }, generateKeyPair().publicKey, '10.0.0.1:7000');
  let built = 0;
  const engine = {
    build: (plan: BuildPlan): Promise<OwnedTunnel> => {
      built++;
      if (built <= (options.failFirst ?? 0)) return Promise.reject(new Error('build timed out'));
      const hops = plan.mode === 'master' ? plan.hops : [plan.firstHop];
      return Promise.resolve(
        new OwnedTunnel({
          localId: built,
          linkId: tunnelId(built),
          mode: 'master',
          path: hops.map((h) => ({ address: h.address, publicKey: h.publicKey })),
          hopCount: hops.length,
          keys: hops.map(() => ({ outboundKey: randomBytes(32), inboundKey: randomBytes(32), outboundOffset: 0, inboundOffset: 0 })),
          endpoint: { host: '10.9.9.9', port: built },
          createdAt: clock.now(),
          expiresAt: clock.now() + (plan.lifetimeMs ?? 600_000),
        }),
      );
    },
    destroy: (): void => undefined,
    send: (): boolean => true,
  };
  const pool = new TunnelPool({ engine: engine as unknown as TunnelEngine, peers, self: '127.0.0.1:1', target, hops: options.hops ?? 2, allowSameSubnet: true, clock });
  return { pool, clock, peers };
}

/** Lets the pool's timers and the builds' promises run for `ms` of manual time. */
async function run(clock: ManualClock, ms: number): Promise<void> {
  for (let elapsed = 0; elapsed < ms; elapsed += 100) {
    clock.advance(100);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function filledPool(target: number): Promise<{ pool: TunnelPool; clock: ManualClock; tunnels: OwnedTunnel[] }> {
  const { pool, clock } = startPool(target);
  const ready = pool.ready(target);
  await run(clock, 1_000);
  await ready;
  return { pool, clock, tunnels: pool.usable() };
}

const ids = (tunnels: readonly OwnedTunnel[]): number[] => tunnels.map((t) => t.localId).sort((a, b) => a - b);

test('pool pick - tunnels in doubt are passed over while enough others are not', async () => {
  const { pool, tunnels } = await filledPool(4);
  try {
    const [t1, t2, t3, t4] = tunnels as [OwnedTunnel, OwnedTunnel, OwnedTunnel, OwnedTunnel];
    pool.suspect(t3);
    pool.suspect(t4);
    for (let i = 0; i < 50; i++) assert.deepEqual(ids(pool.pick(2)), ids([t1, t2]), 'two trusted tunnels left: always those');
    assert.deepEqual(ids(pool.pick(3)).filter((id) => id === t1.localId || id === t2.localId), ids([t1, t2]), 'a third comes from the doubtful');
    assert.equal(pool.pick(4).length, 4, 'with none left to prefer, doubtful ones still serve');
    assert.equal(pool.pick(1, new Set([t1.localId, t2.localId])).length, 1);
    // A trusted tunnel already used is preferred to one in doubt that was not.
    for (let i = 0; i < 20; i++) assert.deepEqual(ids(pool.pick(2, new Set([t1.localId]))), ids([t1, t2]));
    // Doubt clears when anything comes through the tunnel.
    pool.heardFrom(t3);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) for (const t of pool.pick(2)) seen.add(t.localId);
    assert.deepEqual([...seen].sort((a, b) => a - b), ids([t1, t2, t3]), 't3 is back in the draw, t4 still in doubt');
    for (let i = 0; i < 50; i++) assert.notEqual(pool.pickOne()?.localId, t4.localId);
  } finally {
    pool.close();
  }
});

test('pool pick - a healthy pool picks uniformly', async () => {
  const { pool, tunnels } = await filledPool(4);
  try {
    const counts = new Map<number, number>(tunnels.map((t) => [t.localId, 0]));
    const draws = 4_000;
    for (let i = 0; i < draws; i++) for (const t of pool.pick(2)) counts.set(t.localId, counts.get(t.localId)! + 1);
    const expected = (2 * draws) / tunnels.length;
    const chi2 = [...counts.values()].reduce((sum, n) => sum + (n - expected) ** 2 / expected, 0);
    // χ² critical value for 3 degrees of freedom at p = 0.001.
    assert.ok(chi2 < 16.27, `χ² ${chi2.toFixed(2)} over ${JSON.stringify([...counts.values()])}`);
  } finally {
    pool.close();
  }
});

test('pool paths - every relayer is used as evenly as the table allows', async () => {
  // 6 tunnels of 2 hops over 6 relayers: 12 hop slots, so each relayer exactly twice.
  // Uniform choice alone leaves some relayer in 3 or more tunnels almost always.
  const { pool, tunnels } = await filledPool(6);
  try {
    assert.equal(tunnels.length, 6);
    const usage = new Map<string, number>();
    for (const t of tunnels) for (const hop of t.path) usage.set(hop.address.host, (usage.get(hop.address.host) ?? 0) + 1);
    assert.deepEqual([...usage.values()].sort(), [2, 2, 2, 2, 2, 2], JSON.stringify(Object.fromEntries(usage)));
  } finally {
    pool.close();
  }
});

test('pool paths - the first builds wait for named relayers to be verified, at most settleMs', async () => {
  // As a master starts: only its bootstrap relayer at first, then a neighbour's list.
  const { pool, clock, peers } = startPool(4, { peers: 1 });
  try {
    await run(clock, 300);
    assert.ok((pool.stats().counters['builds-no-path'] ?? 0) >= 1, 'one relayer is no path');
    for (let i = 0; i < 7; i++) peers.add({ host: `10.${100 + i}.0.1`, port: 7000 }, generateKeyPair().publicKey, '10.0.0.1:7000');
    for (const peer of peers.unverified().slice(0, 2)) peers.verify(peer.key);
    await run(clock, 700);
    assert.equal(pool.stats().counters['builds-started'] ?? 0, 0, 'no build while named relayers are unverified');
    for (const peer of peers.unverified()) peers.verify(peer.key);
    await run(clock, 300);
    assert.ok((pool.stats().counters['builds-started'] ?? 0) >= 4, 'builds start once they are verified');
    const hosts = new Set(pool.usable().flatMap((t) => t.path.map((h) => h.address.host)));
    assert.ok(hosts.size === 8, `the first paths use all 8 relayers (${hosts.size})`);
  } finally {
    pool.close();
  }
  const late = startPool(4, { peers: 3, named: 5 });
  try {
    await run(late.clock, 1_900);
    assert.equal(late.pool.stats().counters['builds-started'] ?? 0, 0);
    await run(late.clock, 400);
    assert.ok((late.pool.stats().counters['builds-started'] ?? 0) >= 4, 'named relayers that never answer hold the pool back only settleMs');
  } finally {
    late.pool.close();
  }
});

test('peer table - relayers blamed for failures are left out, and fill a path only when too few others remain', () => {
  let now = 0;
  const peers = new PeerTable('127.0.0.1:1', () => now);
  const keys = [1, 2, 3, 4].map((i) => {
    peers.add({ host: `10.${i}.0.1`, port: 7000 }, generateKeyPair().publicKey);
    return `10.${i}.0.1:7000`;
  });
  const [k1, k2, k3, k4] = keys as [string, string, string, string];
  peers.blame(k1); // avoided 2 s
  peers.blame(k2);
  peers.blame(k2); // avoided 4 s
  peers.blame(k3);
  peers.blame(k3);
  peers.blame(k3); // avoided 8 s
  const hosts = (picked: { key: string }[]): string[] => picked.map((p) => p.key);
  for (let i = 0; i < 20; i++) assert.deepEqual(hosts(peers.pick(3)), [k4], 'without orAvoided only the unblamed one');
  for (let i = 0; i < 20; i++) assert.deepEqual(hosts(peers.pick(3, { orAvoided: true })), [k4, k1, k2], 'then the soonest forgiven');
  assert.deepEqual(hosts(peers.pick(1, { orAvoided: true, exclude: new Set([k4]) })), [k1]);
  assert.ok(peers.isAvoided(k1) && !peers.isAvoided(k4));
  now = 2_000;
  assert.ok(!peers.isAvoided(k1));
  assert.deepEqual(new Set(hosts(peers.pick(2))), new Set([k1, k4]));
  peers.credit(k3);
  assert.deepEqual(new Set(hosts(peers.pick(3))), new Set([k1, k3, k4]));
});

test('pool paths - after a failed build blames every relayer, the next build goes through them rather than wait', async () => {
  // Two relayers, two-hop paths: the first build fails (a timeout blames its whole path),
  // so both are avoided for 2 s. The pool does not sit out those 2 s with no path.
  const { pool, clock } = startPool(1, { peers: 2, failFirst: 1 });
  try {
    await run(clock, 1_000);
    assert.equal(pool.usable().length, 1, 'the pool filled within 1 s');
    const counters = pool.stats().counters;
    assert.equal(counters['builds-failed'], 1);
    assert.equal(counters['builds-through-avoided'], 1);
    assert.equal(counters['builds-no-path'] ?? 0, 0);
  } finally {
    pool.close();
  }
});

/** A pool over `peers` relayers at `hostOf(i)`, logging warnings, that can never build more than it can path. */
function silentPool(peerCount: number, hostOf: (i: number) => string, options: { hops: number; allowSameSubnet: boolean }): { pool: TunnelPool; clock: ManualClock; warnings: string[] } {
  const clock = new ManualClock();
  const peers = new PeerTable('127.0.0.1:1', () => clock.now());
  for (let i = 0; i < peerCount; i++) peers.add({ host: hostOf(i), port: 7000 }, generateKeyPair().publicKey);
  const warnings: string[] = [];
  const logger = { ...silentLogger, warn: (message: string) => warnings.push(message) };
  const engine = { build: (): Promise<OwnedTunnel> => new Promise(() => undefined), destroy: (): void => undefined, send: (): boolean => true };
  const pool = new TunnelPool({ engine: engine as unknown as TunnelEngine, peers, self: '127.0.0.1:1', target: 1, hops: options.hops, allowSameSubnet: options.allowSameSubnet, clock, logger });
  return { pool, clock, warnings };
}

test('pool - a master that can never build says why: every relayer in one /16 without --allow-same-subnet', async () => {
  const { pool, clock, warnings } = silentPool(6, (i) => `10.0.${i}.1`, { hops: 3, allowSameSubnet: false });
  try {
    await run(clock, NO_PATH_WARN_AFTER_MS - 1_000);
    assert.equal(warnings.length, 0, 'quiet while it may still be learning');
    // The first builds wait out the 2 s settle, and retries back off up to 5 s apart.
    await run(clock, 10_000);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /6 verified relayers sit in 1 \/16 networks.*--allow-same-subnet/);
    await run(clock, 30_000);
    assert.equal(warnings.length, 1, 'said once a minute at most');
    await run(clock, NO_PATH_WARN_EVERY_MS);
    assert.equal(warnings.length, 2);
    assert.equal(pool.stats().counters['no-path-warnings-one-subnet'], 2);
    assert.ok((pool.stats().counters['builds-no-path'] ?? 0) > 10);
  } finally {
    pool.close();
  }
});

test('pool - a master that knows too few relayers for its hop count says so and names --bootstrap and --hops', async () => {
  const { pool, clock, warnings } = silentPool(2, (i) => `10.${i}.0.1`, { hops: 3, allowSameSubnet: true });
  try {
    await run(clock, NO_PATH_WARN_AFTER_MS + 10_000);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /2 verified relayers known, a path needs 3; check that --bootstrap names a running relayer, or lower --hops/);
    assert.equal(pool.stats().counters['no-path-warnings-too-few-relayers'], 1);
  } finally {
    pool.close();
  }
});

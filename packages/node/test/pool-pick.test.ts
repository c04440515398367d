/** Tests of how the pool picks tunnels for messages: uniform, but around tunnels in doubt. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { OwnedTunnel, type BuildPlan, type TunnelEngine } from '@deut/tunnel';
import { tunnelId } from '@deut/wire';
import { PeerTable } from '../src/peers.js';
import { TunnelPool } from '../src/pool.js';

await cryptoReady();

/** A pool of `target` two-hop tunnels whose builds succeed at once, on a manual clock. */
async function filledPool(target: number): Promise<{ pool: TunnelPool; clock: ManualClock; tunnels: OwnedTunnel[] }> {
  const clock = new ManualClock();
  const peers = new PeerTable('127.0.0.1:1', () => clock.now());
  for (let i = 0; i < 6; i++) peers.add({ host: `10.${i}.0.1`, port: 7000 }, generateKeyPair().publicKey);
  let built = 0;
  const engine = {
    build: (plan: BuildPlan): Promise<OwnedTunnel> => {
      built++;
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
  const pool = new TunnelPool({ engine: engine as unknown as TunnelEngine, peers, self: '127.0.0.1:1', target, hops: 2, allowSameSubnet: true, clock });
  const ready = pool.ready(target);
  for (let i = 0; i < 10 && pool.usable().length < target; i++) {
    clock.advance(100);
    await new Promise((resolve) => setImmediate(resolve));
  }
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

/**
 * Hardening, model-based tests of the tunnel build state machine (issue #8): fast-check
 * `fc.commands` drives a master and four hops through builds (some refused), cells both
 * ways, teardown, tagging and expiry in random orders, checking after every step that the
 * engines agree with a model: the master owns exactly the model's tunnels, every hop holds
 * exactly their transit entries, every endpoint port opened for a live tunnel is held and
 * every other one was released. `fc.scheduler` then reorders the awaits inside the build
 * (the endpoint binding its port) against build timeouts, teardowns and engine shutdown:
 * no interleaving leaks a port or a table entry.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock, type UdpAddress } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { PeerTable, TunnelPool } from '@deut/node';
import { BuildError, OwnedTunnel, TUNNEL_TICK_MS, type BuildPlan, type TunnelEngine, type EndpointTunnel, type RefusalReason } from '@deut/tunnel';
import { CELL_BYTES, CELL_PLAINTEXT_BYTES, TUNNEL_MESSAGE_TYPES, tunnelId } from '@deut/wire';
import { createEngineMesh, tamperOnce, withDeadline, type EngineMesh, type EngineMeshNode } from '@deut/testkit';
import { assertProperty } from './assert-property.js';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const HOPS = ['R1', 'R2', 'R3', 'R4'] as const;
type HopName = (typeof HOPS)[number];
const LIFETIME_MS = 60_000;

interface ModelTunnel {
  readonly real: OwnedTunnel;
  readonly path: readonly HopName[];
  readonly endpoint: EndpointTunnel;
}

interface Model {
  tunnels: ModelTunnel[];
  refusing: Set<HopName>;
}

interface Real {
  readonly mesh: EngineMesh;
  /** When the engines started: their housekeeping ticks fall at start + k·TUNNEL_TICK_MS. */
  readonly start: number;
  readonly M: EngineMeshNode;
  node(name: HopName): EngineMeshNode;
}

type Command = fc.AsyncCommand<Model, Real>;

/** Commands run, by kind: reported, and checked to show the model test really ran. */
const ran = new Map<string, number>();
const count = (kind: string): void => void ran.set(kind, (ran.get(kind) ?? 0) + 1);

async function checkInvariants(model: Model, real: Real): Promise<void> {
  await real.mesh.settle();
  const owned = new Set(real.M.engine.ownedTunnels());
  assert.deepEqual(owned, new Set(model.tunnels.map((t) => t.real)), 'the master owns exactly the model tunnels');
  for (const name of HOPS) {
    const node = real.node(name);
    const expected = model.tunnels.filter((t) => t.path.includes(name)).length;
    assert.equal(node.engine.stats().transit, expected, `${name} carries exactly the live tunnels through it`);
    const held = node.endpoints.length - node.closedEndpoints.length;
    assert.equal(held, model.tunnels.filter((t) => t.path.at(-1) === name).length, `${name} holds a port per live tunnel ending there`);
  }
  assert.equal(real.M.engine.stats().pendingBuilds, 0);
}

class BuildCommand implements Command {
  constructor(readonly path: readonly HopName[]) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    count('build');
    const refusedAt = this.path.findIndex((h) => model.refusing.has(h));
    const endpointNode = real.node(this.path.at(-1)!);
    try {
      const tunnel = await real.mesh.build(real.M, this.path.map((h) => real.node(h)), { lifetimeMs: LIFETIME_MS });
      assert.equal(refusedAt, -1, 'a build through a refusing hop does not succeed');
      model.tunnels.push({ real: tunnel, path: this.path, endpoint: endpointNode.endpoints.at(-1)! });
    } catch (error) {
      assert.ok(error instanceof BuildError, String(error));
      assert.equal(error.failure.hop, refusedAt, 'the master learns which hop refused');
    }
    await checkInvariants(model, real);
  }
  toString = (): string => `build(${this.path.join('→')})`;
}

class SendCommand implements Command {
  constructor(
    readonly pick: number,
    readonly direction: 'out' | 'in',
  ) {}
  check = (model: Model): boolean => model.tunnels.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    count(`send-${this.direction}`);
    const t = model.tunnels[this.pick % model.tunnels.length]!;
    const plaintext = randomBytes(CELL_PLAINTEXT_BYTES);
    if (this.direction === 'out') {
      const endpointNode = real.node(t.path.at(-1)!);
      const before = endpointNode.endpointFrames.length;
      assert.ok(real.M.engine.send(t.real, plaintext));
      await real.mesh.settle();
      assert.deepEqual(endpointNode.endpointFrames.slice(before), [plaintext]);
    } else {
      const before = real.M.ownFrames.length;
      assert.ok(real.node(t.path.at(-1)!).engine.sendFromEndpoint(t.endpoint, plaintext));
      await real.mesh.settle();
      assert.deepEqual(real.M.ownFrames.slice(before).map((f) => f.plaintext), [plaintext]);
    }
    await checkInvariants(model, real);
  }
  toString = (): string => `send-${this.direction}(${this.pick})`;
}

class DestroyCommand implements Command {
  constructor(readonly pick: number) {}
  check = (model: Model): boolean => model.tunnels.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    count('destroy');
    const [t] = model.tunnels.splice(this.pick % model.tunnels.length, 1);
    real.M.engine.destroy(t!.real);
    await checkInvariants(model, real);
  }
  toString = (): string => `destroy(${this.pick})`;
}

class TamperCommand implements Command {
  constructor(
    readonly pick: number,
    readonly offset: number,
  ) {}
  check = (model: Model): boolean => model.tunnels.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    count('tamper');
    const [t] = model.tunnels.splice(this.pick % model.tunnels.length, 1);
    const path = t!.path;
    // The last relayer (or the master, for one hop) alters what it hands the endpoint.
    const at = real.node(path.at(-1)!);
    const from = path.length > 1 ? real.node(path.at(-2)!) : real.M;
    const closed = real.M.ownClosed.length;
    tamperOnce(at, TUNNEL_MESSAGE_TYPES['cell-out'], from, (payload) => {
      const copy = payload.slice();
      copy[CELL_BYTES - 1 - this.offset]! ^= 0x40;
      return copy;
    });
    assert.ok(real.M.engine.send(t!.real, randomBytes(CELL_PLAINTEXT_BYTES)));
    await checkInvariants(model, real);
    assert.deepEqual(real.M.ownClosed.slice(closed).map((c) => c.reason), ['bad-cell']);
  }
  toString = (): string => `tamper(${this.pick}, ${this.offset})`;
}

class RefuseCommand implements Command {
  constructor(
    readonly hop: HopName,
    readonly refuse: boolean,
  ) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    count('refuse');
    const reason: RefusalReason | undefined = this.refuse ? 'overloaded' : undefined;
    real.node(this.hop).refuse = reason;
    if (this.refuse) model.refusing.add(this.hop);
    else model.refusing.delete(this.hop);
    await checkInvariants(model, real);
  }
  toString = (): string => `${this.refuse ? 'refuse' : 'admit'}(${this.hop})`;
}

class AdvanceCommand implements Command {
  constructor(readonly ms: number) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    count('advance');
    real.mesh.clock.advance(this.ms);
    // Expiry is housekeeping: a tunnel goes at the first tick at or after its expiry time.
    const now = real.mesh.clock.now();
    const lastTick = real.start + Math.floor((now - real.start) / TUNNEL_TICK_MS) * TUNNEL_TICK_MS;
    model.tunnels = model.tunnels.filter((t) => t.real.expiresAt > lastTick);
    await checkInvariants(model, real);
  }
  toString = (): string => `advance(${this.ms})`;
}

const pathArb = fc.shuffledSubarray([...HOPS], { minLength: 1, maxLength: 3 });
const commandsArb = fc.commands(
  [
    pathArb.map((path) => new BuildCommand(path)),
    fc.tuple(fc.nat(), fc.constantFrom('out' as const, 'in' as const)).map(([pick, direction]) => new SendCommand(pick, direction)),
    fc.nat().map((pick) => new DestroyCommand(pick)),
    fc.tuple(fc.nat(), fc.nat(1000)).map(([pick, offset]) => new TamperCommand(pick, offset)),
    fc.tuple(fc.constantFrom(...HOPS), fc.boolean()).map(([hop, refuse]) => new RefuseCommand(hop, refuse)),
    fc.integer({ min: 1_000, max: 40_000 }).map((ms) => new AdvanceCommand(ms)),
  ],
  { maxCommands: 30, size: 'max' },
);

test('hardening model - the tunnel build state machine agrees with its model under random builds, refusals, cells, teardown, tagging and expiry', { timeout: 180_000 }, async (t: TestContext) => {
  await assertProperty(
    fc.asyncProperty(commandsArb, async (commands) => {
      const mesh = await createEngineMesh({ nodes: ['M', ...HOPS] });
      const byName = new Map(mesh.nodes.map((n) => [n.name, n]));
      const real: Real = { mesh, start: mesh.clock.now(), M: byName.get('M')!, node: (name) => byName.get(name)! };
      try {
        await fc.asyncModelRun(() => ({ model: { tunnels: [], refusing: new Set<HopName>() }, real }), commands);
      } finally {
        await mesh.close();
      }
    }),
    { numRuns: 150 },
  );
  t.diagnostic(`commands run: ${JSON.stringify(Object.fromEntries(ran))}`);
  for (const kind of ['build', 'send-out', 'send-in', 'destroy', 'tamper', 'refuse', 'advance']) assert.ok((ran.get(kind) ?? 0) >= 5, `${kind} ran`);
});

test('hardening model - fc.scheduler: the endpoint binding its port races build timeouts, teardowns and shutdown without leaking a port or an entry', { timeout: 120_000 }, async () => {
  await assertProperty(
    fc.asyncProperty(fc.scheduler(), fc.array(fc.constantFrom('timeout', 'destroy', 'close-endpoint-engine', 'nothing'), { minLength: 1, maxLength: 4 }), async (s, events) => {
      const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2'] });
      const [M, R1, R2] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode];
      let bound = 0;
      let released = 0;
      R2.openEndpoint = (tunnel) => {
        R2.endpoints.push(tunnel);
        bound++;
        // The bind resolves whenever the scheduler says, interleaved with everything else.
        return s.schedule(Promise.resolve<UdpAddress>({ host: '127.0.4.3', port: 40_000 + tunnel.handle }), `bind ${tunnel.handle}`);
      };
      const closeEndpoint = R2.closedEndpoints.push.bind(R2.closedEndpoints);
      R2.closedEndpoints.push = (...items) => {
        released += items.length;
        return closeEndpoint(...items);
      };
      const builds = [0, 1, 2].map(() => {
        const building = M.engine.build({ mode: 'master', hops: [R1.candidate, R2.candidate], lifetimeMs: LIFETIME_MS, timeoutMs: 2_000 });
        building.catch(() => undefined);
        return building;
      });
      try {
        await mesh.settle();
        for (const event of events) {
          if (s.count() > 0) await s.waitOne();
          await mesh.settle();
          if (event === 'timeout') mesh.clock.advance(2_500);
          else if (event === 'destroy') for (const t of M.engine.ownedTunnels()) M.engine.destroy(t);
          else if (event === 'close-endpoint-engine') R2.engine.close();
          await mesh.settle();
        }
        while (s.count() > 0) {
          await s.waitOne();
          await mesh.settle();
        }
        // Builds still waiting (their endpoint engine closed) give up at their timeout.
        mesh.clock.advance(2_500);
        await mesh.settle();
        await withDeadline(Promise.allSettled(builds), 5_000, 'every build settled');
        // Every port bound is either held by a live endpoint entry or was released.
        const live = R2.engine.stats().endpoints;
        assert.equal(bound, live + released + (R2.endpoints.length - bound), `bound ${bound}, live ${live}, released ${released}`);
        assert.ok(bound - released === live || bound - released === 0, `a port is neither live nor released: bound ${bound}, released ${released}, live ${live}`);
        for (const t of M.engine.ownedTunnels()) M.engine.destroy(t);
        await mesh.settle();
        mesh.clock.advance(LIFETIME_MS + 60_000);
        await mesh.settle();
        assert.equal(mesh.totalState(), 0, 'no table entry left anywhere');
        assert.equal(released, bound, `every bound port released exactly once (bound ${bound}, released ${released})`);
      } finally {
        await mesh.close();
      }
    }),
    { numRuns: 60 },
  );
});

test("hardening model - fc.scheduler: the pool's builds completing, failing and being lost in any order, with close() anywhere, leak no tunnel and keep the counts right", { timeout: 120_000 }, async () => {
  await assertProperty(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(fc.constantFrom('resolve-one', 'tick', 'lose-one', 'close'), { minLength: 1, maxLength: 30 }),
      fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
      async (s, events, outcomes) => {
        const clock = new ManualClock();
        const peers = new PeerTable('127.0.0.1:1', () => clock.now());
        for (let i = 0; i < 6; i++) peers.add({ host: `10.${i}.0.1`, port: 7000 }, generateKeyPair().publicKey);
        const delivered = new Set<OwnedTunnel>();
        const destroyed = new Set<OwnedTunnel>();
        const lost = new Set<OwnedTunnel>();
        let builds = 0;
        const engine = {
          // Each build resolves or fails when the scheduler says.
          build: (plan: BuildPlan): Promise<OwnedTunnel> => {
            const ok = outcomes[builds++ % outcomes.length]!;
            const hops = plan.mode === 'master' ? plan.hops : [plan.firstHop];
            const tunnel = new OwnedTunnel({
              localId: builds,
              linkId: tunnelId(builds),
              mode: 'master',
              path: hops.map((h) => ({ address: h.address, publicKey: h.publicKey })),
              hopCount: hops.length,
              keys: hops.map(() => ({ outboundKey: randomBytes(32), inboundKey: randomBytes(32), outboundOffset: 0, inboundOffset: 0 })),
              endpoint: { host: '10.9.9.9', port: builds },
              createdAt: clock.now(),
              expiresAt: clock.now() + (plan.lifetimeMs ?? 600_000),
            });
            const result = ok ? Promise.resolve(tunnel) : Promise.reject(new BuildError('BUILD_REFUSED', 'refused', { hop: 0, reason: 'overloaded' }));
            return s.schedule(result, `build ${builds} ${ok ? 'ok' : 'fails'}`).then((t) => {
              delivered.add(t);
              return t;
            });
          },
          destroy: (tunnel: OwnedTunnel): void => void destroyed.add(tunnel),
          send: (): boolean => true,
        };
        const pool = new TunnelPool({ engine: engine as unknown as TunnelEngine, peers, self: '127.0.0.1:1', target: 4, hops: 2, buildConcurrency: 3, allowSameSubnet: true, clock });
        let closed = false;
        clock.advance(1);
        for (const event of events) {
          if (event === 'resolve-one' && s.count() > 0) await s.waitOne();
          else if (event === 'tick') clock.advance(1_000);
          else if (event === 'lose-one') {
            const victim = [...delivered].find((t) => !destroyed.has(t) && !lost.has(t));
            if (victim !== undefined) {
              lost.add(victim);
              pool.tunnelClosed(victim, 'neighbour-lost');
            }
          } else if (event === 'close' && !closed) {
            closed = true;
            pool.close();
          }
          const stats = pool.stats();
          assert.ok(stats.building >= 0 && stats.building <= 3, `builds in flight ${stats.building} within 0..concurrency`);
          assert.ok(stats.tunnels <= 4 + 3, `pool ${stats.tunnels} within target plus concurrency`);
          if (closed) assert.equal(stats.tunnels, 0, 'a closed pool holds nothing');
        }
        if (!closed) pool.close();
        await s.waitAll();
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(pool.stats().building, 0, 'every build accounted for');
        assert.equal(pool.stats().tunnels, 0);
        // Every tunnel the engine delivered was either lost (the engine's own report) or
        // destroyed by the pool: none is left alive and forgotten.
        for (const t of delivered) assert.ok(destroyed.has(t) || lost.has(t), `tunnel ${t.localId} was neither destroyed nor lost`);
        assert.equal(clock.pending, 0, 'no pool timer outlives close()');
      },
    ),
    { numRuns: 150 },
  );
});

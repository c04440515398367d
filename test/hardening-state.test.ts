/**
 * Issue #8, state exhaustion and half-open tunnels (docs/PROTOCOL.md §4.2 step 3, §5.5, §8):
 * per-neighbour and global caps on transit tunnels and endpoint ports; a refusal opens no
 * port; other neighbours keep building and existing tunnels keep working while one floods;
 * builds never confirmed and tunnels left idle expire, their ports close and every table
 * returns to its baseline. A real DeutNode is the relay under attack; the attackers and the
 * legitimate master are Link + TunnelEngine nodes; all on one ManualClock.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type CounterSnapshot } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { DeutNode, type DeutNodeOptions } from '@deut/node';
import { createEngineMesh, withDeadline, type EngineMesh, type EngineMeshNode } from '@deut/testkit';
import { MemoryNetwork } from '@deut/transport';
import { BUILD_HOP_TIMEOUT_MS, type OwnedTunnel, type PeerCandidate, type TunnelCounter } from '@deut/tunnel';
import { encodeCellFrame } from '@deut/wire';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

interface Scene {
  readonly clock: ManualClock;
  readonly network: MemoryNetwork;
  readonly mesh: EngineMesh;
  readonly relay: DeutNode;
  readonly target: PeerCandidate;
}

async function withScene(relayOptions: Partial<DeutNodeOptions>, body: (scene: Scene) => Promise<void>): Promise<void> {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 21, clock });
  const mesh = await createEngineMesh({ shared: { network, clock } });
  let relay: DeutNode | undefined;
  try {
    relay = await DeutNode.start({
      listen: { host: '127.0.6.1', port: 0 },
      sockets: { bind: (address) => Promise.resolve(network.bind(address)) },
      clock,
      allowPrivateExits: true,
      allowSameSubnet: true,
      identity: generateKeyPair(),
      ...relayOptions,
    });
    await body({ clock, network, mesh, relay, target: { address: relay.address, publicKey: relay.publicKey } });
  } finally {
    await mesh.close();
    await relay?.close();
    await network.close();
  }
  assert.equal(clock.pending, 0, 'no timer outlives the scene');
}

/** Opens a link from `node` to the relay (a link queues only 64 payloads while it handshakes). */
async function linkTo(scene: Scene, node: EngineMeshNode): Promise<void> {
  const linking = node.link.connect(scene.target.address);
  await scene.mesh.settle();
  await withDeadline(linking, 5_000, `${node.name}'s link to the relay`);
}

/** Starts `count` builds through `hops` and settles; resolves to how many succeeded. */
async function buildMany(scene: Scene, master: EngineMeshNode, count: number, hops: PeerCandidate[], lifetimeMs = 600_000): Promise<{ ok: number; tunnels: OwnedTunnel[] }> {
  const tunnels: OwnedTunnel[] = [];
  const all = Array.from({ length: count }, () =>
    master.engine.build({ mode: 'master', hops, lifetimeMs, timeoutMs: 2_000 }).then(
      (tunnel) => void tunnels.push(tunnel),
      () => undefined,
    ),
  );
  await scene.mesh.settle();
  await scene.mesh.advance(2_250); // past the build timeout: every build has ended
  await Promise.all(all);
  return { ok: tunnels.length, tunnels };
}

const probe = (): Uint8Array => encodeCellFrame({ type: 'probe', probeId: randomBytes(8) });

test('state - a neighbour flooding builds gets at most its share of transit tunnels, refusals open no port, others still build and existing tunnels keep working', { timeout: 60_000 }, async (t) => {
  await withScene({ maxTransit: 80, maxTransitPerNeighbour: 30, buildRatePerNeighbour: { perSecond: 3, burst: 90 } }, async (scene) => {
    const { mesh, relay, target } = scene;
    const master = await mesh.add('M');
    const flooder = await mesh.add('X');
    const second = await mesh.add('Y');
    for (const node of [master, flooder, second]) await linkTo(scene, node);
    const tunnels = (): CounterSnapshot<TunnelCounter> => relay.stats().tunnels.counters;

    const early = await buildMany(scene, master, 5, [target]);
    assert.equal(early.ok, 5);

    // X floods: 90 pass its rate limit, 30 fit its share, 60 are refused, 110 dropped unread.
    const flood = await buildMany(scene, flooder, 200, [target]);
    assert.equal(flood.ok, 30, 'the flooder holds exactly its per-neighbour share');
    assert.equal(tunnels()['build-refused-neighbour-cap'], 60);
    assert.equal(tunnels()['drop:build-rate-limited'], 110);
    const stats = relay.stats();
    assert.equal(stats.tunnels.endpoints, 35);
    assert.equal(stats.exits.ports, 35, 'one port per accepted tunnel: refusals opened none');
    assert.equal(stats.exits.counters['ports-opened'], 35);

    // Meanwhile M builds as before, and its earlier tunnels still carry cells.
    const legit = await buildMany(scene, master, 20, [target]);
    t.diagnostic(`legit builds during the flood: ${legit.ok}/20`);
    assert.ok(legit.ok >= 19, `legit build success ${legit.ok}/20 is at least 95%`);
    for (const tunnel of early.tunnels) assert.ok(master.engine.send(tunnel, probe()));
    await mesh.settle();
    assert.equal(new Set(master.ownFrames.map((f) => f.tunnel)).size, 5, 'every earlier tunnel answered its probe');

    // A second flooder meets the global cap: the table never exceeds it, nor do the ports.
    const second_ = await buildMany(scene, second, 100, [target]);
    assert.equal(second_.ok, 80 - 55, 'the global cap takes what is left');
    assert.ok(tunnels()['build-refused-transit-cap']! > 0);
    assert.equal(relay.stats().tunnels.transit, 80);
    assert.equal(relay.stats().exits.ports, 80);
  });
});

test('state - half-open builds and idle tunnels expire: ports closed, tables back to baseline', { timeout: 60_000 }, async () => {
  await withScene({}, async (scene) => {
    const { mesh, relay, target, network } = scene;
    const baseline = relay.stats();
    const master = await mesh.add('M');
    const silent = await mesh.add('D');
    silent.intercept = () => null; // D takes build requests and never answers
    await linkTo(scene, master);

    // Three tunnels that end at the relay, with a 30 s lifetime, and one build left half-open at it.
    const idle = await buildMany(scene, master, 3, [target], 30_000);
    assert.equal(idle.ok, 3);
    const halfOpen = master.engine.build({ mode: 'master', hops: [target, silent.candidate], timeoutMs: 60_000 });
    halfOpen.catch(() => undefined);
    await mesh.settle();
    await mesh.advance(500);
    assert.equal(relay.stats().tunnels.transit, 4);
    assert.equal(relay.stats().exits.ports, 3);
    // The master vanishes: none of its DESTROYs will arrive.
    network.partition(master.socket.local.host, target.address.host);

    await mesh.advance(BUILD_HOP_TIMEOUT_MS + 1_000);
    assert.equal(relay.stats().tunnels.counters['transit-build-expired'], 1, 'the build never confirmed expired at the hop');
    assert.equal(relay.stats().tunnels.transit, 3);
    await mesh.advance(30_000 - BUILD_HOP_TIMEOUT_MS);
    assert.equal(relay.stats().tunnels.counters['transit-expired'], 3, 'idle tunnels expired at their lifetime');
    assert.equal(relay.stats().exits.ports, 0, 'their ports are closed');
    assert.equal(relay.stats().exits.counters['ports-closed'], 3);

    // Once the replay cache and the links age out, every table is back to where it started.
    await mesh.advance(240_000);
    const after_ = relay.stats();
    for (const key of ['transit', 'endpoints', 'pendingBuilds', 'replayCache'] as const) assert.equal(after_.tunnels[key], baseline.tunnels[key], `tunnels.${key}`);
    assert.equal(after_.exits.ports, baseline.exits.ports);
    assert.equal(after_.link.peers, baseline.link.peers, 'link peers');
    assert.equal(after_.link.pendingHandshakes, baseline.link.pendingHandshakes);
    network.heal();
  });
});

test('state - the endpoint port cap refuses builds without opening a port, and frees a place when a tunnel goes', { timeout: 60_000 }, async () => {
  await withScene({ exit: { maxPorts: 10 } }, async (scene) => {
    const { mesh, relay, target } = scene;
    const master = await mesh.add('M');
    await linkTo(scene, master);
    const built = await buildMany(scene, master, 15, [target]);
    assert.equal(built.ok, 10, 'as many endpoint tunnels as ports');
    const stats = relay.stats();
    assert.equal(stats.exits.ports, 10);
    assert.equal(stats.exits.counters['ports-opened'], 10, 'the five refused builds opened no port');
    assert.equal(stats.exits.counters['drop:port-cap'], 5);
    assert.equal(stats.tunnels.transit, 10, 'and keep no transit state');
    master.engine.destroy(built.tunnels[0]!);
    await mesh.settle();
    assert.equal(relay.stats().exits.ports, 9);
    assert.equal((await buildMany(scene, master, 1, [target])).ok, 1, 'a freed port is available again');
  });
});

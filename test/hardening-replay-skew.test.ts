/**
 * Issue #8, replayed build requests and clock skew (docs/PROTOCOL.md §4.5, §11.4): a build
 * request's `time` is accepted from CLOCK_SKEW_S ahead to BUILD_MAX_AGE_S + CLOCK_SKEW_S behind
 * the hop's clock, edges included, and a replay is refused for as long as the request would
 * be fresh; a DHT STORE's timestamp may be 5 minutes off either way, edges included.
 * (Replayed data cells and link datagrams: "tunnel security - a tampered cell, a replayed
 * cell and a replayed build request are dropped and counted" in tunnels-faults.test.ts and
 * "link - replayed, reordered, duplicated, bit-flipped and truncated datagrams" in
 * packages/link/test/link.test.ts.)
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { DhtNode, DhtRpc, MAX_CLOCK_SKEW_MS, type DatagramChannel } from '@deut/dht';
import { createEngineMesh, withDeadline, type EngineMesh, type EngineMeshNode } from '@deut/testkit';
import { MemoryNetwork, type DatagramSocket } from '@deut/transport';
import { BUILD_MAX_AGE_S, BuildError, CLOCK_SKEW_S, buildTimeAcceptable } from '@deut/tunnel';
import { TUNNEL_MESSAGE_TYPES } from '@deut/wire';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const BUILD_REQUEST = TUNNEL_MESSAGE_TYPES['build-request'];

async function withPair(body: (mesh: EngineMesh, master: EngineMeshNode, hop: EngineMeshNode, clock: ManualClock) => Promise<void>): Promise<void> {
  const clock = new ManualClock(); // whole seconds: the edges below fall exactly on them
  const network = new MemoryNetwork({ seed: 31, clock });
  const mesh = await createEngineMesh({ shared: { network, clock } });
  try {
    const master = await mesh.add('M');
    const hop = await mesh.add('R');
    const linking = master.link.connect(hop.candidate.address);
    await mesh.settle();
    await withDeadline(linking, 5_000, 'the link');
    await body(mesh, master, hop, clock);
  } finally {
    await mesh.close();
    await network.close();
  }
}

/** Builds a one-hop tunnel with the master's clock `offsetMs` from the hop's; 'ok' or the refusal. */
async function buildWithSkew(mesh: EngineMesh, master: EngineMeshNode, hop: EngineMeshNode, offsetMs: number): Promise<string> {
  master.clock.offsetMs = offsetMs;
  try {
    const tunnel = await mesh.build(master, [hop]);
    master.engine.destroy(tunnel);
    await mesh.settle();
    return 'ok';
  } catch (error) {
    return error instanceof BuildError ? String(error.failure.reason) : String(error);
  } finally {
    master.clock.offsetMs = 0;
  }
}

test('clock skew - a build time is accepted exactly CLOCK_SKEW_S ahead and BUILD_MAX_AGE_S + CLOCK_SKEW_S behind, refused one second beyond', { timeout: 30_000 }, async () => {
  const now = 1_700_000_000_000;
  assert.ok(buildTimeAcceptable(now / 1000 + CLOCK_SKEW_S, now));
  assert.ok(!buildTimeAcceptable(now / 1000 + CLOCK_SKEW_S + 1, now));
  assert.ok(buildTimeAcceptable(now / 1000 - BUILD_MAX_AGE_S - CLOCK_SKEW_S, now));
  assert.ok(!buildTimeAcceptable(now / 1000 - BUILD_MAX_AGE_S - CLOCK_SKEW_S - 1, now));
  await withPair(async (mesh, master, hop) => {
    const ahead = CLOCK_SKEW_S * 1000;
    const behind = -(BUILD_MAX_AGE_S + CLOCK_SKEW_S) * 1000;
    assert.equal(await buildWithSkew(mesh, master, hop, ahead), 'ok', `master ${CLOCK_SKEW_S} s ahead`);
    assert.equal(await buildWithSkew(mesh, master, hop, ahead + 1000), 'stale', 'one second more ahead');
    assert.equal(await buildWithSkew(mesh, master, hop, behind), 'ok', `master ${-behind / 1000} s behind`);
    assert.equal(await buildWithSkew(mesh, master, hop, behind - 1000), 'stale', 'one second more behind');
    assert.equal(hop.count('build-refused-stale'), 2);
    assert.equal(hop.engine.stats().transit, 0, 'refusals keep no state');
  });
});

test('replay - a build request is refused for its whole fresh window, even from a master whose clock runs ahead', { timeout: 30_000 }, async () => {
  await withPair(async (mesh, master, hop, clock) => {
    // The master's clock runs CLOCK_SKEW_S ahead: its request stays fresh at the hop for
    // BUILD_MAX_AGE_S + 2 × CLOCK_SKEW_S, longer than the request's own age limit.
    assert.equal(await buildWithSkew(mesh, master, hop, CLOCK_SKEW_S * 1000), 'ok');
    const recorded = hop.inbox.filter((e) => e.payload[0] === BUILD_REQUEST).at(-1)!;
    const replay = (): void => {
      const copy = recorded.payload.slice();
      copy.set(randomBytes(4), 1); // a fresh link tunnel id, so only the replay cache can tell
      hop.engine.handle(copy, recorded.from);
    };
    const lastFreshMs = (BUILD_MAX_AGE_S + 2 * CLOCK_SKEW_S) * 1000;
    for (const atMs of [1_000, (BUILD_MAX_AGE_S + CLOCK_SKEW_S) * 1000 + 1_000, lastFreshMs - 1_000]) {
      clock.advance(atMs - (clock.now() - 1_700_000_000_000));
      await mesh.settle();
      replay();
      await mesh.settle();
    }
    assert.equal(hop.count('drop:build-replay'), 3, 'every replay within the fresh window is refused');
    assert.equal(hop.count('endpoints-opened'), 1, 'only the original opened an endpoint');
    // Past its window the request is stale anyway, and the cache may forget it.
    clock.advance(lastFreshMs + 2_000 - (clock.now() - 1_700_000_000_000));
    await mesh.settle();
    replay();
    await mesh.settle();
    assert.equal(hop.count('build-refused-stale'), 1, 'a replay after the window is refused as stale');
    await mesh.advance(3_000);
    assert.equal(hop.engine.stats().replayCache, 0, 'the replay cache forgot it once it could not pass anyway');
  });
});

function channelOf(socket: DatagramSocket): DatagramChannel {
  return { send: (to, data) => socket.send(data, to), onDatagram: (handler) => socket.onMessage(handler), close: () => undefined };
}

test('clock skew - a DHT STORE is accepted exactly 5 minutes off either way and refused one millisecond beyond', { timeout: 30_000 }, async () => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 32 });
  const calleeSocket = network.bind({ host: '127.0.9.1', port: 7000 });
  const callee = new DhtNode({ identity: generateKeyPair(), channel: channelOf(calleeSocket), clock });
  const caller = new DhtRpc({ identity: generateKeyPair(), channel: channelOf(network.bind({ host: '127.0.9.2', port: 7000 })) });
  try {
    const store = async (offsetMs: number): Promise<string> => {
      const reply = await withDeadline(
        caller.call({ publicKey: callee.publicKey, address: calleeSocket.local }, { type: 'store', key: randomBytes(32), timestampMs: clock.now() + offsetMs, ttlSeconds: 60, value: randomBytes(8) }),
        10_000,
        'a store',
      );
      return reply.body.type === 'stored' ? reply.body.result : reply.body.type;
    };
    assert.equal(await store(MAX_CLOCK_SKEW_MS), 'stored');
    assert.equal(await store(MAX_CLOCK_SKEW_MS + 1), 'skew');
    assert.equal(await store(-MAX_CLOCK_SKEW_MS), 'stored');
    assert.equal(await store(-MAX_CLOCK_SKEW_MS - 1), 'skew');
    assert.equal(callee.stats().counters['stores-skewed'], 2);
  } finally {
    caller.close();
    callee.close();
    await network.close();
  }
});

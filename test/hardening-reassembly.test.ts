/**
 * Hardening, reassembly buffer exhaustion at an endpoint (issue #8; docs/PROTOCOL.md §6):
 * a malicious master floods a running node's endpoints with the first fragments of 100,000 datagrams it
 * never completes, over 300 tunnels. The node holds them within its byte cap
 * (REASSEMBLY_BYTES) and per-tunnel cap (MAX_PARTIAL_DATAGRAMS), evicts the least recently
 * extended, still completes the newest, and a legitimate 64 KiB datagram whose fragments
 * are interleaved with the flood is reassembled and leaves the endpoint whole.
 *
 * The master's side is test/hardening-reassembly-master.test.ts.
 *
 * The attacker is a Link + TunnelEngine of its own (as a modified client would be); the
 * target is a real DeutNode. Everything runs on a ManualClock that never advances, so no
 * partial expires: only the caps can bound memory.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type UdpAddress, type CounterSnapshot } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { Link } from '@deut/link';
import { DeutNode } from '@deut/node';
import { MemoryNetwork } from '@deut/transport';
import { MAX_PARTIAL_DATAGRAMS, PARTIAL_OVERHEAD_BYTES, REASSEMBLY_BYTES, TunnelEngine, fragmentDatagram, type OwnedTunnel, type ReassemblyCounter } from '@deut/tunnel';
import { MAX_DATAGRAM_BYTES, MAX_FRAGMENT_DATA, encodeCellFrame } from '@deut/wire';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const TUNNELS = 300;
const MESSAGES = 100_000;

test('hardening reassembly - 100,000 never-completed datagrams stay within the byte cap, oldest evicted, and a 64 KiB datagram still reassembles', { timeout: 120_000 }, async (t: TestContext) => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 3, clock });
  const target = await DeutNode.start({
    listen: { host: '127.0.5.1', port: 7000 },
    sockets: { bind: (address) => Promise.resolve(network.bind(address)) },
    relay: true,
    allowPrivateExits: true,
    clock,
    buildRatePerNeighbour: { perSecond: 1, burst: 10_000 },
    buildRateGlobal: { perSecond: 1, burst: 10_000 },
  });
  const attackerIdentity = generateKeyPair();
  const attackerLink = await Link.create({ socket: network.bind({ host: '127.0.5.2', port: 7000 }), identity: attackerIdentity, clock });
  const attacker = new TunnelEngine({
    link: attackerLink,
    identity: attackerIdentity,
    clock,
    policy: { allowBuildFrom: () => false, admit: () => 'overloaded', pickNextHop: () => undefined },
    endpoints: { open: () => Promise.resolve('overloaded'), close: () => undefined, frame: () => undefined },
    master: { tunnelFrame: () => undefined, tunnelClosed: () => undefined },
  });
  attackerLink.onPayload((payload, from) => attacker.handle(payload, from));
  const sink = network.bind({ host: '127.0.3.1', port: 5000 });
  const arrived: Uint8Array[] = [];
  sink.onMessage((data) => void arrived.push(data.slice()));
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      await network.idle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const reassembly = (): { partials: number; bytes: number; counters: CounterSnapshot<ReassemblyCounter> } => target.stats().exits.reassembly;
  const send = (tunnel: OwnedTunnel, datagramId: number, index: number, count: number, to: UdpAddress, data: Uint8Array): void => {
    assert.ok(attacker.send(tunnel, encodeCellFrame({ type: 'datagram', datagramId, index, count, address: to, data })));
  };
  try {
    const tunnels: OwnedTunnel[] = [];
    for (let i = 0; i < TUNNELS + 1; i++) {
      const building = attacker.build({ mode: 'master', hops: [{ address: target.address, publicKey: target.publicKey }] });
      await settle();
      tunnels.push(await building);
    }
    const legitTunnel = tunnels.pop()!;
    assert.equal(target.stats().exits.ports, TUNNELS + 1, 'one endpoint port per tunnel');

    // The flood: fragment 0 of 2 of each datagram, full size, round robin over the tunnels.
    const filler = randomBytes(MAX_FRAGMENT_DATA);
    const legit = randomBytes(MAX_DATAGRAM_BYTES);
    const legitFrames = fragmentDatagram(7, sink.local, legit);
    const floodBetweenLegitFragments = Math.floor(MESSAGES / legitFrames.length);
    let maxBytes = 0;
    let maxPartials = 0;
    let legitSent = 0;
    for (let m = 0; m < MESSAGES; m++) {
      send(tunnels[m % TUNNELS]!, m, 0, 2, sink.local, filler);
      // A legitimate sender's fragments come close together, the flood in between.
      if (m % floodBetweenLegitFragments === floodBetweenLegitFragments - 1 && legitSent < legitFrames.length) {
        assert.ok(attacker.send(legitTunnel, encodeCellFrame(legitFrames[legitSent++]!)));
      }
      if (m % 500 === 499) {
        await settle();
        maxBytes = Math.max(maxBytes, reassembly().bytes);
        maxPartials = Math.max(maxPartials, reassembly().partials);
      }
    }
    await settle();
    const after = reassembly();
    t.diagnostic(`reassembly after the flood: ${JSON.stringify(after)}; peak ${maxBytes} bytes, ${maxPartials} partials`);
    assert.equal(legitSent, legitFrames.length);
    assert.ok(maxBytes <= REASSEMBLY_BYTES, `never above the byte cap (${maxBytes} <= ${REASSEMBLY_BYTES})`);
    const perPartial = MAX_FRAGMENT_DATA + PARTIAL_OVERHEAD_BYTES;
    assert.ok(maxBytes > REASSEMBLY_BYTES - perPartial, 'the flood reached the byte cap (so the cap, not luck, bounded it)');
    assert.ok(maxPartials <= Math.floor(REASSEMBLY_BYTES / perPartial) && maxPartials <= TUNNELS * MAX_PARTIAL_DATAGRAMS);
    const evicted = after.counters['evicted'] ?? 0;
    assert.ok(evicted >= MESSAGES - after.partials, `the rest were evicted and counted (${evicted})`);

    // The legitimate 64 KiB datagram left the endpoint whole, and nothing of the flood did.
    assert.equal(arrived.length, 1, 'exactly one datagram left the endpoints');
    assert.deepEqual(arrived[0], legit, 'the 64 KiB datagram reassembled intact');

    // Oldest evicted, newest kept: completing the first datagram sends nothing, the last one exits.
    const first = 0;
    const last = MESSAGES - 1;
    send(tunnels[first % TUNNELS]!, first, 1, 2, sink.local, filler);
    await settle();
    assert.equal(arrived.length, 1, 'the oldest partial is gone: its second fragment completes nothing');
    send(tunnels[last % TUNNELS]!, last, 1, 2, sink.local, filler);
    await settle();
    assert.equal(arrived.length, 2, 'the newest partial was kept and completes');
    assert.equal(arrived[1]!.length, 2 * MAX_FRAGMENT_DATA);
    assert.ok(reassembly().bytes <= REASSEMBLY_BYTES);
  } finally {
    attacker.close();
    await target.close();
    await attackerLink.close();
    await sink.close();
    await network.close();
  }
});

/**
 * Hardening, reassembly buffer exhaustion at a master (issue #8; docs/PROTOCOL.md §6): a
 * malicious endpoint, the only relayer a master knows, floods the master's inbound
 * reassembly with the first fragments of 100,000 datagrams it never completes, over 300 of
 * the master's tunnels. The master holds them within REASSEMBLY_BYTES, evicts the rest,
 * and still receives a 64 KiB datagram whose fragments come in between. The endpoint's
 * side is test/hardening-reassembly.test.ts.
 *
 * The attacker is a Link + TunnelEngine of its own; the master is a real DeutNode. All on
 * a ManualClock that does not move during the flood, so nothing expires: only the caps
 * bound memory.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { Link } from '@deut/link';
import { DeutNode } from '@deut/node';
import { MemoryNetwork } from '@deut/transport';
import { PARTIAL_OVERHEAD_BYTES, REASSEMBLY_BYTES, TunnelEngine, fragmentDatagram, type EndpointTunnel } from '@deut/tunnel';
import { MAX_DATAGRAM_BYTES, MAX_FRAGMENT_DATA, encodeCellFrame, encodePeerExchange, isPeerExchange } from '@deut/wire';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const TUNNELS = 300;
const MESSAGES = 100_000;

test('hardening reassembly - a malicious endpoint flooding a master with 100,000 never-completed datagrams stays within the byte cap, and a 64 KiB datagram still arrives', { timeout: 120_000 }, async (t: TestContext) => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 4, clock });
  // The master builds one-hop tunnels, and the only relayer it knows is the attacker.
  const master = await DeutNode.start({
    listen: { host: '127.0.5.1', port: 7000 },
    sockets: { bind: (address) => Promise.resolve(network.bind(address)) },
    relay: false,
    tunnels: TUNNELS + 1,
    hops: 1,
    buildConcurrency: 64,
    clock,
  });
  const attackerIdentity = generateKeyPair();
  const attackerLink = await Link.create({ socket: network.bind({ host: '127.0.5.2', port: 7000 }), identity: attackerIdentity, clock });
  const endpoints: EndpointTunnel[] = [];
  const attacker = new TunnelEngine({
    link: attackerLink,
    identity: attackerIdentity,
    clock,
    policy: { allowBuildFrom: () => true, admit: () => undefined, pickNextHop: () => undefined },
    endpoints: {
      open: (tunnel) => {
        endpoints.push(tunnel);
        return Promise.resolve({ host: '127.0.5.2', port: 40_000 + tunnel.handle });
      },
      close: () => undefined,
      frame: () => undefined,
    },
    master: { tunnelFrame: () => undefined, tunnelClosed: () => undefined },
  });
  attackerLink.onPayload((payload, from) => {
    if (!isPeerExchange(payload)) attacker.handle(payload, from);
  });
  const arrived: Uint8Array[] = [];
  master.on('datagram', (data: Uint8Array) => void arrived.push(data.slice()));
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) {
      await network.idle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  try {
    // Announce the attacker as a relayer; the master's pool builds every tunnel through it.
    attackerLink.send(master.address, encodePeerExchange({ type: 'peer-request', relay: true }));
    for (let i = 0; i < 2_000 && endpoints.length < TUNNELS + 1; i++) {
      clock.advance(100);
      await settle();
    }
    assert.equal(endpoints.length, TUNNELS + 1, 'the master built its tunnels through the attacker');
    const flood = endpoints.slice(0, TUNNELS);
    const legitEndpoint = endpoints[TUNNELS]!;
    const from = { host: '192.0.2.1', port: 53 };
    const filler = randomBytes(MAX_FRAGMENT_DATA);
    const legit = randomBytes(MAX_DATAGRAM_BYTES);
    const legitFrames = fragmentDatagram(9, { host: '192.0.2.7', port: 53 }, legit);
    const every = Math.floor(MESSAGES / legitFrames.length);
    let legitSent = 0;
    let maxBytes = 0;
    for (let m = 0; m < MESSAGES; m++) {
      assert.ok(attacker.sendFromEndpoint(flood[m % TUNNELS]!, encodeCellFrame({ type: 'datagram', datagramId: m, index: 0, count: 2, address: from, data: filler })));
      if (m % every === every - 1 && legitSent < legitFrames.length) assert.ok(attacker.sendFromEndpoint(legitEndpoint, encodeCellFrame(legitFrames[legitSent++]!)));
      if (m % 500 === 499) {
        await settle();
        maxBytes = Math.max(maxBytes, master.stats().reassembly.bytes);
      }
    }
    await settle();
    const after = master.stats().reassembly;
    t.diagnostic(`master reassembly after the flood: ${JSON.stringify(after)}; peak ${maxBytes} bytes`);
    assert.ok(maxBytes <= REASSEMBLY_BYTES, `never above the byte cap (${maxBytes} <= ${REASSEMBLY_BYTES})`);
    assert.ok(maxBytes > REASSEMBLY_BYTES - (MAX_FRAGMENT_DATA + PARTIAL_OVERHEAD_BYTES), 'the flood reached the cap');
    assert.ok((after.counters['evicted'] ?? 0) >= MESSAGES - after.partials);
    assert.equal(arrived.length, 1, 'only the complete datagram reached the application');
    assert.deepEqual(arrived[0], legit, 'the 64 KiB datagram arrived intact');
  } finally {
    attacker.close();
    await master.close();
    await attackerLink.close();
    await network.close();
  }
});

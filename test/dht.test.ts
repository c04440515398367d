/**
 * The DHT through deut tunnels (PROTOCOL.md §11): a whole network of 50 masters that put
 * and get through their tunnels, and what DHT peers see of each other. The same DHT code
 * over plain UDP and hostile input are in dht-udp.test.ts; churn and tunnel rotation in
 * dht-churn.test.ts (split so the three can run beside other files).
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey } from '@deut/common';
import { cryptoReady } from '@deut/crypto';
import { DeutNode } from '@deut/node';
import { joinDht } from '@deut/testkit';
import { simulatedTestnet } from './sim-clock.js';
import { masterNodes, putGetAndFind } from './dht-helpers.js';

// Library timers are unref'd; the tests wait on them.
let holdEventLoopOpen: ReturnType<typeof setInterval> | undefined;
before(async () => {
  await cryptoReady();
  holdEventLoopOpen = setInterval(() => undefined, 1_000);
});
after(() => clearInterval(holdEventLoopOpen));

// ---- 50 nodes, through tunnels and over plain UDP -----------------------------------------

test('dht over tunnels - 50 masters: every value is found by every other node, findNode finds the true k closest, peers see only endpoints', { timeout: 600_000 }, async (t: TestContext) => {
  // Simulated time (sim-clock.ts): in one process of 62 nodes next to another busy test
  // file, real timers fired by a starved CPU once emptied gets; here only lost datagrams can.
  const sim = await simulatedTestnet({ relays: 12, masters: 50, tunnels: 3, master: { dht: true } });
  const net = sim.net;
  const masters = masterNodes(net);
  const masterHosts = new Set(net.masters.map((m) => m.node.address.host));
  const heardFrom = new Set<string>();
  for (const m of masters) m.dht.rpc.observer = (_data, from) => void heardFrom.add(from.host);
  try {
    const joinStarted = performance.now();
    await joinDht(masters, { concurrency: 5, timeoutMs: 120_000 });
    const joinMs = performance.now() - joinStarted;
    const figures = await putGetAndFind(masters, 'tunnels');
    // What the peers saw: the hosts every datagram came from, and every address in every
    // routing table, are relayers' (endpoints), never a master's node address.
    const relayHosts = new Set(net.relays.map((r) => r.node.address.host));
    assert.ok(heardFrom.size > 0);
    for (const host of heardFrom) {
      assert.ok(!masterHosts.has(host), `a DHT peer heard from a master's own address ${host}`);
      assert.ok(relayHosts.has(host), `${host} is an endpoint host`);
    }
    let contacts = 0;
    for (const m of masters) {
      for (const c of m.dht.table.contacts()) {
        contacts++;
        assert.ok(!masterHosts.has(c.address.host), 'no routing table holds a master address');
      }
    }
    const endpointKeys = new Set(masters.flatMap((m) => m.tunnels.list().map((x) => addressKey(x.endpoint))));
    const current = masters.flatMap((m) => m.dht.table.contacts()).filter((c) => endpointKeys.has(addressKey(c.address))).length;
    assert.ok(current > contacts * 0.9, `contacts point at live endpoints: ${current} of ${contacts}`);
    t.diagnostic(
      `tunnels: join ${(joinMs / 1000).toFixed(1)} s for 49 nodes; median get ${figures.medianGetMs.toFixed(1)} ms, ` +
        `${figures.callsPerGet.toFixed(2)} calls per get, ${figures.callsPerFindNode.toFixed(1)} calls per findNode; ` +
        `${contacts} contacts in 50 tables; ${heardFrom.size} distinct source hosts seen`,
    );
  } finally {
    await sim.close();
  }
});
test('dht option - needs the master role; node.dht without it is a clear error', { timeout: 30_000 }, async () => {
  await assert.rejects(DeutNode.start({ dht: true, master: false }), { code: 'DHT_NEEDS_MASTER' });
  const relay = await DeutNode.start({ relay: true });
  try {
    assert.throws(() => relay.dht, { code: 'DHT_OFF' });
  } finally {
    await relay.close();
  }
  await assert.rejects(DeutNode.start({ tunnels: 1, dht: { bootstrap: ['not-a-contact'] } }), { code: 'BAD_CONTACT' });
});

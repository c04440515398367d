/**
 * The DHT over real UDP sockets on loopback: the 50-node test of dht.test.ts with the same
 * DHT code and no tunnels, for comparison, and hostile input from plain UDP sockets outside
 * deut at a master's DHT (PROTOCOL.md §11).
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { systemClock, type Clock } from '@deut/common';
import { cryptoReady, generateKeyPair, NoiseHandshake, randomBytes, type KeyPair } from '@deut/crypto';
import { channelFromSocket, DhtNode, DhtRpc, nodeIdFromPublicKey, type DhtRpcCounter, type RemoteNode } from '@deut/dht';
import type { DeutNode } from '@deut/node';
import { createTestnet, dhtContactOf, joinDht, withDeadline } from '@deut/testkit';
import { DHT_MAX_DATAGRAM_BYTES, dhtPrologue, encodeDhtDatagram } from '@deut/wire';
import { fromText, masterNodes, putGetAndFind, text, type Participant } from './dht-helpers.js';

// Library timers are unref'd; the tests wait on them.
let holdEventLoopOpen: ReturnType<typeof setInterval> | undefined;
before(async () => {
  await cryptoReady();
  holdEventLoopOpen = setInterval(() => undefined, 1_000);
});
after(() => clearInterval(holdEventLoopOpen));

const udpSockets: dgram.Socket[] = [];
after(() => {
  for (const s of udpSockets) s.close();
});

async function udpNode(bootstrap: RemoteNode[] = []): Promise<Participant & { contact: RemoteNode; identity: KeyPair }> {
  const socket = dgram.createSocket('udp4');
  udpSockets.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const identity = generateKeyPair();
  const dht = new DhtNode({ identity, channel: channelFromSocket(socket), bootstrap });
  return { dht, identity, contact: { publicKey: identity.publicKey, address: { host: '127.0.0.1', port: socket.address().port } } };
}

test('dht over plain UDP - the same 50-node test with the same DHT code', { timeout: 300_000 }, async (t: TestContext) => {
  const first = await udpNode();
  const nodes = [first];
  try {
    for (let i = 1; i < 50; i += 5) {
      const batch = await Promise.all(Array.from({ length: Math.min(5, 50 - i) }, () => udpNode([first.contact])));
      nodes.push(...batch);
      await Promise.all(batch.map((n) => n.dht.join()));
    }
    const figures = await putGetAndFind(nodes, 'udp');
    t.diagnostic(`plain UDP: median get ${figures.medianGetMs.toFixed(1)} ms, ${figures.callsPerGet.toFixed(2)} calls per get, ${figures.callsPerFindNode.toFixed(1)} calls per findNode`);
  } finally {
    for (const n of nodes) n.dht.close();
  }
});
// ---- hostile input ------------------------------------------------------------------------

test('dht over tunnels - garbage, wrong id lengths, huge node lists and STORE floods are refused, counted and bounded', { timeout: 300_000 }, async () => {
  // Real loopback sockets: the attacker is a plain UDP socket outside deut.
  const net = await createTestnet({ relays: 8, masters: 2, tunnels: 3, transport: 'udp', master: { dht: true } });
  const [victim, asker] = masterNodes(net) as [DeutNode, DeutNode];
  const attackerSocket = dgram.createSocket('udp4');
  try {
    await joinDht([victim, asker]);
    await new Promise<void>((resolve) => attackerSocket.bind(0, '127.0.3.9', resolve));
    const target = dhtContactOf(victim);
    const send = (bytes: Uint8Array): void => attackerSocket.send(bytes, target.address.port, target.address.host);
    const attacker = generateKeyPair();
    /** A request that authenticates (valid IK message 1) around an arbitrary body. */
    const sealed = (body: Uint8Array): Uint8Array => {
      const rpcId = randomBytes(8);
      const hs = new NoiseHandshake({ pattern: 'IK', initiator: true, prologue: dhtPrologue(rpcId), staticKeyPair: attacker, remoteStaticKey: target.publicKey });
      return encodeDhtDatagram({ kind: 'request', rpcId, message: hs.writeMessage(body) });
    };
    const wrongIdLength = Uint8Array.from([0x02, ...randomBytes(31)]);
    const longId = Uint8Array.from([0x03, ...randomBytes(33)]);
    const hugeList = Uint8Array.from([0x82, 21, ...randomBytes(21 * 51)]);
    const rpcBefore = victim.dht.rpc.stats().counters;
    for (let i = 0; i < 300; i++) {
      send(randomBytes(1 + (i % 1400)));
      if (i % 3 === 0) send(sealed(wrongIdLength));
      if (i % 3 === 1) send(sealed(longId));
      if (i % 3 === 2) send(Uint8Array.from([0xd1, 0x01, ...randomBytes(8), ...randomBytes(DHT_MAX_DATAGRAM_BYTES)]).subarray(0, 9_000));
      // 150 datagrams/s: under the endpoint's inbound cap, so the DHT sees them all.
      if (i % 15 === 14) await new Promise((r) => setTimeout(r, 200));
    }
    // A STORE flood from one authenticated publisher with an address of its own (through
    // tunnels, the flooder's own endpoints would cap it first: exit rate limits).
    const flooderSocket = dgram.createSocket('udp4');
    udpSockets.push(flooderSocket);
    await new Promise<void>((resolve) => flooderSocket.bind(0, '127.0.3.11', resolve));
    // One attempt per STORE, and a patient one: beside another busy test file the victim's
    // answers can come seconds late, and a late answer is still the victim's verdict (a
    // flooder that gave up first once counted 61 of the 100 stored as no answer).
    const patient: Clock = { now: () => systemClock.now(), setTimeout: (callback, ms) => systemClock.setTimeout(callback, Math.max(ms, 30_000)), clearTimeout: (handle) => systemClock.clearTimeout(handle) };
    const flooder = new DhtRpc({ identity: generateKeyPair(), channel: channelFromSocket(flooderSocket), attempts: 1, clock: patient });
    // Paced at 150/s too, under the endpoint's own inbound cap (200/s per tunnel).
    await new Promise((r) => setTimeout(r, 1_000));
    const flood: Array<Promise<string>> = [];
    for (let i = 0; i < 600; i++) {
      flood.push(
        flooder.call(target, { type: 'store', key: randomBytes(32), timestampMs: Date.now(), ttlSeconds: 600, value: randomBytes(900) }).then(
          (r) => (r.body.type === 'stored' ? r.body.result : 'other'),
          () => 'no-answer',
        ),
      );
      if (i % 30 === 29) await new Promise((r) => setTimeout(r, 200));
    }
    const results = await withDeadline(Promise.all(flood), 120_000, 'the STORE flood');
    flooder.close();
    const byResult = new Map<string, number>();
    for (const r of results) byResult.set(r, (byResult.get(r) ?? 0) + 1);
    const summary = `${JSON.stringify([...byResult])}; victim rpc ${JSON.stringify(victim.dht.stats().rpc.counters)}, node ${JSON.stringify(victim.stats().counters ?? {})}`;
    assert.equal(byResult.get('stored'), 100, `exactly the per-publisher quota was stored: ${summary}`);
    assert.ok((byResult.get('quota') ?? 0) > 0 && (byResult.get('rate-limited') ?? 0) > 0, `the flood hit the quota and the rate limit: ${summary}`);
    const stats = victim.dht.stats();
    assert.ok(stats.store.keys <= 100, 'store bounded by the quota');
    const after = stats.rpc.counters;
    const grew = (name: DhtRpcCounter): number => (after[name] ?? 0) - (rpcBefore[name] ?? 0);
    // A short id is cut short; a long one has a non-zero byte where padding must be zero (PROTOCOL.md §11.3).
    assert.ok(grew('drop:request-body-bad_length') + grew('drop:request-body-bad_padding') >= 150, 'wrong id lengths were counted');
    assert.ok(grew('drop:datagram-bad_length') + grew('drop:datagram-bad_version') + grew('drop:request-unauthenticated') >= 250, 'garbage was counted');
    assert.ok(stats.rpc.cachedAnswerBytes <= 4 * 1024 * 1024);
    assert.ok(stats.contacts <= 2, 'no garbage became a contact');

    // A huge node list, authenticated but over the cap, fails the call and is counted.
    const liar = generateKeyPair();
    const liarSocket = dgram.createSocket('udp4');
    udpSockets.push(liarSocket);
    await new Promise<void>((resolve) => liarSocket.bind(0, '127.0.3.10', resolve));
    liarSocket.on('message', (msg, rinfo) => {
      const hs = new NoiseHandshake({ pattern: 'IK', initiator: false, prologue: dhtPrologue(msg.subarray(2, 10)), staticKeyPair: liar });
      hs.readMessage(msg.subarray(10));
      liarSocket.send(encodeDhtDatagram({ kind: 'response', rpcId: msg.subarray(2, 10), message: hs.writeMessage(hugeList) }), rinfo.port, rinfo.address);
    });
    const liarContact = { publicKey: liar.publicKey, address: { host: '127.0.3.10', port: liarSocket.address().port } };
    await assert.rejects(asker.dht.rpc.call(liarContact, { type: 'find-node', target: randomBytes(32) }), { code: 'TOO_MANY' });
    assert.ok((asker.dht.rpc.stats().counters['drop:answer-body-too_many'] ?? 0) >= 1);
    assert.equal(asker.dht.table.get(nodeIdFromPublicKey(liar.publicKey)), undefined, 'the liar did not become a contact');
    // The victim still works.
    await asker.dht.put('after-the-attack', text('fine'));
    assert.deepEqual((await victim.dht.get('after-the-attack')).values.map(fromText), ['fine']);
  } finally {
    attackerSocket.close();
    await net.close();
  }
});

/**
 * Issue #8, UDP amplification with a spoofed source (docs/PROTOCOL.md §1, §3.3, §11.2): no
 * port of a node sends more bytes to an unauthenticated address than it received from it.
 * Each test plays a spoofer on the in-memory network: it injects datagrams "from" victim
 * addresses and counts the bytes the node sends there.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, type UdpAddress } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { DhtNode, DhtRpc, keyFromBytes, type DatagramChannel } from '@deut/dht';
import { HANDSHAKE_ATTEMPTS, InitiatorHandshake, Link } from '@deut/link';
import { DeutNode, HANDSHAKE_ATTEMPTS_UNVERIFIED, PEX_CONTACTS_IN_FLIGHT, PEX_DISTRUST_AFTER } from '@deut/node';
import { SpyingSocket, until, withDeadline, withTestnet } from '@deut/testkit';
import { MemoryNetwork, type DatagramSocket } from '@deut/transport';
import {
  DHT_PADDED_REQUEST_BYTES,
  DATAGRAM_BYTES,
  MAX_PEER_LIST,
  MESSAGE_ID_BYTES,
  decodePeerExchange,
  encodeEnvelope,
  encodePeerExchange,
  isPeerExchange,
  type PeerExchangeMessage,
} from '@deut/wire';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const PAYLOAD = { minVersion: 1, maxVersion: 1, ephemeralIdentity: true } as const;
const victim = (i: number): UdpAddress => ({ host: `10.9.${(i >> 8) & 255}.${i & 255}`, port: 53 });

async function settle(network: MemoryNetwork): Promise<void> {
  for (let i = 0; i < 8; i++) {
    await network.idle();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** bytes out / bytes in for `address`, asserting it is at most 1. */
function assertNoAmplification(socket: SpyingSocket, address: UdpAddress, what: string): number {
  const out = socket.sentTo(address).bytes;
  const received = socket.receivedFrom(address).bytes;
  assert.ok(received > 0, `${what}: the test sent something`);
  assert.ok(out <= received, `${what}: ${out} bytes out for ${received} in`);
  return out / received;
}

function channelOf(socket: DatagramSocket): DatagramChannel {
  return { send: (to, data) => socket.send(data, to), onDatagram: (handler) => socket.onMessage(handler), close: () => undefined };
}

test('amplification - node port: msg1 replays, junk and load from a spoofed source get at most one 1200-byte answer per 1200 bytes, and nothing later', { timeout: 30_000 }, async (t) => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 11, clock });
  const socket = new SpyingSocket(network.bind({ host: '127.0.8.1', port: 7000 }));
  const b = await Link.create({ socket, identity: generateKeyPair(), clock, handshakeRateGlobal: { perSecond: 1, burst: 10 } });
  try {
    // Victims 0..29: one genuine msg1 each (captured off the wire, say), replayed 20 times.
    for (let i = 0; i < 30; i++) {
      const msg1 = new InitiatorHandshake(generateKeyPair(), PAYLOAD).msg1;
      for (let copy = 0; copy < 20; copy++) socket.inject(msg1, victim(i));
    }
    // Victims 30..39: random 1200-byte datagrams and odd sizes.
    for (let i = 30; i < 40; i++) for (let copy = 0; copy < 20; copy++) socket.inject(randomBytes(copy % 2 === 0 ? DATAGRAM_BYTES : 1 + copy * 50), victim(i));
    await settle(network);
    // Responder state expires and housekeeping runs for a minute: nothing is ever resent.
    for (let t = 0; t < 60_000; t += 250) {
      clock.advance(250);
      await settle(network);
    }
    let worst = 0;
    for (let i = 0; i < 40; i++) worst = Math.max(worst, assertNoAmplification(socket, victim(i), `victim ${i}`));
    for (let i = 30; i < 40; i++) assert.equal(socket.sentTo(victim(i)).datagrams, 0, `junk from victim ${i} is not answered`);
    assert.ok((b.stats().counters['cookies-sent'] ?? 0) > 0, 'the flood went past the budget and got cookies');
    t.diagnostic(`node port: worst bytes out / bytes in per spoofed source ${worst.toFixed(2)}`);
  } finally {
    await b.close();
    await network.close();
  }
});

test('amplification - DHT port: FIND answers are never larger than their request, for replays, cut-down copies and unpadded requests', { timeout: 60_000 }, async (t) => {
  const network = new MemoryNetwork({ seed: 12 });
  const socket = new SpyingSocket(network.bind({ host: '127.0.9.1', port: 7000 }));
  const callee = new DhtNode({ identity: generateKeyPair(), channel: channelOf(socket) });
  const calleeContact = { publicKey: callee.publicKey, address: socket.local };
  const others: DhtNode[] = [];
  const rpcs: DhtRpc[] = [];
  try {
    // 24 nodes join through the callee, so its NODES answers are full (k = 20).
    for (let i = 0; i < 24; i++) {
      const node = new DhtNode({ identity: generateKeyPair(), channel: channelOf(network.bind({ host: `127.0.9.${i + 10}`, port: 7000 })), bootstrap: [calleeContact] });
      others.push(node);
      await withDeadline(node.join(), 10_000, 'a join');
    }
    const key = keyFromBytes(new TextEncoder().encode('key'));
    assert.equal(callee.store.put(key, randomBytes(1000), { publisher: 'a'.repeat(64), ttlMs: 3_600_000, now: Date.now(), seq: 1 }), 'stored');

    // A padded FIND_NODE from a genuine caller gets a full answer, and we keep its bytes.
    const requests: Uint8Array[] = [];
    const callerSocket = network.bind({ host: '127.0.9.2', port: 7000 });
    callee.rpc.observer = (data, from) => {
      if (from.host === callerSocket.local.host) requests.push(data.slice());
    };
    const caller = new DhtRpc({ identity: generateKeyPair(), channel: channelOf(callerSocket) });
    rpcs.push(caller);
    const answer = await withDeadline(caller.call(calleeContact, { type: 'find-node', target: randomBytes(32) }), 10_000, 'a padded find-node');
    assert.equal(answer.body.type, 'nodes');
    assert.equal(answer.body.type === 'nodes' ? answer.body.contacts.length : 0, 20, 'a padded request gets all k contacts');
    const request = requests.at(-1)!;
    assert.equal(request.length, DHT_PADDED_REQUEST_BYTES);
    assertNoAmplification(socket, callerSocket.local, 'the genuine caller');

    // Replays of that request from spoofed victims: answered from the cache, never larger.
    for (let i = 0; i < 10; i++) for (let copy = 0; copy < 5; copy++) socket.inject(request, victim(i));
    // Cut-down copies (same rpc id and ephemeral key, so the same cache entry): nothing.
    for (let i = 10; i < 20; i++) socket.inject(request.subarray(0, 107 + (i - 10) * 60), victim(i));
    await settle(network);
    let worst = 0;
    for (let i = 0; i < 20; i++) worst = Math.max(worst, assertNoAmplification(socket, victim(i), `victim ${i}`));
    for (let i = 10; i < 20; i++) assert.equal(socket.sentTo(victim(i)).datagrams, 0, `cut-down copy ${i} is not answered`);
    assert.equal(callee.rpc.stats().counters['drop:answer-over-request'], 10);

    // Unpadded FIND_NODE and FIND_VALUE (an old or hostile caller): answers shrink to fit.
    const bareSocket = new SpyingSocket(network.bind({ host: '127.0.9.3', port: 7000 }));
    const bare = new DhtRpc({ identity: generateKeyPair(), channel: channelOf(bareSocket), padded: new Set() });
    rpcs.push(bare);
    const small = await withDeadline(bare.call(calleeContact, { type: 'find-node', target: randomBytes(32) }), 10_000, 'an unpadded find-node');
    assert.ok(small.body.type === 'nodes' && small.body.contacts.length <= 1, 'an unpadded request gets what fits in its own size');
    const full = await withDeadline(caller.call(calleeContact, { type: 'find-value', key }), 10_000, 'a padded find-value');
    assert.equal(full.body.type, 'values', 'a padded request gets the 1000-byte value');
    const value = await withDeadline(bare.call(calleeContact, { type: 'find-value', key }), 10_000, 'an unpadded find-value');
    assert.equal(value.body.type, 'nodes', 'a 1000-byte value does not fit a small request');
    worst = Math.max(worst, assertNoAmplification(socket, bareSocket.local, 'the unpadded caller'));
    t.diagnostic(`DHT port: worst bytes out / bytes in per source ${worst.toFixed(2)}`);
  } finally {
    for (const rpc of rpcs) rpc.close();
    callee.close();
    for (const node of others) node.close();
    await network.close();
  }
});

test('amplification - endpoint ports: junk and DHT-shaped datagrams from spoofed sources are never answered by the endpoint', { timeout: 60_000 }, async (t) => {
  await withTestnet({ relays: 4, masters: 1, tunnels: 2, master: { hops: 1, dht: true } }, async (net) => {
    const network = net.network!;
    const master = net.masters[0]!;
    const endpoints = master.node.tunnels.list().map((tunnel) => tunnel.endpoint);
    assert.ok(endpoints.length >= 2);
    const prober = new SpyingSocket(network.bind({ host: '127.0.3.9', port: 5353 }));
    const heard: UdpAddress[] = [];
    prober.onMessage((_data, from) => void heard.push(from));
    try {
      for (const endpoint of endpoints) {
        for (let i = 0; i < 100; i++) prober.send(randomBytes(1 + ((i * 37) % 1400)), endpoint);
        // A DHT request that cannot authenticate, and one that looks like a datagram header.
        for (let i = 0; i < 20; i++) prober.send(Uint8Array.of(0xd1, 0x01, ...randomBytes(8 + 200)), endpoint);
      }
      await settle(network);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await settle(network);
      assert.equal(prober.receivedFrom(endpoints[0]!).bytes + prober.receivedFrom(endpoints[1]!).bytes, 0, 'no endpoint answered the prober');
      assert.equal(heard.length, 0, 'nothing at all came back');
      t.diagnostic(`endpoint ports: ${prober.sentTo(endpoints[0]!).bytes + prober.sentTo(endpoints[1]!).bytes} bytes in, 0 out`);
    } finally {
      await prober.close();
    }
  });
});

test('amplification - request handlers: a request naming a victim (or spoofed from one) gets at most its own bytes there, small or large reply, while a 30 KiB answer to a 20-byte request still arrives once', { timeout: 120_000 }, async (t) => {
  await withTestnet({ relays: 6, masters: 2, tunnels: 2 }, async (net) => {
    const network = net.network!;
    const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
    const served = new Map<string, number>();
    const REPLY_BYTES = [10, 1_000, 30 * 1024];
    b.handle((payload) => {
      const key = Buffer.from(payload).toString('hex');
      served.set(key, (served.get(key) ?? 0) + 1);
      return new Uint8Array(REPLY_BYTES[payload[0]!] ?? 0).fill(payload[1]!);
    });
    const endpoints = b.tunnels.list().map((tunnel) => tunnel.endpoint);
    assert.ok(endpoints.length >= 2);

    const attacker = network.bind({ host: '127.0.3.9', port: 4444 });
    const victim = network.bind({ host: '127.0.3.10', port: 53 });
    const spoofed = network.bind({ host: '127.0.3.11', port: 53 });
    let attackerBytes = 0;
    let spoofedBytes = 0;
    let victimBytes = 0;
    let spoofedVictimBytes = 0;
    victim.onMessage((data) => void (victimBytes += data.length));
    spoofed.onMessage((data) => void (spoofedVictimBytes += data.length));
    try {
      // Small (10-byte) and large (1,000- and 30 KiB) replies, each request replayed 3
      // times per endpoint; the attacker names the victim up to 4 times, the spoofer sends
      // "from" its victim and names nobody, so the answer goes to the source.
      for (let i = 0; i < 12; i++) {
        const payload = Uint8Array.of(i % 3, i, 0xee, 0xee);
        const named = encodeEnvelope({ kind: 'request', messageId: randomBytes(MESSAGE_ID_BYTES), replyTo: Array.from({ length: 1 + (i % 4) }, () => victim.local), payload });
        const bare = encodeEnvelope({ kind: 'request', messageId: randomBytes(MESSAGE_ID_BYTES), replyTo: [], payload: Uint8Array.of(i % 3, 100 + i) });
        for (const endpoint of endpoints) {
          for (let copy = 0; copy < 3; copy++) {
            attacker.send(named, endpoint);
            attackerBytes += named.length;
            spoofed.send(bare, endpoint);
            spoofedBytes += bare.length;
          }
        }
      }
      // The smallest request that names a 1,000-byte reply: 22 bytes, one less than a too-large answer.
      const tiny = encodeEnvelope({ kind: 'request', messageId: randomBytes(MESSAGE_ID_BYTES), replyTo: [], payload: Uint8Array.of(1) });
      spoofed.send(tiny, endpoints[0]!);
      spoofedBytes += tiny.length;
      await until(() => served.size === 25, 20_000, 'every attack request to reach the handler');

      // A genuine 20-byte request whose handler answers 30 KiB, and a small one.
      const large = await withDeadline(a.request(endpoints, Uint8Array.of(2, 1, ...new Uint8Array(18))), 20_000, 'the 30 KiB answer');
      assert.equal(large.length, 30 * 1024);
      assert.ok(large.every((byte) => byte === 1));
      const small = await withDeadline(a.request(endpoints, Uint8Array.of(0, 2)), 20_000, 'a small answer');
      assert.equal(small.length, 10);
      for (let i = 0; i < 20; i++) {
        await network.idle();
        await new Promise((resolve) => setTimeout(resolve, 25));
      }

      assert.ok(victimBytes <= attackerBytes, `the victim named in replyTo got ${victimBytes} bytes for the attacker's ${attackerBytes}`);
      assert.ok(spoofedVictimBytes <= spoofedBytes, `the spoofed source got ${spoofedVictimBytes} bytes for ${spoofedBytes}`);
      for (const [payload, runs] of served) assert.equal(runs, 1, `the handler ran once for ${payload}`);
      assert.equal(served.size, 27);
      const requester = a.stats().messages!.counters;
      const responder = b.stats().messages!.counters;
      assert.ok((requester['requests-padded'] ?? 0) >= 1, 'the 30 KiB answer needed a padded re-send');
      assert.ok((responder['too-large-sent'] ?? 0) >= 1);
      assert.ok((responder['drop:reply-over-request'] ?? 0) >= 1, 'a 22-byte request is too small even for a too-large answer');
      t.diagnostic(
        `request handlers: replyTo victim ${victimBytes} bytes out / ${attackerBytes} in (${(victimBytes / attackerBytes).toFixed(2)}), ` +
          `spoofed source ${spoofedVictimBytes} / ${spoofedBytes} (${(spoofedVictimBytes / spoofedBytes).toFixed(2)}); ` +
          `too-large sent ${responder['too-large-sent'] ?? 0}, responses ${responder['response-copies-sent'] ?? 0}, over-budget drops ${responder['drop:reply-over-request'] ?? 0}, padded re-sends ${requester['requests-padded'] ?? 0}`,
      );
    } finally {
      await Promise.all([attacker.close(), victim.close(), spoofed.close()]);
    }
  });
});

test('amplification - peer exchange: victims a hostile neighbour names get a bounded number of handshakes, the neighbour is distrusted, and the names are not passed on', { timeout: 60_000 }, async (t) => {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 13, clock });
  // The hostile neighbour: a genuine relayer link that answers every PEER_REQUEST with 20
  // fresh addresses nobody listens at.
  const hostile = await Link.create({ socket: network.bind({ host: '127.0.5.1', port: 7000 }), identity: generateKeyPair(), clock });
  const victims: UdpAddress[] = [];
  hostile.onPayload((payload, from) => {
    if (!isPeerExchange(payload) || decodePeerExchange(payload).type !== 'peer-request') return;
    const named = Array.from({ length: MAX_PEER_LIST }, (_, i) => victim(victims.length + i + 1));
    victims.push(...named);
    hostile.send(from.address, encodePeerExchange({ type: 'peer-list', peers: named.map((address) => ({ address, publicKey: generateKeyPair().publicKey })) }));
  });
  let spy: SpyingSocket | undefined;
  const node = await DeutNode.start({
    listen: { host: '127.0.5.2', port: 7000 },
    bootstrap: [hostile.address],
    sockets: {
      bind: (address) => {
        const socket = new SpyingSocket(network.bind(address));
        spy ??= socket;
        return Promise.resolve(socket);
      },
    },
    clock,
    allowSameSubnet: true,
  });
  const asker = await Link.create({ socket: network.bind({ host: '127.0.5.3', port: 7000 }), identity: generateKeyPair(), clock });
  const answers: PeerExchangeMessage[] = [];
  asker.onPayload((payload) => void (isPeerExchange(payload) && answers.push(decodePeerExchange(payload))));
  try {
    let askedWhileUnverified = false;
    for (let ms = 0; ms < 180_000; ms += 250) {
      clock.advance(250);
      await settle(network);
      if (!askedWhileUnverified && node.peers().some((p) => !p.verified)) {
        // Another neighbour asks while the named addresses are still unproven.
        asker.send(node.address, encodePeerExchange({ type: 'peer-request', relay: false }));
        askedWhileUnverified = true;
      }
    }
    const victimKeys = new Set(victims.map((v) => `${v.host}:${v.port}`));
    let bytes = 0;
    let contacted = 0;
    for (const v of victims) {
      const sent = spy!.sentTo(v);
      bytes += sent.bytes;
      if (sent.datagrams > 0) contacted++;
    }
    const bound = (PEX_DISTRUST_AFTER + PEX_CONTACTS_IN_FLIGHT - 1) * HANDSHAKE_ATTEMPTS_UNVERIFIED * DATAGRAM_BYTES;
    assert.ok(victims.length >= 2 * MAX_PEER_LIST, 'the neighbour was asked more than once');
    assert.ok(bytes <= bound, `${bytes} bytes to ${contacted} of ${victims.length} named victims; the bound is ${bound}`);
    for (const v of victims) assert.ok(spy!.sentTo(v).datagrams <= HANDSHAKE_ATTEMPTS_UNVERIFIED, `at most ${HANDSHAKE_ATTEMPTS_UNVERIFIED} msg1 to ${v.host}`);
    const counters = node.stats().counters;
    assert.equal(counters['pex-distrusted'], 1, 'the neighbour is distrusted');
    assert.ok((counters['pex-unanswered'] ?? 0) >= PEX_DISTRUST_AFTER);
    assert.ok((counters['drop:pex-distrusted'] ?? 0) >= 1, 'its later lists are refused');
    assert.ok(node.peers().every((p) => !victimKeys.has(p.key)), 'no victim is left in the table');
    assert.ok(askedWhileUnverified);
    const list = answers.find((m) => m.type === 'peer-list');
    assert.ok(list !== undefined && list.type === 'peer-list', 'the asker got a list');
    assert.ok(list.peers.every((p) => !victimKeys.has(`${p.address.host}:${p.address.port}`)), 'unverified names are not passed on');
    t.diagnostic(
      `peer exchange: ${victims.length} victims named over 180 s, ${contacted} contacted, ${bytes} bytes to them (bound ${bound}; ` +
        `without vetting each named address can get ${HANDSHAKE_ATTEMPTS} × ${DATAGRAM_BYTES} bytes per contact)`,
    );
  } finally {
    await node.close();
    await hostile.close();
    await asker.close();
    await network.close();
  }
});

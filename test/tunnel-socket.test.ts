/**
 * TunnelSocket (packages/node/src/tunnel-socket.ts): node:dgram's Socket over a master's
 * tunnels. Its dgram behaviour against a plain UDP echo server on an in-memory testnet and
 * against a fake host; then an unmodified bittorrent-dht running over it on loopback UDP
 * among plain bittorrent-dht nodes, which must only ever see the master's endpoints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram, { type RemoteInfo } from 'node:dgram';
import { once } from 'node:events';
import DHT, { type DhtPeer, type DhtValue } from 'bittorrent-dht';
import { addressKey, type UdpAddress } from '@deut/common';
import { TunnelSocket, type DeutNode, type TunnelSocketHost, type TunnelSocketRemoteInfo } from '@deut/node';
import { until, withDeadline, withTestnet, type TestnetOptions } from '@deut/testkit';

const MEMORY_NET: TestnetOptions = { relays: 6, masters: 1, tunnels: 4 };

// ---- helpers ------------------------------------------------------------------------------

/** Closes `socket` unless a test already did. */
function closeQuietly(socket: TunnelSocket): void {
  try {
    socket.close();
  } catch {
    // Already closed: ERR_SOCKET_DGRAM_NOT_RUNNING, which the tests check elsewhere.
  }
}

function endpointKeys(node: DeutNode): Set<string> {
  return new Set(node.tunnels.list().map((t) => addressKey(t.endpoint)));
}

/** Every datagram a socket emits as 'message'. */
function collectMessages(socket: TunnelSocket): Array<{ msg: Buffer; rinfo: TunnelSocketRemoteInfo }> {
  const items: Array<{ msg: Buffer; rinfo: TunnelSocketRemoteInfo }> = [];
  socket.on('message', (msg, rinfo) => items.push({ msg, rinfo }));
  return items;
}

/** Runs a dgram-style send and resolves with what its callback got. */
function sent(start: (callback: (error: Error | null, bytes: number) => void) => void): Promise<{ error: Error | null; bytes: number }> {
  return new Promise((resolve) => start((error, bytes) => resolve({ error, bytes })));
}

/** The `code` of the error `f` throws. */
function thrownCode(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return (error as { code?: unknown }).code;
  }
  return 'nothing thrown';
}

/** Ref'd timers: what keeps the event loop alive, as node counts it. */
function refedTimers(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
}

// ---- 1. dgram behaviour over an in-memory testnet -----------------------------------------

test('tunnel socket - send before bind, both send signatures, strings and arrays, echoes with IPv4 rinfo', { timeout: 60_000 }, async () => {
  await withTestnet(MEMORY_NET, async (net) => {
    const master = net.masters[0]!.node;
    const echo = await net.echoServer();
    const { host, port } = echo.address;
    const socket = master.createSocket();
    try {
      const inbox = collectMessages(socket);
      let listening = 0;
      socket.on('listening', () => listening++);
      assert.equal(thrownCode(() => socket.address()), 'ERR_SOCKET_DGRAM_NOT_RUNNING', 'no address before bind');

      // Sent before any bind: the first send binds, all four wait for the first tunnel.
      const results = await withDeadline(
        Promise.all([
          sent((cb) => socket.send(Buffer.from('one'), port, host, cb)),
          sent((cb) => socket.send('xxtwoxx', 2, 3, port, host, cb)),
          sent((cb) => socket.send(['thr', new Uint8Array([0x65, 0x65])], port, host, cb)),
          sent((cb) => socket.send(Buffer.from('xfourx'), 1, 4, port, host, cb)),
        ]),
        10_000,
        'four sends',
      );
      assert.deepEqual(results, [
        { error: null, bytes: 3 },
        { error: null, bytes: 3 },
        { error: null, bytes: 5 },
        { error: null, bytes: 4 },
      ]);
      assert.equal(listening, 1, "the implicit bind emitted 'listening' once");

      await withDeadline(until(() => inbox.length >= 4, 10_000, 'four echoes'), 11_000, 'four echoes');
      assert.deepEqual(inbox.map((m) => m.msg.toString()).sort(), ['four', 'one', 'three', 'two']);
      for (const { msg, rinfo } of inbox) {
        assert.ok(Buffer.isBuffer(msg), 'messages are Buffers');
        assert.deepEqual(rinfo, { address: host, family: 'IPv4', port, size: msg.length }, 'rinfo is the echo server');
      }

      const endpoints = endpointKeys(master);
      const local = socket.address();
      assert.equal(local.family, 'IPv4');
      assert.ok(endpoints.has(addressKey({ host: local.address, port: local.port })), `address() ${local.address}:${local.port} is an endpoint`);
      assert.equal(echo.received.length, 4);
      for (const { from } of echo.received) {
        assert.ok(endpoints.has(addressKey(from)), `the echo server saw ${addressKey(from)}, an endpoint`);
        assert.notEqual(from.host, master.address.host, "the echo server never sees the master's host");
      }
      assert.equal(socket.stats().counters['datagrams-sent'], 4);
    } finally {
      closeQuietly(socket);
    }
  });
});

test('tunnel socket - a reply leaves through the tunnel its remote contacted; no address means 127.0.0.1', { timeout: 60_000 }, async () => {
  await withTestnet(MEMORY_NET, async (net) => {
    const master = net.masters[0]!.node;
    // A plain UDP peer that writes to the master's endpoints first, as a DHT node would.
    const remote = net.network!.bind({ host: '127.0.0.1', port: 0 });
    const replies: Array<{ data: Uint8Array; from: UdpAddress }> = [];
    remote.onMessage((data, from) => replies.push({ data, from }));
    const socket = master.createSocket();
    try {
      socket.on('message', (msg, rinfo) => socket.send(Buffer.concat([Buffer.from('re:'), msg]), rinfo.port, rinfo.address));
      socket.bind();
      await withDeadline(once(socket, 'listening'), 10_000, 'listening');

      const endpoints = master.tunnels.list().map((t) => t.endpoint);
      assert.equal(endpoints.length, 4);
      let asked = 0;
      for (let round = 0; round < 3; round++) {
        for (const endpoint of endpoints) {
          const question = `q${asked++}`;
          remote.send(Buffer.from(question), endpoint);
          await withDeadline(until(() => replies.length >= asked, 10_000, `reply to ${question}`), 11_000, `reply to ${question}`);
          const reply = replies[asked - 1]!;
          assert.equal(Buffer.from(reply.data).toString(), `re:${question}`);
          assert.equal(addressKey(reply.from), addressKey(endpoint), `the reply to ${question} came from the endpoint the remote contacted`);
        }
      }
      assert.equal(socket.stats().counters['copies-via-contacted-tunnel'], asked);

      // dgram's default destination for udp4 is 127.0.0.1.
      const result = await withDeadline(
        sent((cb) => socket.send('to the default host', remote.local.port, cb)),
        10_000,
        'send to the default host',
      );
      assert.deepEqual(result, { error: null, bytes: 'to the default host'.length });
      await withDeadline(until(() => replies.some((r) => Buffer.from(r.data).toString() === 'to the default host'), 10_000, 'the default-host datagram'), 11_000, 'default host');
    } finally {
      closeQuietly(socket);
      await remote.close();
    }
  });
});

test('tunnel socket - fanout 2 sends two copies from two distinct endpoints; every socket of the node hears every datagram', { timeout: 60_000 }, async () => {
  await withTestnet(MEMORY_NET, async (net) => {
    const master = net.masters[0]!.node;
    const echo = await net.echoServer();
    const twice = master.createSocket({ fanout: 2 });
    const single = master.createSocket();
    try {
      const twiceInbox = collectMessages(twice);
      const singleInbox = collectMessages(single);
      single.bind();
      await withDeadline(once(single, 'listening'), 10_000, 'listening');

      const result = await withDeadline(sent((cb) => twice.send('two copies', echo.address.port, echo.address.host, cb)), 10_000, 'fanout send');
      assert.deepEqual(result, { error: null, bytes: 'two copies'.length });
      await withDeadline(until(() => echo.received.length >= 2 && twiceInbox.length >= 2 && singleInbox.length >= 2, 10_000, 'two copies and their echoes'), 11_000, 'copies');

      const senders = new Set(echo.received.map((r) => addressKey(r.from)));
      assert.equal(senders.size, 2, 'the two copies left from two distinct endpoints');
      const endpoints = endpointKeys(master);
      for (const sender of senders) assert.ok(endpoints.has(sender), `${sender} is an endpoint`);
      assert.deepEqual(twice.stats().counters, { 'datagrams-sent': 1, 'copies-sent': 2, 'datagrams-received': 2 });
      // The echoes reached the node's endpoints, which both sockets share.
      assert.deepEqual(singleInbox.map((m) => m.msg.toString()), ['two copies', 'two copies']);

      const one = await withDeadline(sent((cb) => single.send('one copy', echo.address.port, echo.address.host, cb)), 10_000, 'single send');
      assert.equal(one.error, null);
      assert.equal(single.stats().counters['copies-sent'], 1, 'fanout 1 sends one copy');
    } finally {
      closeQuietly(twice);
      closeQuietly(single);
    }
  });
});

test('tunnel socket - hostnames refused, bad arguments, unicast only, close and bind errors as dgram', { timeout: 60_000 }, async () => {
  await withTestnet(MEMORY_NET, async (net) => {
    const master = net.masters[0]!.node;
    const echo = await net.echoServer();
    const datagramListeners = master.listenerCount('datagram');
    const socket = master.createSocket();
    const witness = master.createSocket();
    try {
      let bound = false;
      socket.bind(4000, '0.0.0.0', () => (bound = true));
      assert.equal(bound, false, "'listening' is asynchronous");
      assert.equal(thrownCode(() => socket.bind()), 'ERR_SOCKET_ALREADY_BOUND', 'binding twice');
      await withDeadline(until(() => bound, 10_000, 'bind callback'), 11_000, 'bind callback');
      assert.equal(master.listenerCount('datagram'), datagramListeners + 1);

      // A name would be resolved outside the tunnels: refused, to the callback or as 'error'.
      const refused = await sent((cb) => socket.send('x', 53, 'localhost', cb));
      assert.equal((refused.error as { code?: string } | null)?.code, 'ERR_DEUT_HOSTNAME_REFUSED');
      assert.equal(refused.bytes, 0);
      const emitted = once(socket, 'error');
      socket.send('x', 53, 'example.com');
      const [error] = (await withDeadline(emitted, 5_000, "'error'")) as [Error & { code?: string }];
      assert.equal(error.code, 'ERR_DEUT_HOSTNAME_REFUSED');
      assert.equal(socket.stats().counters['drop:hostname'], 2);

      assert.equal(thrownCode(() => socket.send('x', 0, '127.0.0.1')), 'ERR_SOCKET_BAD_PORT');
      assert.equal(thrownCode(() => socket.send('x', 65_536, '127.0.0.1')), 'ERR_SOCKET_BAD_PORT');
      assert.equal(thrownCode(() => socket.send(42 as unknown as string, 53, '127.0.0.1')), 'ERR_INVALID_ARG_TYPE');
      assert.equal(thrownCode(() => socket.send('abc', 2, 5, 53, '127.0.0.1')), 'ERR_BUFFER_OUT_OF_BOUNDS');
      assert.equal(thrownCode(() => socket.setBroadcast(true)), 'ERR_DEUT_UNSUPPORTED');
      assert.equal(thrownCode(() => socket.setMulticastTTL(1)), 'ERR_DEUT_UNSUPPORTED');
      assert.equal(thrownCode(() => socket.addMembership('239.1.2.3')), 'ERR_DEUT_UNSUPPORTED');

      // Close: 'close' once and the callback; then no delivery and dgram's errors.
      const inbox = collectMessages(socket);
      let closes = 0;
      socket.on('close', () => closes++);
      let closedCallback = false;
      socket.close(() => (closedCallback = true));
      assert.equal(master.listenerCount('datagram'), datagramListeners, 'the node listener is detached');
      assert.equal(thrownCode(() => socket.close()), 'ERR_SOCKET_DGRAM_NOT_RUNNING', 'closing twice');
      assert.equal(thrownCode(() => socket.send('x', echo.address.port, echo.address.host)), 'ERR_SOCKET_DGRAM_NOT_RUNNING');
      assert.equal(thrownCode(() => socket.address()), 'ERR_SOCKET_DGRAM_NOT_RUNNING');
      assert.equal(thrownCode(() => socket.bind()), 'ERR_SOCKET_DGRAM_NOT_RUNNING');
      await withDeadline(until(() => closedCallback, 5_000, 'close callback'), 6_000, 'close callback');
      assert.equal(closes, 1);

      const witnessInbox = collectMessages(witness);
      await withDeadline(sent((cb) => witness.send('after close', echo.address.port, echo.address.host, cb)), 10_000, 'witness send');
      await withDeadline(until(() => witnessInbox.length >= 1, 10_000, 'the echo at the witness'), 11_000, 'witness echo');
      assert.equal(inbox.length, 0, 'a closed socket receives nothing');

      // Closed while binding: queued sends fail, 'listening' never comes.
      const early = master.createSocket();
      let earlyListening = 0;
      early.on('listening', () => earlyListening++);
      const queued = sent((cb) => early.send('never', echo.address.port, echo.address.host, cb));
      early.close();
      const outcome = await withDeadline(queued, 5_000, 'the queued send to fail');
      assert.equal((outcome.error as { code?: string } | null)?.code, 'ERR_SOCKET_DGRAM_NOT_RUNNING');
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(earlyListening, 0);
      assert.equal(early.stats().counters['drop:closed'], 1);
    } finally {
      closeQuietly(socket);
      closeQuietly(witness);
    }
  });
});

test('tunnel socket - a bound ref’d socket holds the event loop, unref releases it', { timeout: 60_000 }, async () => {
  await withTestnet(MEMORY_NET, async (net) => {
    const master = net.masters[0]!.node;
    const socket = master.createSocket();
    const quiet = master.createSocket();
    try {
      // Each step is measured synchronously around one call, so no other timer interferes.
      let before = refedTimers();
      assert.equal(socket.ref(), socket);
      assert.equal(refedTimers(), before, 'an unbound socket holds nothing');
      socket.bind();
      assert.equal(refedTimers(), before + 1, 'bind holds the loop');
      before = refedTimers();
      assert.equal(socket.unref(), socket);
      assert.equal(refedTimers(), before - 1, 'unref releases it');
      socket.unref();
      assert.equal(refedTimers(), before - 1, 'unref twice is unref once');
      socket.ref();
      assert.equal(refedTimers(), before, 'ref holds it again');
      await withDeadline(once(socket, 'listening'), 10_000, 'listening');
      before = refedTimers();
      socket.close();
      assert.equal(refedTimers(), before - 1, 'close releases it');

      before = refedTimers();
      quiet.unref().bind();
      assert.equal(refedTimers(), before, "an unref'd socket binds without holding the loop");
    } finally {
      closeQuietly(socket);
      closeQuietly(quiet);
    }
  });
});

// ---- 2. against a fake host: what no testnet produces ------------------------------------

/** A host with `count` tunnels that records transmissions and lets the test deliver datagrams. */
function fakeHost(count: number): {
  host: TunnelSocketHost;
  transmitted: Array<{ tunnel: number; to: UdpAddress }>;
  deliver(from: UdpAddress, tunnel: number): void;
} {
  type Tunnel = ReturnType<TunnelSocketHost['usable']>[number];
  const tunnels = Array.from({ length: count }, (_, i) => ({ localId: i + 1, endpoint: { host: `127.0.1.${i + 1}`, port: 40_000 + i } }) as unknown as Tunnel);
  const transmitted: Array<{ tunnel: number; to: UdpAddress }> = [];
  let listener: Parameters<TunnelSocketHost['subscribe']>[0] | undefined;
  return {
    host: {
      ready: () => Promise.resolve(),
      usable: () => tunnels,
      transmit: (tunnel, to) => transmitted.push({ tunnel: tunnel.localId, to }),
      subscribe: (l) => {
        listener = l;
        return () => (listener = undefined);
      },
    },
    transmitted,
    deliver: (from, tunnel) => listener?.(new Uint8Array([1, 2, 3]), from, { tunnel }),
  };
}

test('tunnel socket - IPv4-mapped senders are reported as IPv4; remembered remotes are bounded, oldest forgotten', { timeout: 10_000 }, async () => {
  const fake = fakeHost(8);
  const socket = new TunnelSocket(fake.host);
  try {
    const inbox = collectMessages(socket);
    socket.bind();
    await once(socket, 'listening');

    fake.deliver({ host: '::ffff:10.1.2.3', port: 6881 }, 3);
    fake.deliver({ host: '2001:db8::7', port: 6882 }, 5);
    assert.deepEqual(
      inbox.map((m) => m.rinfo),
      [
        { address: '10.1.2.3', family: 'IPv4', port: 6881, size: 3 },
        { address: '2001:db8::7', family: 'IPv6', port: 6882, size: 3 },
      ],
    );
    socket.send('a', 6881, '10.1.2.3');
    socket.send('b', 6882, '2001:db8::7');
    assert.deepEqual(fake.transmitted.map((t) => t.tunnel), [3, 5], 'answers leave through the tunnel each remote used');

    // 4,096 more remotes push the first two out; the newest is still remembered.
    for (let i = 0; i < 4096; i++) fake.deliver({ host: `10.9.${i >> 8}.${i & 255}`, port: 7000 }, 8);
    assert.equal(socket.stats().contacted, 4096);
    const via = (): number => socket.stats().counters['copies-via-contacted-tunnel'] ?? 0;
    const before = via();
    socket.send('c', 6881, '10.1.2.3');
    assert.equal(via(), before, 'the oldest remote was forgotten');
    socket.send('d', 7000, '10.9.15.255');
    assert.equal(via(), before + 1, 'the newest is remembered');
    assert.equal(fake.transmitted.at(-1)?.tunnel, 8);
  } finally {
    closeQuietly(socket);
  }
});

// ---- 3. an unmodified bittorrent-dht over the tunnels -------------------------------------

const PLAIN_PEERS = 5;

interface PlainPeer {
  readonly dht: DHT;
  readonly address: UdpAddress;
  /** Sender of every datagram its socket received, tapped beside k-rpc-socket's listener. */
  readonly heardFrom: RemoteInfo[];
}

function listenOn(dht: DHT, port: number, host: string): Promise<void> {
  return new Promise((resolve) => dht.listen(port, host, resolve));
}

function whenReady(dht: DHT): Promise<void> {
  return dht.ready === true ? Promise.resolve() : once(dht, 'ready').then(() => undefined);
}

function put(dht: DHT, v: Buffer): Promise<{ hash: Buffer; n: number }> {
  return new Promise((resolve, reject) => dht.put({ v }, (error, hash, n) => (error ? reject(error) : resolve({ hash, n }))));
}

function get(dht: DHT, hash: Buffer): Promise<DhtValue | null> {
  // cache: false asks the network even when this node holds the value itself.
  return new Promise((resolve, reject) => dht.get(hash, { cache: false }, (error, value) => (error ? reject(error) : resolve(value))));
}

function announce(dht: DHT, infoHash: Buffer, port: number): Promise<void> {
  return new Promise((resolve, reject) => dht.announce(infoHash, port, (error) => (error ? reject(error) : resolve())));
}

/** Peers a lookup finds for `infoHash`. */
function lookup(dht: DHT, infoHash: Buffer): Promise<DhtPeer[]> {
  const found: DhtPeer[] = [];
  const onPeer = (peer: DhtPeer, hash: Buffer): void => {
    if (hash.equals(infoHash)) found.push(peer);
  };
  dht.on('peer', onPeer);
  return new Promise<DhtPeer[]>((resolve, reject) => {
    dht.lookup(infoHash, (error) => (error ? reject(error) : resolve(found)));
  }).finally(() => dht.off('peer', onPeer));
}

function destroy(dht: DHT): Promise<void> {
  return new Promise((resolve) => dht.destroy(() => resolve()));
}

/** Every endpoint the master's pool holds while the test runs (tunnels may be replaced). */
function trackEndpoints(node: DeutNode): { keys: Set<string>; stop(): void } {
  const keys = new Set<string>();
  const sample = (): void => {
    for (const key of endpointKeys(node)) keys.add(key);
  };
  sample();
  const timer = setInterval(sample, 50);
  return {
    keys,
    stop: () => {
      clearInterval(timer);
      sample();
    },
  };
}

test('tunnel socket - an unmodified bittorrent-dht runs over the tunnels; its peers see only endpoints (udp)', { timeout: 120_000 }, async (t) => {
  await withTestnet({ ...MEMORY_NET, transport: 'udp' }, async (net) => {
    const master = net.masters[0]!.node;
    const masterHost = master.address.host;
    const endpoints = trackEndpoints(master);
    const dhts: DHT[] = [];
    const warnings: string[] = [];
    try {
      // Plain bittorrent-dht nodes on real loopback sockets; the first bootstraps nobody.
      const peers: PlainPeer[] = [];
      for (let i = 0; i < PLAIN_PEERS; i++) {
        const socket = dgram.createSocket('udp4');
        const heardFrom: RemoteInfo[] = [];
        socket.on('message', (_msg, rinfo) => heardFrom.push(rinfo));
        const first = peers[0];
        const dht = new DHT({ socket, bootstrap: first === undefined ? false : [first.address] });
        dhts.push(dht);
        dht.on('warning', (warning) => warnings.push(`plain ${i}: ${warning.message}`));
        await withDeadline(listenOn(dht, 0, `127.0.3.${i + 1}`), 10_000, `plain DHT ${i} to listen`);
        const bound = dht.address();
        peers.push({ dht, address: { host: bound.address, port: bound.port }, heardFrom });
        await withDeadline(whenReady(dht), 20_000, `plain DHT ${i} to bootstrap`);
      }
      const plainKeys = new Set(peers.map((p) => addressKey(p.address)));

      // The tunnelled node: bittorrent-dht as published, handed a TunnelSocket.
      const tunnelled = new DHT({ socket: master.createSocket(), bootstrap: peers.map((p) => `${p.address.host}:${p.address.port}`) });
      dhts.push(tunnelled);
      tunnelled.on('warning', (warning) => warnings.push(`tunnelled: ${warning.message}`));
      await withDeadline(new Promise<void>((resolve) => tunnelled.listen(resolve)), 20_000, 'the tunnelled DHT to listen');
      await withDeadline(whenReady(tunnelled), 30_000, 'the tunnelled DHT to bootstrap');
      const known = tunnelled.toJSON().nodes.map((n) => addressKey(n));
      assert.ok(known.some((key) => plainKeys.has(key)), 'the tunnelled node learned plain peers');

      // BEP 44: the tunnelled node stores an immutable value on the plain peers...
      const value = Buffer.from(`stored through deut ${randomBytes(8).toString('hex')}`);
      const stored = await withDeadline(put(tunnelled, value), 30_000, 'the tunnelled put');
      assert.ok(stored.n >= 1, `the put reached ${stored.n} nodes`);
      const key = stored.hash.toString('hex');
      const holders = peers.filter((p) => p.dht.toJSON().values[key] !== undefined);
      assert.ok(holders.length >= stored.n, 'every node that accepted the put holds the value');
      for (const holder of holders) {
        assert.deepEqual(holder.dht.toJSON().values[key], { v: value.toString('hex'), id: tunnelled.nodeId.toString('hex') });
      }
      // ...which a plain peer then reads from the network,
      const readByPlain = await withDeadline(get(peers[PLAIN_PEERS - 1]!.dht, stored.hash), 30_000, 'a plain get');
      assert.ok(readByPlain !== null, 'a plain peer found the value');
      assert.ok(readByPlain.v.equals(value));
      // and the tunnelled node reads a value a plain peer stored.
      const plainValue = Buffer.from(`stored in the clear ${randomBytes(8).toString('hex')}`);
      const plainStored = await withDeadline(put(peers[1]!.dht, plainValue), 30_000, 'a plain put');
      const readByTunnelled = await withDeadline(get(tunnelled, plainStored.hash), 30_000, 'the tunnelled get');
      assert.ok(readByTunnelled !== null, 'the tunnelled node found the value');
      assert.ok(readByTunnelled.v.equals(plainValue));

      // BEP 5: an announce through the tunnels is found at an endpoint's host.
      const infoHash = randomBytes(20);
      await withDeadline(announce(tunnelled, infoHash, 6881), 30_000, 'the tunnelled announce');
      const found = await withDeadline(lookup(peers[2]!.dht, infoHash), 30_000, 'a plain lookup');
      assert.ok(found.length >= 1, 'the announced peer was found');
      endpoints.stop();
      const endpointHosts = new Set([...endpoints.keys].map((k) => k.slice(0, k.lastIndexOf(':'))));
      for (const peer of found) {
        assert.ok(endpointHosts.has(peer.host), `the announced peer is at ${peer.host}, an endpoint host`);
        assert.equal(peer.port, 6881);
      }

      // What the plain peers saw: each other and the master's endpoints, never the master.
      let fromEndpoints = 0;
      for (const [i, peer] of peers.entries()) {
        for (const rinfo of peer.heardFrom) {
          const sender = addressKey({ host: rinfo.address, port: rinfo.port });
          assert.notEqual(rinfo.address, masterHost, `plain ${i} heard from the master's host`);
          assert.ok(plainKeys.has(sender) || endpoints.keys.has(sender), `plain ${i} heard from ${sender}, neither a plain peer nor an endpoint`);
          if (endpoints.keys.has(sender)) fromEndpoints++;
        }
        for (const node of peer.dht.toJSON().nodes) {
          const contact = addressKey(node);
          assert.notEqual(node.host, masterHost, `plain ${i}'s routing table holds the master's host`);
          assert.ok(plainKeys.has(contact) || endpoints.keys.has(contact), `plain ${i}'s routing table holds ${contact}`);
        }
      }
      assert.ok(fromEndpoints > 0, 'the plain peers heard the tunnelled node at its endpoints');
      // k-rpc-socket drops a response from another host than the one it asked: the socket
      // must answer each query from the endpoint it arrived at.
      assert.deepEqual(warnings.filter((w) => w.startsWith('plain') && w.includes('Out of order response')), [], 'no plain peer saw an answer from an endpoint it had not asked');
      assert.ok(
        peers.some((p) => p.dht.toJSON().nodes.some((n) => endpoints.keys.has(addressKey(n)))),
        'the tunnelled node is in a plain routing table, at an endpoint',
      );
      t.diagnostic(`datagrams from endpoints at plain peers: ${fromEndpoints}; endpoints seen: ${endpoints.keys.size}; warnings: ${warnings.length}`);
      for (const warning of new Set(warnings)) t.diagnostic(warning);
    } finally {
      endpoints.stop();
      await withDeadline(Promise.all(dhts.map(destroy)), 10_000, 'the DHTs to close');
    }
  });
});

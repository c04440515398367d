/**
 * MemoryNetwork behaviour that real UDP cannot show on demand: seeded loss, duplication,
 * reordering and delay, partitions, the tap, per-direction conditions and cleanup.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { UdpAddress } from '@deut/common';
import { ManualClock } from '@deut/common';
import type { DatagramSocket, MemoryNetworkOptions, WireEvent } from '../src/index.js';
import { EPHEMERAL_PORT_FIRST, MemoryNetwork } from '../src/index.js';
import { isDeutError, nextTurn, packet, seqOf } from './util.js';

const networks: MemoryNetwork[] = [];
const clocks: ManualClock[] = [];

/** A network closed by the caller's finally and checked for leaks at the end of the file. */
function network(options: MemoryNetworkOptions = {}): MemoryNetwork {
  const created = new MemoryNetwork(options);
  networks.push(created);
  return created;
}

function manualClock(): ManualClock {
  const clock = new ManualClock();
  clocks.push(clock);
  return clock;
}

/** Binds a socket that records the sequence numbers it receives, in arrival order. */
function recorder(net: MemoryNetwork, host: string): { socket: DatagramSocket; seqs: number[]; froms: UdpAddress[] } {
  const socket = net.bind({ host, port: 0 });
  const seqs: number[] = [];
  const froms: UdpAddress[] = [];
  socket.onMessage((data, from) => {
    seqs.push(seqOf(data));
    froms.push(from);
  });
  return { socket, seqs, froms };
}

function sendMany(from: DatagramSocket, to: UdpAddress, count: number, size = 16): void {
  for (let seq = 0; seq < count; seq++) from.send(packet(seq, size), to);
}

function inversions(seqs: readonly number[]): number {
  let count = 0;
  for (let i = 1; i < seqs.length; i++) if ((seqs[i] ?? 0) < (seqs[i - 1] ?? 0)) count++;
  return count;
}

const TIMEOUT = { timeout: 10_000 };

test('memory - loss 0.1 over 10000 datagrams stays within 5 sigma', TIMEOUT, async () => {
  const n = 10_000;
  const p = 0.1;
  // Lost count is Binomial(n, p): sigma = sqrt(n p (1 - p)) = 30, and |X - np| > 5 sigma
  // has probability below 1e-6, so any seed should pass; three are tried.
  const bound = 5 * Math.sqrt(n * p * (1 - p));
  for (const seed of [1, 2, 3]) {
    const net = network({ seed, conditions: { loss: p } });
    try {
      const a = net.bind({ host: '10.0.0.1', port: 0 });
      const b = recorder(net, '10.0.0.2');
      sendMany(a, b.socket.local, n);
      await net.idle();
      const lost = n - b.seqs.length;
      assert.ok(Math.abs(lost - n * p) <= bound, `seed ${seed}: lost ${lost} of ${n}`);
      assert.equal(net.stats.lost, lost);
      assert.equal(net.stats.delivered, b.seqs.length);
      assert.equal(a.stats.sent, n, 'loss happens on the wire, not in the socket');
    } finally {
      await net.close();
    }
  }
});

test('memory - duplication delivers extra copies', TIMEOUT, async () => {
  const net = network({ seed: 4, conditions: { duplicate: 0.2 } });
  try {
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    const b = recorder(net, '10.0.0.2');
    sendMany(a, b.socket.local, 1_000);
    await net.idle();
    const extra = b.seqs.length - 1_000;
    assert.ok(extra > 100 && extra < 300, `${extra} duplicates`);
    assert.equal(net.stats.duplicated, extra);
    assert.equal(new Set(b.seqs).size, 1_000, 'every datagram arrived at least once');
    assert.equal(b.socket.stats.received, b.seqs.length);
  } finally {
    await net.close();
  }
});

test('memory - reorder lets later datagrams overtake', TIMEOUT, async () => {
  const clock = manualClock();
  const net = network({ seed: 5, clock, conditions: { reorder: 0.25, reorderDelayMs: 10 } });
  try {
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    const b = recorder(net, '10.0.0.2');
    sendMany(a, b.socket.local, 200);
    await net.idle();
    const early = b.seqs.length;
    assert.equal(inversions(b.seqs), 0, 'undelayed datagrams keep their order');
    assert.equal(clock.pending, 200 - early);
    assert.equal(net.stats.reordered, 200 - early);
    clock.advance(10);
    assert.equal(b.seqs.length, 200);
    assert.ok(inversions(b.seqs) > 0, 'held-back datagrams arrive after later ones');
    assert.deepEqual([...b.seqs].sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i));
  } finally {
    await net.close();
  }
});

test('memory - the same seed gives the same fates, another seed does not', TIMEOUT, async () => {
  const run = async (seed: number): Promise<string[]> => {
    const clock = manualClock();
    const net = network({
      seed,
      clock,
      conditions: { loss: 0.2, duplicate: 0.2, reorder: 0.2, delayMs: 5, jitterMs: 5 },
    });
    try {
      const fates: string[] = [];
      net.tap((event) => fates.push(`${seqOf(event.data)}:${event.fate}@${event.at}`));
      const a = net.bind({ host: '10.0.0.1', port: 0 });
      const b = recorder(net, '10.0.0.2');
      sendMany(a, b.socket.local, 500);
      clock.advance(100);
      await net.idle();
      return fates;
    } finally {
      await net.close();
    }
  };
  const first = await run(7);
  assert.ok(first.length > 400);
  assert.deepEqual(await run(7), first);
  assert.notDeepEqual(await run(8), first);
});

test('memory - delay waits for the ManualClock', TIMEOUT, async () => {
  const clock = manualClock();
  const net = network({ clock, conditions: { delayMs: 100 } });
  try {
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    const b = recorder(net, '10.0.0.2');
    sendMany(a, b.socket.local, 10);
    await nextTurn();
    assert.equal(b.seqs.length, 0);
    assert.equal(clock.pending, 10);
    clock.advance(99);
    assert.equal(b.seqs.length, 0, 'nothing before the delay has passed');
    clock.advance(1);
    assert.deepEqual(b.seqs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(clock.pending, 0);
  } finally {
    await net.close();
  }
});

test('memory - jitter spreads arrivals over delayMs to delayMs + jitterMs', TIMEOUT, async () => {
  const clock = manualClock();
  const net = network({ seed: 6, clock, conditions: { delayMs: 20, jitterMs: 30 } });
  try {
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    const start = clock.now();
    const arrivals: number[] = [];
    const b = net.bind({ host: '10.0.0.2', port: 0 });
    b.onMessage(() => arrivals.push(clock.now() - start));
    sendMany(a, b.local, 300);
    clock.advance(50);
    assert.equal(arrivals.length, 300);
    assert.ok(arrivals.every((ms) => ms >= 20 && ms <= 50));
    assert.ok(Math.min(...arrivals) < 25 && Math.max(...arrivals) > 45, 'spread over the whole window');
  } finally {
    await net.close();
  }
});

test('memory - partition drops both ways until heal', TIMEOUT, async () => {
  const clock = manualClock();
  const net = network({ clock });
  try {
    const a = recorder(net, '10.0.0.1');
    const b = recorder(net, '10.0.0.2');
    const c = recorder(net, '10.0.0.3');
    net.partition('10.0.0.1', '10.0.0.2');
    a.socket.send(packet(1), b.socket.local);
    b.socket.send(packet(2), a.socket.local);
    a.socket.send(packet(3), c.socket.local);
    await net.idle();
    assert.deepEqual([a.seqs, b.seqs, c.seqs], [[], [], [3]]);
    assert.equal(net.stats.partitioned, 2);

    net.heal('10.0.0.2', '10.0.0.1');
    a.socket.send(packet(4), b.socket.local);
    await net.idle();
    assert.deepEqual(b.seqs, [4]);

    // A partition also catches datagrams already in flight.
    net.setConditions({ delayMs: 10 });
    a.socket.send(packet(5), b.socket.local);
    net.partition('10.0.0.1', '10.0.0.2');
    clock.advance(10);
    assert.deepEqual(b.seqs, [4]);
    net.heal();
    a.socket.send(packet(6), b.socket.local);
    clock.advance(10);
    assert.deepEqual(b.seqs, [4, 6]);
  } finally {
    await net.close();
  }
});

test('memory - tap sees every fate', TIMEOUT, async () => {
  const net = network({ seed: 9 });
  try {
    const events: WireEvent[] = [];
    const untap = net.tap((event) => events.push(event));
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    const b = recorder(net, '10.0.0.2');
    const lossy = recorder(net, '10.0.0.3');
    const doubled = recorder(net, '10.0.0.4');
    net.setConditions({ loss: 1 }, { to: '10.0.0.3' });
    net.setConditions({ duplicate: 1 }, { to: '10.0.0.4' });
    net.setConditions({ mtu: 100 }, { from: '10.0.0.1', to: '10.0.0.2' });
    net.partition('10.0.0.1', '10.0.0.5');

    a.send(packet(1), b.socket.local);
    a.send(packet(2), lossy.socket.local);
    a.send(packet(3), doubled.socket.local);
    a.send(packet(4), { host: '10.0.0.2', port: 1 });
    a.send(packet(5), { host: '10.0.0.5', port: 1 });
    a.send(packet(6, 101), b.socket.local);
    await net.idle();

    const seen = events.map((event) => `${seqOf(event.data)}:${event.fate}`).sort();
    assert.deepEqual(seen, ['1:delivered', '2:lost', '3:delivered', '3:duplicated', '4:no-listener', '5:partitioned', '6:too-big']);
    const first = events.find((event) => seqOf(event.data) === 1);
    assert.deepEqual(first?.from, a.local);
    assert.deepEqual(first?.to, b.socket.local);
    assert.deepEqual(net.stats, { delivered: 3, lost: 1, duplicated: 1, reordered: 0, noListener: 1, partitioned: 1, tooBig: 1 });

    untap();
    a.send(packet(7), b.socket.local);
    await net.idle();
    assert.equal(events.length, 7);
    assert.deepEqual(b.seqs, [1, 7]);
  } finally {
    await net.close();
  }
});

test('memory - per-direction conditions layer over the default', TIMEOUT, async () => {
  const net = network({ conditions: { loss: 1 } });
  try {
    const a = recorder(net, '10.0.0.1');
    const b = recorder(net, '10.0.0.2');
    const c = recorder(net, '10.0.0.3');
    net.setConditions({ loss: 0 }, { from: '10.0.0.1' });
    net.setConditions({ loss: 1 }, { from: '10.0.0.1', to: '10.0.0.3' });
    a.socket.send(packet(1), b.socket.local); // from-override: delivered
    a.socket.send(packet(2), c.socket.local); // pair override: lost
    b.socket.send(packet(3), a.socket.local); // default: lost
    await net.idle();
    assert.deepEqual([a.seqs, b.seqs, c.seqs], [[], [1], []]);

    net.setConditions({});
    b.socket.send(packet(4), a.socket.local);
    a.socket.send(packet(5), c.socket.local);
    await net.idle();
    assert.deepEqual([a.seqs, c.seqs], [[4], []]);
  } finally {
    await net.close();
  }
});

test('memory - bad conditions are rejected', TIMEOUT, async () => {
  const net = network();
  try {
    for (const conditions of [{ loss: 1.5 }, { duplicate: -0.1 }, { reorder: Number.NaN }, { delayMs: -1 }, { jitterMs: Infinity }, { mtu: 1.5 }]) {
      assert.throws(() => net.setConditions(conditions), isDeutError('BAD_CONDITIONS', 'config'), JSON.stringify(conditions));
    }
    assert.throws(() => new MemoryNetwork({ conditions: { loss: 2 } }), isDeutError('BAD_CONDITIONS', 'config'));
  } finally {
    await net.close();
  }
});

test('memory - port 0 allocates from 49152 per host and a taken address fails', TIMEOUT, async () => {
  const net = network();
  try {
    const a1 = net.bind({ host: '10.0.0.1', port: 0 });
    const a2 = net.bind({ host: '10.0.0.1', port: 0 });
    const b1 = net.bind({ host: '10.0.0.2', port: 0 });
    assert.deepEqual([a1.local.port, a2.local.port, b1.local.port], [EPHEMERAL_PORT_FIRST, EPHEMERAL_PORT_FIRST + 1, EPHEMERAL_PORT_FIRST]);
    net.bind({ host: '10.0.0.1', port: EPHEMERAL_PORT_FIRST + 2 });
    assert.equal(net.bind({ host: '10.0.0.1', port: 0 }).local.port, EPHEMERAL_PORT_FIRST + 3, 'skips a taken port');
    assert.throws(() => net.bind({ host: '10.0.0.1', port: EPHEMERAL_PORT_FIRST }), isDeutError('BIND_FAILED'));
    await a1.close();
    assert.equal(net.bind({ host: '10.0.0.1', port: EPHEMERAL_PORT_FIRST }).local.port, EPHEMERAL_PORT_FIRST, 'free again after close');
    assert.throws(() => net.bind({ host: '', port: 0 }), isDeutError('BAD_ADDRESS'));
    assert.throws(() => net.bind({ host: '10.0.0.1', port: -1 }), isDeutError('BAD_ADDRESS'));
    assert.equal(net.openSockets, 5);
  } finally {
    await net.close();
  }
});

test('memory - delivery is never re-entrant inside send', TIMEOUT, async () => {
  const net = network();
  try {
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    let sending = false;
    let reentered = false;
    let received = 0;
    a.onMessage(() => {
      reentered ||= sending;
      received++;
    });
    sending = true;
    a.send(packet(1), a.local);
    sending = false;
    assert.equal(received, 0);
    await net.idle();
    assert.equal(received, 1);
    assert.equal(reentered, false);
  } finally {
    await net.close();
  }
});

test('memory - close cancels pending timers and deliveries', TIMEOUT, async () => {
  const clock = manualClock();
  const net = network({ clock, conditions: { delayMs: 50 } });
  try {
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    const b = recorder(net, '10.0.0.2');
    const c = recorder(net, '10.0.0.3');
    sendMany(a, b.socket.local, 20);
    net.setConditions({ delayMs: 0 }, { to: '10.0.0.3' });
    sendMany(a, c.socket.local, 5);
    assert.equal(clock.pending, 20);
    assert.equal(net.inFlight, 25);
    await net.close();
    await net.close();
    assert.equal(clock.pending, 0);
    assert.equal(net.inFlight, 0);
    assert.equal(net.openSockets, 0);
    clock.advance(100);
    await nextTurn();
    assert.deepEqual([b.seqs, c.seqs], [[], []]);
    assert.throws(() => a.send(packet(1), b.socket.local), isDeutError('SOCKET_CLOSED'));
    assert.throws(() => net.bind({ host: '10.0.0.1', port: 0 }), isDeutError('NETWORK_CLOSED'));
  } finally {
    await net.close();
  }
});

test('memory - mesh of 100 hosts exchanges all to all', TIMEOUT, async () => {
  const net = network({ seed: 10 });
  try {
    const nodes = Array.from({ length: 100 }, (_, i) => recorder(net, `10.0.${i >> 8}.${(i & 255) + 1}`));
    for (const [i, from] of nodes.entries()) {
      for (const to of nodes) if (to !== from) from.socket.send(packet(i), to.socket.local);
    }
    await net.idle();
    for (const node of nodes) {
      assert.equal(node.seqs.length, 99);
      for (const [k, seq] of node.seqs.entries()) assert.deepEqual(node.froms[k], nodes[seq]?.socket.local);
    }
    assert.equal(net.stats.delivered, 9_900);
  } finally {
    await net.close();
  }
});

test('memory - a throwing tap observer fails loudly without disturbing delivery', TIMEOUT, async () => {
  const net = network();
  const thrown: unknown[] = [];
  const onUncaught = (error: unknown): void => {
    thrown.push(error);
  };
  // node:test reports uncaught exceptions as failures; capture this deliberate one instead.
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', onUncaught);
  try {
    net.tap(() => {
      throw new Error('observer bug');
    });
    const a = net.bind({ host: '10.0.0.1', port: 0 });
    const b = recorder(net, '10.0.0.2');
    sendMany(a, b.socket.local, 3);
    await net.idle();
    await nextTurn();
    assert.deepEqual(b.seqs, [0, 1, 2]);
    assert.equal(thrown.length, 3);
  } finally {
    process.off('uncaughtException', onUncaught);
    for (const listener of listeners) process.on('uncaughtException', listener);
    await net.close();
  }
});

after(() => {
  for (const net of networks) {
    assert.equal(net.openSockets, 0, 'memory sockets left open');
    assert.equal(net.inFlight, 0, 'memory deliveries left pending');
  }
  for (const clock of clocks) assert.equal(clock.pending, 0, 'ManualClock timers left pending');
});

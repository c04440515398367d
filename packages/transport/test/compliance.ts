/**
 * One suite, two networks (wireguard-go's bindtest): every DatagramSocket implementation
 * must pass these cases, run over real loopback UDP and over MemoryNetwork.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { DeutError, UdpAddress } from '@deut/common';
import type { DatagramSocket, SocketOptions } from '../src/index.js';
import { isDeutError, nextTurn, packet, seqOf, waitFor, waitUntilDoneOrQuiet, withTimeout } from './util.js';

/** Two sockets on one network, and the means to add more and to tear everything down. */
export interface ComplianceHarness {
  readonly a: DatagramSocket;
  readonly b: DatagramSocket;
  /** Binds one more socket on the same network; cleanup() closes it. */
  bind(address: UdpAddress, options?: SocketOptions): Promise<DatagramSocket>;
  /** Resolves once every datagram sent so far has had its chance to arrive. */
  settle(): Promise<void>;
  /** true when the network never drops, so a burst must arrive without retransmission. */
  readonly lossless: boolean;
  /** Closes every socket of the harness, whatever state the test left it in. */
  cleanup(): Promise<void>;
}

/** Creates a fresh harness for each case. */
export type ComplianceFactory = () => Promise<ComplianceHarness>;

const TIMEOUT_MS = 10_000;

/**
 * Registers the compliance cases for one implementation under `describe(name)`.
 * `skip` (a reason) skips them all, e.g. when IPv6 is unavailable.
 */
export function runCompliance(name: string, factory: ComplianceFactory, options: { skip?: string } = {}): void {
  const test = (title: string, body: (h: ComplianceHarness, t: { diagnostic(message: string): void }) => Promise<void>): void => {
    it(`${name} - ${title}`, { timeout: TIMEOUT_MS }, async (t) => {
      const h = await factory();
      try {
        await body(h, t);
      } finally {
        await h.cleanup();
      }
    });
  };

  describe(name, options.skip === undefined ? {} : { skip: options.skip }, () => {
    test('bind with port 0 reports the real port', async (h) => {
      for (const socket of [h.a, h.b]) {
        assert.ok(Number.isInteger(socket.local.port) && socket.local.port > 0 && socket.local.port <= 65_535);
      }
      assert.notEqual(addressText(h.a.local), addressText(h.b.local));
      const c = await h.bind({ host: h.a.local.host, port: 0 });
      assert.equal(c.local.host, h.a.local.host);
      assert.notEqual(c.local.port, h.a.local.port);
    });

    test('send and receive both ways with the right from', async (h) => {
      const atB: [string, UdpAddress][] = [];
      const atA: [string, UdpAddress][] = [];
      h.b.onMessage((data, from) => {
        atB.push([Buffer.from(data).toString(), from]);
        h.b.send(Buffer.from('pong'), from);
      });
      h.a.onMessage((data, from) => atA.push([Buffer.from(data).toString(), from]));
      h.a.send(Buffer.from('ping'), h.b.local);
      await waitFor(() => atA.length === 1, 'the reply');
      assert.deepEqual(atB, [['ping', { host: h.a.local.host, port: h.a.local.port }]]);
      assert.deepEqual(atA, [['pong', { host: h.b.local.host, port: h.b.local.port }]]);
    });

    test('burst of 1000 datagrams arrives', async (h, t) => {
      const total = 1_000;
      const got = new Set<number>();
      h.b.onMessage((data) => got.add(seqOf(data)));
      let missing = Array.from({ length: total }, (_, i) => i);
      let resent = 0;
      const start = performance.now();
      // Loopback only drops when the receive buffer overflows, so pace in batches of 32
      // (what libuv reads per poll) and resend the remainder a bounded number of times.
      for (let round = 0; round < 5 && missing.length > 0; round++) {
        if (round > 0) resent += missing.length;
        for (const [i, seq] of missing.entries()) {
          h.a.send(packet(seq, 1_200), h.b.local);
          if (i % 32 === 31) await nextTurn();
        }
        await waitUntilDoneOrQuiet(() => got.size === total, () => got.size, 100);
        missing = missing.filter((seq) => !got.has(seq));
      }
      const seconds = (performance.now() - start) / 1_000;
      assert.equal(got.size, total, `${total - got.size} datagrams never arrived`);
      if (h.lossless) assert.equal(resent, 0);
      t.diagnostic(`${name}: burst of ${total} x 1200 B in ${(seconds * 1_000).toFixed(1)} ms, ${resent} resent`);
    });

    test('payload bytes intact at sizes 0, 1, 1200 and 8000', async (h) => {
      const sizes = [0, 1, 1_200, 8_000];
      const sent = new Map(sizes.map((size) => [size, new Uint8Array(randomBytes(size))]));
      const got = new Map<number, Uint8Array>();
      h.b.onMessage((data) => got.set(data.length, data));
      for (const data of sent.values()) h.a.send(data, h.b.local);
      await waitFor(() => got.size === sizes.length, 'all sizes');
      for (const [size, data] of sent) assert.deepEqual(got.get(size), data, `payload of ${size} bytes`);
    });

    test('received data may be kept and the sent buffer reused', async (h) => {
      const kept: Uint8Array[] = [];
      h.b.onMessage((data) => kept.push(data));
      const buffer = new Uint8Array(64);
      for (let i = 0; i < 20; i++) {
        buffer.fill(i);
        h.a.send(buffer, h.b.local);
        buffer.fill(0xff);
      }
      await waitFor(() => kept.length === 20, '20 datagrams');
      for (const data of kept) {
        assert.equal(Object.getPrototypeOf(data), Uint8Array.prototype, 'a plain Uint8Array, not a Buffer');
        const first = data[0] ?? -1;
        assert.ok(first >= 0 && first < 20 && data.every((byte) => byte === first), 'bytes as sent');
      }
      assert.equal(new Set(kept.map((data) => data.buffer)).size, kept.length, 'no shared backing buffers');
      assert.equal(new Set(kept.map((data) => data[0])).size, 20);
    });

    test('a throwing handler does not stop later deliveries', async (h) => {
      const errors: DeutError[] = [];
      const c = await h.bind({ host: h.b.local.host, port: 0 }, { onError: (error) => errors.push(error) });
      const seen: number[] = [];
      c.onMessage((data) => {
        seen.push(seqOf(data));
        if (seen.length <= 5) throw new Error('handler bug');
      });
      for (let seq = 0; seq < 10; seq++) h.a.send(packet(seq), c.local);
      await waitFor(() => seen.length === 10, '10 deliveries');
      assert.equal(c.stats.handlerErrors, 5);
      assert.equal(c.stats.received, 10);
      assert.equal(errors.length, 5);
      for (const error of errors) assert.ok(isDeutError('HANDLER_FAILED')(error));
    });

    test('onMessage replaces the previous handler', async (h) => {
      let first = 0;
      let second = 0;
      h.b.onMessage(() => first++);
      h.b.onMessage(() => second++);
      h.a.send(packet(1), h.b.local);
      await waitFor(() => second === 1, 'the second handler');
      await h.settle();
      assert.equal(first, 0);
    });

    test('close is idempotent and stops delivery', async (h) => {
      const c = await h.bind({ host: h.b.local.host, port: 0 });
      let seen = 0;
      let closing: Promise<void> | undefined;
      c.onMessage(() => {
        seen++;
        closing ??= c.close();
      });
      for (let seq = 0; seq < 20; seq++) h.a.send(packet(seq), c.local);
      await waitFor(() => seen > 0, 'the first delivery');
      const again = c.close();
      await Promise.all([closing, again, c.close()]);
      h.a.send(packet(99), c.local);
      await h.settle();
      assert.equal(seen, 1, 'nothing delivered after close()');
      assert.equal(c.stats.received, 1);
      assert.equal(h.a.stats.sendErrors, 0);
    });

    test('send after close throws SOCKET_CLOSED', async (h) => {
      await h.a.close();
      assert.throws(() => h.a.send(packet(1), h.b.local), isDeutError('SOCKET_CLOSED'));
    });

    test('send to a bad address throws BAD_ADDRESS', async (h) => {
      const host = h.b.local.host;
      for (const to of [
        { host, port: 0 },
        { host, port: 65_536 },
        { host, port: 1.5 },
        { host, port: Number.NaN },
        { host: '', port: h.b.local.port },
      ]) {
        assert.throws(() => h.a.send(packet(1), to), isDeutError('BAD_ADDRESS'), JSON.stringify(to));
      }
      await h.settle();
      assert.equal(h.a.stats.sent + h.a.stats.sendErrors, 0);
    });

    test('binding an address in use fails with BIND_FAILED', async (h) => {
      await assert.rejects(h.bind({ host: h.a.local.host, port: h.a.local.port }), isDeutError('BIND_FAILED'));
    });

    test('an oversized datagram counts a send error without throwing', async (h) => {
      const errors: DeutError[] = [];
      const c = await h.bind({ host: h.a.local.host, port: 0 }, { onError: (error) => errors.push(error) });
      let received = 0;
      h.b.onMessage(() => received++);
      c.send(new Uint8Array(70_000), h.b.local);
      await waitFor(() => c.stats.sendErrors === 1, 'the send error');
      assert.equal(errors.length, 1);
      assert.ok(isDeutError('SEND_FAILED')(errors[0]));
      await h.settle();
      assert.equal(received, 0);
      assert.equal(c.stats.sent, 0);
    });

    test('stats counters add up', async (h) => {
      const count = 50;
      let bytes = 0;
      let received = 0;
      h.b.onMessage(() => received++);
      for (let seq = 0; seq < count; seq++) {
        const data = packet(seq, 4 + seq * 10);
        bytes += data.length;
        h.a.send(data, h.b.local);
      }
      await waitFor(() => received === count && h.a.stats.sent === count, 'all datagrams counted');
      assert.deepEqual(h.a.stats, { sent: count, received: 0, sendErrors: 0, handlerErrors: 0, bytesSent: bytes, bytesReceived: 0 });
      assert.deepEqual(h.b.stats, { sent: 0, received: count, sendErrors: 0, handlerErrors: 0, bytesSent: 0, bytesReceived: bytes });
    });

    test('ping-pong throughput at 1200 bytes', async (h, t) => {
      const roundTrips = 2_000;
      h.a.onMessage((data, from) => h.a.send(data, from));
      let count = 0;
      const done = new Promise<void>((resolve) => {
        h.b.onMessage((data) => {
          if (++count === roundTrips) resolve();
          else h.b.send(data, h.a.local);
        });
      });
      const start = performance.now();
      h.b.send(new Uint8Array(1_200), h.a.local);
      await withTimeout(done, TIMEOUT_MS / 2, `${roundTrips} round trips`);
      const seconds = (performance.now() - start) / 1_000;
      t.diagnostic(`${name}: ${Math.round((2 * roundTrips) / seconds)} datagrams/s in a 1200 B ping-pong (${roundTrips} round trips)`);
    });
  });
}

function addressText(address: UdpAddress): string {
  return `${address.host}|${address.port}`;
}

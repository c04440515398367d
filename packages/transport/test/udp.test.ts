/**
 * bindUdp specifics the compliance suite does not cover: argument checks, bind failures,
 * buffer sizes and the open-socket registry. Only binds and loopback sends happen here.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { bindUdp, openSocketCount } from '../src/index.js';
import { isDeutError, packet } from './util.js';

const TIMEOUT = { timeout: 10_000 };

test('udp - bind needs an IP literal and a port in 0..65535', TIMEOUT, async () => {
  await assert.rejects(bindUdp({ host: 'localhost', port: 0 }), isDeutError('BAD_ADDRESS'));
  await assert.rejects(bindUdp({ host: '127.0.0.1', port: 65_536 }), isDeutError('BAD_ADDRESS'));
  await assert.rejects(bindUdp({ host: '127.0.0.1', port: -1 }), isDeutError('BAD_ADDRESS'));
  assert.equal(openSocketCount(), 0);
});

test('udp - binding an address that is not local fails with BIND_FAILED', TIMEOUT, async () => {
  // 192.0.2.1 (TEST-NET-1) is never a local address; binding sends nothing.
  await assert.rejects(bindUdp({ host: '192.0.2.1', port: 0 }), (error: unknown) => {
    isDeutError('BIND_FAILED')(error);
    assert.equal((error as Error & { cause?: { code?: string } }).cause?.code, 'EADDRNOTAVAIL');
    return true;
  });
  assert.equal(openSocketCount(), 0, 'the failed socket was released');
});

test('udp - buffer sizes are applied or rejected', TIMEOUT, async () => {
  const socket = await bindUdp({ host: '127.0.0.1', port: 0 }, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
  try {
    assert.ok(socket.local.port > 0);
  } finally {
    await socket.close();
  }
  await assert.rejects(bindUdp({ host: '127.0.0.1', port: 0 }, { recvBufferSize: 0 }), isDeutError('BAD_OPTION', 'config'));
  await assert.rejects(bindUdp({ host: '127.0.0.1', port: 0 }, { sendBufferSize: 1.5 }), isDeutError('BAD_OPTION', 'config'));
});

test('udp - destinations must be IP literals of the socket family', TIMEOUT, async () => {
  const socket = await bindUdp({ host: '127.0.0.1', port: 0 });
  try {
    // Rejected before any packet is formed: no name lookup, nothing leaves the host.
    assert.throws(() => socket.send(packet(1), { host: 'localhost', port: socket.local.port }), isDeutError('BAD_ADDRESS'));
    assert.throws(() => socket.send(packet(1), { host: '::1', port: socket.local.port }), isDeutError('BAD_ADDRESS'));
  } finally {
    await socket.close();
  }
});

test('udp - openSocketCount follows bind and close', TIMEOUT, async () => {
  const before = openSocketCount();
  const a = await bindUdp({ host: '127.0.0.1', port: 0 });
  const b = await bindUdp({ host: '127.0.0.1', port: 0 });
  try {
    assert.equal(openSocketCount(), before + 2);
    await a.close();
    assert.equal(openSocketCount(), before + 1);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
  assert.equal(openSocketCount(), before);
});

after(() => {
  assert.equal(openSocketCount(), 0, 'UDP sockets left open');
});

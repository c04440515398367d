/**
 * The compliance suite over real UDP on loopback: 127.0.0.1, and ::1 when the host has
 * IPv6. Tests only ever send to 127.0.0.0/8 or ::1.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { UdpAddress } from '@deut/common';
import type { DatagramSocket, SocketOptions } from '../src/index.js';
import { bindUdp, openSocketCount } from '../src/index.js';
import type { ComplianceHarness } from './compliance.js';
import { runCompliance } from './compliance.js';
import { nextTurn } from './util.js';

async function udpHarness(host: string): Promise<ComplianceHarness> {
  const sockets: DatagramSocket[] = [];
  const bind = async (address: UdpAddress, options?: SocketOptions): Promise<DatagramSocket> => {
    const socket = await bindUdp(address, options);
    sockets.push(socket);
    return socket;
  };
  const cleanup = async (): Promise<void> => {
    await Promise.all(sockets.map((socket) => socket.close()));
  };
  try {
    const a = await bind({ host, port: 0 });
    const b = await bind({ host, port: 0 });
    const probeFrom = await bind({ host, port: 0 });
    const probeTo = await bind({ host, port: 0 });
    return {
      a,
      b,
      bind,
      // A probe sent after everything else has been through the kernel once it arrives;
      // one more turn lets the same poll's other datagrams reach their handlers.
      settle: async () => {
        const arrived = new Promise<void>((resolve) => probeTo.onMessage(() => resolve()));
        probeFrom.send(new Uint8Array(1), probeTo.local);
        await arrived;
        await nextTurn();
      },
      lossless: false,
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function ipv6Loopback(): Promise<boolean> {
  try {
    const socket = await bindUdp({ host: '::1', port: 0 });
    await socket.close();
    return true;
  } catch {
    return false;
  }
}

runCompliance('udp 127.0.0.1', () => udpHarness('127.0.0.1'));
const ipv6 = await ipv6Loopback();
runCompliance('udp ::1', () => udpHarness('::1'), ipv6 ? {} : { skip: 'no IPv6 loopback on this host' });

after(() => {
  assert.equal(openSocketCount(), 0, 'UDP sockets left open');
});

/** The compliance suite over MemoryNetwork, on two hosts of one network. */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { MemoryNetwork } from '../src/index.js';
import type { ComplianceHarness } from './compliance.js';
import { runCompliance } from './compliance.js';

const networks: MemoryNetwork[] = [];

function memoryHarness(hostA: string, hostB: string): Promise<ComplianceHarness> {
  const network = new MemoryNetwork({ seed: networks.length + 1 });
  networks.push(network);
  return Promise.resolve({
    a: network.bind({ host: hostA, port: 0 }),
    b: network.bind({ host: hostB, port: 0 }),
    bind: (address, options) => {
      try {
        return Promise.resolve(network.bind(address, options));
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    },
    settle: () => network.idle(),
    lossless: true,
    cleanup: () => network.close(),
  });
}

runCompliance('memory one host', () => memoryHarness('127.0.0.1', '127.0.0.1'));
runCompliance('memory two hosts', () => memoryHarness('10.0.0.1', '10.0.0.2'));
runCompliance('memory ipv6 hosts', () => memoryHarness('fd00::1', 'fd00::2'));

after(() => {
  for (const network of networks) {
    assert.equal(network.openSockets, 0, 'memory sockets left open');
    assert.equal(network.inFlight, 0, 'memory deliveries left pending');
  }
});

/**
 * @deut/testkit: development-only scaffolding for deut's own tests and scripts, never a
 * dependency of the product (test/image.test.ts keeps it out of the Docker image). It holds
 * the attack scaffolding (spying sockets, skewed clocks), the engine mesh (Link +
 * TunnelEngine nodes on a manual clock) and the network-namespace mesh with its impairer and
 * scenario processes. The in-process testnet moved to `@deut/node`, because `deut mesh`
 * runs it; it is re-exported here so tests import their whole kit from one place.
 */
export {
  KillableSocket,
  createTestnet,
  dhtContactOf,
  joinDht,
  until,
  withDeadline,
  withTestnet,
  type EchoServer,
  type Testnet,
  type TestnetNode,
  type TestnetOptions,
} from '@deut/node';
export * from './netns.js';
export * from './impairer.js';
export * from './netns-scenario.js';
export * from './netns-master.js';
export * from './attack.js';
export * from './engine-mesh.js';

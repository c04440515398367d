/**
 * The mesh on separate hosts (network namespaces on a bridge), with what only separate hosts
 * can show: a capture on the bridge proves that (1) no packet from a master's address reaches
 * the DHT peers or the UDP echo server, only endpoint addresses do; (2) every datagram between
 * deut node ports has the same size; (3) no payload canary appears anywhere on the wire.
 * The same under 50 ms delay and 10% loss is fault scenario (a) in netns-faults.test.ts.
 * Needs root and `ip netns` (CI runs as root); skipped elsewhere, saying why.
 */
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { netnsAvailable, runNetnsScenario } from '@deut/testkit';
import { assertWhatTheWireShows } from './netns-wire.js';

const BIN = fileURLToPath(new URL('../../packages/cli/dist/src/bin.js', import.meta.url));
const skip = (await netnsAvailable()) ? false : 'needs root and ip netns';

test('netns mesh - separate hosts: DHT peers and the echo server hear only endpoints, one datagram size, no canary on the wire', { skip, timeout: 300_000 }, async (t: TestContext) => {
  const names = ['canary-a-7f3a19', 'canary-b-7f3a19'] as const;
  assertWhatTheWireShows(t, await runNetnsScenario({ bin: BIN, names, net: 77 }), names);
});

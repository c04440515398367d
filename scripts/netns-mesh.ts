/**
 * `npm run mesh:netns [-- --loss 0.1]` (as root): the deut mesh on separate hosts, one
 * network namespace per node on a bridge, running the two-master DHT scenario with a capture
 * of the bridge. Every namespace, link and process is removed on exit, on failure and on
 * Ctrl-C.
 */
import { fileURLToPath } from 'node:url';
import { netnsAvailable, runNetnsScenario } from '@deut/testkit';

const lossFlag = process.argv.indexOf('--loss');
const loss = lossFlag >= 0 ? Number(process.argv[lossFlag + 1]) : 0;
if (!Number.isFinite(loss) || loss < 0 || loss >= 1) {
  process.stderr.write('netns-mesh: --loss must be a number in 0..1\n');
  process.exit(2);
}
if (!(await netnsAvailable())) {
  process.stderr.write('netns-mesh: needs root and iproute2 (ip netns)\n');
  process.exit(2);
}
const controller = new AbortController();
process.once('SIGINT', () => {
  process.stderr.write('\nnetns-mesh: interrupted, tearing down\n');
  controller.abort();
});
const bin = fileURLToPath(new URL('../../packages/cli/dist/src/bin.js', import.meta.url));
try {
  const run = await runNetnsScenario({ bin, names: ['alice', 'bob'], loss, log: (line) => process.stdout.write(`${line}\n`) }, controller.signal);
  const masters = new Set(run.masters.map((m) => m.address));
  const leaked = run.packets.filter((p) => masters.has(p.src) && p.dstPort !== 7500).length;
  const sizes = new Set(run.packets.filter((p) => p.srcPort === 7500 && p.dstPort === 7500).map((p) => p.payload.length));
  process.stdout.write(`\n${run.packets.length} UDP packets on the bridge; master packets not to a node port: ${leaked}; link datagram sizes: ${[...sizes].join(', ')}\n`);
  const ok = run.results.every((r) => r.code === 0) && leaked === 0 && sizes.size === 1;
  process.stdout.write(ok ? 'netns mesh: PASS\n' : 'netns mesh: FAIL\n');
  process.exitCode = ok ? 0 : 1;
} catch (error) {
  process.stderr.write(`netns-mesh: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}

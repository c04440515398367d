/**
 * `npm run mesh:netns [-- --delay 50 --jitter 10 --loss 0.1 --duplicate 0.01 --reorder 0.05]`
 * (as root): the deut mesh on separate hosts, one network namespace per node on a bridge,
 * running the two-master DHT scenario with a capture of the bridge, every host's incoming
 * UDP impaired as asked (netem where the kernel has it, the userspace NFQUEUE impairer
 * otherwise; the run says which). Every namespace, link and process is removed on exit, on
 * failure and on Ctrl-C.
 */
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { netnsAvailable, runNetnsScenario } from '@deut/testkit';

const probability = (name: string) => (p: number): number => {
  if (!(p >= 0 && p < 1)) throw new Error(`--${name} must be a number in 0..1`);
  return p;
};
const milliseconds = (name: string) => (ms: number): number => {
  if (!(ms >= 0 && ms <= 60_000)) throw new Error(`--${name} must be a number of milliseconds in 0..60000`);
  return ms;
};
const args = await yargs(process.argv.slice(2))
  .scriptName('npm run mesh:netns --')
  .usage('$0 [options]: the deut mesh in network namespaces (as root), with impaired links')
  .option('delay', { type: 'number', default: 0, describe: 'added one-way delay on every host, ms', coerce: milliseconds('delay') })
  .option('jitter', { type: 'number', default: 0, describe: 'uniform jitter of the delay, ± ms', coerce: milliseconds('jitter') })
  .option('loss', { type: 'number', default: 0, describe: 'share of datagrams each host drops on receipt', coerce: probability('loss') })
  .option('duplicate', { type: 'number', default: 0, describe: 'share of datagrams delivered twice', coerce: probability('duplicate') })
  .option('reorder', { type: 'number', default: 0, describe: 'share of datagrams that skip the delay and overtake', coerce: probability('reorder') })
  .option('seed', { type: 'number', describe: 'seed of the userspace impairer (default: each host its index)' })
  .check((a) => {
    if (a.jitter > a.delay) throw new Error('--jitter cannot exceed --delay');
    return true;
  })
  .strict()
  .help()
  .version(false)
  .parseAsync();

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
const impairment = { delayMs: args.delay, jitterMs: args.jitter, loss: args.loss, duplicate: args.duplicate, reorder: args.reorder, ...(args.seed !== undefined ? { seed: args.seed } : {}) };
try {
  const run = await runNetnsScenario({ bin, names: ['alice', 'bob'], impairment, log: (line) => process.stdout.write(`${line}\n`) }, controller.signal);
  const masters = new Set(run.masters.map((m) => m.address));
  const leaked = run.packets.filter((p) => masters.has(p.src) && p.dstPort !== 7500).length;
  const sizes = new Set(run.packets.filter((p) => p.srcPort === 7500 && p.dstPort === 7500).map((p) => p.payload.length));
  process.stdout.write(`\n${run.packets.length} UDP packets on the bridge; master packets not to a node port: ${leaked}; link datagram sizes: ${[...sizes].join(', ')}; impairment by ${run.impairment}\n`);
  const ok = run.results.every((r) => r.code === 0) && leaked === 0 && sizes.size === 1;
  process.stdout.write(ok ? 'netns mesh: PASS\n' : 'netns mesh: FAIL\n');
  process.exitCode = ok ? 0 : 1;
} catch (error) {
  process.stderr.write(`netns-mesh: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}

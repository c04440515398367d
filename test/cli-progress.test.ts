/**
 * Start-up progress as an operator reads it: `deut run` daemons on loopback log Tor-style
 * "bootstrapped N% (phase): ..." lines, every milestone once and in order up to 100 %, and
 * `deut status` shows where the node is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cliScope, type Daemon } from './cli-process.js';

const { tempDir, deut, daemon } = cliScope('deut-cli-progress');

/** Polls `probe` until it returns a value; fails after `ms`, showing what was last seen. */
async function waitFor<T>(what: string, ms: number, probe: () => T | undefined, seen: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${seen()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The percentages of the "bootstrapped N% (phase)" lines of a log, in order. */
function milestones(log: string): string[] {
  return [...log.matchAll(/bootstrapped (\d+)% \(([a-z-]+)\)/gi)].map((m) => `${m[1]}% ${m[2]}`);
}

test('deut run logs "bootstrapped N%" for each milestone, in order, up to 100 %; deut status shows it', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  const daemons: Daemon[] = [];
  try {
    const first = daemon('relay-1', dir, ['--listen', '127.0.0.1:0']);
    daemons.push(first);
    const bootstrap = await waitFor('the bootstrap relayer', 30_000, () => /node on udp (\S+);/.exec(first.output.stdout)?.[1], () => first.output.stderr);
    for (const name of ['relay-2', 'relay-3']) daemons.push(daemon(name, dir, ['--listen', '127.0.0.1:0', '--bootstrap', bootstrap]));
    const master = daemon('master', dir, ['--listen', '127.0.0.1:0', '--bootstrap', bootstrap, '--tunnels', '2', '--hops', '2', '--no-relay']);
    daemons.push(master);

    await waitFor('bootstrapped 100% in the master log', 60_000, () => (/bootstrapped 100%/i.test(master.output.stderr) ? true : undefined), () => master.output.stderr);
    assert.deepEqual(milestones(master.output.stderr), ['5% bound', '20% peers-known', '40% peers-verified', '60% first-tunnel', '80% pool-full', '100% done']);
    await waitFor('bootstrapped 100% in a relayer log', 30_000, () => (/bootstrapped 100%/i.test(daemons[1]!.output.stderr) ? true : undefined), () => daemons[1]!.output.stderr);
    assert.deepEqual(milestones(daemons[1]!.output.stderr), ['10% bound', '50% peers-known', '100% done']);
    assert.deepEqual(milestones(first.output.stderr), ['10% bound', '100% done'], 'the first relayer has no bootstrap to hear from');

    const json = await deut(['status', '--json', '--control-file', master.controlFile], { ms: 20_000 });
    assert.equal(json.code, 0, json.stderr);
    const progress = (JSON.parse(json.stdout) as { progress: { percent: number; done: boolean; passed: Array<{ phase: string; afterStartMs: number }> } }).progress;
    assert.equal(progress.percent, 100);
    assert.equal(progress.done, true);
    assert.deepEqual(
      progress.passed.map((p) => p.phase),
      ['bound', 'peers-known', 'peers-verified', 'first-tunnel', 'pool-full', 'done'],
    );
    const human = await deut(['status', '--control-file', master.controlFile], { ms: 20_000 });
    assert.match(human.stdout, /^progress: bootstrapped 100% \(done\)/m);
  } finally {
    for (const d of daemons) d.child.kill('SIGTERM');
    await Promise.all(daemons.map((d) => d.exited));
  }
});

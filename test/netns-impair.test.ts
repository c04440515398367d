/**
 * The mesh's link impairment does what it says, measured between two namespaces: host B
 * echoes UDP, B's incoming traffic is impaired, A sends numbered datagrams and records what
 * comes back. Delay is compared with an unimpaired baseline of the same run (a difference
 * that noise can only make larger), loss and duplication with binomial bounds, reordering by
 * counting inversions, and the impairer's seed by repeating a run. Needs root and `ip
 * netns`; skipped elsewhere, saying why.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { NetnsMesh, netnsAvailable, type Impairment, type NetnsHost } from '@deut/testkit';

const skip = (await netnsAvailable()) ? false : 'needs root and ip netns';

/** What A saw: for each echo, the sequence number and the round trip in ms. */
interface Echoes {
  readonly seqs: number[];
  readonly rtts: number[];
}

/**
 * A node program for host A: sends `count` numbered datagrams to `to`, `spacingMs` apart
 * (or, with spacingMs 0, one at a time, each after the previous echo or 1 s), then waits
 * `settleMs` and prints the echoes as JSON.
 */
function senderProgram(to: string, count: number, spacingMs: number, settleMs: number): string {
  return `
const s = require('node:dgram').createSocket('udp4');
const sentAt = new Map(); const seqs = []; const rtts = []; let next = 0; let waiting;
s.on('message', (m) => { const seq = m.readUInt32BE(0); seqs.push(seq); rtts.push(performance.now() - sentAt.get(seq)); if (waiting) { clearTimeout(waiting); waiting = undefined; send(); } });
function one() { const b = Buffer.alloc(64); b.writeUInt32BE(next); sentAt.set(next, performance.now()); next++; s.send(b, 9000, '${to}'); }
function finish() { setTimeout(() => { console.log(JSON.stringify({ seqs, rtts })); process.exit(0); }, ${settleMs}); }
function send() { if (next >= ${count}) return finish(); one(); waiting = setTimeout(send, 1000); }
s.bind(0, () => {
  if (${spacingMs} === 0) return send();
  const t = setInterval(() => { one(); if (next >= ${count}) { clearInterval(t); finish(); } }, ${spacingMs});
});`;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** Successes of a Binomial(n, p) lie within this of n·p except with odds far below 1e-6. */
const binomialSlack = (n: number, p: number): number => 5.5 * Math.sqrt(n * p * (1 - p)) + 1;

test('netns impairment - delay, jitter, loss, duplication and reordering between two namespaces, as asked, reproducible by seed', { skip, timeout: 180_000 }, async (t: TestContext) => {
  const mesh = await NetnsMesh.create({ hosts: 2, net: 80 });
  const [a, b] = mesh.hosts as [NetnsHost, NetnsHost];
  try {
    mesh.spawn(b, [process.execPath, '-e', `const s = require('node:dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(9000, '${b.address}', () => console.log('ready'))`]);
    const send = async (count: number, spacingMs: number, settleMs = 500): Promise<Echoes> => {
      const r = await mesh.exec(a, [process.execPath, '-e', senderProgram(b.address, count, spacingMs, settleMs)], 120_000);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Echoes;
    };
    const impair = async (spec: Impairment): Promise<void> => void (await mesh.impair(b, spec));
    /** The impairer's own counters, where it runs. */
    const counted = async (): Promise<string> => ((await mesh.impairmentMethod()) === 'nfqueue' ? ` (${await mesh.impairerReport(b)})` : '');
    // The echo server is up once a datagram comes back.
    for (let i = 0; i < 50 && (await send(1, 0, 0)).seqs.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const method = await mesh.impairmentMethod();
    assert.notEqual(method, 'iptables-random-drop', 'delay needs netem or the userspace impairer (gcc, libnetfilter-queue-dev)');
    t.diagnostic(`impairment method: ${method}`);

    // Delay and jitter: every echo of the impaired run takes 50 ± 10 ms more one way.
    const baseline = await send(60, 0);
    await impair({ delayMs: 50, jitterMs: 10 });
    const delayed = await send(60, 0);
    assert.equal(delayed.seqs.length, 60, 'no echo was lost to delay alone');
    const added = median(delayed.rtts) - median(baseline.rtts);
    assert.ok(added >= 40, `median RTT rose by ${added.toFixed(1)} ms, at least 40 ms expected`);
    // Noise only lengthens round trips, so no echo may come back faster than the least added delay.
    assert.ok(Math.min(...delayed.rtts) >= 39, `no echo beat the delay minus the jitter (fastest ${Math.min(...delayed.rtts).toFixed(1)} ms)`);
    const spread = Math.max(...delayed.rtts) - Math.min(...delayed.rtts);
    assert.ok(spread >= 10, `the jitter spreads round trips (${spread.toFixed(1)} ms between fastest and slowest)`);
    t.diagnostic(`RTT median ${median(baseline.rtts).toFixed(2)} ms unimpaired, ${median(delayed.rtts).toFixed(2)} ms with 50 ± 10 ms delay (+${added.toFixed(1)} ms), spread ${spread.toFixed(1)} ms`);

    // Loss: a binomial count, and the same seed drops the same datagrams.
    await impair({ loss: 0.2, seed: 42 });
    const lossy = await send(1000, 1);
    const lossNote = await counted();
    await impair({ loss: 0.2, seed: 42 });
    const again = await send(1000, 1);
    const lost = 1000 - new Set(lossy.seqs).size;
    assert.ok(Math.abs(lost - 200) <= binomialSlack(1000, 0.2), `${lost} of 1000 lost at 20% loss`);
    if (method === 'nfqueue') assert.deepEqual([...again.seqs].sort((x, y) => x - y), [...lossy.seqs].sort((x, y) => x - y), 'the same seed drops the same datagrams');
    t.diagnostic(`loss: ${lost} of 1000 lost at 20%${lossNote}`);

    // Duplication: each datagram delivered twice with the given probability.
    await impair({ duplicate: 0.1 });
    const duplicated = await send(1000, 1);
    const dupNote = await counted();
    const twice = duplicated.seqs.length - new Set(duplicated.seqs).size;
    assert.equal(new Set(duplicated.seqs).size, 1000, 'duplication loses nothing');
    assert.ok(Math.abs(twice - 100) <= binomialSlack(1000, 0.1), `${twice} of 1000 duplicated at 10%`);
    t.diagnostic(`duplication: ${twice} of 1000 came back twice at 10%${dupNote}`);

    // Reordering: some datagrams skip the delay and overtake the held ones; jitter reorders too.
    const count = (echoes: Echoes): number => echoes.seqs.filter((seq, i) => i > 0 && seq < Math.max(...echoes.seqs.slice(0, i))).length;
    await impair({ delayMs: 20, reorder: 0.25 });
    const overtaken = await send(400, 1);
    const reorderNote = await counted();
    assert.equal(new Set(overtaken.seqs).size, 400, 'reordering loses nothing');
    assert.ok(count(overtaken) > 0, 'datagrams that skipped the delay overtook held ones');
    await impair({ delayMs: 20, jitterMs: 15 });
    const jittered = await send(400, 1);
    assert.ok(count(jittered) > 0, 'jitter larger than the spacing reorders');
    t.diagnostic(`reordering: ${count(overtaken)} of 400 arrived after a later one with 25% reorder${reorderNote}; ${count(jittered)} of 400 with 20 ± 15 ms jitter at 1 ms spacing`);

    // A crashed impairer leaves its NFQUEUE rule behind: --queue-bypass lets traffic through.
    if (method === 'nfqueue') {
      await impair({ delayMs: 20 });
      await mesh.crashImpairer(b);
      const bypassed = await send(60, 0);
      assert.equal(bypassed.seqs.length, 60, 'nothing is blackholed by a dead impairer');
      assert.ok(Math.min(...bypassed.rtts) < 19, 'and nothing is delayed');
    }

    // Unimpaired again: nothing lost, no added delay.
    await mesh.unimpair(b);
    const clean = await send(60, 0);
    assert.equal(clean.seqs.length, 60);
    assert.ok(Math.min(...clean.rtts) < 39, 'unimpair removes the delay: some echo is faster than the delay was');
  } finally {
    await mesh.close();
  }
});

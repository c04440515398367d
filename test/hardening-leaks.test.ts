/**
 * Hardening, log and metric leaks (SECURITY.md §3.14): a running mesh
 * whose every node logs through the daemon's logger (packages/cli/src/logging.ts) at each
 * level and in both formats carries canary payloads, DHT keys and values, is sent junk,
 * has a request handler fail with the canary in its error, and loses a relayer; no canary,
 * no node key (hex or base64) and no node or endpoint address appears in any safe log
 * line or in any node's metrics. The same lines logged with `unsafe` (--unsafe-logs) do
 * show addresses and keys: the search can see them, so their absence is the redaction's.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { addressKey, type Logger } from '@deut/common';
import { createCliLogger, createNodeMetrics, type CliLogger, type LogFormat, type LogLevel } from '@deut/cli';
import { cryptoReady } from '@deut/crypto';
import { createTestnet, until, withDeadline } from '@deut/testkit';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const CANARY = 'canary-7f3e91c2-payload';
const encoder = new TextEncoder();

interface Sink {
  readonly name: string;
  readonly cli: CliLogger;
  text(): string;
}

function sink(level: LogLevel, format: LogFormat, unsafe: boolean): Sink {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  return { name: `${level}/${format}${unsafe ? '/unsafe' : ''}`, cli: createCliLogger({ level, format, unsafe, stream }), text: () => chunks.join('') };
}

/** One Logger that writes every line to every sink. */
function fanOut(sinks: readonly Sink[]): Logger {
  const each = (level: keyof Logger) => (message: string, fields?: Record<string, unknown>): void => {
    for (const s of sinks) s.cli.logger[level](message, fields);
  };
  return { debug: each('debug'), info: each('info'), warn: each('warn'), error: each('error') };
}

test('hardening leaks - canaries, keys and addresses appear in no log line at any level or format and in no metric, unless unsafe', { timeout: 120_000 }, async (t: TestContext) => {
  const safe = (['debug', 'info', 'warn', 'error'] as const).flatMap((level) => (['json', 'pretty'] as const).map((format) => sink(level, format, false)));
  const unsafe = sink('debug', 'json', true);
  const logger = fanOut([...safe, unsafe]);
  const net = await createTestnet({ relays: 6, masters: 2, tunnels: 2, master: { dht: true, hops: 2, logger, buildTimeoutMs: 400, probeIntervalMs: 200, probeTimeoutMs: 300 }, relay: { logger } });
  const [a, b] = net.masters.map((m) => m.node);
  assert.ok(a !== undefined && b !== undefined);
  let metricsText = '';
  try {
    b.handle((payload) => {
      const text = new TextDecoder().decode(payload);
      // A handler failing with the payload in its message: a warn line with that error.
      if (text.startsWith('fail')) throw new Error(`handler refused ${text} for ${addressKey(a.address)}`);
      return encoder.encode(`re:${text}`);
    });
    const to = b.tunnels.list().map((x) => x.endpoint);
    for (let i = 0; i < 5; i++) {
      const reply: Uint8Array = await withDeadline(a.request(to, encoder.encode(`${CANARY} ${i}`), { timeoutMs: 10_000 }), 15_000, 'a request');
      assert.equal(new TextDecoder().decode(reply), `re:${CANARY} ${i}`);
    }
    await a.request(to, encoder.encode(`fail ${CANARY}`), { timeoutMs: 1_500, attemptTimeoutMs: 500 }).catch(() => undefined);
    await withDeadline(b.dht.join({ via: [{ publicKey: a.dht.publicKey, address: a.tunnels.list()[0]!.endpoint }] }), 30_000, 'dht join').catch(() => undefined);
    await withDeadline(a.dht.put(`key-${CANARY}`, encoder.encode(`value-${CANARY}`)), 30_000, 'dht put').catch(() => undefined);
    // Junk at every node port, and a relayer lost mid-run.
    const stranger = net.network!.bind({ host: '127.0.9.1', port: 999 });
    for (const n of net.nodes) for (let i = 0; i < 20; i++) stranger.send(new Uint8Array(i * 61).fill(i), n.node.address);
    await stranger.close();
    // Relayers lost mid-run, one of them the endpoint of A's first tunnel: that tunnel dies
    // and builds through the dead fail, each with a debug line. Random relayers alone once
    // carried none of the pools' tunnels, and the run then logged nothing at debug.
    const aEndpoint = a.tunnels.list()[0]!.endpoint.host;
    for (const r of net.relays.filter((r, i) => i >= 3 || r.node.address.host === aEndpoint)) net.kill(r);
    await until(() => safe[0]!.text().includes('"level":"debug"'), 60_000, 'a debug line (a dead tunnel or a failed build)');
    for (const node of [a, b, net.relays[0]!.node]) {
      const metrics = createNodeMetrics(node);
      metricsText += await metrics.scrape();
      metrics.close();
    }
    const secrets = new Map<string, string>([['payload canary', CANARY]]);
    for (const [i, n] of net.nodes.entries()) {
      secrets.set(`node ${i} address`, n.node.address.host);
      secrets.set(`node ${i} key (hex)`, Buffer.from(n.node.publicKey).toString('hex'));
      secrets.set(`node ${i} key (base64)`, Buffer.from(n.node.publicKey).toString('base64'));
    }
    for (const m of [a, b]) for (const x of m.tunnels.list()) secrets.set(`endpoint ${addressKey(x.endpoint)}`, addressKey(x.endpoint));
    secrets.set('dht key (hex)', Buffer.from(a.dht.publicKey).toString('hex'));

    await Promise.all([...safe, unsafe].map((s) => s.cli.close()));
    const debugLines = safe[0]!.text();
    const levelsSeen = new Set([...debugLines.matchAll(/"level":"(\w+)"/g)].map((m) => m[1]));
    t.diagnostic(`levels logged: ${[...levelsSeen].join(', ')}; ${debugLines.split('\n').length} debug/json lines; metrics ${metricsText.length} chars`);
    assert.ok(levelsSeen.has('debug') && levelsSeen.has('warn'), 'the run logged at several levels');
    for (const s of safe) {
      const text = s.text();
      for (const [what, secret] of secrets) assert.ok(!text.includes(secret), `${s.name}: no ${what}`);
      assert.ok(!/\b127\.0\.\d+\.\d+\b/.test(text), `${s.name}: no loopback address at all`);
    }
    for (const [what, secret] of secrets) assert.ok(!metricsText.includes(secret), `metrics: no ${what}`);
    assert.ok(metricsText.includes('deut_'), 'the metrics were scraped');
    // The same lines, unredacted: the search sees addresses and keys, so it can fail.
    const raw = unsafe.text();
    assert.match(raw, /127\.0\.\d+\.\d+/, 'unsafe logs show addresses');
    assert.ok(raw.includes(CANARY), 'unsafe logs show the canary payload (in the handler error)');
  } finally {
    await net.close();
  }
});

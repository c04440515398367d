/** Prometheus metrics of a node, scraped from a small in-memory testnet, and their HTTP server. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { DHT_RPC_DROP_REASONS, DhtNode } from '@deut/dht';
import { LINK_DROP_REASONS } from '@deut/link';
import {
  DeutNode,
  ENDPOINT_EXITS_DROP_REASONS,
  EXIT_REFUSED,
  MESSENGER_DROP_REASONS,
  NODE_DROP_REASONS,
  dhtContactOf,
  joinDht,
  until,
  withDeadline,
  withTestnet,
} from '@deut/node';
import { MemoryNetwork } from '@deut/transport';
import { BUILD_REFUSAL_CAUSES, TUNNEL_DROP_REASONS } from '@deut/tunnel';
import { encodeDhtDatagram } from '@deut/wire';
import { Gauge, Registry, register as globalRegistry } from 'prom-client';
import { METRICS_EXPOSED_WARNING, createNodeMetrics, metricsExposureWarning, reasonLabel, serveMetrics, type NodeMetrics } from '../src/metrics.js';
import { ManualClock } from '@deut/common';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Exposition {
  readonly samples: Sample[];
  readonly help: Map<string, string>;
  readonly type: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/;
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)/;

/** A strict reader of the Prometheus text format (0.0.4): every line must parse. */
function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const [, keyword, name, rest] = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line) ?? [];
      assert.ok(keyword !== undefined && name !== undefined && rest !== undefined && NAME.test(name), `bad comment line: ${line}`);
      if (keyword === 'HELP') help.set(name, rest);
      else {
        assert.match(rest, /^(counter|gauge|histogram|summary|untyped)$/, line);
        type.set(name, rest);
      }
      continue;
    }
    const match = SAMPLE.exec(line);
    assert.ok(match !== null, `bad sample line: ${line}`);
    const [, name, labelText = '', valueText] = match;
    const labels: Record<string, string> = {};
    let rest = labelText;
    while (rest !== '') {
      const label = LABEL.exec(rest);
      assert.ok(label !== null, `bad labels in: ${line}`);
      labels[label[1]!] = label[2]!.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
      rest = rest.slice(label[0].length);
    }
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    // prom-client writes NaN as 'Nan' (event loop lag before its first sample); Prometheus parses NaN case-insensitively.
    assert.ok(/^nan$/i.test(valueText!) || !Number.isNaN(value), `bad value in: ${line}`);
    samples.push({ name: name!, labels, value });
  }
  return { samples, help, type };
}

/** The sum of the samples named `name` whose labels include `labels`. */
function total(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  const matching = exposition.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(matching.length > 0, `no sample ${name} ${JSON.stringify(labels)}`);
  return matching.reduce((sum, s) => sum + s.value, 0);
}

const LABEL_NAMES = new Set(['role', 'outcome', 'layer', 'direction', 'reason', 'kind', 'le']);
/** deut_build_info's labels: versions, which are no codes but no secrets either. */
const BUILD_INFO_LABELS = new Set(['version', 'node_version', 'crypto_backend']);

/** Label values are bounded codes: never an address, key or id. */
function assertLabelsSafe(exposition: Exposition): void {
  for (const sample of exposition.samples) {
    if (!sample.name.startsWith('deut_')) continue;
    for (const [name, value] of Object.entries(sample.labels)) {
      if (sample.name === 'deut_build_info' && BUILD_INFO_LABELS.has(name)) {
        assert.match(value, /^v?\d+\.\d+\.\d+(?:-[0-9a-z.-]+)?$|^wasm$/, `deut_build_info ${name}="${value}"`);
        continue;
      }
      assert.ok(LABEL_NAMES.has(name), `unexpected label ${name} on ${sample.name}`);
      if (name === 'le') {
        assert.ok(value === '+Inf' || Number.isFinite(Number(value)), `le="${value}"`);
        continue;
      }
      assert.match(value, /^[a-z][a-z0-9_-]{0,63}$/, `${sample.name} ${name}="${value}"`);
      assert.doesNotMatch(value, /\d{1,3}(?:\.\d{1,3}){3}|:|[0-9a-f]{16,}/i, `${sample.name} ${name}="${value}" looks like an address or key`);
    }
  }
}

/** Every deut_ metric has HELP and TYPE text, and counters end in _total. */
function assertDescribed(exposition: Exposition): void {
  for (const [name, kind] of exposition.type) {
    if (!name.startsWith('deut_')) continue;
    assert.ok((exposition.help.get(name) ?? '').length > 10, `HELP of ${name}`);
    if (kind === 'counter') assert.match(name, /_total$/);
  }
  for (const sample of exposition.samples) {
    if (!sample.name.startsWith('deut_')) continue;
    const family = sample.name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(exposition.type.has(sample.name) || exposition.type.get(family) === 'histogram', `TYPE of ${sample.name}`);
  }
}

test('metrics - label values are codes; anything else is other', () => {
  assert.equal(reasonLabel('cell-replay'), 'cell-replay');
  assert.equal(reasonLabel('decode-bad-length'), 'decode-bad-length');
  // Wire codes keep their underscore in counter names, and so in labels.
  assert.equal(reasonLabel('decode-bad_length'), 'decode-bad_length');
  for (const bad of ['198.51.100.7', '2001:db8::1', 'deadbeefdeadbeefdeadbeef', 'Upper', 'with space', '', 'x'.repeat(65)]) assert.equal(reasonLabel(bad), 'other', bad);
});

test('metrics - a master and the relays of a testnet', async () => {
  await withTestnet({ relays: 4, masters: 1, tunnels: 2, waitForTunnels: false }, async (net) => {
    const master = net.masters[0]!.node;
    const listenersBefore = master.listenerCount('build-ended');
    const opened: NodeMetrics[] = [];
    try {
      // Created before the pool filled, so the histogram sees the first builds end.
      const masterMetrics = createNodeMetrics(master);
      opened.push(masterMetrics);
      const relayMetrics = net.relays.map((relay) => createNodeMetrics(relay.node));
      opened.push(...relayMetrics);
      await withDeadline(master.tunnels.ready(2), 60_000, 'the pool to fill');

      // Traffic through a tunnel, so cells are relayed and an endpoint sends a datagram.
      const echo = await net.echoServer();
      try {
        await withDeadline(master.send(echo.address, new TextEncoder().encode('ping')), 10_000, 'send');
        await until(() => echo.received.length > 0, 10_000, 'the echo server to hear us');
      } finally {
        await echo.close();
      }

      const scraped = parseExposition(await masterMetrics.scrape());
      assertDescribed(scraped);
      assertLabelsSafe(scraped);
      const stats = master.stats();
      assert.equal(total(scraped, 'deut_tunnels', { role: 'owned' }), stats.tunnels.owned);
      assert.equal(total(scraped, 'deut_tunnels', { role: 'owned' }), master.tunnels.list().length);
      assert.ok(total(scraped, 'deut_tunnel_builds_total') >= 2);
      assert.equal(total(scraped, 'deut_tunnel_builds_total', { outcome: 'succeeded' }), stats.pool?.counters['builds-succeeded']);
      assert.ok(total(scraped, 'deut_tunnel_build_seconds_count') >= 2);
      assert.equal(total(scraped, 'deut_tunnel_build_seconds_bucket', { le: '+Inf' }), total(scraped, 'deut_tunnel_build_seconds_count'));
      assert.ok(total(scraped, 'deut_link_sessions') > 0);
      assert.ok(total(scraped, 'deut_peers') > 0);
      assert.ok(total(scraped, 'deut_datagrams_total', { layer: 'link', direction: 'sent' }) > 0);
      assert.ok(total(scraped, 'deut_datagrams_total', { layer: 'link', direction: 'received' }) > 0);
      assert.equal(scraped.type.get('deut_tunnel_builds_total'), 'counter');
      assert.equal(scraped.type.get('deut_tunnel_build_seconds'), 'histogram');
      assert.equal(scraped.type.get('deut_tunnels'), 'gauge');
      // This master runs no DHT.
      assert.ok(!scraped.samples.some((s) => s.name.startsWith('deut_dht_')));

      const relays = await Promise.all(relayMetrics.map(async (m) => parseExposition(await m.scrape())));
      let transit = 0;
      let endpoints = 0;
      let relayed = 0;
      let exited = 0;
      for (const relay of relays) {
        assertDescribed(relay);
        assertLabelsSafe(relay);
        transit += total(relay, 'deut_tunnels', { role: 'transit' });
        endpoints += total(relay, 'deut_tunnels', { role: 'endpoint' });
        relayed += total(relay, 'deut_cells_relayed_total');
        exited += total(relay, 'deut_datagrams_total', { layer: 'endpoint', direction: 'sent' });
        assert.equal(total(relay, 'deut_tunnels', { role: 'owned' }), 0);
        assert.ok(total(relay, 'deut_link_sessions') > 0);
        assert.equal(total(relay, 'deut_endpoint_ports'), total(relay, 'deut_tunnels', { role: 'endpoint' }));
      }
      assert.ok(transit > 0);
      assert.ok(endpoints >= stats.tunnels.owned);
      assert.ok(relayed > 0);
      assert.ok(exited >= 1);

      // Snapshot counters stay monotonic across scrapes.
      const again = parseExposition(await masterMetrics.scrape());
      assert.ok(total(again, 'deut_datagrams_total') >= total(scraped, 'deut_datagrams_total'));
      assert.ok(total(again, 'deut_tunnel_builds_total') >= total(scraped, 'deut_tunnel_builds_total'));

      // Served over HTTP.
      const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, masterMetrics);
      try {
        const response = await fetch(`http://127.0.0.1:${server.address.port}/metrics`);
        assert.equal(response.status, 200);
        assert.equal(response.headers.get('content-type'), masterMetrics.registry.contentType);
        const served = parseExposition(await response.text());
        assert.ok(total(served, 'deut_link_sessions') > 0);
      } finally {
        await server.close();
      }

      // Each node has its own registry; the global one is untouched.
      assert.ok(!(await globalRegistry.metrics()).includes('deut_'));
      assert.notEqual(masterMetrics.registry, relayMetrics[0]!.registry);
    } finally {
      for (const metrics of opened) metrics.close();
    }
    assert.equal(master.listenerCount('build-ended'), listenersBefore);
    assert.equal(master.listenerCount('exit-refused'), 0);

    // A master with a DHT exposes its lookups and tables.
    const dhtMaster = await net.addMaster({ dht: true });
    const dhtMetrics = createNodeMetrics(dhtMaster.node);
    try {
      const scraped = parseExposition(await dhtMetrics.scrape());
      assertDescribed(scraped);
      assertLabelsSafe(scraped);
      for (const kind of ['get', 'put', 'find-node']) assert.ok(total(scraped, 'deut_dht_lookups_total', { kind }) >= 0);
      assert.equal(total(scraped, 'deut_dht_contacts'), dhtMaster.node.dht.stats().contacts);
      assert.equal(total(scraped, 'deut_dht_values'), dhtMaster.node.dht.stats().store.entries);
    } finally {
      dhtMetrics.close();
    }
  });
});

test('metrics - the HTTP server: /metrics, 404 elsewhere, port freed on close', async () => {
  const registry = new Registry();
  new Gauge({ name: 'deut_test_value', help: 'A value for the server test.', registers: [registry] }).set(7);
  const metrics: NodeMetrics = { registry, scrape: () => registry.metrics(), close: () => undefined };
  const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, metrics);
  const { host, port } = server.address;
  try {
    assert.equal(host, '127.0.0.1');
    assert.ok(port > 0);
    const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), registry.contentType);
    assert.equal(total(parseExposition(await ok.text()), 'deut_test_value'), 7);
    const withQuery = await fetch(`http://127.0.0.1:${port}/metrics?x=1`);
    assert.equal(withQuery.status, 200);
    await withQuery.arrayBuffer();
    for (const path of ['/', '/metrics/', '/other', '/metricsx']) {
      const response = await fetch(`http://127.0.0.1:${port}${path}`);
      assert.equal(response.status, 404, path);
      await response.arrayBuffer();
    }
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 404);
    await post.arrayBuffer();
  } finally {
    await server.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`));
  // The port is free again.
  const again = await serveMetrics({ host: '127.0.0.1', port }, metrics);
  assert.equal(again.address.port, port);
  await again.close();
  await server.close();
});

test('metrics - a metrics server that cannot listen rejects', async () => {
  const registry = new Registry();
  const metrics: NodeMetrics = { registry, scrape: () => registry.metrics(), close: () => undefined };
  const first = await serveMetrics({ host: '127.0.0.1', port: 0 }, metrics);
  try {
    await assert.rejects(serveMetrics({ host: '127.0.0.1', port: first.address.port }, metrics), /EADDRINUSE/);
  } finally {
    await first.close();
  }
});

test('metrics - hardening counters: build refusals by reason, key exchanges, handshake cookies and the public DHT\'s drops', async () => {
  await withTestnet({ relays: 2, masters: 1, tunnels: 1, waitForTunnels: false, master: { hops: 1 }, relay: { maxTransitPerNeighbour: 0 } }, async (net) => {
    const network = net.network!;
    // Every build through a relay that carries nothing for anyone is refused with a reply.
    const refusals = (r: { node: typeof net.relays[0]['node'] }): number => r.node.stats().tunnels.counters['build-refused-neighbour-cap'] ?? 0;
    await until(() => net.relays.some((r) => refusals(r) > 0), 30_000, 'a refused build');
    const relay = net.relays.find((r) => refusals(r) > 0)!.node;
    const socket = network.bind({ host: '127.0.3.30', port: 6881 });
    const publicDht = new DhtNode({ identity: generateKeyPair(), channel: { send: (to, data) => socket.send(data, to), onDatagram: (h) => socket.onMessage(h), close: () => undefined } });
    const metrics = createNodeMetrics(relay, { publicDht });
    try {
      const prober = network.bind({ host: '127.0.3.31', port: 5000 });
      for (let i = 0; i < 10; i++) prober.send(Uint8Array.of(0xd1, 0x01, 1, 2, 3), socket.local);
      await network.idle();
      await prober.close();
      const scraped = parseExposition(await metrics.scrape());
      assertDescribed(scraped);
      assertLabelsSafe(scraped);
      const stats = relay.stats();
      assert.equal(total(scraped, 'deut_build_refusals_total', { reason: 'neighbour-cap' }), stats.tunnels.counters['build-refused-neighbour-cap']);
      assert.equal(total(scraped, 'deut_key_exchanges_total', { kind: 'build' }), stats.tunnels.counters['build-key-exchanges']);
      assert.equal(total(scraped, 'deut_key_exchanges_total', { kind: 'handshake' }), stats.link.counters['handshakes-responded'] ?? 0);
      for (const kind of ['sent', 'received', 'admitted']) assert.equal(total(scraped, 'deut_handshake_cookies_total', { kind }), 0);
      assert.equal(total(scraped, 'deut_drops_total', { layer: 'public-dht' }), 10, 'the public DHT counts each junk datagram once');
    } finally {
      metrics.close();
      publicDht.close();
      await socket.close();
    }
  });
});

test('metrics - anti-amplification: padded re-sends, too-large answers and peer-exchange contacts reach deut_anti_amplification_total', async () => {
  await withTestnet({ relays: 4, masters: 2, tunnels: 1, master: { hops: 1 } }, async (net) => {
    const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
    b.handle(() => new Uint8Array(30 * 1024));
    const reply = await withDeadline(a.request(b.tunnels.list()[0]!.endpoint, new Uint8Array(20)), 20_000, 'a 30 KiB answer');
    assert.equal(reply.length, 30 * 1024);
    for (const node of [a, b]) {
      const metrics = createNodeMetrics(node);
      try {
        const scraped = parseExposition(await metrics.scrape());
        assertDescribed(scraped);
        const stats = node.stats();
        const messages = stats.messages!.counters;
        assert.equal(total(scraped, 'deut_anti_amplification_total', { kind: 'too-large-sent' }), messages['too-large-sent'] ?? 0);
        assert.equal(total(scraped, 'deut_anti_amplification_total', { kind: 'padded-resend' }), messages['requests-padded'] ?? 0);
        assert.equal(total(scraped, 'deut_anti_amplification_total', { kind: 'reply-over-request' }), messages['drop:reply-over-request'] ?? 0);
        for (const [kind, name] of [['pex-contact', 'pex-contacts'], ['pex-unanswered', 'pex-unanswered'], ['pex-distrusted', 'pex-distrusted'], ['pex-list-refused', 'drop:pex-distrusted']] as const) {
          assert.equal(total(scraped, 'deut_anti_amplification_total', { kind }), stats.counters[name] ?? 0, kind);
        }
      } finally {
        metrics.close();
      }
    }
    assert.ok((a.stats().messages!.counters['requests-padded'] ?? 0) >= 1, 'the requester padded its request');
    assert.ok((b.stats().messages!.counters['too-large-sent'] ?? 0) >= 1, 'the responder asked for padding');
    assert.ok((a.stats().counters['pex-contacts'] ?? 0) >= 1, 'the master contacted relayers it learned of');
  });
});

test('metrics - a healthy DHT with fan-out 2: second answers are duplicates, not drops; an answer to nothing we asked is unmatched', async () => {
  await withTestnet({ relays: 6, masters: 2, tunnels: 3, master: { dht: true, fanout: 2, hops: 1 } }, async (net) => {
    const [a, b] = [net.masters[0]!.node, net.masters[1]!.node];
    await joinDht([a, b], { timeoutMs: 60_000 });
    const key = new TextEncoder().encode('metrics-fanout-key');
    await withDeadline(a.dht.put(key, new TextEncoder().encode('value')), 30_000, 'the put');
    const got = await withDeadline(b.dht.get(key), 30_000, 'the get');
    assert.equal(got.values.length, 1);
    // The last copies' answers are still on their way when the get resolves.
    await until(() => (b.dht.stats().rpc.counters['answers-duplicate'] ?? 0) > 0, 10_000, "the get's duplicate answers");
    await net.network!.idle();
    for (const node of [a, b]) {
      const metrics = createNodeMetrics(node);
      try {
        const scraped = parseExposition(await metrics.scrape());
        assertDescribed(scraped);
        assertLabelsSafe(scraped);
        assert.equal(total(scraped, 'deut_drops_total', { layer: 'dht', reason: 'answer-unmatched' }), 0, 'no healthy answer counts as a drop');
        const duplicates = total(scraped, 'deut_dht_settled_answers_total', { layer: 'dht', kind: 'duplicate' });
        assert.equal(duplicates, node.dht.stats().rpc.counters['answers-duplicate'] ?? 0);
        if (node === b) assert.ok(duplicates > 0, 'the getter heard the second copies answered');
      } finally {
        metrics.close();
      }
    }

    // An answer with an rpc id b never used, sent to b's DHT address (an endpoint of its own).
    const stranger = net.network!.bind({ host: '127.0.3.50', port: 6881 });
    try {
      stranger.send(encodeDhtDatagram({ kind: 'response', rpcId: randomBytes(8), message: randomBytes(60) }), dhtContactOf(b).address);
      await until(() => b.dht.stats().rpc.counters['drop:answer-unmatched'] === 1, 10_000, 'the stray answer to be counted');
      const metrics = createNodeMetrics(b);
      try {
        assert.equal(total(parseExposition(await metrics.scrape()), 'deut_drops_total', { layer: 'dht', reason: 'answer-unmatched' }), 1);
      } finally {
        metrics.close();
      }
    } finally {
      await stranger.close();
    }
  });
});

test('metrics - a fresh node exports every known reason of every labelled family at 0, and its build info', async () => {
  await cryptoReady();
  const network = new MemoryNetwork({ seed: 7 });
  const node = await DeutNode.start({ listen: { host: '127.0.4.1', port: 0 }, sockets: { bind: (address) => Promise.resolve(network.bind(address)) }, master: true, tunnels: 1, dht: true });
  const metrics = createNodeMetrics(node);
  const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, metrics);
  try {
    const response = await fetch(`http://127.0.0.1:${server.address.port}/metrics`);
    assert.equal(response.status, 200);
    const scraped = parseExposition(await response.text());
    assertDescribed(scraped);
    assertLabelsSafe(scraped);
    const families: Array<[string, Record<string, string>, readonly string[]]> = [
      ['deut_drops_total', { layer: 'link' }, LINK_DROP_REASONS],
      ['deut_drops_total', { layer: 'engine' }, TUNNEL_DROP_REASONS],
      ['deut_drops_total', { layer: 'node' }, NODE_DROP_REASONS],
      ['deut_drops_total', { layer: 'exits' }, ENDPOINT_EXITS_DROP_REASONS],
      ['deut_drops_total', { layer: 'messenger' }, MESSENGER_DROP_REASONS],
      ['deut_drops_total', { layer: 'dht' }, DHT_RPC_DROP_REASONS],
      ['deut_build_refusals_total', {}, BUILD_REFUSAL_CAUSES],
      ['deut_exit_refused_total', {}, [...Object.keys(EXIT_REFUSED), 'other']],
    ];
    for (const [name, labels, reasons] of families) {
      assert.ok(reasons.length > 0);
      for (const reason of reasons) {
        assert.equal(reasonLabel(reason), reason, `${name} ${reason} is a label value as it is`);
        assert.equal(total(scraped, name, { ...labels, reason }), 0, `${name} ${JSON.stringify(labels)} ${reason}`);
      }
      const exported = scraped.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      assert.equal(exported.length, new Set(reasons).size, `${name} ${JSON.stringify(labels)}: exactly the known reasons`);
    }
    for (const kind of ['duplicate', 'late']) assert.equal(total(scraped, 'deut_dht_settled_answers_total', { layer: 'dht', kind }), 0);
    for (const [kind, outcome] of [['outcome', 'succeeded'], ['outcome', 'failed']] as const) assert.equal(total(scraped, 'deut_tunnel_build_seconds_count', { [kind]: outcome }), 0);

    const info = scraped.samples.filter((s) => s.name === 'deut_build_info');
    assert.equal(info.length, 1);
    const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    assert.deepEqual(info[0]!.labels, { version, node_version: process.version, crypto_backend: 'wasm' });
    assert.equal(info[0]!.value, 1);
    assert.equal(scraped.type.get('deut_build_info'), 'gauge');
    // Process metrics are the daemon's choice (once per process): none here.
    assert.ok(!scraped.samples.some((s) => s.name.startsWith('process_') || s.name.startsWith('nodejs_')));
  } finally {
    await server.close();
    metrics.close();
    await node.close();
  }
});

test('metrics - a master that cannot build: builds with no path and the stalled warnings (no path, an unanswered bootstrap) are exported', async () => {
  await cryptoReady();
  const clock = new ManualClock();
  const network = new MemoryNetwork({ seed: 8, clock });
  // Nobody listens at the bootstrap address.
  const node = await DeutNode.start({ listen: { host: '127.0.4.1', port: 0 }, bootstrap: [{ host: '127.0.4.9', port: 7500 }], sockets: { bind: (address) => Promise.resolve(network.bind(address)) }, tunnels: 1, clock });
  const metrics = createNodeMetrics(node);
  const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, metrics);
  try {
    for (let ms = 0; ms < 60_000; ms += 250) {
      clock.advance(250);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const scraped = parseExposition(await (await fetch(`http://127.0.0.1:${server.address.port}/metrics`)).text());
    assertDescribed(scraped);
    assertLabelsSafe(scraped);
    assert.equal(total(scraped, 'deut_tunnel_builds_total', { outcome: 'no-path' }), node.stats().pool?.counters['builds-no-path']);
    assert.ok(total(scraped, 'deut_tunnel_builds_total', { outcome: 'no-path' }) > 0);
    assert.ok(total(scraped, 'deut_stalled_warnings_total', { reason: 'no-path-too-few-relayers' }) >= 1);
    assert.equal(total(scraped, 'deut_stalled_warnings_total', { reason: 'no-path-one-subnet' }), 0);
    assert.ok(total(scraped, 'deut_stalled_warnings_total', { reason: 'bootstrap-unanswered' }) >= 1);
  } finally {
    await server.close();
    metrics.close();
    await node.close();
    await network.close();
  }
});

test('metrics - --metrics beyond loopback warns once, naming the flag, the risk and the cure; loopback is silent', async () => {
  for (const host of ['0.0.0.0', '::', '192.0.2.10', '2001:db8::1', '10.1.2.3']) assert.equal(metricsExposureWarning(host), METRICS_EXPOSED_WARNING, host);
  for (const host of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1']) assert.equal(metricsExposureWarning(host), undefined, host);
  assert.match(METRICS_EXPOSED_WARNING, /--metrics/);
  assert.match(METRICS_EXPOSED_WARNING, /traffic analysis/);
  assert.match(METRICS_EXPOSED_WARNING, /firewall/);
  assert.match(METRICS_EXPOSED_WARNING, /README\.md/);
  // No address in the text: the daemon's logger would scrub it and leave a hole in the sentence.
  assert.doesNotMatch(METRICS_EXPOSED_WARNING, /\d+\.\d+\.\d+\.\d+|::/);

  const warnings: string[] = [];
  const logger: Logger = { error: () => undefined, warn: (message) => void warnings.push(message), info: () => undefined, debug: () => undefined };
  const registry = new Registry();
  const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, { registry, scrape: () => registry.metrics(), close: () => undefined }, { logger });
  await server.close();
  assert.deepEqual(warnings, []);
});

test('metrics - deut run --metrics serves build info and the standard process metrics', { timeout: 60_000 }, async () => {
  const bin = fileURLToPath(new URL('../src/bin.js', import.meta.url));
  const dir = await mkdtemp(join(tmpdir(), 'deut-metrics-'));
  const child = spawn(
    process.execPath,
    [bin, 'run', '--listen', '127.0.4.2:0', '--control', '127.0.0.1:0', '--control-file', join(dir, 'control.json'), '--metrics', '127.0.0.1:0', '--log-format', 'json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (c: Buffer) => (output.stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output.stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await until(() => /metrics (http:\/\/[^\s;]+)/.test(output.stdout) || child.exitCode !== null, 30_000, 'the daemon to print its metrics address');
    const url = /metrics (http:\/\/[^\s;]+)/.exec(output.stdout)?.[1];
    assert.ok(url !== undefined, `stdout: ${output.stdout} stderr: ${output.stderr}`);
    const scraped = parseExposition(await (await fetch(url)).text());
    assertLabelsSafe(scraped);
    assert.equal(total(scraped, 'deut_build_info', { crypto_backend: 'wasm' }), 1);
    // Standard names, unprefixed: stock Node.js dashboards and alerts read them as they are.
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      assert.ok(scraped.samples.some((s) => s.name === name), name);
    }
    assert.ok(!scraped.samples.some((s) => s.name.startsWith('deut_process_') || s.name.startsWith('deut_nodejs_')));
    assert.doesNotMatch(output.stderr, /--metrics listens/, 'loopback metrics raise no warning');
  } finally {
    child.kill('SIGTERM');
    await withDeadline(exited, 20_000, 'the daemon to exit').catch(() => child.kill('SIGKILL'));
    await rm(dir, { recursive: true, force: true });
  }
});

test('metrics - every query of the Grafana dashboard names a metric family and labels a node exports', async () => {
  const dashboard = JSON.parse(readFileSync(new URL('../../../../deploy/grafana/deut-dashboard.json', import.meta.url), 'utf8')) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
  };
  await cryptoReady();
  const network = new MemoryNetwork({ seed: 9 });
  const node = await DeutNode.start({ listen: { host: '127.0.4.1', port: 0 }, sockets: { bind: (address) => Promise.resolve(network.bind(address)) }, master: true, tunnels: 1, dht: true });
  const metrics = createNodeMetrics(node);
  const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, metrics);
  try {
    const scraped = parseExposition(await (await fetch(`http://127.0.0.1:${server.address.port}/metrics`)).text());
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => [p.title, t.expr] as const));
    assert.ok(exprs.length >= 10);
    for (const [title, expr] of exprs) {
      const names = [...expr.matchAll(/\b(deut_[a-z_]+)\b/g)].map((m) => m[1]!);
      assert.ok(names.length > 0, `${title}: queries a deut metric`);
      // Labels the query groups by or matches on; `instance` and `le` come from Prometheus and histograms.
      const labels = new Set([...expr.matchAll(/by \(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim())));
      for (const m of expr.matchAll(/([a-z_]+)=~?"/g)) labels.add(m[1]!);
      for (const name of names) {
        const samples = scraped.samples.filter((s) => s.name === name);
        assert.ok(samples.length > 0, `${title}: ${name} is exported`);
        for (const label of labels) {
          if (label === 'instance' || label === 'le') continue;
          assert.ok(samples.some((s) => label in s.labels), `${title}: ${name} has the label ${label}`);
        }
      }
    }
  } finally {
    await server.close();
    metrics.close();
    await node.close();
    await network.close();
  }
});

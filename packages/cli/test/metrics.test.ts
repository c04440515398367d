/** Prometheus metrics of a node, scraped from a small in-memory testnet, and their HTTP server. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@deut/crypto';
import { DhtNode } from '@deut/dht';
import { until, withDeadline, withTestnet } from '@deut/node';
import { Gauge, Registry, register as globalRegistry } from 'prom-client';
import { createNodeMetrics, reasonLabel, serveMetrics, type NodeMetrics } from '../src/metrics.js';

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
    assert.ok(valueText === 'NaN' || !Number.isNaN(value), `bad value in: ${line}`);
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

/** Label values are bounded codes: never an address, key or id. */
function assertLabelsSafe(exposition: Exposition): void {
  for (const sample of exposition.samples) {
    if (!sample.name.startsWith('deut_')) continue;
    for (const [name, value] of Object.entries(sample.labels)) {
      assert.ok(LABEL_NAMES.has(name), `unexpected label ${name} on ${sample.name}`);
      if (name === 'le') {
        assert.ok(value === '+Inf' || Number.isFinite(Number(value)), `le="${value}"`);
        continue;
      }
      assert.match(value, /^[a-z][a-z0-9-]{0,63}$/, `${sample.name} ${name}="${value}"`);
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

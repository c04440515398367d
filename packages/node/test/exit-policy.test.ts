/** Tests of the endpoint's exit policy (PROTOCOL.md §5.5, SECURITY.md §3.10). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock, sumCounters } from '@deut/common';
import { DEFAULT_MASTER_LIMIT, DEFAULT_TUNNEL_LIMIT, ExitPolicy, classifyAddress } from '../src/exit-policy.js';
import type { AddressClass } from '../src/exit-policy.js';

const TABLE: [string, AddressClass][] = [
  // IPv4
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['223.255.255.255', 'public'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['172.15.255.255', 'public'],
  ['172.32.0.0', 'public'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'private'],
  ['100.127.255.255', 'private'],
  ['100.63.255.255', 'public'],
  ['100.128.0.0', 'public'],
  ['169.254.1.1', 'link-local'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['255.255.255.255', 'broadcast'],
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'reserved'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['192.0.0.8', 'reserved'],
  ['192.0.1.1', 'public'],
  ['192.0.2.1', 'reserved'],
  ['198.18.0.1', 'reserved'],
  ['198.19.255.255', 'reserved'],
  ['198.20.0.0', 'public'],
  ['198.51.100.7', 'reserved'],
  ['203.0.113.9', 'reserved'],
  // IPv6
  ['2001:4860:4860::8888', 'public'],
  ['2606:4700::1111', 'public'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['fc00::1', 'private'],
  ['fd12:3456::1', 'private'],
  ['fe80::1', 'link-local'],
  ['febf:ffff::1', 'link-local'],
  ['ff02::1', 'multicast'],
  ['FF0E::1', 'multicast'],
  ['::', 'unspecified'],
  ['2001:db8::1', 'reserved'],
  ['2001:db9::1', 'public'],
  ['3fff::1', 'reserved'],
  ['2001:2::1', 'reserved'],
  ['::1.2.3.4', 'reserved'],
  ['100::1', 'reserved'],
  ['fec0::1', 'reserved'],
  ['4000::1', 'reserved'],
  // IPv4-mapped, NAT64 and 6to4 addresses are what they embed.
  ['::ffff:8.8.8.8', 'public'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['::FFFF:7f00:1', 'loopback'],
  ['::ffff:10.1.2.3', 'private'],
  ['::ffff:169.254.0.1', 'link-local'],
  ['::ffff:224.0.0.1', 'multicast'],
  ['::ffff:255.255.255.255', 'broadcast'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:192.0.2.1', 'reserved'],
  ['64:ff9b::8.8.8.8', 'public'],
  ['64:ff9b::127.0.0.1', 'loopback'],
  ['64:ff9b::a00:1', 'private'],
  ['64:ff9b:1::1', 'private'],
  ['2002:0808:0808::1', 'public'],
  ['2002:7f00:0001::1', 'loopback'],
  ['2002:c0a8:0101::1', 'private'],
  // Not IP literals.
  ['localhost', 'invalid'],
  ['example.com', 'invalid'],
  ['', 'invalid'],
  ['1.2.3', 'invalid'],
  ['1.2.3.256', 'invalid'],
  ['01.2.3.4', 'invalid'],
  ['1.2.3.4 ', 'invalid'],
  ['fe80::1%eth0', 'invalid'],
  ['[::1]', 'invalid'],
  ['1::2::3', 'invalid'],
  ['127.0.0.1:80', 'invalid'],
];

test('classifyAddress - every class, IPv4, IPv6 and embedded IPv4', () => {
  for (const [host, expected] of TABLE) assert.equal(classifyAddress(host), expected, host);
});

test('exit policy - refuses everything but public addresses by default', () => {
  const policy = new ExitPolicy();
  for (const [host, expected] of TABLE) {
    assert.equal(policy.checkDestination({ host, port: 53 }), expected === 'public' ? 'ok' : expected, host);
  }
  const refused = TABLE.filter(([, kind]) => kind !== 'public').length;
  const counted = sumCounters(policy.stats().counters);
  assert.equal(counted, refused);
  assert.equal(policy.stats().counters['loopback'], TABLE.filter(([, kind]) => kind === 'loopback').length);
});

test('exit policy - allowPrivateExits lets loopback, private and link-local through, nothing else', () => {
  const policy = new ExitPolicy({ allowPrivateExits: true });
  const allowed = new Set<AddressClass>(['public', 'loopback', 'private', 'link-local']);
  for (const [host, kind] of TABLE) {
    assert.equal(policy.checkDestination({ host, port: 53 }), allowed.has(kind) ? 'ok' : kind, host);
  }
});

test('exit policy - port 0 and ports out of range are refused', () => {
  const policy = new ExitPolicy();
  assert.equal(policy.checkDestination({ host: '8.8.8.8', port: 0 }), 'port-zero');
  assert.equal(policy.checkDestination({ host: '8.8.8.8', port: 65536 }), 'invalid');
  assert.equal(policy.checkDestination({ host: '8.8.8.8', port: 1.5 }), 'invalid');
  assert.equal(policy.checkDestination({ host: '8.8.8.8', port: 65535 }), 'ok');
  assert.deepEqual(policy.stats().counters, { 'port-zero': 1, invalid: 2 });
});

test('exit policy - own addresses are refused, by host or by host and port, even with allowPrivateExits', () => {
  const policy = new ExitPolicy({
    allowPrivateExits: true,
    ownAddresses: ['127.0.0.1:4000', '[::1]:4001', '198.51.200.1', '2001:4860::1'],
  });
  assert.equal(policy.checkDestination({ host: '127.0.0.1', port: 4000 }), 'own-address');
  assert.equal(policy.checkDestination({ host: '::ffff:127.0.0.1', port: 4000 }), 'own-address', 'mapped form of the same address');
  assert.equal(policy.checkDestination({ host: '127.0.0.1', port: 4002 }), 'ok', 'another node of the mesh on the same host');
  assert.equal(policy.checkDestination({ host: '127.0.0.2', port: 4000 }), 'ok');
  assert.equal(policy.checkDestination({ host: '0:0::1', port: 4001 }), 'own-address', 'non-canonical form of the same address');
  assert.equal(policy.checkDestination({ host: '::1', port: 4000 }), 'ok');
  assert.equal(policy.checkDestination({ host: '198.51.200.1', port: 1 }), 'own-address');
  assert.equal(policy.checkDestination({ host: '198.51.200.1', port: 65535 }), 'own-address');
  assert.equal(policy.checkDestination({ host: '2001:4860:0::1', port: 53 }), 'own-address');
  assert.equal(policy.stats().counters['own-address'], 6);
});

test('exit policy - endpoint ports are added and removed as they are bound and freed', () => {
  const policy = new ExitPolicy({ ownAddresses: ['198.51.200.1:4000'] });
  const port = { host: '198.51.200.1', port: 50_000 };
  assert.equal(policy.checkDestination(port), 'ok');
  policy.addOwnAddress(port);
  assert.equal(policy.checkDestination(port), 'own-address');
  assert.equal(policy.checkDestination({ host: '198.51.200.1', port: 4000 }), 'own-address');
  policy.deleteOwnAddress(port);
  assert.equal(policy.checkDestination(port), 'ok');
});

test('exit policy - own addresses that do not parse are a config error', () => {
  for (const bad of ['localhost', 'localhost:4000', '1.2.3.4:0', '1.2.3.4:70000', '[::1]', '::1:', '']) {
    assert.throws(() => new ExitPolicy({ ownAddresses: [bad] }), { kind: 'config', code: 'BAD_OPTION' }, bad);
  }
  assert.doesNotThrow(() => new ExitPolicy({ ownAddresses: ['::1', 'fe80::1', '[2001:db8::1]:9'] }));
});

test('exit policy - a tunnel passes its packet burst, is refused, then refills', () => {
  const clock = new ManualClock();
  const policy = new ExitPolicy({ clock });
  const burst = DEFAULT_TUNNEL_LIMIT.packets.burst;
  let passed = 0;
  for (let i = 0; i < burst + 50; i++) if (policy.admitPacket('t1', 'm1', 10)) passed++;
  assert.equal(passed, burst);
  assert.equal(policy.stats().counters['tunnel-packets'], 50);
  assert.ok(policy.admitPacket('t2', 'm1', 10), 'another tunnel of the master has its own budget');
  clock.advance(1000);
  passed = 0;
  for (let i = 0; i < burst; i++) if (policy.admitPacket('t1', 'm1', 10)) passed++;
  assert.equal(passed, DEFAULT_TUNNEL_LIMIT.packets.perSecond);
});

test('exit policy - a tunnel passes its byte burst, is refused, then refills', () => {
  const clock = new ManualClock();
  const policy = new ExitPolicy({ clock });
  const size = 65_507;
  let passed = 0;
  for (let i = 0; i < 20; i++) if (policy.admitPacket('t1', 'm1', size)) passed++;
  assert.equal(passed, Math.floor(DEFAULT_TUNNEL_LIMIT.bytes.burst / size));
  assert.equal(policy.stats().counters['tunnel-bytes'], 20 - passed);
  clock.advance(1000);
  passed = 0;
  for (let i = 0; i < 20; i++) if (policy.admitPacket('t1', 'm1', size)) passed++;
  assert.equal(passed, Math.floor(DEFAULT_TUNNEL_LIMIT.bytes.perSecond / size));
});

test('exit policy - the per-master cap holds across many tunnels', () => {
  const clock = new ManualClock();
  const policy = new ExitPolicy({ clock });
  const masterBurst = DEFAULT_MASTER_LIMIT.packets.burst;
  let passed = 0;
  // 20 tunnels of 150 packets: each under its own burst of 400, together over the master's 2000.
  for (let t = 0; t < 20; t++) {
    for (let i = 0; i < 150; i++) if (policy.admitPacket(`t${t}`, 'm1', 1)) passed++;
  }
  assert.equal(passed, masterBurst);
  assert.equal(policy.stats().counters['master-packets'], 20 * 150 - masterBurst);
  assert.equal(policy.stats().counters['tunnel-packets'], undefined);
  assert.ok(policy.admitPacket('t0', 'm2', 1), 'another master is not affected');
  clock.advance(1000);
  passed = 0;
  for (let t = 0; t < 20; t++) {
    for (let i = 0; i < 100; i++) if (policy.admitPacket(`t${t}`, 'm1', 1)) passed++;
  }
  assert.equal(passed, DEFAULT_MASTER_LIMIT.packets.perSecond);
});

test('exit policy - a tunnel refused by its own cap does not spend its master budget', () => {
  const clock = new ManualClock();
  const policy = new ExitPolicy({
    clock,
    perTunnel: { packets: { perSecond: 1, burst: 2 }, bytes: { perSecond: 1e9, burst: 1e9 } },
    perMaster: { packets: { perSecond: 1, burst: 3 }, bytes: { perSecond: 1e9, burst: 1e9 } },
  });
  assert.ok(policy.admitPacket('noisy', 'm', 1));
  assert.ok(policy.admitPacket('noisy', 'm', 1));
  for (let i = 0; i < 100; i++) assert.equal(policy.admitPacket('noisy', 'm', 1), false);
  assert.ok(policy.admitPacket('quiet', 'm', 1), 'the master still has one token left');
  assert.equal(policy.admitPacket('quiet', 'm', 1), false);
  assert.deepEqual(policy.stats().counters, { 'tunnel-packets': 100, 'master-packets': 1 });
});

test('exit policy - master byte cap and bad byte counts', () => {
  const clock = new ManualClock();
  const policy = new ExitPolicy({ clock });
  let passed = 0;
  for (let t = 0; t < 10; t++) {
    for (let i = 0; i < 8; i++) if (policy.admitPacket(`t${t}`, 'm', 60_000)) passed++;
  }
  assert.equal(passed, Math.floor(DEFAULT_MASTER_LIMIT.bytes.burst / 60_000));
  assert.ok((policy.stats().counters['master-bytes'] ?? 0) > 0);
  assert.throws(() => policy.admitPacket('t', 'm', Number.NaN), RangeError);
  assert.throws(() => policy.admitPacket('t', 'm', -1), RangeError);
});

test('exit policy - the port cap: reserve up to maxPorts, release frees one', () => {
  const policy = new ExitPolicy({ maxPorts: 3 });
  assert.ok(policy.reservePort());
  assert.ok(policy.reservePort());
  assert.ok(policy.reservePort());
  assert.equal(policy.reservePort(), false);
  assert.equal(policy.portsHeld, 3);
  policy.releasePort();
  assert.equal(policy.portsHeld, 2);
  assert.ok(policy.reservePort());
  assert.equal(policy.reservePort(), false);
  for (let i = 0; i < 3; i++) policy.releasePort();
  policy.releasePort();
  assert.equal(policy.portsHeld, 0);
  assert.deepEqual(policy.stats(), { portsHeld: 0, counters: { 'port-cap': 2, 'port-release-unheld': 1 } });
  assert.equal(new ExitPolicy().stats().portsHeld, 0);
  const defaults = new ExitPolicy();
  let held = 0;
  while (defaults.reservePort()) held++;
  assert.equal(held, 1024);
});

test('exit policy - limits that are not positive are a config error', () => {
  const zero = { packets: { perSecond: 0, burst: 1 }, bytes: { perSecond: 1, burst: 1 } };
  assert.throws(() => new ExitPolicy({ perTunnel: zero }), { code: 'BAD_OPTION' });
  assert.throws(() => new ExitPolicy({ perMaster: zero }), { code: 'BAD_OPTION' });
  assert.throws(() => new ExitPolicy({ maxPorts: -1 }), { code: 'BAD_OPTION' });
});

/**
 * Issue #8, the endpoint as an open proxy (docs/PROTOCOL.md §5.5; RFC 9298 §7), end to end
 * through real tunnels: the exit policy refuses what it must, and the per-tunnel and
 * per-master (per upstream neighbour) packet and byte caps hold exactly. Refill rates are
 * set so low (one token per 1000 s) that no token comes back during a test: the counts are
 * exact, whatever the machine's speed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { UdpAddress } from '@deut/common';
import { cryptoReady, randomBytes } from '@deut/crypto';
import type { DeutNode } from '@deut/node';
import { until, withTestnet, type Testnet } from '@deut/testkit';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const FROZEN = 0.001; // tokens per second: none refill within a test
const PLENTY = { perSecond: 1e9, burst: 1e9 };

function refusals(node: DeutNode): Array<{ tunnel: number; reason: number }> {
  const items: Array<{ tunnel: number; reason: number }> = [];
  node.on('exit-refused', (info) => items.push(info));
  return items;
}

/** Sends `count` datagrams of `bytes` through each of the master's tunnels, in turn; waits until each was sent or refused. */
async function sendThroughEach(net: Testnet, to: UdpAddress, count: number, bytes: number, seen: () => number): Promise<void> {
  const master = net.masters[0]!.node;
  const before = seen();
  const tunnels = master.tunnels.list();
  for (const tunnel of tunnels) for (let i = 0; i < count; i++) await master.send(to, randomBytes(bytes), { tunnel: tunnel.id });
  await until(() => seen() - before >= tunnels.length * count, 10_000, 'every datagram sent or refused');
  await net.network!.idle();
}

test('open proxy - through tunnels: per-tunnel and per-master packet caps hold exactly, and a tunnel refused by its own cap spends no master budget', { timeout: 60_000 }, async () => {
  const exit = { perTunnel: { packets: { perSecond: FROZEN, burst: 5 }, bytes: PLENTY }, perMaster: { packets: { perSecond: FROZEN, burst: 12 }, bytes: PLENTY } };
  await withTestnet({ relays: 1, masters: 1, tunnels: 4, master: { hops: 1 }, relay: { exit } }, async (net) => {
    const master = net.masters[0]!.node;
    const endpoint = net.relays[0]!.node;
    const echo = await net.echoServer();
    const refused = refusals(master);
    assert.equal(master.tunnels.list().length, 4);
    // Tunnel 1: 5 pass, 5 refused by its own cap; tunnel 2: 5 pass (the master budget is at
    // 10); tunnel 3: 2 pass, then the master's 12 are spent; tunnel 4: nothing.
    await sendThroughEach(net, echo.address, 10, 100, () => echo.received.length + refused.length);
    assert.equal(echo.received.length, 12, 'exactly the per-master burst went out');
    assert.equal(refused.length, 28);
    assert.ok(refused.every((r) => r.reason === 2), 'every refusal is a rate refusal');
    const exits = endpoint.stats().exits.counters;
    assert.equal(exits['datagrams-exited'], 12);
    assert.equal(exits['drop:exit-rate'], 28);
  });
});

test('open proxy - through tunnels: per-tunnel and per-master byte caps hold exactly', { timeout: 60_000 }, async () => {
  const exit = { perTunnel: { packets: PLENTY, bytes: { perSecond: FROZEN, burst: 5_000 } }, perMaster: { packets: PLENTY, bytes: { perSecond: FROZEN, burst: 12_000 } } };
  await withTestnet({ relays: 1, masters: 1, tunnels: 4, master: { hops: 1 }, relay: { exit } }, async (net) => {
    const master = net.masters[0]!.node;
    const echo = await net.echoServer();
    const refused = refusals(master);
    await sendThroughEach(net, echo.address, 10, 1_000, () => echo.received.length + refused.length);
    const bytesOut = echo.received.reduce((sum, r) => sum + r.data.length, 0);
    assert.equal(bytesOut, 12_000, 'exactly the per-master byte burst went out');
    assert.equal(refused.length, 28);
  });
});

test('open proxy - through tunnels: loopback, private, link-local, multicast and the endpoint\'s own port are refused and nothing leaves', { timeout: 60_000 }, async () => {
  await withTestnet({ relays: 1, masters: 1, tunnels: 1, master: { hops: 1 }, relay: { allowPrivateExits: false } }, async (net) => {
    const master = net.masters[0]!.node;
    const endpoint = net.relays[0]!.node;
    const echo = await net.echoServer();
    const refused = refusals(master);
    const forbidden: UdpAddress[] = [
      echo.address,
      { host: '127.0.0.1', port: 53 },
      { host: '10.1.2.3', port: 9 },
      { host: '192.168.1.1', port: 53 },
      { host: '169.254.1.1', port: 9 },
      { host: '224.0.0.1', port: 9 },
      { host: '255.255.255.255', port: 9 },
      { host: '0.0.0.0', port: 9 },
      endpoint.address,
      { host: '::1', port: 53 },
      { host: 'fe80::1', port: 53 },
      { host: 'ff02::1', port: 53 },
    ];
    for (const to of forbidden) await master.send(to, randomBytes(100));
    await until(() => refused.length === forbidden.length, 10_000, 'a refusal for every forbidden destination');
    await net.network!.idle();
    assert.ok(refused.every((r) => r.reason === 1), 'every refusal is a policy refusal');
    assert.equal(echo.received.length, 0);
    assert.equal(endpoint.stats().exits.counters['datagrams-exited'] ?? 0, 0, 'the endpoint sent nothing');
  });
});

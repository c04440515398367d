/**
 * `npm start`: a self-contained deut mesh on loopback UDP doing real work. Eight relayers
 * find each other by peer exchange; two masters build 3-hop tunnels; one sends a datagram
 * to a plain UDP echo server and requests to the other master through the tunnels. It ends
 * with what each party saw, and exits 0 only if every check held.
 */
import { performance } from 'node:perf_hooks';
import { addressKey, type UdpAddress } from '@deut/common';
import { DeutNode } from '@deut/node';
import { bindUdp } from '@deut/transport';

const RELAYS = 8;
const TUNNELS = 6;
const REQUESTS = 20;

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const bytes = (value: string): Uint8Array => new TextEncoder().encode(value);

function say(message: string): void {
  console.log(`  ${message}`);
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
  say(`ok: ${what}`);
}

async function main(): Promise<void> {
  console.log(`deut mesh demo: ${RELAYS} relayers, 2 masters, ${TUNNELS} tunnels each, all on loopback UDP\n`);
  const testnet = { allowPrivateExits: true, allowSameSubnet: true } as const;
  const relays: DeutNode[] = [];
  const masters: DeutNode[] = [];
  const echo = await bindUdp({ host: '127.0.3.1', port: 0 });
  const echoSources: UdpAddress[] = [];
  echo.onMessage((data, from) => {
    echoSources.push(from);
    echo.send(data, from);
  });
  try {
    console.log('1. relayers');
    relays.push(await DeutNode.start({ listen: { host: '127.0.1.1', port: 0 }, ...testnet }));
    const bootstrap = relays[0]!.address;
    for (let i = 2; i <= RELAYS; i++) relays.push(await DeutNode.start({ listen: { host: `127.0.1.${i}`, port: 0 }, bootstrap: [bootstrap], ...testnet }));
    await waitFor(() => relays[0]!.stats().peers >= RELAYS - 1, 'relayers to announce themselves');
    say(`bootstrap ${addressKey(bootstrap)} knows ${relays[0]!.stats().peers} relayers through peer exchange`);

    console.log('\n2. masters build tunnels');
    const started = performance.now();
    for (const host of ['127.0.2.1', '127.0.2.2']) {
      masters.push(await DeutNode.start({ listen: { host, port: 0 }, bootstrap: [bootstrap], relay: false, tunnels: TUNNELS, hops: 3, ...testnet }));
    }
    const [alice, bob] = masters as [DeutNode, DeutNode];
    await Promise.all(masters.map((m) => m.tunnels.ready(TUNNELS)));
    say(`${2 * TUNNELS} tunnels of 3 hops built in ${(performance.now() - started).toFixed(0)} ms`);
    say(`alice is ${addressKey(alice.address)}; her endpoints: ${alice.tunnels.list().map((t) => addressKey(t.endpoint)).join(', ')}`);
    const session = alice.link.sessions()[0];
    if (session !== undefined) say(`one of alice's links: session id ${session.sessionId} (compare it at the other end to rule out a man in the middle)`);

    console.log('\n3. a datagram to a plain UDP echo server, through a tunnel');
    const echoed = new Promise<string>((resolve) => alice.once('datagram', (data) => resolve(text(data))));
    await alice.send(echo.local, bytes('hello, echo'));
    check((await withTimeout(echoed, 10_000, 'the echo')) === 'hello, echo', 'the echo came back through the tunnel');

    console.log('\n4. requests from alice to bob, master to master');
    bob.handle((payload) => bytes(`bob got: ${text(payload)}`));
    const rtts: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const endpoints = bob.tunnels.list();
      const to = endpoints[i % endpoints.length]!.endpoint;
      const t0 = performance.now();
      const reply = await alice.request(to, bytes(`question ${i}`));
      rtts.push(performance.now() - t0);
      if (text(reply) !== `bob got: question ${i}`) throw new Error(`wrong reply to request ${i}`);
    }
    rtts.sort((a, b) => a - b);
    check(true, `${REQUESTS} requests answered; median round trip ${rtts[Math.floor(rtts.length / 2)]!.toFixed(1)} ms through 3 + 3 hops`);

    console.log('\n5. what each party saw');
    const aliceEndpoints = new Set(alice.tunnels.list().map((t) => addressKey(t.endpoint)));
    const sources = new Set(echoSources.map(addressKey));
    say(`the echo server saw datagrams from: ${[...sources].join(', ')}`);
    check([...sources].every((s) => aliceEndpoints.has(s)) && !sources.has(addressKey(alice.address)), 'the echo server saw only alice\'s endpoints, never alice');
    const relayed = relays.reduce((n, r) => n + (r.stats().tunnels.counters['cells-relayed'] ?? 0), 0);
    const exited = relays.reduce((n, r) => n + (r.stats().exits.counters['datagrams-exited'] ?? 0), 0);
    say(`relayers relayed ${relayed} cells and sent ${exited} datagrams out of endpoints on the masters' behalf`);
    const served = bob.stats().messages?.counters ?? {};
    say(`bob served ${served['requests-served'] ?? 0} requests and dropped ${served['duplicates-dropped'] ?? 0} fan-out duplicates`);

    console.log('\n6. shutdown');
    await Promise.all(masters.splice(0).map((m) => m.close()));
    await waitFor(() => relays.every((r) => r.stats().tunnels.transit === 0 && r.stats().exits.ports === 0), 'relayers to free tunnel state');
    check(true, 'masters closed; every relayer freed its tunnels and endpoint ports');
    console.log('\ndemo complete');
  } finally {
    await Promise.allSettled([...masters, ...relays].map((n) => n.close()));
    await echo.close();
  }
}

async function waitFor(predicate: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} in ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);

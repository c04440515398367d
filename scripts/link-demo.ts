/**
 * `npm start` until the CLI's mesh demo lands: two deut nodes on loopback UDP complete a
 * link handshake, print their session ids, exchange datagrams through the encrypted link
 * and report what they counted. Exits 0 on success, 1 on any mismatch.
 */
import { performance } from 'node:perf_hooks';
import { addressKey } from '@deut/common';
import { cryptoReady, generateKeyPair } from '@deut/crypto';
import { Link } from '@deut/link';
import { bindUdp } from '@deut/transport';

const DATAGRAMS = 20_000;
const WINDOW = 64;

function step(message: string): void {
  console.log(`  ${message}`);
}

async function main(): Promise<number> {
  await cryptoReady();
  console.log('deut link demo: two nodes on loopback, one encrypted link\n');
  const alpha = await Link.create({ socket: await bindUdp({ host: '127.0.0.1', port: 0 }), identity: generateKeyPair(), ephemeralIdentity: true });
  const bravo = await Link.create({ socket: await bindUdp({ host: '127.0.0.2', port: 0 }), identity: generateKeyPair() });
  try {
    step(`alpha listens on ${addressKey(alpha.address)} (ephemeral identity, like a master)`);
    step(`bravo listens on ${addressKey(bravo.address)} (persistent identity, like a relayer)`);

    const started = performance.now();
    const session = await alpha.connect(bravo.address);
    const handshakeMs = performance.now() - started;
    const bravoSession = bravo.sessions()[0];
    step(`handshake (Noise XX, Elligator2-hidden keys) done in ${handshakeMs.toFixed(1)} ms`);
    step(`session id at alpha: ${session.sessionId}`);
    step(`session id at bravo: ${bravoSession?.sessionId ?? '(none)'}`);
    if (bravoSession?.sessionId !== session.sessionId) throw new Error('session ids differ');
    step('session ids match: no man in the middle\n');

    bravo.onPayload((payload, from) => bravo.send(from.address, payload));
    let echoed = 0;
    let corrupted = 0;
    alpha.onPayload((payload) => {
      echoed++;
      if (payload.length !== 512 || payload[0] !== 0xde || payload[511] !== 0x75) corrupted++;
    });
    const body = new Uint8Array(512).fill(0x42);
    body[0] = 0xde;
    body[511] = 0x75;
    const t0 = performance.now();
    let sent = 0;
    let lastReport = t0;
    while (echoed < DATAGRAMS) {
      while (sent < DATAGRAMS && sent - echoed < WINDOW) {
        alpha.send(bravo.address, body);
        sent++;
      }
      await new Promise((resolve) => setImmediate(resolve));
      if (performance.now() - lastReport > 1000) {
        lastReport = performance.now();
        step(`... ${echoed} of ${DATAGRAMS} echoed`);
      }
      if (performance.now() - t0 > 60_000) throw new Error(`only ${echoed} of ${DATAGRAMS} echoes in 60 s`);
    }
    const seconds = (performance.now() - t0) / 1000;
    const aStats = alpha.stats().counters;
    const bStats = bravo.stats().counters;
    step(`${DATAGRAMS} datagrams of 512 bytes sent alpha -> bravo -> alpha in ${seconds.toFixed(2)} s`);
    step(`${((2 * DATAGRAMS) / seconds).toFixed(0)} encrypted 1200-byte datagrams/s through the link (both directions)`);
    step(`alpha: out ${aStats['datagrams-out'] ?? 0}, in ${aStats['datagrams-in'] ?? 0}; bravo: out ${bStats['datagrams-out'] ?? 0}, in ${bStats['datagrams-in'] ?? 0}`);
    const drops = Object.entries({ ...aStats, ...bStats }).filter(([k]) => k.startsWith('drop:'));
    step(`drops: ${drops.length === 0 ? 'none' : drops.map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (corrupted > 0) throw new Error(`${corrupted} echoes were corrupted`);
    console.log('\nok: handshake, matching session ids, and every datagram echoed intact');
    return 0;
  } finally {
    await alpha.close();
    await bravo.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);

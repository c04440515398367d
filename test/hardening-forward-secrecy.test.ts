/**
 * Hardening, forward secrecy (issue #8; docs/PROTOCOL.md §3.3, §4.2): a session is recorded
 * (every datagram of a link handshake and its data; every tunnel-layer payload of a build
 * and its cells), then every static private key involved is handed to the attacker. The
 * attacker tries every derivation those keys allow: each X25519 product of a leaked private
 * key with every public value in the recording, in the place of the one secret it lacks
 * (the link's ee, a hop's DH2), through the real key schedules; none opens a single
 * recorded datagram or cell. Each attack routine is first checked on a run where the
 * missing ephemeral secret is known, so a wrong routine cannot pass for forward secrecy.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey } from '@deut/common';
import {
  NoiseHandshake,
  chachaOpen,
  cryptoReady,
  deriveKey,
  generateKeyPair,
  headerMask,
  peelOutbound,
  randomBytes,
  representativeToPublicKey,
  sodium,
  x25519,
  type KeyPair,
} from '@deut/crypto';
import {
  acceptRecord,
  deriveHopSecrets,
  openRecord,
  prepareMasterBuild,
  sealReplySlot,
  type HopKeys,
} from '@deut/tunnel';
import { CELL_HEADER_BYTES, CELL_PLAINTEXT_BYTES, TUNNEL_MESSAGE_TYPES } from '@deut/wire';
import { createEngineMesh, type EngineMeshNode } from '@deut/testkit';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const encoder = new TextEncoder();

// ---- the attacker's Noise XX key schedule (Noise rev. 34 §5, BLAKE2b, as the link uses it) ----

const HASH_BYTES = 64;
const blake2b = (...parts: Uint8Array[]): Uint8Array => sodium().crypto_generichash(HASH_BYTES, Buffer.concat(parts), null);
function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  const ipad = new Uint8Array(128).fill(0x36);
  const opad = new Uint8Array(128).fill(0x5c);
  key.forEach((k, i) => {
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  });
  return blake2b(opad, blake2b(ipad, data));
}
function hkdf2(ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const temp = hmac(ck, ikm);
  const one = hmac(temp, Uint8Array.of(1));
  return [one, hmac(temp, Buffer.concat([one, Uint8Array.of(2)]))];
}

/**
 * Replays the XX schedule over a recorded handshake with `ee` supplied by the caller (the
 * value the attacker cannot compute) and es, se from the leaked static keys. Returns the
 * two split keys and whether the responder's encrypted static key authenticated.
 */
function attackXX(e1: Uint8Array, msg2: Uint8Array, msg3: Uint8Array, ee: Uint8Array, es: Uint8Array, se: Uint8Array): { i2r: Uint8Array; r2i: Uint8Array; authenticated: boolean } {
  const name = encoder.encode('Noise_XX_25519_ChaChaPoly_BLAKE2b');
  let h: Uint8Array = new Uint8Array(HASH_BYTES);
  h.set(name);
  let ck: Uint8Array = h.slice();
  let k: Uint8Array | null = null;
  let n = 0;
  let authenticated = true;
  const mixHash = (data: Uint8Array): void => void (h = blake2b(h, data));
  const mixKey = (ikm: Uint8Array): void => {
    const [nextCk, temp] = hkdf2(ck, ikm);
    ck = nextCk;
    k = temp.slice(0, 32);
    n = 0;
  };
  const decryptAndHash = (ciphertext: Uint8Array): void => {
    if (k !== null && chachaOpen(k, n++, ciphertext, h) === null) authenticated = false;
    mixHash(ciphertext);
  };
  mixHash(encoder.encode('deut/1 link'));
  mixHash(e1);
  mixHash(new Uint8Array(0));
  mixHash(msg2.subarray(0, 32));
  mixKey(ee);
  decryptAndHash(msg2.subarray(32, 80));
  mixKey(es);
  decryptAndHash(msg2.subarray(80, 128));
  decryptAndHash(msg3.subarray(0, 48));
  mixKey(se);
  decryptAndHash(msg3.subarray(48, 96));
  const [k1, k2] = hkdf2(ck, new Uint8Array(0));
  return { i2r: k1.slice(0, 32), r2i: k2.slice(0, 32), authenticated };
}

/** Tries to open a recorded link data datagram with keys derived from a split key (PROTOCOL.md §3.3-§3.4). */
function opensDatagram(splitKey: Uint8Array, direction: 'i2r' | 'r2i', datagram: Uint8Array): boolean {
  const key = deriveKey(`deut/1 link data ${direction}`, splitKey);
  const hp = deriveKey(`deut/1 link hp ${direction}`, splitKey);
  const mask = headerMask(hp, datagram.subarray(8, 24));
  const header = datagram.slice(0, 8).map((b, i) => b ^ mask[i]!);
  const view = new DataView(header.buffer);
  const counters = new Set([view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32]);
  // The attacker need not trust the header: small counters are tried as well.
  for (let c = 0; c < 64; c++) counters.add(c);
  for (const counter of counters) {
    const le = new Uint8Array(8);
    new DataView(le.buffer).setUint32(0, counter % 2 ** 32, true);
    new DataView(le.buffer).setUint32(4, Math.floor(counter / 2 ** 32), true);
    if (Number.isSafeInteger(counter) && chachaOpen(key, counter, datagram.subarray(8), le) !== null) return true;
  }
  return false;
}

/** Every X25519 product of a leaked private key with every public value seen. */
function candidates(privates: readonly Uint8Array[], publics: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [new Uint8Array(32)];
  for (const secret of privates) for (const pub of publics) out.push(x25519(secret, pub));
  return out;
}

test('hardening forward secrecy - the attacker routine for the link handshake works when it has the ephemeral secret (control)', () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  const ea = generateKeyPair();
  const eb = generateKeyPair();
  const prologue = encoder.encode('deut/1 link');
  const initiator = new NoiseHandshake({ pattern: 'XX', initiator: true, prologue, staticKeyPair: a, ephemeralKeyPair: { publicKey: ea.publicKey.slice(), privateKey: ea.privateKey.slice() } });
  const responder = new NoiseHandshake({ pattern: 'XX', initiator: false, prologue, staticKeyPair: b, ephemeralKeyPair: { publicKey: eb.publicKey.slice(), privateKey: eb.privateKey.slice() } });
  const m1 = initiator.writeMessage();
  responder.readMessage(m1);
  const m2 = responder.writeMessage(randomBytes(32));
  initiator.readMessage(m2);
  const m3 = initiator.writeMessage(randomBytes(32));
  responder.readMessage(m3);
  const split = initiator.split();
  const found = attackXX(m1.subarray(0, 32), m2, m3, x25519(ea.privateKey, eb.publicKey), x25519(b.privateKey, ea.publicKey), x25519(a.privateKey, eb.publicKey));
  assert.ok(found.authenticated);
  assert.equal(hex(found.i2r), hex(split.initiatorToResponder));
  assert.equal(hex(found.r2i), hex(split.responderToInitiator));
});

test('hardening forward secrecy - a recorded link session stays secret when both static keys leak', { timeout: 30_000 }, async () => {
  const mesh = await createEngineMesh({ nodes: ['A', 'B'] });
  const [A, B] = mesh.nodes as [EngineMeshNode, EngineMeshNode];
  const recorded: Array<{ from: string; data: Uint8Array }> = [];
  const stop = mesh.network.tap((event) => {
    if (event.fate === 'delivered') recorded.push({ from: addressKey(event.from) === addressKey(A.candidate.address) ? 'A' : 'B', data: event.data.slice() });
  });
  try {
    await A.link.connect(B.candidate.address, { expectedKey: B.identity.publicKey });
    for (let i = 0; i < 10; i++) {
      A.link.send(B.candidate.address, encoder.encode(`secret a→b ${i}`));
      B.link.send(A.candidate.address, encoder.encode(`secret b→a ${i}`));
    }
    await mesh.settle();
  } finally {
    stop();
    await mesh.close();
  }
  const fromA = recorded.filter((r) => r.from === 'A').map((r) => r.data);
  const fromB = recorded.filter((r) => r.from === 'B').map((r) => r.data);
  const [msg1, msg3, ...dataA] = fromA;
  const [msg2, ...dataB] = fromB;
  assert.ok(msg1 !== undefined && msg2 !== undefined && msg3 !== undefined && dataA.length >= 10 && dataB.length >= 10, 'a whole session was recorded');
  // What the attacker sees: the ephemerals (Elligator representatives decode to them).
  const eA = representativeToPublicKey(msg1.subarray(0, 32));
  const eB = representativeToPublicKey(msg2.subarray(0, 32));
  const msg2Noise = Buffer.concat([eB, msg2.subarray(32, 128)]);
  const msg3Noise = msg3.subarray(0, 96);
  // Both static private keys leak; es and se are then known exactly. ee is not.
  const leaked = [A.identity.privateKey, B.identity.privateKey];
  const es = x25519(B.identity.privateKey, eA);
  const se = x25519(A.identity.privateKey, eB);
  const tries = candidates(leaked, [eA, eB, A.identity.publicKey, B.identity.publicKey]);
  let attempts = 0;
  for (const ee of tries) {
    const found = attackXX(eA, msg2Noise, msg3Noise, ee, es, se);
    assert.equal(found.authenticated, false, 'no candidate for ee authenticates the handshake');
    // Even ignoring authentication, the keys it yields open nothing, in either direction.
    for (const datagram of dataA) assert.equal(opensDatagram(found.i2r, 'i2r', datagram), false);
    for (const datagram of dataB) assert.equal(opensDatagram(found.r2i, 'r2i', datagram), false);
    // Nor do session keys taken straight from a static or mixed product.
    for (const datagram of dataA) assert.equal(opensDatagram(ee, 'i2r', datagram), false);
    attempts++;
  }
  assert.equal(attempts, 9);
});

// ---- tunnel build records ------------------------------------------------------------------

/** The hop keys an attacker derives for a recorded build from DH1 and a guess for DH2. */
function attackHop(dh1: Uint8Array, dh2Guess: Uint8Array, E: Uint8Array, Y: Uint8Array, S: Uint8Array): { keys: HopKeys; replyKey: Uint8Array } {
  // H = KDF('deut/1 hop secret', DH1 ‖ DH2, E ‖ Y ‖ S_hop) (PROTOCOL.md §4.2 step 4).
  const secrets = deriveHopSecrets(deriveKey('deut/1 hop secret', Buffer.concat([dh1, dh2Guess]), Buffer.concat([E, Y, S])));
  return { keys: secrets.keys, replyKey: secrets.replyKey };
}

test('hardening forward secrecy - the attacker routine for a build record works when it has the ephemeral secret (control)', () => {
  const hop = generateKeyPair();
  const build = prepareMasterBuild([{ staticKey: hop.publicKey, instructions: { role: 'endpoint', timeSeconds: 1_700_000_000, lifetimeSeconds: 600 } }]);
  const masterEphemeral: KeyPair = { publicKey: build.hops[0]!.ephemeral.publicKey.slice(), privateKey: build.hops[0]!.ephemeral.privateKey.slice() };
  const opened = openRecord(hop, build.records);
  assert.ok(opened !== null);
  const dh1 = opened.dh1.slice();
  const acceptance = acceptRecord(hop, opened);
  const slot = sealReplySlot(acceptance, { status: 'accepted', reason: 'none', endpoint: { host: '127.0.0.1', port: 1 } });
  const found = attackHop(dh1, x25519(masterEphemeral.privateKey, acceptance.Y), masterEphemeral.publicKey, acceptance.Y, hop.publicKey);
  assert.equal(hex(found.keys.outboundKey), hex(acceptance.keys.outboundKey));
  assert.ok(chachaOpen(found.replyKey, 0, slot.subarray(32), acceptance.Y) !== null);
});

test('hardening forward secrecy - recorded tunnel cells stay secret when every static key leaks (the record itself is readable, as documented)', { timeout: 30_000 }, async () => {
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2'] });
  const [M, R1, R2] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode];
  let cellsOut: Array<{ seq: number; body: Uint8Array }> = [];
  let request: Uint8Array | undefined;
  let response: Uint8Array | undefined;
  try {
    const tunnel = await mesh.build(M, [R1, R2]);
    for (let i = 0; i < 10; i++) assert.ok(M.engine.send(tunnel, randomBytes(CELL_PLAINTEXT_BYTES)));
    await mesh.settle();
    // The recording at R1's link: what an attacker recording (and breaking) that link holds.
    request = R1.inbox.find((e) => e.sender === 'M' && e.payload[0] === TUNNEL_MESSAGE_TYPES['build-request'])?.payload;
    response = M.inbox.find((e) => e.sender === 'R1' && e.payload[0] === TUNNEL_MESSAGE_TYPES['build-response'])?.payload;
    cellsOut = R1.inbox
      .filter((e) => e.sender === 'M' && e.payload[0] === TUNNEL_MESSAGE_TYPES['cell-out'])
      .map((e) => ({ seq: Number(Buffer.from(e.payload).readBigUInt64BE(5)), body: e.payload.slice(CELL_HEADER_BYTES) }));
  } finally {
    await mesh.close();
  }
  assert.ok(request !== undefined && response !== undefined && cellsOut.length === 10, 'a build and its cells were recorded');
  const records = request.subarray(5);
  const slots = response.subarray(5);
  const E = records.slice(0, 32);
  const Y = slots.slice(0, 32);
  const sealedReply = slots.subarray(32, 80);
  // The leak: every node's static key. With R1's, the record opens (PROTOCOL.md §4.2 says so).
  const opened = openRecord(R1.identity, records);
  assert.ok(opened !== null, 'the leaked static key reads the record: next hop and lifetime are not forward-secret');
  const dh1 = opened.dh1.slice();
  const statics = [M, R1, R2].map((n) => n.identity);
  const tries = candidates(
    statics.map((s) => s.privateKey),
    [E, Y, ...statics.map((s) => s.publicKey)],
  );
  tries.push(dh1);
  for (const dh2 of tries) {
    const found = attackHop(dh1, dh2, E, Y, R1.identity.publicKey);
    assert.equal(chachaOpen(found.replyKey, 0, sealedReply, Y), null, 'no guess for DH2 authenticates the reply');
    for (const cell of cellsOut) assert.equal(peelOutbound(found.keys.outboundKey, cell.seq, cell.body), null, 'no guess peels a recorded cell');
  }
  assert.equal(tries.length, 1 + 3 * 5 + 1);
});

/**
 * Tests for the layered cell crypto (docs/PROTOCOL.md §5.2): round trips for every path
 * length, per-hop detection of tampering outbound, end-to-end detection inbound, layer
 * unlinkability, the spec formulas recomputed independently, and checked-in vectors.
 *
 * Regenerate test/vectors/onion.json deliberately with `DEUT_WRITE_VECTORS=1`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import sodium from 'libsodium-wrappers-sumo';
import { DeutError } from '@deut/common';
import {
  addInboundLayer,
  openInbound,
  openOutbound,
  peelOutbound,
  sealInbound,
  sealOutbound,
  type LayerKey,
} from '../src/onion.js';

await sodium.ready;

const ROOT = new URL('../../../../', import.meta.url);
const VECTORS_URL = new URL('test/vectors/onion.json', ROOT);
/**
 * The cell geometry the tunnel layer passes in from @deut/wire (PROTOCOL.md §5.1, §10):
 * fixed here, since the checked-in vectors are of it and this package does not import wire.
 */
const MAX_HOPS = 7;
const LAYER_TAG_BYTES = 16;
const B = 1160;
const CELL_PLAINTEXT_BYTES = B - LAYER_TAG_BYTES * MAX_HOPS;
/** Longest body the scratch memory takes (1280 bytes, less keystream block 0). */
const MAX_BODY_BYTES = 1280 - 64;

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

function randomHops(n: number): LayerKey[] {
  return Array.from({ length: n }, () => ({
    key: sodium.randombytes_buf(32),
    v: Math.floor(Math.random() * Number.MAX_SAFE_INTEGER),
  }));
}

function randomPlaintext(): Uint8Array {
  return sodium.randombytes_buf(CELL_PLAINTEXT_BYTES);
}

function flipBit(body: Uint8Array, bit: number): Uint8Array {
  const copy = Uint8Array.from(body);
  const i = bit >> 3;
  copy[i] = (copy[i] ?? 0) ^ (1 << (bit & 7));
  return copy;
}

/** X_1 .. X_n and the endpoint's peel result, checking each hop's tag on the way. */
function outboundBodies(hops: readonly LayerKey[], plaintext: Uint8Array): { bodies: Uint8Array[]; last: Uint8Array } {
  const bodies = [sealOutbound(hops, plaintext, MAX_HOPS)];
  let last: Uint8Array | null = null;
  for (const [i, hop] of hops.entries()) {
    const body = bodies[i];
    assert.ok(body !== undefined);
    assert.equal(body.length, B, `body for hop ${i + 1}`);
    const next = peelOutbound(hop.key, hop.v, body);
    assert.ok(next !== null, `hop ${i + 1} of ${hops.length} accepts its tag`);
    assert.equal(next.length, B);
    if (i < hops.length - 1) bodies.push(next);
    else last = next;
  }
  assert.ok(last !== null);
  return { bodies, last };
}

/** The endpoint's sealed body, then the body after each relay n-1 .. 1 adds its layer. */
function inboundBodies(hops: readonly LayerKey[], plaintext: Uint8Array, sealed?: Uint8Array): Uint8Array[] {
  const endpoint = hops[hops.length - 1];
  assert.ok(endpoint !== undefined);
  const bodies = [sealed ?? sealInbound(endpoint.key, endpoint.v, plaintext, MAX_HOPS)];
  for (let i = hops.length - 2; i >= 0; i--) {
    const hop = hops[i];
    const body = bodies[bodies.length - 1];
    assert.ok(hop !== undefined && body !== undefined);
    bodies.push(addInboundLayer(hop.key, hop.v, body));
  }
  for (const body of bodies) assert.equal(body.length, B);
  return bodies;
}

test('onion - the geometry comes from the caller: body = plaintext + one tag per possible hop', () => {
  assert.equal(CELL_PLAINTEXT_BYTES, 1048);
  for (const n of [1, 4, MAX_HOPS]) assert.equal(sealOutbound(randomHops(n), randomPlaintext(), MAX_HOPS).length, B);
  assert.equal(sealInbound(sodium.randombytes_buf(32), 0, randomPlaintext(), MAX_HOPS).length, B);
  // Another geometry works the same way: three possible hops, a 100-byte plaintext.
  const hops = randomHops(3);
  const small = sodium.randombytes_buf(100);
  let body = sealOutbound(hops, small, 3);
  assert.equal(body.length, 100 + 3 * LAYER_TAG_BYTES);
  for (const hop of hops.slice(0, -1)) body = peelOutbound(hop.key, hop.v, body) ?? new Uint8Array(0);
  assert.deepEqual(openOutbound(hops[2]!.key, hops[2]!.v, body, 3), small);
});

test('onion - outbound round trip for 1 to 7 hops', () => {
  for (let n = 1; n <= MAX_HOPS; n++) {
    for (let round = 0; round < 5; round++) {
      const hops = randomHops(n);
      const plaintext = randomPlaintext();
      const { bodies, last } = outboundBodies(hops, plaintext);
      assert.equal(bodies.length, n);
      assert.deepEqual(last.subarray(0, CELL_PLAINTEXT_BYTES), plaintext);
      const endpoint = hops[n - 1];
      const endpointBody = bodies[n - 1];
      assert.ok(endpoint !== undefined && endpointBody !== undefined);
      assert.deepEqual(openOutbound(endpoint.key, endpoint.v, endpointBody, MAX_HOPS), plaintext);
    }
  }
});

test('onion - inbound round trip for 1 to 7 hops', () => {
  for (let n = 1; n <= MAX_HOPS; n++) {
    for (let round = 0; round < 5; round++) {
      const hops = randomHops(n);
      const plaintext = randomPlaintext();
      const bodies = inboundBodies(hops, plaintext);
      assert.equal(bodies.length, n);
      const received = bodies[bodies.length - 1];
      assert.ok(received !== undefined);
      const opened = openInbound(hops, received, MAX_HOPS);
      assert.ok(opened !== null);
      assert.deepEqual(opened, plaintext);
    }
  }
});

test('onion - a bit flipped anywhere outbound is caught by the next hop', () => {
  // Seven hops: every bit of every body, so the tag, Y and the filler tail are all covered.
  const hops = randomHops(MAX_HOPS);
  const { bodies } = outboundBodies(hops, randomPlaintext());
  for (const [i, hop] of hops.entries()) {
    const body = bodies[i];
    assert.ok(body !== undefined);
    for (let bit = 0; bit < B * 8; bit++) {
      assert.equal(peelOutbound(hop.key, hop.v, flipBit(body, bit)), null, `hop ${i + 1}, bit ${bit}`);
    }
  }
  // Shorter paths: one random bit in every byte, at every hop.
  for (let n = 1; n < MAX_HOPS; n++) {
    const shortHops = randomHops(n);
    const short = outboundBodies(shortHops, randomPlaintext()).bodies;
    for (const [i, hop] of shortHops.entries()) {
      const body = short[i];
      assert.ok(body !== undefined);
      for (let byte = 0; byte < B; byte++) {
        const bit = byte * 8 + Math.floor(Math.random() * 8);
        assert.equal(peelOutbound(hop.key, hop.v, flipBit(body, bit)), null, `n ${n}, hop ${i + 1}, bit ${bit}`);
      }
    }
  }
});

test('onion - outbound: swapped blocks and a relayer tagging the filler are caught', () => {
  const hops = randomHops(5);
  const { bodies } = outboundBodies(hops, randomPlaintext());
  const filler = LAYER_TAG_BYTES * (hops.length - 1);
  for (const [i, hop] of hops.entries()) {
    const body = bodies[i];
    assert.ok(body !== undefined);
    const swapped = Uint8Array.from(body);
    swapped.set(body.subarray(64, 128), 128);
    swapped.set(body.subarray(128, 192), 64);
    assert.equal(peelOutbound(hop.key, hop.v, swapped), null, `swap at hop ${i + 1}`);
    const tail = Uint8Array.from(body);
    for (let j = B - filler; j < B; j++) tail[j] = (tail[j] ?? 0) ^ 0xff;
    assert.equal(peelOutbound(hop.key, hop.v, tail), null, `filler tail at hop ${i + 1}`);
  }
});

test('onion - wrong sequence value or key is refused', () => {
  const hops = randomHops(3);
  const plaintext = randomPlaintext();
  const { bodies } = outboundBodies(hops, plaintext);
  for (const [i, hop] of hops.entries()) {
    const body = bodies[i];
    assert.ok(body !== undefined);
    assert.equal(peelOutbound(hop.key, hop.v + 1, body), null);
    assert.equal(peelOutbound(hop.key, hop.v === 0 ? 1 : hop.v - 1, body), null);
    assert.equal(peelOutbound(sodium.randombytes_buf(32), hop.v, body), null);
  }
  const last = hops[2];
  const lastBody = bodies[2];
  assert.ok(last !== undefined && lastBody !== undefined);
  assert.equal(openOutbound(last.key, last.v + 1, lastBody, MAX_HOPS), null);

  const inbound = inboundBodies(hops, plaintext);
  const received = inbound[inbound.length - 1];
  assert.ok(received !== undefined);
  for (let i = 0; i < hops.length; i++) {
    const wrong = hops.map((h, j) => (j === i ? { key: h.key, v: h.v + 1 } : h));
    assert.equal(openInbound(wrong, received, MAX_HOPS), null, `wrong v at inbound hop ${i + 1}`);
  }
  // Dropping a relay's layer or adding one too many fails as well.
  assert.equal(openInbound(hops.slice(1), received, MAX_HOPS), null);
  assert.equal(openInbound([...randomHops(1), ...hops], received, MAX_HOPS), null);
});

test('onion - a bit flipped anywhere inbound is caught by the master', () => {
  const hops = randomHops(4);
  const plaintext = randomPlaintext();
  const endpoint = hops[hops.length - 1];
  assert.ok(endpoint !== undefined);
  const sealed = sealInbound(endpoint.key, endpoint.v, plaintext, MAX_HOPS);
  // Tamper with the body leaving the endpoint (position 0) or any relay (positions 1..n-1).
  for (let position = 0; position < hops.length; position++) {
    const bodies = inboundBodies(hops, plaintext, sealed);
    for (let byte = 0; byte < B; byte++) {
      const bit = byte * 8 + Math.floor(Math.random() * 8);
      let body = flipBit(bodies[position] ?? new Uint8Array(B), bit);
      for (let i = hops.length - 2 - position; i >= 0; i--) {
        const hop = hops[i];
        assert.ok(hop !== undefined);
        body = addInboundLayer(hop.key, hop.v, body);
      }
      assert.equal(openInbound(hops, body, MAX_HOPS), null, `position ${position}, bit ${bit}`);
    }
  }
});

/** True if some 8-byte run of `a` occurs anywhere in `b`. */
function sharesRun(a: Uint8Array, b: Uint8Array, run = 8): boolean {
  const seen = new Set<string>();
  for (let i = 0; i + run <= a.length; i++) seen.add(Buffer.from(a.subarray(i, i + run)).toString('latin1'));
  for (let i = 0; i + run <= b.length; i++) {
    if (seen.has(Buffer.from(b.subarray(i, i + run)).toString('latin1'))) return true;
  }
  return false;
}

test('onion - no 8-byte run of a body survives to the next hop', () => {
  for (let cell = 0; cell < 5; cell++) {
    const hops = randomHops(MAX_HOPS);
    // A plaintext of zeros is the worst case for leaking structure through the layers.
    const plaintext = new Uint8Array(CELL_PLAINTEXT_BYTES);
    const { bodies, last } = outboundBodies(hops, plaintext);
    const chain = [...bodies, last];
    for (let i = 0; i + 1 < chain.length; i++) {
      const a = chain[i];
      const b = chain[i + 1];
      assert.ok(a !== undefined && b !== undefined);
      assert.equal(sharesRun(a, b), false, `outbound body ${i + 1} -> ${i + 2}`);
    }
    const inbound = inboundBodies(hops, plaintext);
    for (let i = 0; i + 1 < inbound.length; i++) {
      const a = inbound[i];
      const b = inbound[i + 1];
      assert.ok(a !== undefined && b !== undefined);
      assert.equal(sharesRun(a, b), false, `inbound layer ${i + 1}`);
    }
  }
});

/** Keystream of (key, v) from block 0, computed without the code under test. */
function referenceKeystream(key: Uint8Array, v: number): { otk: Uint8Array; s: Uint8Array } {
  const nonce = new Uint8Array(24);
  const view = new DataView(nonce.buffer);
  view.setBigUint64(0, BigInt(v), true);
  return {
    otk: sodium.crypto_stream_xchacha20_xor_ic(new Uint8Array(32), nonce, 0, key),
    s: sodium.crypto_stream_xchacha20_xor_ic(new Uint8Array(B), nonce, 1, key),
  };
}

test('onion - layers follow the spec formulas (recomputed independently)', () => {
  for (const v of [0, 1, 0xffff_ffff, 2 ** 32, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
    const key = sodium.randombytes_buf(32);
    const { otk, s } = referenceKeystream(key, v);
    // Outbound, one hop: T = MAC(otk, Y), peel = (Y ‖ 0^16) XOR S, plaintext in front.
    const plaintext = randomPlaintext();
    const body = sealOutbound([{ key, v }], plaintext, MAX_HOPS);
    const y = body.subarray(LAYER_TAG_BYTES);
    assert.deepEqual(body.subarray(0, LAYER_TAG_BYTES), sodium.crypto_onetimeauth(y, otk));
    const expected = new Uint8Array(B);
    expected.set(y);
    for (let i = 0; i < B; i++) expected[i] = (expected[i] ?? 0) ^ (s[i] ?? 0);
    assert.deepEqual(peelOutbound(key, v, body), expected);
    assert.deepEqual(expected.subarray(0, CELL_PLAINTEXT_BYTES), plaintext);
    // Inbound: a relay layer is body XOR S.
    const layered = addInboundLayer(key, v, body);
    for (let i = 0; i < B; i++) assert.equal(layered[i], (body[i] ?? 0) ^ (s[i] ?? 0));
    const sealed = sealInbound(key, v, plaintext, MAX_HOPS);
    const ys = sealed.subarray(LAYER_TAG_BYTES);
    assert.deepEqual(sealed.subarray(0, LAYER_TAG_BYTES), sodium.crypto_onetimeauth(ys, otk));
    for (let i = 0; i < CELL_PLAINTEXT_BYTES; i++) assert.equal((ys[i] ?? 0) ^ (s[i] ?? 0), plaintext[i]);
  }
});

test('onion - bad arguments throw crypto errors', () => {
  const key = sodium.randombytes_buf(32);
  const body = new Uint8Array(B);
  const plaintext = new Uint8Array(CELL_PLAINTEXT_BYTES);
  const code = (expected: string) => (e: unknown) => e instanceof DeutError && e.kind === 'crypto' && e.code === expected;
  assert.throws(() => peelOutbound(new Uint8Array(31), 0, body), code('BAD_KEY_LENGTH'));
  for (const v of [-1, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => peelOutbound(key, v, body), code('BAD_SEQUENCE'), `v = ${v}`);
  }
  // Sizes come from the buffers: too short to carry a tag, or longer than the scratch memory.
  assert.throws(() => peelOutbound(key, 0, new Uint8Array(LAYER_TAG_BYTES)), code('BAD_CELL_LENGTH'));
  assert.throws(() => peelOutbound(key, 0, new Uint8Array(MAX_BODY_BYTES + 1)), code('BAD_CELL_LENGTH'));
  assert.throws(() => openOutbound(key, 0, new Uint8Array(LAYER_TAG_BYTES * MAX_HOPS), MAX_HOPS), code('BAD_CELL_LENGTH'));
  assert.throws(() => addInboundLayer(key, 0, new Uint8Array(0)), code('BAD_CELL_LENGTH'));
  assert.throws(() => openInbound([{ key, v: 0 }], new Uint8Array(MAX_BODY_BYTES + 16), MAX_HOPS), code('BAD_CELL_LENGTH'));
  assert.throws(() => sealOutbound([], plaintext, MAX_HOPS), code('BAD_HOP_COUNT'));
  assert.throws(() => sealOutbound(randomHops(MAX_HOPS + 1), plaintext, MAX_HOPS), code('BAD_HOP_COUNT'));
  assert.throws(() => openInbound([], body, MAX_HOPS), code('BAD_HOP_COUNT'));
  assert.throws(() => sealOutbound([{ key, v: 0 }], new Uint8Array(MAX_BODY_BYTES - LAYER_TAG_BYTES * MAX_HOPS + 1), MAX_HOPS), code('BAD_PLAINTEXT_LENGTH'));
  assert.throws(() => sealInbound(key, 0, new Uint8Array(0), MAX_HOPS), code('BAD_PLAINTEXT_LENGTH'));
  assert.throws(() => sealOutbound([{ key, v: 0 }], plaintext, 0), code('BAD_HOP_COUNT'));
  assert.throws(() => openOutbound(key, 0, body, 1.5), code('BAD_HOP_COUNT'));
  assert.throws(() => sealOutbound([{ key, v: 0 }, { key: new Uint8Array(16), v: 1 }], plaintext, MAX_HOPS), code('BAD_KEY_LENGTH'));
});

// --- Checked-in vectors ------------------------------------------------------------------

interface HopVector {
  key: string;
  v: number;
}
interface OutboundVector {
  hops: HopVector[];
  plaintext: string;
  /** X_1 .. X_n; X_1 is reproducible from the inputs only for 7 hops (no random padding). */
  bodies: string[];
  endpointPeel: string;
}
interface InboundVector {
  hops: HopVector[];
  plaintext: string;
  /** The endpoint's sealed body (random padding fixed here), then after relays n-1 .. 1. */
  bodies: string[];
}
interface OnionVectors {
  description: string;
  outbound: OutboundVector[];
  inbound: InboundVector[];
}

function vectorHops(n: number, seed: number): LayerKey[] {
  const vs = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7, 2 ** 52 + 3, Number.MAX_SAFE_INTEGER];
  return Array.from({ length: n }, (_, i) => ({
    key: Uint8Array.from({ length: 32 }, (_, j) => (seed * 97 + i * 31 + j * 7 + 1) & 0xff),
    v: vs[(i + seed) % vs.length] ?? 0,
  }));
}

function vectorPlaintext(seed: number): Uint8Array {
  const text = new TextEncoder().encode(`deut onion vector ${seed}: `);
  return Uint8Array.from({ length: CELL_PLAINTEXT_BYTES }, (_, i) => text[i] ?? ((i * seed) & 0xff));
}

const toHopVectors = (hops: readonly LayerKey[]): HopVector[] => hops.map((h) => ({ key: hex(h.key), v: h.v }));
const fromHopVectors = (hops: readonly HopVector[]): LayerKey[] => hops.map((h) => ({ key: unhex(h.key), v: h.v }));

function generateVectors(): OnionVectors {
  const outbound = [1, 3, 7].map((n, seed) => {
    const hops = vectorHops(n, seed);
    const plaintext = vectorPlaintext(seed);
    const { bodies, last } = outboundBodies(hops, plaintext);
    return { hops: toHopVectors(hops), plaintext: hex(plaintext), bodies: bodies.map(hex), endpointPeel: hex(last) };
  });
  const inbound = [1, 3, 7].map((n, i) => {
    const seed = i + 10;
    const hops = vectorHops(n, seed);
    const plaintext = vectorPlaintext(seed);
    return { hops: toHopVectors(hops), plaintext: hex(plaintext), bodies: inboundBodies(hops, plaintext).map(hex) };
  });
  return {
    description:
      'Onion layer vectors (docs/PROTOCOL.md §5.2), self-generated by packages/crypto/test/onion.test.ts with ' +
      'DEUT_WRITE_VECTORS=1. Hex bodies are CELL_BODY_BYTES long. Outbound: bodies are X_1..X_n, endpointPeel is ' +
      "the endpoint's peelOutbound result (plaintext first); X_1 depends only on the inputs for 7 hops, shorter " +
      "paths include random padding. Inbound: bodies[0] is the endpoint's sealInbound output (its padding was " +
      'random), then the body after relay n-1, ..., relay 1.',
    outbound,
    inbound,
  };
}

if (process.env['DEUT_WRITE_VECTORS'] === '1') {
  writeFileSync(VECTORS_URL, JSON.stringify(generateVectors(), null, 2) + '\n');
  console.log(`wrote ${VECTORS_URL.pathname}`);
}

test('onion - checked-in vectors', () => {
  const vectors = JSON.parse(readFileSync(VECTORS_URL, 'utf8')) as OnionVectors;
  assert.equal(vectors.outbound.length, 3);
  assert.equal(vectors.inbound.length, 3);
  for (const v of vectors.outbound) {
    const hops = fromHopVectors(v.hops);
    const plaintext = unhex(v.plaintext);
    if (hops.length === MAX_HOPS) assert.equal(hex(sealOutbound(hops, plaintext, MAX_HOPS)), v.bodies[0]);
    for (const [i, hop] of hops.entries()) {
      const body = v.bodies[i];
      assert.ok(body !== undefined);
      const next = peelOutbound(hop.key, hop.v, unhex(body));
      assert.ok(next !== null);
      assert.equal(hex(next), i + 1 < hops.length ? v.bodies[i + 1] : v.endpointPeel);
    }
    const endpoint = hops[hops.length - 1];
    const endpointBody = v.bodies[hops.length - 1];
    assert.ok(endpoint !== undefined && endpointBody !== undefined);
    const opened = openOutbound(endpoint.key, endpoint.v, unhex(endpointBody), MAX_HOPS);
    assert.ok(opened !== null);
    assert.equal(hex(opened), v.plaintext);
  }
  for (const v of vectors.inbound) {
    const hops = fromHopVectors(v.hops);
    const sealed = v.bodies[0];
    const received = v.bodies[v.bodies.length - 1];
    assert.ok(sealed !== undefined && received !== undefined);
    assert.deepEqual(inboundBodies(hops, unhex(v.plaintext), unhex(sealed)).map(hex), v.bodies);
    const opened = openInbound(hops, unhex(received), MAX_HOPS);
    assert.ok(opened !== null);
    assert.equal(hex(opened), v.plaintext);
  }
});

test('onion - rates (3 hops)', () => {
  const hops = randomHops(3);
  const plaintext = randomPlaintext();
  const rate = (count: number, fn: () => void): number => {
    const start = performance.now();
    for (let i = 0; i < count; i++) fn();
    return (count / (performance.now() - start)) * 1000;
  };
  const first = hops[0];
  const endpoint = hops[2];
  assert.ok(first !== undefined && endpoint !== undefined);
  const body = sealOutbound(hops, plaintext, MAX_HOPS);
  const sealed = sealInbound(endpoint.key, endpoint.v, plaintext, MAX_HOPS);
  const received = inboundBodies(hops, plaintext, sealed)[2] ?? sealed;
  const seal = rate(5000, () => sealOutbound(hops, plaintext, MAX_HOPS));
  const peel = rate(20000, () => peelOutbound(first.key, first.v, body));
  const sealIn = rate(20000, () => sealInbound(endpoint.key, endpoint.v, plaintext, MAX_HOPS));
  const layer = rate(20000, () => addInboundLayer(first.key, first.v, body));
  const open = rate(5000, () => openInbound(hops, received, MAX_HOPS));
  console.log(
    `onion rates: sealOutbound(3 hops) ${seal.toFixed(0)}/s, peelOutbound ${peel.toFixed(0)}/s, ` +
      `sealInbound ${sealIn.toFixed(0)}/s, addInboundLayer ${layer.toFixed(0)}/s, openInbound(3 hops) ${open.toFixed(0)}/s`,
  );
});

/**
 * Tests for Elligator 2 and dirty key pairs (docs/PROTOCOL.md §3.2): published vectors,
 * a cross-check of the forward map against @noble/curves' RFC 9380 map, round trips of
 * the inverse map, the Diffie-Hellman property of dirty keys, and uniformity of
 * representatives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sodium from 'libsodium-wrappers-sumo';
import { _map_to_curve_elligator2_curve25519, ed25519, x25519 } from '@noble/curves/ed25519.js';
import { DeutError } from '@deut/common';
import {
  ELLIGATOR_BYTES,
  generateHiddenKeyPair,
  publicKeyToRepresentative,
  representativeToPublicKey,
} from '../src/elligator.js';

await sodium.ready;

const ROOT = new URL('../../../../', import.meta.url);
const P = (1n << 255n) - 19n;
const A = 486662n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const MASK_254 = (1n << 254n) - 1n;

interface DirectVector {
  source: string;
  representative: string;
  publicKey: string;
}
interface InverseVector {
  source: string;
  publicKey: string;
  tweak: number;
  representative: string | null;
}
interface DirtyKeyVector {
  source: string;
  privateKey: string;
  cleanPublicKey: string;
  publicKey: string;
  representative: string;
}
interface ElligatorVectors {
  direct: DirectVector[];
  inverse: InverseVector[];
  dirtyKeys: DirtyKeyVector[];
}

const vectors = JSON.parse(
  readFileSync(new URL('test/vectors/elligator.json', ROOT), 'utf8'),
) as ElligatorVectors;

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

function toBigLE(bytes: Uint8Array): bigint {
  return BigInt('0x' + (hex(Uint8Array.from(bytes).reverse()) || '0'));
}

function fromBigLE(x: bigint): Uint8Array {
  return unhex(x.toString(16).padStart(64, '0')).reverse();
}

function modp(x: bigint): bigint {
  const r = x % P;
  return r < 0n ? r + P : r;
}

// Plain square-and-multiply, independent of the code under test.
function powmod(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = modp(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

const legendre = (x: bigint): bigint => powmod(x, (P - 1n) / 2n);
const isSquare = (x: bigint): boolean => legendre(x) !== P - 1n;
const onCurve = (u: bigint): boolean => isSquare(u * (u * u + A * u + 1n));

/** The Edwards point with Montgomery coordinate u (either sign of x), times the group order L. */
function torsionClass(u: Uint8Array): string {
  const uu = toBigLE(u);
  const y = modp((uu - 1n) * powmod(uu + 1n, P - 2n));
  const point = ed25519.Point.fromBytes(fromBigLE(y));
  const torsion = point.multiplyUnsafe(L - 1n).add(point);
  const bytes = torsion.toBytes();
  bytes[31] = (bytes[31] ?? 0) & 0x7f; // ±T give the same u, so classes are up to sign
  return hex(bytes);
}

test('elligator - forward map matches published vectors', () => {
  assert.ok(vectors.direct.length >= 40);
  for (const v of vectors.direct) {
    assert.equal(hex(representativeToPublicKey(unhex(v.representative))), v.publicKey, v.source);
  }
});

test('elligator - inverse map matches published vectors', () => {
  assert.ok(vectors.inverse.length >= 20);
  for (const v of vectors.inverse) {
    const rep = publicKeyToRepresentative(unhex(v.publicKey), v.tweak);
    assert.equal(rep === null ? null : hex(rep), v.representative, `${v.source}: ${v.publicKey}`);
  }
});

test('elligator - published obfs4 dirty keys map, invert and agree with X25519', () => {
  assert.equal(vectors.dirtyKeys.length, 21);
  let dirtyCount = 0;
  for (const v of vectors.dirtyKeys) {
    const s = unhex(v.privateKey);
    const u = unhex(v.publicKey);
    assert.equal(hex(representativeToPublicKey(unhex(v.representative))), v.publicKey);
    assert.equal(hex(publicKeyToRepresentative(u, 0) ?? new Uint8Array(0)), v.representative);
    assert.equal(hex(sodium.crypto_scalarmult_base(s)), v.cleanPublicKey);
    // The dirty key is a different point with the same Diffie-Hellman results.
    const peer = sodium.crypto_box_keypair();
    assert.equal(
      hex(sodium.crypto_scalarmult(peer.privateKey, u)),
      hex(sodium.crypto_scalarmult(s, peer.publicKey)),
    );
    if (v.publicKey !== v.cleanPublicKey) dirtyCount++;
  }
  assert.ok(dirtyCount >= 15, 'most published keys carry a torsion component');
});

test('elligator - forward map agrees with the RFC 9380 map in @noble/curves', () => {
  // RFC 9380 §6.7.1 uses the same Z = 2 and J = A: x1 = -J/(1 + Z·u²), x = x1 if g(x1)
  // is square, else -x1 - J. Only the sign of y differs between conventions, and X25519
  // never uses y, so the u-coordinates must agree exactly for every r below 2^254.
  const inputs: bigint[] = [0n, 1n, (P - 1n) / 2n, MASK_254];
  for (let i = 0; i < 200; i++) inputs.push(toBigLE(sodium.randombytes_buf(32)) & MASK_254);
  for (const r of inputs) {
    const { xMn, xMd } = _map_to_curve_elligator2_curve25519(r);
    const expected = modp(xMn * powmod(xMd, P - 2n));
    assert.equal(toBigLE(representativeToPublicKey(fromBigLE(r))), expected, `r = ${r}`);
  }
});

test('elligator - forward map ignores the two padding bits and always lands on the curve', () => {
  for (let i = 0; i < 100; i++) {
    const rep = sodium.randombytes_buf(32);
    const u = representativeToPublicKey(rep);
    assert.equal(u.length, ELLIGATOR_BYTES);
    assert.ok(toBigLE(u) < P, 'canonical');
    assert.ok(onCurve(toBigLE(u)), 'on the curve, not the twist');
    for (const top of [0x00, 0x40, 0x80, 0xc0]) {
      const other = Uint8Array.from(rep);
      other[31] = ((other[31] ?? 0) & 0x3f) | top;
      assert.deepEqual(representativeToPublicKey(other), u);
    }
  }
});

test('elligator - inverse then forward is the identity for every tweak', () => {
  let arbitraryRepresentable = 0;
  const rounds = 200;
  for (let i = 0; i < 2 * rounds; i++) {
    // Even rounds take an image of the forward map (representable by definition), odd
    // rounds an arbitrary canonical field element (curve or twist).
    const fromMap = i % 2 === 0;
    const u = fromMap
      ? representativeToPublicKey(sodium.randombytes_buf(32))
      : fromBigLE(toBigLE(sodium.randombytes_buf(32)) % P);
    const results = [0x00, 0x01, 0x40, 0x81, 0xc0, 0xff].map((tweak) => ({
      tweak,
      rep: publicKeyToRepresentative(u, tweak),
    }));
    const some = results.filter((x) => x.rep !== null).length;
    assert.ok(some === 0 || some === results.length, 'representability does not depend on the tweak');
    if (fromMap) assert.equal(some, results.length, 'every image of the forward map is representable');
    if (some === 0) continue;
    if (!fromMap) arbitraryRepresentable++;
    for (const { tweak, rep } of results) {
      assert.ok(rep !== null);
      assert.deepEqual(representativeToPublicKey(rep), u, `tweak ${tweak}`);
      assert.equal((rep[31] ?? 0) & 0xc0, tweak & 0xc0, 'padding bits come from the tweak');
      assert.ok((toBigLE(rep) & MASK_254) <= (P - 1n) / 2n, 'non-negative root');
    }
    assert.notDeepEqual(results[0]?.rep, results[1]?.rep, 'tweak bit 0 picks the other root');
  }
  // Half of all field elements are curve points, and half of those are representable.
  assert.ok(
    arbitraryRepresentable > rounds * 0.15 && arbitraryRepresentable < rounds * 0.35,
    `arbitrary representable: ${arbitraryRepresentable} of ${rounds}`,
  );
});

test('elligator - twist points, -A and non-canonical encodings have no representative', () => {
  // A point on the twist for which -2u(u+A) is a square: the algebraic inverse exists,
  // but the forward map would land on -u-A, so it must be refused.
  let twistChecked = 0;
  while (twistChecked < 5) {
    const u = toBigLE(sodium.randombytes_buf(32)) % P;
    if (onCurve(u) || !isSquare(-2n * u * (u + A))) continue;
    assert.equal(publicKeyToRepresentative(fromBigLE(u), 0), null);
    assert.equal(publicKeyToRepresentative(fromBigLE(u), 1), null);
    twistChecked++;
  }
  assert.equal(publicKeyToRepresentative(fromBigLE(P - A), 0), null);
  // u ≥ p and bit 255 set are non-canonical: the forward map could not return them.
  const curvePoint = representativeToPublicKey(fromBigLE(5n));
  const withTopBit = Uint8Array.from(curvePoint);
  withTopBit[31] = (withTopBit[31] ?? 0) | 0x80;
  assert.equal(publicKeyToRepresentative(withTopBit, 0), null);
  assert.equal(publicKeyToRepresentative(fromBigLE(P), 0), null);
  assert.equal(publicKeyToRepresentative(fromBigLE(P + 1n), 0), null);
});

test('elligator - wrong lengths throw a crypto error', () => {
  for (const bad of [new Uint8Array(31), new Uint8Array(33)]) {
    assert.throws(
      () => representativeToPublicKey(bad),
      (e: unknown) => e instanceof DeutError && e.kind === 'crypto' && e.code === 'BAD_LENGTH',
    );
    assert.throws(() => publicKeyToRepresentative(bad, 0), DeutError);
  }
});

test('elligator - hidden key pairs agree with ordinary and hidden X25519 peers', () => {
  const pairs = Array.from({ length: 40 }, () => generateHiddenKeyPair());
  for (const [i, { keyPair, representative }] of pairs.entries()) {
    const { publicKey: u, privateKey: s } = keyPair;
    assert.equal(u.length, 32);
    assert.equal(s.length, 32);
    assert.equal(representative.length, 32);
    assert.equal((s[0] ?? 0) & 7, 0, 'clamped: multiple of 8');
    assert.equal((s[31] ?? 0) & 0xc0, 0x40, 'clamped: bit 254 set, bit 255 clear');
    assert.deepEqual(representativeToPublicKey(representative), u);

    // An ordinary peer (a, A): both sides derive the same secret, by libsodium and by noble.
    const peer = sodium.crypto_box_keypair();
    const ours = sodium.crypto_scalarmult(s, peer.publicKey);
    const theirs = sodium.crypto_scalarmult(peer.privateKey, u);
    assert.deepEqual(theirs, ours);
    assert.deepEqual(x25519.getSharedSecret(peer.privateKey, u), ours);
    // The clamped scalar kills the torsion component: same result as the clean key.
    assert.deepEqual(sodium.crypto_scalarmult(peer.privateKey, sodium.crypto_scalarmult_base(s)), ours);

    // Two hidden keys also agree with each other.
    const other = pairs[(i + 1) % pairs.length]?.keyPair;
    assert.ok(other !== undefined);
    assert.deepEqual(
      sodium.crypto_scalarmult(s, other.publicKey),
      sodium.crypto_scalarmult(other.privateKey, u),
    );
  }
});

test('elligator - hidden public keys carry every torsion component', () => {
  const classes = new Map<string, number>();
  let clean = 0;
  const total = 400;
  for (let i = 0; i < total; i++) {
    const { keyPair } = generateHiddenKeyPair();
    if (hex(keyPair.publicKey) === hex(sodium.crypto_scalarmult_base(keyPair.privateKey))) clean++;
    const cls = torsionClass(keyPair.publicKey);
    classes.set(cls, (classes.get(cls) ?? 0) + 1);
  }
  // Up to sign, the 8-torsion subgroup has five classes: O, the point of order 2, the
  // order-4 pair and two order-8 pairs. Expected 1/8, 1/8, 1/4, 1/4, 1/4 of the keys.
  assert.equal(classes.size, 5, `classes: ${JSON.stringify([...classes.values()])}`);
  const identity = '01' + '00'.repeat(31);
  assert.equal(classes.get(identity), clean, 'clean keys are exactly those without torsion');
  assert.ok(clean > 20 && clean < 90, `clean keys: ${clean} of ${total} (expected about 1/8)`);
});

/** Bit frequencies and a byte chi-square statistic over a set of 32-byte strings. */
function uniformity(samples: readonly Uint8Array[]): { worstBitDeviation: number; chiSquare: number; bit255: number } {
  const bitCounts = new Array<number>(256).fill(0);
  const byteCounts = new Array<number>(256).fill(0);
  for (const sample of samples) {
    for (let i = 0; i < 32; i++) {
      const byte = sample[i] ?? 0;
      byteCounts[byte] = (byteCounts[byte] ?? 0) + 1;
      for (let b = 0; b < 8; b++) if ((byte >> b) & 1) bitCounts[i * 8 + b] = (bitCounts[i * 8 + b] ?? 0) + 1;
    }
  }
  const n = samples.length;
  const worstBitDeviation = Math.max(...bitCounts.map((c) => Math.abs(c / n - 0.5)));
  const expected = (n * 32) / 256;
  const chiSquare = byteCounts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  return { worstBitDeviation, chiSquare, bit255: (bitCounts[255] ?? 0) / n };
}

// χ² with 255 degrees of freedom exceeds 330.5 with probability 0.001.
const CHI_SQUARE_CRITICAL = 330.5;
const BIT_TOLERANCE = 0.02;
const SAMPLES = 20_000;

test('elligator - representatives are uniform; raw public keys are not', () => {
  let start = performance.now();
  const reps = Array.from({ length: SAMPLES }, () => generateHiddenKeyPair().representative);
  const hiddenPerSecond = (SAMPLES / (performance.now() - start)) * 1000;

  const hidden = uniformity(reps);
  assert.ok(hidden.worstBitDeviation < BIT_TOLERANCE, `worst bit deviation ${hidden.worstBitDeviation}`);
  assert.ok(hidden.chiSquare < CHI_SQUARE_CRITICAL, `chi-square ${hidden.chiSquare}`);

  // The same tests must be able to fail: ordinary public keys never set bit 255.
  const raw = Array.from({ length: SAMPLES }, () => sodium.crypto_box_keypair().publicKey);
  const plain = uniformity(raw);
  assert.equal(plain.bit255, 0);
  assert.ok(plain.worstBitDeviation >= BIT_TOLERANCE);
  assert.ok(plain.chiSquare > CHI_SQUARE_CRITICAL, `raw chi-square ${plain.chiSquare}`);

  const forwardInputs = reps.slice(0, 5000);
  start = performance.now();
  for (const rep of forwardInputs) representativeToPublicKey(rep);
  const forwardPerSecond = (forwardInputs.length / (performance.now() - start)) * 1000;
  console.log(
    `elligator rates: ${hiddenPerSecond.toFixed(0)} hidden key pairs/s, ` +
      `${forwardPerSecond.toFixed(0)} forward maps/s; ` +
      `hidden chi-square ${hidden.chiSquare.toFixed(1)}, raw chi-square ${plain.chiSquare.toFixed(1)}`,
  );
});

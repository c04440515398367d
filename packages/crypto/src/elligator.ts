/**
 * Elligator 2 on Curve25519: X25519 public keys that look like 32 uniformly random bytes
 * on the wire (docs/PROTOCOL.md §3.2). The map and its inverse follow Monocypher and the
 * elligator.org reference (non-square Z = 2, non-negative representatives, random tweak
 * bits); key generation makes Monocypher's "dirty" keys, which add a random low-order point
 * so that representatives cover the whole curve and not only the prime-order subgroup
 * (the flaw in obfs4's original keys).
 *
 * The two maps are plain BigInt arithmetic. Key generation calls libsodium and expects
 * it initialised: callers must have awaited `sodium.ready` (the package's ready function
 * does so).
 *
 * Field arithmetic uses BigInt and is variable-time. It only ever sees public values
 * (a public key u, its representative, or the public key of a discarded attempt); the
 * secret scalar stays inside libsodium.
 */
import sodium from 'libsodium-wrappers-sumo';
import { randomBytes } from './bytes.js';
import { cryptoBug, cryptoError } from './errors.js';

/** Bytes in a Curve25519 field element encoding, a public key and a representative. */
export const ELLIGATOR_BYTES = 32;

/** An X25519 key pair whose public key has an Elligator 2 representative. */
export interface HiddenKeyPair {
  /** A usable X25519 key pair: `privateKey` is the clamped scalar s, `publicKey` the u of s·B + T. */
  readonly keyPair: { readonly publicKey: Uint8Array; readonly privateKey: Uint8Array };
  /** 32 bytes to send instead of `publicKey`; indistinguishable from random bytes. */
  readonly representative: Uint8Array;
}

// --- Field GF(2^255 - 19) ------------------------------------------------------------

const P = (1n << 255n) - 19n;
const MASK_255 = (1n << 255n) - 1n;
const HALF_P = (P - 1n) / 2n;
const A = 486662n;
const NEG_A = P - A;
// sqrt(-1) = 2^((p-1)/4): needed to finish square roots because p ≡ 5 (mod 8).
const SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752n;
const NEG_SQRT_M1 = P - SQRT_M1;
// u = ufactor · r² · ... when g(w) is not a square (see forwardMap): ufactor = -2·sqrt(-1).
const UFACTOR = mod(-2n * SQRT_M1);
const A2_TIMES_2 = mod(2n * A * A);

/** Reduces any non-negative or negative BigInt to the canonical range [0, p). */
function mod(x: bigint): bigint {
  const r = x % P;
  return r < 0n ? r + P : r;
}

/**
 * Multiplies two field elements held loosely (non-negative, below about 2^256). Folding
 * 2^255 ≡ 19 twice measured about 25% faster than `%` and keeps the result below 2^256;
 * canonicalise with `mod` before comparing or encoding.
 */
function mul(a: bigint, b: bigint): bigint {
  let w = a * b;
  w = (w & MASK_255) + 19n * (w >> 255n);
  return (w & MASK_255) + 19n * (w >> 255n);
}

/** x^(2^n), by n squarings. */
function sqn(x: bigint, n: number): bigint {
  let r = x;
  for (let i = 0; i < n; i++) r = mul(r, r);
  return r;
}

/**
 * The shared prefix of ref10's addition chains: returns [z^(2^250 - 1), z^11]. 250
 * squarings and 10 multiplications, against about 380 operations for square-and-multiply.
 */
function pow2250m1(z: bigint): [bigint, bigint] {
  const z2 = mul(z, z);
  const z9 = mul(z, sqn(z2, 2));
  const z11 = mul(z2, z9);
  const e5 = mul(z9, mul(z11, z11)); // 2^5 - 1
  const e10 = mul(sqn(e5, 5), e5);
  const e20 = mul(sqn(e10, 10), e10);
  const e40 = mul(sqn(e20, 20), e20);
  const e50 = mul(sqn(e40, 10), e10);
  const e100 = mul(sqn(e50, 50), e50);
  const e200 = mul(sqn(e100, 100), e100);
  return [mul(sqn(e200, 50), e50), z11];
}

/** z^(p-2) = 1/z (0 for z = 0), canonical. */
function invert(z: bigint): bigint {
  const [e250, z11] = pow2250m1(z);
  return mod(mul(sqn(e250, 5), z11)); // 2^255 - 32 + 11 = p - 2
}

/** z^((p-5)/8) = z^(2^252 - 3), canonical. */
function pow22523(z: bigint): bigint {
  const [e250] = pow2250m1(z);
  return mod(mul(sqn(e250, 2), z));
}

/**
 * Inverse square root with a squareness test, in one exponentiation (Monocypher's
 * `invsqrt`). For a non-zero square x returns 1/sqrt(x) (either sign). For a non-square x,
 * the returned value isr satisfies isr²·x = sqrt(-1), which the forward map uses. Zero
 * counts as a square with isr = 0, as in the elligator.org reference.
 */
function invSqrt(x: bigint): { square: boolean; isr: bigint } {
  const xc = mod(x);
  if (xc === 0n) return { square: true, isr: 0n };
  let isr = pow22523(xc);
  // quartic = x^((p-1)/4): ±1 for squares, ±sqrt(-1) for non-squares.
  const quartic = mod(mul(xc, mul(isr, isr)));
  if (quartic === P - 1n || quartic === NEG_SQRT_M1) isr = mod(mul(isr, SQRT_M1));
  return { square: quartic === 1n || quartic === P - 1n, isr };
}

/** Legendre symbol test: true for squares (including zero). */
function isSquare(x: bigint): boolean {
  return invSqrt(x).square;
}

function decodeLE(bytes: Uint8Array): bigint {
  let x = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[i] ?? 0);
  return x;
}

function encodeLE(x: bigint): Uint8Array {
  const out = new Uint8Array(32);
  let v = x;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function checkLength(bytes: Uint8Array, what: string): void {
  if (bytes.length !== ELLIGATOR_BYTES) {
    throw cryptoError('BAD_LENGTH', `${what} must be ${ELLIGATOR_BYTES} bytes, got ${bytes.length}`);
  }
}

// --- The maps ----------------------------------------------------------------------------

/**
 * Forward map on a field element r: w = -A/(1 + 2r²); u = w if g(w) = w³ + Aw² + w is a
 * square, else u = -w - A. Written over the denominator d = 1 + 2r² so that one inverse
 * square root gives both the squareness of g(w) and 1/d:
 *   N = g(w)·d³ = A·(2A²r² - d²),  isr = invsqrt(N·d³),  1/d = N·d²·isr² (square case).
 * In the non-square case isr²·N·d³ = sqrt(-1) and u = -w - A = -2Ar²/d, which is the
 * same expression times -2·sqrt(-1)·r². N·d³ is never zero: d ≠ 0 because 2 is not a
 * square, and N = 0 would need 2 = (d/(Ar))², likewise impossible.
 */
function forwardMap(r: bigint): bigint {
  const r2 = mul(r, r);
  const d = 1n + 2n * r2;
  const d2 = mul(d, d);
  const n = mul(A, mod(mul(A2_TIMES_2, r2) - d2));
  const { square, isr } = invSqrt(mul(n, mul(d2, d)));
  const factor = square ? 1n : mul(UFACTOR, r2);
  return mod(mul(mul(mul(factor, NEG_A), mul(n, d2)), mul(isr, isr)));
}

/**
 * Inverse map for u = num/den (den ≠ 0), without checking that u is on the curve. The two
 * preimages are r² = -u/(2(u+A)) and r² = -(u+A)/(2u); with isr = invsqrt(-2u(u+A)) they
 * are u·isr and (u+A)·isr. Over the fraction, -2u(u+A) = -2·num·(num + A·den)/den², so
 * isr' = invsqrt(-2·num·(num + A·den)) = isr/den and the roots are num·isr' and
 * (num + A·den)·isr': no inversion needed. Returns null when u = -A or -2u(u+A) is not
 * a square.
 */
function inverseMapFraction(num: bigint, den: bigint, tweak: number): Uint8Array | null {
  const sum = mod(num + mul(A, den)); // den·(u + A)
  if (sum === 0n) return null; // u = -A: the map never reaches it
  const { square, isr } = invSqrt(mod(-2n * mul(num, sum)));
  if (!square) return null;
  let r = mod(mul((tweak & 1) === 0 ? num : sum, isr));
  // INVARIANT: r ≤ (p-1)/2, so the value fits in 254 bits and bits 254, 255 are free.
  if (r > HALF_P) r = P - r;
  const out = encodeLE(r);
  out[31] = (out[31] ?? 0) | (tweak & 0xc0);
  return out;
}

/**
 * The Elligator 2 forward map: the X25519 public key (Montgomery u, 32 bytes little-endian)
 * that a representative stands for. The top two bits of `rep` are padding and are ignored,
 * so every one of the 2^256 inputs maps to a point on the curve; the function never fails
 * for a 32-byte input.
 *
 * @param rep - a representative as received on the wire (32 bytes).
 * @returns the canonical encoding of u (below p).
 * @throws DeutError `BAD_LENGTH` (kind `crypto`) if `rep` is not 32 bytes.
 */
export function representativeToPublicKey(rep: Uint8Array): Uint8Array {
  checkLength(rep, 'representative');
  const r = decodeLE(rep) & ((1n << 254n) - 1n);
  return encodeLE(forwardMap(r));
}

/**
 * The Elligator 2 inverse map: a representative for the public key u, or null if u has
 * none (about half of all curve points). u is representable iff it is a canonical
 * encoding of a point on the curve (not the twist), u ≠ -A, and -2u(u+A) is a square.
 *
 * Tweak bit 0 chooses which of the two preimages to return (each is then the non-negative
 * root, at most (p-1)/2); bits 6 and 7 become the top two bits of the encoding. Pass a
 * fresh random byte so the output is uniform over 32-byte strings. For every tweak,
 * `representativeToPublicKey(publicKeyToRepresentative(u, tweak))` equals u.
 *
 * Use keys from {@link generateHiddenKeyPair}: representatives of ordinary X25519 keys
 * (always in the prime-order subgroup) are distinguishable from random.
 *
 * @param u - a Montgomery u-coordinate, 32 bytes little-endian.
 * @param tweak - a random byte (only bits 0, 6 and 7 are used).
 * @throws DeutError `BAD_LENGTH` (kind `crypto`) if `u` is not 32 bytes.
 */
export function publicKeyToRepresentative(u: Uint8Array, tweak: number): Uint8Array | null {
  checkLength(u, 'public key');
  const x = decodeLE(u);
  // A non-canonical encoding (top bit set, or ≥ p) could not come back byte for byte.
  if (x >= P) return null;
  // On the twist, -2u(u+A) can be a square too, but the forward map lands on -u-A instead.
  if (!isSquare(mul(x, mod(mul(x, x) + mul(A, x) + 1n)))) return null;
  return inverseMapFraction(x, 1n, tweak);
}

// --- Dirty key pairs -------------------------------------------------------------------

/**
 * The eight points of Ed25519's 8-torsion subgroup, as Edwards encodings: the identity,
 * the point of order 2, two of order 4 and four of order 8. Adding one of them to s·B
 * changes the Montgomery u without changing any X25519 result (clamped scalars are
 * multiples of 8).
 */
const TORSION_POINTS: readonly Uint8Array[] = [
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000080',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
].map((hex) => Uint8Array.from(Buffer.from(hex, 'hex')));

/** Fails clearly before libsodium is initialised, while the wrapper's functions are still undefined. */
function requireSodium(): void {
  if (typeof sodium.crypto_core_ed25519_add !== 'function') {
    throw cryptoBug('SODIUM_NOT_READY', 'libsodium is not initialised: await sodium.ready first');
  }
}

/**
 * Generates an X25519 key pair whose public key is representable, and its representative.
 *
 * The secret s is 32 random bytes clamped as X25519 clamps them. The public key is the
 * Montgomery u of s·B + T, where T is one of the eight low-order points chosen uniformly
 * (Monocypher's dirty keys); it equals `crypto_scalarmult_base(s)` only when T is the
 * identity. Because s is a multiple of 8, X25519 with s, or with any peer's clamped
 * scalar against this u, gives the same result as the clean key would. Attempts whose u
 * is not representable are discarded (about half; two tries on average).
 *
 * Send `representative`; keep `keyPair` for the Diffie-Hellman.
 */
export function generateHiddenKeyPair(): HiddenKeyPair {
  requireSodium();
  for (;;) {
    const random = randomBytes(34);
    const s = random.slice(0, 32);
    const torsion = TORSION_POINTS[(random[32] ?? 0) & 7];
    const tweak = random[33] ?? 0;
    sodium.memzero(random);
    if (torsion === undefined) throw cryptoBug('UNREACHABLE', 'torsion index out of range');
    s[0] = (s[0] ?? 0) & 248;
    s[31] = ((s[31] ?? 0) & 127) | 64;

    const edwards = sodium.crypto_core_ed25519_add(sodium.crypto_scalarmult_ed25519_base_noclamp(s), torsion);
    // Montgomery u = (1 + y)/(1 - y); libsodium's pk_to_curve25519 refuses points
    // outside the prime-order subgroup, so convert here. Bit 255 is the sign of x.
    const y = decodeLE(edwards) & MASK_255;
    const num = mod(1n + y);
    const den = mod(1n - y);
    // den = 0 would be the identity, impossible since s·B ≠ 0; skip it anyway.
    const representative = den === 0n ? null : inverseMapFraction(num, den, tweak);
    if (representative === null) {
      sodium.memzero(s);
      continue;
    }
    const publicKey = encodeLE(mod(mul(num, invert(den))));
    return { keyPair: { publicKey, privateKey: s }, representative };
  }
}

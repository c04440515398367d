/**
 * Uniform random choices for path selection, tunnel picking and ids. Uniformity matters:
 * a biased choice of tunnels would let an observer tell a master's favourites apart.
 */
import { randomBytes } from '@deut/crypto';

/** A uniformly random u32. */
export function randomU32(): number {
  const b = randomBytes(4);
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** A uniformly random integer in [0, n), n ≤ 2^32 (rejection sampling: no modulo bias). */
export function randomIndex(n: number): number {
  if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) throw new RangeError(`randomIndex: bad range ${n}`);
  const limit = 2 ** 32 - (2 ** 32 % n);
  for (;;) {
    const x = randomU32();
    if (x < limit) return x % n;
  }
}

/** A shuffled copy (Fisher-Yates). */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomIndex(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** `count` distinct items chosen uniformly at random (all of them if fewer). */
export function sample<T>(items: readonly T[], count: number): T[] {
  return shuffled(items).slice(0, count);
}

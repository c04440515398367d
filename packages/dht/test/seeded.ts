// A seeded PRNG for tests that simulate networks: the seed is printed, and DEUT_TEST_SEED
// replays a failure (DEUT_TEST_SEED=1234 node --test packages/dht/dist/test/dht-node.test.js).
import type { TestContext } from 'node:test';
import { seededRandom } from '@deut/common';

/** A source of reproducible randomness (not for anything secret). */
export interface Seeded {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  index(n: number): number;
  /** `n` bytes. */
  bytes(n: number): Uint8Array;
}

/** A {@link Seeded} from `seed` (common's seededRandom). */
export function seeded(seed: number): Seeded {
  const next = seededRandom(seed);
  return {
    seed,
    next,
    index: (n) => Math.floor(next() * n),
    bytes: (n) => Uint8Array.from({ length: n }, () => Math.floor(next() * 256)),
  };
}

/**
 * The seed of this test: DEUT_TEST_SEED if set, otherwise `fixed` if given (for a
 * simulation whose property holds only with high probability), otherwise a fresh one;
 * either way printed as a diagnostic, so a failure can be replayed.
 */
export function testSeed(t: TestContext, fixed?: number): Seeded {
  const fromEnv = process.env['DEUT_TEST_SEED'];
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : fixed ?? (Date.now() ^ (process.pid << 16)) >>> 0;
  t.diagnostic(`seed ${seed} (replay with DEUT_TEST_SEED=${seed})`);
  return seeded(seed);
}

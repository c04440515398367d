/**
 * A seeded pseudo-random generator for simulations and tests, so that a run replays from its
 * seed: the in-memory network's fates (loss, delay, reordering), test graphs and start times.
 * Never for anything secret: keys, nonces and ids come from libsodium.
 */

/** mulberry32: numbers in [0, 1) from a 32-bit `seed`; tiny, fast and plenty for simulating. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Anti-replay sliding window over message counters, RFC 6479 style (as WireGuard):
 * a ring of 32-bit words, so sliding forward clears whole words instead of shifting bits.
 * Used for link datagram counters (PROTOCOL.md §3.4) and per-hop cell sequence values (§5.3).
 *
 * Callers `check()` before authenticating and `mark()` only after, so a forged datagram
 * can never move the window.
 */

const WORD_BITS = 32;

/** 32-bit words a window of `size` counters needs (one spare: RFC 6479 §2). @throws RangeError below 32 */
export function replayWindowWords(size: number): number {
  if (!Number.isInteger(size) || size < WORD_BITS) throw new RangeError('replay window too small');
  return Math.ceil(size / WORD_BITS) + 1;
}

/**
 * The window check on caller-held state, for tables that pack many windows into one
 * array (a relay's transit entries): `words[start .. start+count)` is the ring and
 * `highest` the highest accepted counter (-1 for none). true if `counter` is new and not
 * too old. Does not change state.
 */
export function replayCheck(words: Uint32Array, start: number, count: number, highest: number, counter: number): boolean {
  if (!Number.isSafeInteger(counter) || counter < 0) return false;
  if (counter > highest) return true;
  if (highest - counter >= (count - 1) * WORD_BITS) return false;
  const word = words[start + (Math.floor(counter / WORD_BITS) % count)] ?? 0;
  return (word & (1 << (counter % WORD_BITS))) === 0;
}

/**
 * Records `counter` in a packed window (see {@link replayCheck}); returns the new highest
 * counter, or -2 (and changes nothing) if the check fails.
 */
export function replayMark(words: Uint32Array, start: number, count: number, highest: number, counter: number): number {
  if (!replayCheck(words, start, count, highest, counter)) return -2;
  const index = Math.floor(counter / WORD_BITS);
  let newHighest = highest;
  if (counter > highest) {
    const current = highest < 0 ? -1 : Math.floor(highest / WORD_BITS);
    const advance = Math.min(index - current, count);
    for (let i = 1; i <= advance; i++) words[start + ((current + i) % count)] = 0;
    newHighest = counter;
  }
  const slot = start + (index % count);
  words[slot] = (words[slot] ?? 0) | (1 << (counter % WORD_BITS));
  return newHighest;
}

/** Sliding window of recently accepted counters. */
export class ReplayWindow {
  readonly #words: Uint32Array;
  /** Counters further than this below the highest accepted one are refused. */
  readonly size: number;
  #highest = -1;

  /** `size` counters are tracked below the highest; rounded up to a multiple of 32. */
  constructor(size: number) {
    const words = replayWindowWords(size);
    this.#words = new Uint32Array(words);
    this.size = (words - 1) * WORD_BITS;
  }

  /** Highest counter accepted so far, or -1. */
  get highest(): number {
    return this.#highest;
  }

  /** true if `counter` has not been seen and is not too old. Does not change state. */
  check(counter: number): boolean {
    return replayCheck(this.#words, 0, this.#words.length, this.#highest, counter);
  }

  /** Records `counter` as seen; returns false (and changes nothing) if check() would fail. */
  mark(counter: number): boolean {
    const highest = replayMark(this.#words, 0, this.#words.length, this.#highest, counter);
    if (highest === -2) return false;
    this.#highest = highest;
    return true;
  }
}

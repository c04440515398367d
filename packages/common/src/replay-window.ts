/**
 * Anti-replay sliding window over message counters, RFC 6479 style (as WireGuard):
 * a ring of 32-bit words, so sliding forward clears whole words instead of shifting bits.
 * Used for link datagram counters (PROTOCOL.md §3.4) and per-hop cell sequence values (§5.3).
 *
 * Callers `check()` before authenticating and `mark()` only after, so a forged datagram
 * can never move the window.
 */

const WORD_BITS = 32;

/** Sliding window of recently accepted counters. */
export class ReplayWindow {
  readonly #words: Uint32Array;
  /** Counters further than this below the highest accepted one are refused. */
  readonly size: number;
  #highest = -1;

  /** `size` counters are tracked below the highest; rounded up to a multiple of 32. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < WORD_BITS) throw new RangeError('replay window too small');
    const words = Math.ceil(size / WORD_BITS) + 1; // one spare word: RFC 6479 §2
    this.#words = new Uint32Array(words);
    this.size = (words - 1) * WORD_BITS;
  }

  /** Highest counter accepted so far, or -1. */
  get highest(): number {
    return this.#highest;
  }

  /** true if `counter` has not been seen and is not too old. Does not change state. */
  check(counter: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0) return false;
    if (counter > this.#highest) return true;
    if (this.#highest - counter >= this.size) return false;
    const word = this.#words[Math.floor(counter / WORD_BITS) % this.#words.length] ?? 0;
    return (word & (1 << (counter % WORD_BITS))) === 0;
  }

  /** Records `counter` as seen; returns false (and changes nothing) if check() would fail. */
  mark(counter: number): boolean {
    if (!this.check(counter)) return false;
    const words = this.#words.length;
    const index = Math.floor(counter / WORD_BITS);
    if (counter > this.#highest) {
      const current = this.#highest < 0 ? -1 : Math.floor(this.#highest / WORD_BITS);
      const advance = Math.min(index - current, words);
      for (let i = 1; i <= advance; i++) this.#words[(current + i) % words] = 0;
      this.#highest = counter;
    }
    const slot = index % words;
    this.#words[slot] = (this.#words[slot] ?? 0) | (1 << (counter % WORD_BITS));
    return true;
  }
}

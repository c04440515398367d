/**
 * A retry budget (PROTOCOL.md §7): retries may add at most `ratio` × the requests started
 * in the last `windowMs`, plus a floor of `minPerSecond`, so that a master's own retries
 * can never grow its traffic without bound.
 *
 * Without one, retries feed on themselves: a relayer dies or the process falls behind, the
 * first attempts time out, their retries fill the endpoints' rate caps (§5.5), and the
 * drops there time out more attempts. A CI run saw 8 retries per request and over 100 of
 * 4,884 requests fail that way after one relayer was killed. Finagle (`RetryBudget`: 20%
 * over 10 s, at least 10/s) and Envoy (retry budgets) bound retries the same way. Retries
 * are our only loss recovery, so the ratio is higher than theirs: 10% loss per link loses
 * about half of all three-hop round trips, and the messaging test at that loss retries
 * 0.75 times per request.
 */
import { systemClock, type Clock } from '@deut/common';

/** Options of {@link RetryBudget}. */
export interface RetryBudgetOptions {
  /** Retries allowed per request started in the window. @default 1 */
  readonly ratio?: number;
  /** Retries always allowed per second of the window, however few the requests. @default 10 */
  readonly minPerSecond?: number;
  /** How far back requests and retries count. @default 10,000 */
  readonly windowMs?: number;
  /** @default systemClock */
  readonly clock?: Clock;
}

/** Slots the window is counted in: memory is fixed whatever the traffic. */
const SLOTS = 10;

/** Requests and retries counted in sliding time slots. */
export class RetryBudget {
  readonly #ratio: number;
  readonly #floor: number;
  readonly #slotMs: number;
  readonly #clock: Clock;
  /** Per slot: the slot number it counts, requests, retries. */
  readonly #slot = new Float64Array(SLOTS).fill(-1);
  readonly #requests = new Float64Array(SLOTS);
  readonly #retries = new Float64Array(SLOTS);

  constructor(options: RetryBudgetOptions = {}) {
    const ratio = options.ratio ?? 1;
    const minPerSecond = options.minPerSecond ?? 10;
    const windowMs = options.windowMs ?? 10_000;
    if (!(ratio >= 0 && Number.isFinite(ratio))) throw new RangeError(`RetryBudget: ratio ${ratio} is not a finite number >= 0`);
    if (!(minPerSecond >= 0 && Number.isFinite(minPerSecond))) throw new RangeError(`RetryBudget: minPerSecond ${minPerSecond} is not a finite number >= 0`);
    if (!(windowMs >= SLOTS && Number.isFinite(windowMs))) throw new RangeError(`RetryBudget: windowMs ${windowMs} is shorter than ${SLOTS} ms`);
    this.#ratio = ratio;
    this.#floor = (minPerSecond * windowMs) / 1000;
    this.#slotMs = windowMs / SLOTS;
    this.#clock = options.clock ?? systemClock;
  }

  /** A request started: it adds `ratio` retries to the budget for the window. */
  requestStarted(): void {
    this.#requests[this.#current()]! += 1;
  }

  /** Spends one retry if the window's budget has one left; false means wait. */
  tryRetry(): boolean {
    const slot = this.#current();
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < SLOTS; i++) {
      requests += this.#requests[i]!;
      retries += this.#retries[i]!;
    }
    if (retries + 1 > this.#ratio * requests + this.#floor) return false;
    this.#retries[slot]! += 1;
    return true;
  }

  /** Index of the slot for now, cleared first if it last counted an older slot. */
  #current(): number {
    const slotNumber = Math.floor(this.#clock.now() / this.#slotMs);
    // Slots not written for a whole window hold stale counts: clear every one behind.
    for (let i = 0; i < SLOTS; i++) {
      if (this.#slot[i]! !== -1 && this.#slot[i]! <= slotNumber - SLOTS) {
        this.#slot[i] = -1;
        this.#requests[i] = 0;
        this.#retries[i] = 0;
      }
    }
    const index = slotNumber % SLOTS;
    if (this.#slot[index] !== slotNumber) {
      this.#slot[index] = slotNumber;
      this.#requests[index] = 0;
      this.#retries[index] = 0;
    }
    return index;
  }
}

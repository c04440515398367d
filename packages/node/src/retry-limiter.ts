/**
 * At most `maxInFlight` retries outstanding at once (PROTOCOL.md §7): a retry holds its
 * slot until it is answered or times out, and a retry that finds no slot waits in line
 * for the next one to free.
 *
 * Why a window of retries in flight rather than a rate: it clocks itself, as TCP's
 * congestion window does (Jacobson 1988, "conservation of packets"). When retries are
 * answered, slots free within a round trip and a backlog drains as fast as the paths
 * carry it; when they are not (a dead relayer, drops at the endpoints' rate caps, a
 * process that has fallen behind its timers), each slot is held for a whole attempt
 * timeout and retries slow down by themselves. A rate budget (one retry per request
 * over 10 s, as Finagle and Envoy bound theirs) was tried first: after a relayer under
 * all of a master's tunnels died, it let the 3,600 requests that had piled up during the
 * 18 s outage drain at only 200 a second, and half of them missed their 30 s deadline.
 */

/** Counts retries in flight and queues the ones that must wait, oldest first. */
export class RetryLimiter {
  readonly #maxInFlight: number;
  /** Waiting retries; a Set keeps insertion order and forgets a cancelled one in O(1). */
  readonly #queue = new Set<() => void>();
  #inFlight = 0;
  #peak = 0;

  constructor(maxInFlight = 128) {
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new RangeError(`RetryLimiter: maxInFlight ${maxInFlight} is not a positive integer`);
    this.#maxInFlight = maxInFlight;
  }

  /**
   * Starts `retry` now, in a slot, and returns true; or queues it for the next free slot
   * and returns false. A queued retry runs in its slot when one frees, unless cancelled.
   */
  start(retry: () => void): boolean {
    if (this.#inFlight >= this.#maxInFlight) {
      this.#queue.add(retry);
      return false;
    }
    this.#take();
    retry();
    return true;
  }

  /** Forgets a queued retry (its request ended while it waited). */
  cancel(retry: () => void): void {
    this.#queue.delete(retry);
  }

  /** A retry's slot is free (it was answered, timed out, or its request ended). */
  release(): void {
    if (this.#inFlight === 0) throw new Error('RetryLimiter: release without a retry in flight');
    this.#inFlight--;
    const next = this.#queue.values().next();
    if (next.done === true) return;
    this.#queue.delete(next.value);
    this.#take();
    next.value();
  }

  /** Retries in flight and waiting, and the most ever in flight at once. */
  stats(): { inFlight: number; queued: number; peak: number } {
    return { inFlight: this.#inFlight, queued: this.#queue.size, peak: this.#peak };
  }

  #take(): void {
    this.#inFlight++;
    if (this.#inFlight > this.#peak) this.#peak = this.#inFlight;
  }
}

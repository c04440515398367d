/**
 * Named counters for stats and metrics: every drop of remote input is counted under a
 * reason, so tests and operators can see it (holepunch dht-rpc's stats habit).
 */

/** A bag of monotonically increasing counters keyed by name. */
export class Counters<K extends string = string> {
  readonly #values = new Map<K, number>();

  /** Adds `by` (default 1) to counter `key`. */
  add(key: K, by = 1): void {
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  /** Current value of `key` (0 if never counted). */
  get(key: K): number {
    return this.#values.get(key) ?? 0;
  }

  /** Sum over all keys. */
  total(): number {
    let sum = 0;
    for (const v of this.#values.values()) sum += v;
    return sum;
  }

  /** A plain snapshot, for stats() and metrics. */
  snapshot(): Record<string, number> {
    return Object.fromEntries(this.#values);
  }
}

/**
 * Named counters for stats and metrics: every drop of remote input is counted under a
 * reason, so tests and operators can see it (holepunch dht-rpc's stats habit).
 */

/**
 * What `snapshot()` returns: a counter is present once it has been counted. Indexing it with a
 * name outside the package's declared union fails to compile, so a renamed counter cannot
 * leave a test asserting `counters['old-name'] ?? 0` that passes vacuously.
 */
export type CounterSnapshot<K extends string> = { readonly [N in K]?: number };

/**
 * A bag of monotonically increasing counters keyed by name. K is the owning package's closed
 * union of counter names (declared beside the class that counts, and exported with it).
 */
export class Counters<K extends string> {
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
  snapshot(): CounterSnapshot<K> {
    return Object.fromEntries(this.#values) as CounterSnapshot<K>;
  }
}

/** Sum of a snapshot's counters, or of those whose name starts with `prefix`. */
export function sumCounters<K extends string>(snapshot: CounterSnapshot<K>, prefix = ''): number {
  let sum = 0;
  for (const [name, value] of Object.entries<number | undefined>(snapshot)) if (name.startsWith(prefix)) sum += value ?? 0;
  return sum;
}

/**
 * `prefix` before each code in lower case, typed as the template literal the counter unions
 * use (`drop:decode-${Lowercase<WireErrorCode>}`), so a union and the list it is derived
 * from are built from one const array and cannot drift.
 */
export function prefixedCodes<P extends string, C extends string>(prefix: P, codes: readonly C[]): Array<`${P}${Lowercase<C>}`> {
  return codes.map((code) => `${prefix}${code.toLowerCase()}` as `${P}${Lowercase<C>}`);
}

/**
 * Token buckets for admission control: a single bucket (global limits) and a keyed set of
 * buckets with bounded memory (per-source limits, e.g. Tor's 3 circuits/s per IP with
 * burst 90). Time comes from an injected clock so tests need no sleeping.
 */

/** Rate and burst of a bucket. */
export interface RateLimit {
  /** Tokens added per second. */
  readonly perSecond: number;
  /** Bucket capacity: how many may pass at once after a quiet period. */
  readonly burst: number;
}

/** One token bucket. */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
  ) {
    this.#tokens = limit.burst;
    this.#at = now();
  }

  /** Takes `cost` tokens if available; false means "over the limit". */
  take(cost = 1): boolean {
    const t = this.now();
    this.#tokens = Math.min(this.limit.burst, this.#tokens + ((t - this.#at) / 1000) * this.limit.perSecond);
    this.#at = t;
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }

  /** true when the bucket is full again, so a keyed limiter may forget it. */
  idle(): boolean {
    const t = this.now();
    return this.#tokens + ((t - this.#at) / 1000) * this.limit.perSecond >= this.limit.burst;
  }
}

/**
 * One bucket per key, at most `maxKeys` of them. When full, idle buckets are dropped
 * first; if none is idle the oldest is dropped, which can only make the limiter more
 * generous to that key, never let the map grow without bound.
 */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
    private readonly maxKeys = 4096,
  ) {}

  /** Takes a token from `key`'s bucket. */
  take(key: string, cost = 1): boolean {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.maxKeys) this.#evict();
      bucket = new TokenBucket(this.limit, this.now);
      this.#buckets.set(key, bucket);
    }
    return bucket.take(cost);
  }

  /** Drops `key`'s bucket: for keys whose subject is gone (a closed tunnel), so none lingers. */
  forget(key: string): void {
    this.#buckets.delete(key);
  }

  /** Number of tracked keys (bounded by maxKeys). */
  get size(): number {
    return this.#buckets.size;
  }

  #evict(): void {
    for (const [key, bucket] of this.#buckets) {
      if (bucket.idle()) this.#buckets.delete(key);
    }
    if (this.#buckets.size >= this.maxKeys) {
      const oldest = this.#buckets.keys().next();
      if (oldest.done !== true) this.#buckets.delete(oldest.value);
    }
  }
}

/**
 * The logging interface libraries receive. Libraries never import a logging framework:
 * the CLI injects a winston-backed Logger, tests inject a recorder, and the default is
 * silent. Fields are structured; anything sensitive goes through `redact.ts` first.
 */

/** Structured fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** Minimal leveled logger; implementations must never throw. */
export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
}

/** A logger that discards everything: the default for every library object. */
export const silentLogger: Logger = Object.freeze({
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
});

/**
 * Wraps a logger so that each distinct `key` logs at most once per `intervalMs`;
 * later calls in the window are counted and the count is reported with the next line.
 * Floods from the network must not become floods in the log (Tor's rate-limited warnings).
 */
export class RateLimitedLog {
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly intervalMs = 60_000,
    private readonly maxKeys = 1024,
  ) {}

  warn(key: string, message: string, fields: LogFields = {}): void {
    const t = this.now();
    const entry = this.#last.get(key);
    if (entry !== undefined && t - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    if (entry === undefined && this.#last.size >= this.maxKeys) {
      // Bounded memory: forget the oldest key rather than grow with attacker-chosen keys.
      const oldest = this.#last.keys().next();
      if (oldest.done !== true) this.#last.delete(oldest.value);
    }
    const suppressed = entry?.suppressed ?? 0;
    this.#last.set(key, { at: t, suppressed: 0 });
    this.logger.warn(message, suppressed > 0 ? { ...fields, suppressed } : fields);
  }
}

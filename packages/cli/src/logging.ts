/**
 * The daemon's logger: winston behind the `Logger` interface of @deut/common, with safe
 * logging by default (Tor's SafeLogging; SECURITY.md §3.14) and rate limits on repeated
 * warnings and errors.
 *
 * Every line goes through three steps before winston sees it:
 * 1. level filtering (debug < info < warn < error);
 * 2. rate limiting of repeated warn/error lines (same level and message text);
 * 3. redaction: sensitive field names are scrubbed, and addresses and long hex runs are
 *    scrubbed from every string (the message, field values, nested objects, errors).
 *    Byte arrays are always scrubbed. `--unsafe-logs` turns redaction off.
 * Redaction turns the fields into a plain, acyclic, bounded tree, so the formatters never
 * meet cycles, BigInts or megabyte strings.
 */
import { safeRedactor, type LogFields, type Logger } from '@deut/common';
import winston from 'winston';

/** Log levels, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** Output formats: human-readable lines, or one JSON object per line. */
export type LogFormat = 'pretty' | 'json';

/** Options of {@link createCliLogger}. */
export interface CliLoggerOptions {
  /** Lines below this level are dropped. */
  readonly level: LogLevel;
  /** @default 'pretty' when the stream is a TTY, else 'json' */
  readonly format?: LogFormat;
  /** --unsafe-logs: show addresses, keys, ids and payloads as they are */
  readonly unsafe: boolean;
  /** @default process.stderr */
  readonly stream?: NodeJS.WritableStream;
  /** Repeated warnings/errors with the same message: at most this many per window, then one summary. @default 5 per 60 s */
  readonly repeatLimit?: { readonly count: number; readonly windowMs: number };
  /** Milliseconds since the epoch, for timestamps and rate-limit windows (tests). @default Date.now */
  readonly now?: () => number;
}

/** A logger for the daemon and the means to flush it. */
export interface CliLogger {
  readonly logger: Logger;
  /**
   * Emits pending "N similar suppressed" summaries, flushes and ends the winston transport
   * (the stream itself stays open). Later lines are dropped. Safe to destructure and to call twice.
   */
  readonly close: () => Promise<void>;
}

/** What replaces a sensitive value (the same placeholder as @deut/common's redactor). */
export const SCRUBBED = safeRedactor.address('');

/** Strings longer than this are cut (characters). */
export const MAX_STRING_CHARS = 4096;
/** Elements of one array, or keys of one object, shown at most. */
const MAX_ENTRIES = 100;
/** Nesting shown at most. */
const MAX_DEPTH = 8;
/** Values visited per log line at most (bounds the work on huge object graphs). */
const MAX_NODES = 2_000;
/** Distinct repeated messages tracked at most (bounded memory under attacker-chosen text). */
const MAX_REPEAT_KEYS = 1_024;

const LEVELS: Readonly<Record<LogLevel, number>> = { error: 0, warn: 1, info: 2, debug: 3 };

// ---- redaction --------------------------------------------------------------------------

/** Field names whose values are always scrubbed (compared case-insensitively). */
const SENSITIVE_NAMES = new Set(
  ['address', 'host', 'from', 'to', 'peer', 'endpoint', 'remote', 'key', 'publicKey', 'privateKey', 'secret', 'cookie', 'sessionId', 'session', 'tunnel', 'tunnelId', 'id', 'payload', 'data', 'value'].map((n) => n.toLowerCase()),
);
/** camelCase suffixes (`peerAddress`, `nodeId`, `hopKeys`), case-sensitive so that `valid` or `monkey` pass. */
const CAMEL_SUFFIX = /[a-z0-9](?:Address(?:es)?|Keys?|Ids?|IDs?)$/;
/** snake_case and kebab-case suffixes (`node_id`, `public-key`). */
const SNAKE_SUFFIX = /[_-](?:address(?:es)?|keys?|ids?)$/i;

/** true for a field name whose value is scrubbed whatever it is. */
export function isSensitiveFieldName(name: string): boolean {
  return SENSITIVE_NAMES.has(name.toLowerCase()) || CAMEL_SUFFIX.test(name) || SNAKE_SUFFIX.test(name);
}

/** `[v6 literal]` with an optional port (bounded lengths: no backtracking blow-up). */
const BRACKETED_V6 = /\[[0-9A-Fa-f:.]{2,45}(?:%[\w.-]{1,32})?\](?::\d{1,5})?/g;
/** A bare v6 literal (checked further in {@link scrubString}); may end in a dotted v4 part. */
const BARE_V6 = /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?:%[\w.-]+)?(?![\w:])/g;
/** A dotted v4 address with an optional port. */
const IPV4 = /(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\d])/g;
/** Keys, ids, hashes: 16 or more hex digits in a row. */
const HEX_RUN = /[0-9A-Fa-f]{16,}/g;
/** What may be part of an address or hex run: never cut a string inside one. */
const ADDRESS_TAIL = /[0-9A-Fa-f:.[\]%]+$/;

function looksLikeBareV6(match: string): boolean {
  const colons = match.split(':').length - 1;
  // "::" (compressed) or all eight groups; "12:34:56" (a time) is neither.
  return /[0-9A-Fa-f]/.test(match) && (match.includes('::') || colons === 7);
}

/** Cuts a string to {@link MAX_STRING_CHARS}, never leaving half an address or key at the cut. */
function truncate(text: string): string {
  if (text.length <= MAX_STRING_CHARS) return text;
  const head = text.slice(0, MAX_STRING_CHARS).replace(ADDRESS_TAIL, '');
  return `${head}…[${text.length - head.length} chars cut]`;
}

/** Replaces addresses (v4, v6, with ports) and hex runs of 16+ digits by the placeholder. */
export function scrubString(text: string): string {
  return text
    .replace(BRACKETED_V6, (match) => (match.includes(':') ? SCRUBBED : match))
    .replace(BARE_V6, (match) => (looksLikeBareV6(match) ? SCRUBBED : match))
    .replace(IPV4, SCRUBBED)
    .replace(HEX_RUN, SCRUBBED);
}

/**
 * A value the operator configured on this very daemon (its own listen address, say), logged
 * as it is even without `--unsafe-logs`. Safe logging hides who this node talks to (peers,
 * tunnels, keys); it has nothing to hide about where the operator told the daemon to
 * listen. Only code can make one: text from the network never becomes an OwnSetting.
 */
export class OwnSetting {
  constructor(readonly text: string) {}
}

/** A JSON-safe value: what redaction produces. */
type Plain = null | boolean | number | string | Plain[] | { [key: string]: Plain };

interface RedactState {
  readonly unsafe: boolean;
  readonly stacks: boolean;
  /** Objects on the path from the root (cycle detection that still shows shared objects twice). */
  readonly ancestors: Set<object>;
  nodes: number;
}

function text(value: string, state: RedactState): string {
  const cut = truncate(value);
  return state.unsafe ? cut : scrubString(cut);
}

function bytesOf(value: ArrayBufferView | ArrayBuffer): Uint8Array {
  return value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/** Turns any value into a bounded plain tree, scrubbing unless `state.unsafe`. Never throws. */
function redactValue(value: unknown, depth: number, state: RedactState): Plain | undefined {
  if (++state.nodes > MAX_NODES) return '[…]';
  switch (typeof value) {
    case 'string':
      return text(value, state);
    case 'number':
    case 'boolean':
      return value;
    case 'bigint':
      // A number, shown like numbers are (a decimal run is not a hex key).
      return value.toString();
    case 'undefined':
      return undefined;
    case 'symbol':
      return text(value.toString(), state);
    case 'function':
      return '[function]';
    case 'object':
      break;
  }
  if (value === null) return null;
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    if (!state.unsafe) return SCRUBBED;
    const bytes = bytesOf(value);
    const shown = bytes.subarray(0, MAX_STRING_CHARS / 2);
    const hex = Buffer.from(shown.buffer, shown.byteOffset, shown.byteLength).toString('hex');
    return bytes.length > shown.length ? `${hex}…[${bytes.length - shown.length} bytes cut]` : hex;
  }
  if (state.ancestors.has(value)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[…]';
  state.ancestors.add(value);
  try {
    if (value instanceof OwnSetting) return truncate(value.text);
    if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
    if (value instanceof Error) return redactError(value, depth, state);
    if (Array.isArray(value)) return redactEntries(value as unknown[], depth, state);
    if (value instanceof Set) return redactEntries([...value] as unknown[], depth, state);
    if (value instanceof Map) return redactEntries([...value] as unknown[], depth, state);
    return redactObject(value, depth, state);
  } catch {
    // A throwing getter or Proxy: the line is still logged, without this value.
    return '[unreadable]';
  } finally {
    state.ancestors.delete(value);
  }
}

function redactEntries(values: readonly unknown[], depth: number, state: RedactState): Plain[] {
  const out: Plain[] = [];
  for (const item of values.slice(0, MAX_ENTRIES)) out.push(redactValue(item, depth + 1, state) ?? null);
  if (values.length > MAX_ENTRIES) out.push(`…[${values.length - MAX_ENTRIES} more]`);
  return out;
}

/** An object without a prototype: a field named `__proto__` is just a field. */
function record(): { [key: string]: Plain } {
  return Object.create(null) as { [key: string]: Plain };
}

function redactObject(value: object, depth: number, state: RedactState): { [key: string]: Plain } {
  const out = record();
  const names = Object.keys(value);
  for (const name of names.slice(0, MAX_ENTRIES)) {
    let item: unknown;
    try {
      item = (value as Record<string, unknown>)[name];
    } catch {
      item = '[unreadable]';
    }
    const redacted = redactField(name, item, depth + 1, state);
    // Keys may themselves be addresses (tables keyed by host:port): scrub them too.
    if (redacted !== undefined) out[text(name, state)] = redacted;
  }
  if (names.length > MAX_ENTRIES) out['…'] = `[${names.length - MAX_ENTRIES} more]`;
  return out;
}

function redactField(name: string, value: unknown, depth: number, state: RedactState): Plain | undefined {
  if (value === undefined) return undefined;
  if (!state.unsafe && isSensitiveFieldName(name)) return SCRUBBED;
  return redactValue(value, depth, state);
}

function redactError(error: Error, depth: number, state: RedactState): { [key: string]: Plain } {
  const out = record();
  out['name'] = text(String(error.name), state);
  out['message'] = text(String(error.message), state);
  const extra = error as Error & { code?: unknown; kind?: unknown };
  if (typeof extra.code === 'string' || typeof extra.code === 'number') out['code'] = text(String(extra.code), state);
  if (typeof extra.kind === 'string') out['kind'] = text(extra.kind, state);
  if (state.stacks && typeof error.stack === 'string') out['stack'] = text(error.stack, state);
  if (error.cause !== undefined) {
    const cause = redactValue(error.cause, depth + 1, state);
    if (cause !== undefined) out['cause'] = cause;
  }
  return out;
}

/**
 * Redacts a message and its fields as the logger does: the result is plain JSON data.
 * @param options.unsafe show everything as it is (byte arrays as hex)
 */
export function redactLine(message: unknown, fields: unknown, options: { unsafe: boolean; stacks?: boolean }): { message: string; fields: Record<string, Plain> } {
  const state: RedactState = { unsafe: options.unsafe, stacks: options.stacks ?? false, ancestors: new Set(), nodes: 0 };
  let shownMessage: string;
  try {
    shownMessage = typeof message === 'string' ? text(message, state) : text(String(message), state);
  } catch {
    shownMessage = '[unreadable message]';
  }
  let shownFields: Record<string, Plain> = {};
  try {
    if (fields !== null && typeof fields === 'object' && !Array.isArray(fields) && !(fields instanceof Error)) {
      shownFields = redactObject(fields, 0, state);
    } else if (fields !== undefined) {
      const only = redactValue(fields, 0, state);
      if (only !== undefined) shownFields = { fields: only };
    }
  } catch {
    shownFields = { fields: '[unreadable]' };
  }
  return { message: shownMessage, fields: shownFields };
}

// ---- formats ----------------------------------------------------------------------------

/** Names the formatter owns; fields of the same name are shown with a leading underscore. */
const RESERVED = new Set(['level', 'message', 'time']);

function jsonLine(level: LogLevel, message: string, time: number, fields: Record<string, Plain>): string {
  const line = record();
  line['level'] = level;
  line['message'] = message;
  line['time'] = new Date(time).toISOString();
  for (const [name, value] of Object.entries(fields)) {
    let key = name;
    while (RESERVED.has(key) || Object.hasOwn(line, key)) key = `_${key}`;
    line[key] = value;
  }
  return JSON.stringify(line);
}

const COLOURS: Readonly<Record<LogLevel, string>> = { error: '\x1b[31m', warn: '\x1b[33m', info: '\x1b[32m', debug: '\x1b[34m' };
const DIM = '\x1b[2m';
const RESET = '\x1b[0m';

/** Control characters (and so terminal escapes) from the network never reach a terminal raw. */
function escapeControls(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function prettyValue(value: Plain): string {
  if (typeof value === 'string' && value !== '' && /^[^\s"=\\]+$/.test(value)) return escapeControls(value);
  return escapeControls(JSON.stringify(value));
}

function clockTime(time: number): string {
  const d = new Date(time);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

function prettyLine(level: LogLevel, message: string, time: number, fields: Record<string, Plain>, colour: boolean): string {
  const levelName = level.toUpperCase().padEnd(5);
  const parts = [colour ? `${DIM}${clockTime(time)}${RESET}` : clockTime(time), colour ? `${COLOURS[level]}${levelName}${RESET}` : levelName, escapeControls(message)];
  for (const [key, value] of Object.entries(fields)) {
    const name = escapeControls(key);
    parts.push(colour ? `${DIM}${name}=${RESET}${prettyValue(value)}` : `${name}=${prettyValue(value)}`);
  }
  return parts.join(' ');
}

// ---- rate limiting ----------------------------------------------------------------------

interface RepeatWindow {
  readonly level: LogLevel;
  readonly message: string;
  startedAt: number;
  count: number;
  suppressed: number;
}

// ---- the logger -------------------------------------------------------------------------

/** The formatted line travels to winston's formatter under this key. */
const LINE = Symbol('deut-line');

/**
 * Builds the daemon's logger: winston writing to `stream` (stderr by default), with
 * redaction unless `unsafe`, and repeated warnings/errors limited.
 */
export function createCliLogger(options: CliLoggerOptions): CliLogger {
  const stream = options.stream ?? process.stderr;
  const tty = (stream as { isTTY?: unknown }).isTTY === true;
  const format: LogFormat = options.format ?? (tty ? 'pretty' : 'json');
  const colour = tty && format === 'pretty' && process.env['NO_COLOR'] === undefined;
  const now = options.now ?? Date.now;
  const limit = options.repeatLimit ?? { count: 5, windowMs: 60_000 };
  const threshold = LEVELS[options.level];
  const stacks = options.level === 'debug';

  const transport = new winston.transports.Stream({ stream, eol: '\n' });
  const winstonLogger = winston.createLogger({
    levels: { ...LEVELS },
    level: options.level,
    exitOnError: false,
    format: winston.format.printf((info) => {
      const line = (info as Record<symbol, unknown>)[LINE];
      return typeof line === 'string' ? line : '';
    }),
    transports: [transport],
  });
  // A logger must never throw: a broken stream (EPIPE on a closed stderr) loses lines, no more.
  winstonLogger.on('error', () => undefined);
  transport.on('error', () => undefined);

  const repeats = new Map<string, RepeatWindow>();
  let closed = false;

  const write = (level: LogLevel, message: string, fields: Record<string, Plain>, time: number): void => {
    const line = format === 'json' ? jsonLine(level, message, time, fields) : prettyLine(level, message, time, fields, colour);
    try {
      winstonLogger.log({ level, message, [LINE]: line });
    } catch {
      // Never throw out of a log call.
    }
  };

  const summarize = (window: RepeatWindow, time: number): void => {
    if (window.suppressed === 0) return;
    write(window.level, `${window.message} (${window.suppressed} similar suppressed)`, { suppressed: window.suppressed }, time);
    window.suppressed = 0;
  };

  /** true if the line may be written now; counts it otherwise. */
  const admit = (level: LogLevel, message: string, time: number): boolean => {
    if (level !== 'warn' && level !== 'error') return true;
    const key = `${level}\u0000${message}`;
    let window = repeats.get(key);
    if (window !== undefined && time - window.startedAt >= limit.windowMs) {
      summarize(window, time);
      repeats.delete(key);
      window = undefined;
    }
    if (window === undefined) {
      if (repeats.size >= MAX_REPEAT_KEYS) {
        const oldest = repeats.entries().next();
        if (oldest.done !== true) {
          summarize(oldest.value[1], time);
          repeats.delete(oldest.value[0]);
        }
      }
      window = { level, message, startedAt: time, count: 0, suppressed: 0 };
      repeats.set(key, window);
    }
    window.count++;
    if (window.count <= limit.count) return true;
    window.suppressed++;
    return false;
  };

  const log = (level: LogLevel, message: string, fields?: LogFields): void => {
    if (closed || LEVELS[level] > threshold) return;
    try {
      const time = now();
      const line = redactLine(message, fields, { unsafe: options.unsafe, stacks });
      if (!admit(level, line.message, time)) return;
      write(level, line.message, line.fields, time);
    } catch {
      // Never throw out of a log call.
    }
  };

  const logger: Logger = Object.freeze({
    error: (message: string, fields?: LogFields) => log('error', message, fields),
    warn: (message: string, fields?: LogFields) => log('warn', message, fields),
    info: (message: string, fields?: LogFields) => log('info', message, fields),
    debug: (message: string, fields?: LogFields) => log('debug', message, fields),
  });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const time = now();
      for (const window of repeats.values()) summarize(window, time);
      repeats.clear();
      closed = true;
      // Ending the logger ends its transport once every line went through it.
      const finished = new Promise<void>((resolve) => {
        transport.once('finish', () => resolve());
        transport.once('close', () => resolve());
        transport.once('error', () => resolve());
      });
      winstonLogger.end();
      await finished;
      // The transport writes synchronously; a zero-length write calls back once every
      // earlier chunk has been handled by the stream. The stream itself stays open (stderr).
      await new Promise<void>((resolve) => {
        try {
          const writable = stream as NodeJS.WritableStream & { writable?: boolean; destroyed?: boolean };
          if (writable.writable === false || writable.destroyed === true) return resolve();
          stream.write('', () => resolve());
        } catch {
          resolve();
        }
      });
    })();
    return closing;
  };

  return { logger, close };
}

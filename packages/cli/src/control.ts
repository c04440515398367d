/**
 * The daemon's control API: HTTP/JSON on a loopback address, authenticated by a secret
 * cookie kept in a file only the user can read (Tor's CookieAuthentication; README.md).
 *
 * The daemon calls `startControlServer`, which binds, then writes the control file
 * (address, cookie, pid); CLI commands call `callControl`, which reads that file and sends
 * the cookie as `Authorization: Bearer <cookie>`.
 *
 * Server checks, in this order (the first failure answers and nothing after it runs):
 *   1. cookie (constant-time)                     401 UNAUTHORIZED
 *   2. Host is a loopback literal or `localhost`  403 FORBIDDEN_HOST     (DNS rebinding)
 *      and there is no Origin header              403 FORBIDDEN_ORIGIN   (browsers)
 *   3. route: unknown path / wrong method         404 NOT_FOUND / 405 METHOD_NOT_ALLOWED
 *   4. POST body: JSON media type, <= 64 KiB,     415 UNSUPPORTED_MEDIA_TYPE / 413 BODY_TOO_LARGE
 *      parses                                     400 BAD_JSON
 *   5. the route; its result is 200, its error is mapped by `errorStatus`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DeutError, addressKey, configError, parseAddress, silentLogger, transportError } from '@deut/common';
import type { Logger, UdpAddress } from '@deut/common';

/** Where a running daemon's control API is, and its secret: written by the daemon, read by CLI commands. */
export interface ControlFile {
  /** Format version of this file. */
  readonly version: 1;
  /** `127.0.0.1:PORT` or `[::1]:PORT` (the `addressKey` form). */
  readonly address: string;
  /** 64 lowercase hex characters: 32 random bytes. */
  readonly cookie: string;
  /** The daemon's process id (informational; also used to refuse clobbering a live daemon's file). */
  readonly pid: number;
}

/** Largest accepted request body, and the largest body `callControl` will send. */
export const CONTROL_MAX_BODY_BYTES = 64 * 1024;
/** Largest response body `callControl` will buffer. */
export const CONTROL_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Default for `ControlClientOptions.timeoutMs`. */
export const CONTROL_DEFAULT_TIMEOUT_MS = 10_000;
/** How long `close()` lets in-flight requests finish before cutting their connections. */
export const CONTROL_CLOSE_GRACE_MS = 2_000;
/** Time allowed to receive a whole request (headers and body); slow senders are cut off. */
const REQUEST_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 10_000;
const COOKIE_BYTES = 32;
const COOKIE_PATTERN = /^[0-9a-f]{64}$/;

/**
 * The control file path: `$DEUT_CONTROL_FILE` if set and non-empty, else `~/.deut/control.json`.
 * Read at call time so a test or wrapper can set the variable after import.
 */
export function defaultControlFile(): string {
  const fromEnv = process.env['DEUT_CONTROL_FILE'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : join(homedir(), '.deut', 'control.json');
}

/**
 * The default control file path as it was when this module was loaded; prefer
 * `defaultControlFile()`, which honours later changes to `DEUT_CONTROL_FILE`.
 */
export const DEFAULT_CONTROL_FILE: string = defaultControlFile();

/**
 * A route handler. `body` is the parsed JSON of a POST (`undefined` when the POST has no
 * body, and always `undefined` for GET: query strings are ignored, use POST for input).
 *
 * The result is sent as JSON with status 200: `Uint8Array`/`Buffer` values anywhere in it
 * become lowercase hex strings, `bigint` values decimal strings, and `undefined` as a whole
 * result becomes `null`. A thrown `DeutError` keeps its code (see `errorStatus`); anything
 * else is answered 500 INTERNAL with a generic message and reported to the logger.
 */
export type ControlRoute = (body: unknown) => unknown;

/** Options of `startControlServer`. */
export interface ControlServerOptions {
  /** Where to listen: must be loopback (127.0.0.0/8 or ::1), else `CONTROL_NOT_LOOPBACK`. Port 0 picks one. */
  readonly listen: UdpAddress;
  /** The control file to write: parent directories are created 0700, the file is written atomically 0600. */
  readonly file: string;
  /** Handlers keyed `'<GET|POST> <path>'`, e.g. `'GET /v1/status'`, `'POST /v1/dht/put'`; paths match exactly. */
  readonly routes: Readonly<Record<string, ControlRoute>>;
  /**
   * Receives route failures answered 500 (their messages are not sent to the client).
   * @default silentLogger
   */
  readonly logger?: Logger;
}

/** A running control server. */
export interface ControlServer {
  /** The bound address (with the real port when `listen.port` was 0). */
  readonly address: UdpAddress;
  /** Stops listening, ends connections, and removes the control file if it still holds our cookie. Idempotent. */
  close(): Promise<void>;
}

/** Options of `callControl`. */
export interface ControlClientOptions {
  /**
   * The control file to read the address and cookie from.
   * @default defaultControlFile()
   */
  readonly file?: string;
  /** Overrides the file's address (`host:port` or `[v6]:port`, loopback only); the cookie still comes from the file. */
  readonly address?: string;
  /**
   * Deadline for the whole call, connection to last byte.
   * @default 10_000
   */
  readonly timeoutMs?: number;
}

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** True for an IP literal in 127.0.0.0/8 or ::1 (IPv4-mapped forms included). */
export function isLoopbackIp(host: string): boolean {
  if (isIPv4(host)) return loopback.check(host, 'ipv4');
  if (isIPv6(host)) return loopback.check(host, 'ipv6');
  return false;
}

/** True when a Host header names a loopback literal or `localhost`, with an optional port. */
function isLoopbackHostHeader(value: string | undefined): boolean {
  if (value === undefined) return false;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(value);
  if (bracketed !== null) return isIPv6(bracketed[1] ?? '') && isLoopbackIp(bracketed[1] ?? '');
  const plain = /^([^:[\]]+)(?::\d{1,5})?$/.exec(value);
  if (plain === null) return false;
  const host = plain[1] ?? '';
  return host.toLowerCase() === 'localhost' || (isIPv4(host) && isLoopbackIp(host));
}

/** JSON text of a value, with byte arrays as hex and bigints as decimal strings. */
function toJson(value: unknown): string {
  return JSON.stringify(value === undefined ? null : value, function (this: unknown, key: string, v: unknown) {
    // Buffer.toJSON runs before the replacer, so look at the holder's original value.
    const original = (this as Record<string, unknown>)[key];
    if (original instanceof Uint8Array) return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('hex');
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}

/**
 * The HTTP status a route error is answered with: `config`/`protocol` DeutErrors 400,
 * `timeout` 504, any other DeutError 502 (all with their code and message); anything
 * that is not a DeutError 500 INTERNAL with a generic message.
 */
export function errorStatus(error: unknown): number {
  if (!(error instanceof DeutError)) return 500;
  switch (error.kind) {
    case 'config':
    case 'protocol':
      return 400;
    case 'timeout':
      return 504;
    default:
      return 502;
  }
}

/** Throws CONTROL_NOT_LOOPBACK unless `host` is a loopback IP literal. */
function requireLoopback(host: string, what: string): void {
  if (!isLoopbackIp(host)) {
    throw configError('CONTROL_NOT_LOOPBACK', `${what} ${JSON.stringify(host)} is not a loopback address (127.0.0.0/8 or ::1); the control API never leaves this machine`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Parses and validates control file text; throws CONTROL_FILE_BAD. */
function parseControlFile(text: string, path: string): ControlFile {
  const bad = (why: string): DeutError => configError('CONTROL_FILE_BAD', `control file ${path} is malformed (${why}); restart the daemon to rewrite it`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not an object');
  const o = raw as Record<string, unknown>;
  if (o['version'] !== 1) throw bad('unknown version');
  const { address, cookie, pid } = o;
  if (typeof address !== 'string') throw bad('no address');
  try {
    parseAddress(address);
  } catch {
    throw bad('address is not IP:port');
  }
  if (typeof cookie !== 'string' || !COOKIE_PATTERN.test(cookie)) throw bad('cookie is not 64 hex characters');
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) throw bad('bad pid');
  return { version: 1, address, cookie, pid };
}

/** Reads a control file; throws CONTROL_FILE_UNREADABLE or CONTROL_FILE_BAD. */
async function readControlFile(path: string): Promise<ControlFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new DeutError(
      'config',
      'CONTROL_FILE_UNREADABLE',
      `cannot read control file ${path} (${reason}): the daemon may not be running, or you lack permission to read it`,
      { cause: error },
    );
  }
  return parseControlFile(text, path);
}

/** Writes `text` to `path` atomically (temp file + rename), mode exactly 0600. */
async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.chmod(0o600); // the umask may have removed bits; never added any
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

function validateRoutes(routes: Readonly<Record<string, ControlRoute>>): Map<string, Map<string, ControlRoute>> {
  const byPath = new Map<string, Map<string, ControlRoute>>();
  for (const [key, route] of Object.entries(routes)) {
    const match = /^(GET|POST) (\/\S*)$/.exec(key);
    if (match === null || typeof route !== 'function') {
      throw configError('CONTROL_BAD_ROUTE', `control route key ${JSON.stringify(key)} is not '<GET|POST> /path' with a handler`);
    }
    const method = match[1] ?? '';
    const path = match[2] ?? '';
    const methods = byPath.get(path) ?? new Map<string, ControlRoute>();
    methods.set(method, route);
    byPath.set(path, methods);
  }
  return byPath;
}

function sendJson(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    // INVARIANT: one request per connection, so close() only ever waits for in-flight requests.
    connection: 'close',
    ...extra,
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string, extra?: Record<string, string>): void {
  sendJson(res, status, JSON.stringify({ error: { code, message } }), extra);
}

type BodyResult = { readonly ok: true; readonly text: string } | { readonly ok: false };

/** Reads a request body up to the limit; on overflow answers 413 and stops reading. */
function readBody(req: IncomingMessage, res: ServerResponse): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      sendError(res, 413, 'BODY_TOO_LARGE', `request bodies are limited to ${CONTROL_MAX_BODY_BYTES} bytes`);
      resolve({ ok: false });
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > CONTROL_MAX_BODY_BYTES) tooLarge();
      else chunks.push(chunk);
    };
    const onEnd = (): void => resolve({ ok: true, text: Buffer.concat(chunks).toString('utf8') });
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > CONTROL_MAX_BODY_BYTES) {
      tooLarge();
      return;
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', () => resolve({ ok: false }));
    req.on('close', () => resolve({ ok: false })); // no-op if already resolved
  });
}

function isCookie(header: string | undefined, cookie: Buffer): boolean {
  const match = /^Bearer ([0-9a-fA-F]{64})$/i.exec(header ?? '');
  if (match === null) return false;
  const given = Buffer.from(match[1] ?? '', 'hex'); // exactly COOKIE_BYTES: the pattern fixed its length
  return given.length === cookie.length && timingSafeEqual(given, cookie);
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  cookie: Buffer,
  byPath: Map<string, Map<string, ControlRoute>>,
  logger: Logger,
): Promise<void> {
  // 1. Authentication before anything else is looked at.
  if (!isCookie(req.headers.authorization, cookie)) {
    sendError(res, 401, 'UNAUTHORIZED', 'missing or wrong cookie: send "Authorization: Bearer <cookie from the control file>"', {
      'www-authenticate': 'Bearer',
    });
    return;
  }
  // 2. DNS rebinding (a foreign name resolving to 127.0.0.1) and browsers.
  if (!isLoopbackHostHeader(req.headers.host)) {
    sendError(res, 403, 'FORBIDDEN_HOST', 'the Host header must be a loopback address or localhost');
    return;
  }
  if (req.headers.origin !== undefined) {
    sendError(res, 403, 'FORBIDDEN_ORIGIN', 'requests from browsers (with an Origin header) are refused');
    return;
  }
  // 3. Route.
  const url = req.url ?? '';
  const query = url.indexOf('?');
  const path = query === -1 ? url : url.slice(0, query);
  const methods = byPath.get(path);
  if (methods === undefined) {
    sendError(res, 404, 'NOT_FOUND', `no such control route: ${path.slice(0, 200)}`);
    return;
  }
  const method = req.method ?? '';
  const route = methods.get(method);
  if (route === undefined) {
    const allow = [...methods.keys()].join(', ');
    sendError(res, 405, 'METHOD_NOT_ALLOWED', `${path} accepts ${allow}`, { allow });
    return;
  }
  // 4. Body.
  let body: unknown = undefined;
  if (method === 'POST') {
    const read = await readBody(req, res);
    if (!read.ok) return;
    if (read.text.length > 0) {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/json') {
        sendError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'POST bodies must be application/json');
        return;
      }
      try {
        body = JSON.parse(read.text);
      } catch {
        sendError(res, 400, 'BAD_JSON', 'the request body is not valid JSON');
        return;
      }
    }
  }
  // 5. The route.
  let text: string;
  try {
    text = toJson(await route(body));
  } catch (error) {
    const status = errorStatus(error);
    if (error instanceof DeutError) {
      sendError(res, status, error.code, error.message);
    } else {
      logger.error('control route failed', { route: `${method} ${path}`, error: error instanceof Error ? error.message : String(error) });
      sendError(res, 500, 'INTERNAL', 'internal error in the daemon; see its log');
    }
    return;
  }
  sendJson(res, 200, text);
}

/**
 * Starts the control API: checks `listen` is loopback, refuses a control file whose pid
 * is another live process (`CONTROL_FILE_IN_USE`: another daemon), binds, then writes the
 * control file with a fresh cookie. Throws `CONTROL_LISTEN_FAILED` (transport) when
 * binding fails; the file is only written once the server listens.
 */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { listen, file } = options;
  requireLoopback(listen.host, 'control address');
  if (!Number.isInteger(listen.port) || listen.port < 0 || listen.port > 65535) {
    throw configError('CONTROL_BAD_PORT', `control port ${listen.port} is not in 0..65535`);
  }
  const byPath = validateRoutes(options.routes);
  const logger = options.logger ?? silentLogger;

  const existing = await readControlFile(file).catch(() => undefined);
  if (existing !== undefined && existing.pid !== process.pid && isAlive(existing.pid)) {
    throw configError(
      'CONTROL_FILE_IN_USE',
      `control file ${file} belongs to process ${existing.pid}, which is running: another daemon? Stop it, or remove the file if it is stale`,
    );
  }

  const cookieBytes = randomBytes(COOKIE_BYTES);
  const cookie = cookieBytes.toString('hex');
  const server: Server = createServer((req, res) => {
    handle(req, res, cookieBytes, byPath, logger).catch((error: unknown) => {
      logger.error('control request failed', { error: error instanceof Error ? error.message : String(error) });
      sendError(res, 500, 'INTERNAL', 'internal error in the daemon; see its log');
    });
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;

  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off('listening', onListening);
      reject(transportError('CONTROL_LISTEN_FAILED', `cannot listen on ${addressKey(listen)}: ${error.message}`, error));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host: listen.host, port: listen.port, exclusive: true });
  });
  server.on('error', (error) => logger.error('control server error', { error: error.message }));
  const info = server.address() as AddressInfo;
  const address: UdpAddress = { host: info.address, port: info.port };

  const closeServer = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const grace = setTimeout(() => server.closeAllConnections(), CONTROL_CLOSE_GRACE_MS);
      grace.unref();
      server.close(() => {
        clearTimeout(grace);
        resolve();
      });
      server.closeIdleConnections();
    });

  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 }); // 0700 applies only to directories it creates
    const content: ControlFile = { version: 1, address: addressKey(address), cookie, pid: process.pid };
    await writeFileAtomic(file, `${JSON.stringify(content, null, 2)}\n`);
  } catch (error) {
    await closeServer();
    if (error instanceof DeutError) throw error;
    throw new DeutError('config', 'CONTROL_FILE_UNWRITABLE', `cannot write control file ${file}: ${(error as Error).message}`, { cause: error });
  }

  let closing: Promise<void> | undefined;
  return {
    address,
    close(): Promise<void> {
      closing ??= (async () => {
        await closeServer();
        // Remove the file only if it is still ours: a newer daemon may have replaced it.
        const current = await readControlFile(file).catch(() => undefined);
        if (current?.cookie === cookie) await unlink(file).catch(() => undefined);
      })();
      return closing;
    },
  };
}

/** Resolves the address to call: the override or the file's, loopback only. */
function targetAddress(options: ControlClientOptions, control: ControlFile): UdpAddress {
  const text = options.address ?? control.address;
  let target: UdpAddress;
  try {
    target = parseAddress(text);
  } catch (error) {
    throw new DeutError('config', 'CONTROL_ADDRESS_BAD', `control address ${JSON.stringify(text)} is not IP:port`, { cause: error });
  }
  // The cookie travels in clear text: never send it off this machine.
  requireLoopback(target.host, 'control address');
  return target;
}

/** Turns a non-2xx answer into the DeutError the caller sees. */
function responseError(status: number, text: string): DeutError {
  if (status === 401) {
    return configError('CONTROL_UNAUTHORIZED', 'the daemon refused the cookie: the control file is stale or belongs to another daemon');
  }
  let code: string | undefined;
  let message: string | undefined;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } } | null;
    const error = parsed?.error;
    if (typeof error?.code === 'string' && typeof error.message === 'string') {
      code = error.code;
      message = error.message;
    }
  } catch {
    // fall through: not our error format
  }
  const kind = status === 504 ? 'timeout' : status >= 400 && status < 500 ? 'config' : 'transport';
  if (code === undefined || message === undefined) {
    return new DeutError(kind, 'CONTROL_BAD_RESPONSE', `the control API answered HTTP ${status} without an error body`);
  }
  return new DeutError(kind, code, message);
}

/**
 * Calls the daemon's control API and returns the parsed JSON result. Errors (all DeutError):
 * `CONTROL_FILE_UNREADABLE` / `CONTROL_FILE_BAD` / `CONTROL_ADDRESS_BAD` / `CONTROL_NOT_LOOPBACK` /
 * `CONTROL_BODY_TOO_LARGE` (config); `CONTROL_UNREACHABLE` / `CONTROL_REQUEST_FAILED` /
 * `CONTROL_BAD_RESPONSE` (transport); `CONTROL_TIMEOUT` (timeout); `CONTROL_UNAUTHORIZED` on 401;
 * otherwise the server's own code, kind config for 4xx, timeout for 504, transport for other statuses.
 * `body` is serialized like route results (byte arrays as hex).
 */
export async function callControl(options: ControlClientOptions, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? CONTROL_DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw configError('CONTROL_BAD_TIMEOUT', `timeoutMs must be positive, got ${timeoutMs}`);
  if (!/^\/[\x21-\x7e]*$/.test(path)) throw configError('CONTROL_BAD_PATH', `control path must start with '/' and be printable ASCII without spaces: ${JSON.stringify(path)}`);
  const file = options.file ?? defaultControlFile();
  const control = await readControlFile(file);
  const target = targetAddress(options, control);
  const payload = body === undefined ? undefined : Buffer.from(toJson(body), 'utf8');
  if (payload !== undefined && payload.length > CONTROL_MAX_BODY_BYTES) {
    throw configError('CONTROL_BODY_TOO_LARGE', `request body of ${payload.length} bytes exceeds the ${CONTROL_MAX_BODY_BYTES}-byte limit`);
  }
  const where = addressKey(target);

  return new Promise<unknown>((resolve, reject) => {
    let settled = false;
    const finish = (error: DeutError | undefined, value?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error !== undefined) {
        req.destroy();
        reject(error);
      } else {
        resolve(value);
      }
    };
    const headers: Record<string, string | number> = {
      authorization: `Bearer ${control.cookie}`,
      host: where,
      accept: 'application/json',
      connection: 'close',
    };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    const req = httpRequest({ host: target.host, port: target.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > CONTROL_MAX_RESPONSE_BYTES) {
          finish(transportError('CONTROL_BAD_RESPONSE', `the control API's answer exceeds ${CONTROL_MAX_RESPONSE_BYTES} bytes`));
        } else {
          chunks.push(chunk);
        }
      });
      res.on('error', (error) => finish(transportError('CONTROL_REQUEST_FAILED', `control request to ${where} failed: ${error.message}`, error)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          finish(responseError(status, text));
          return;
        }
        try {
          finish(undefined, text.length === 0 ? undefined : (JSON.parse(text) as unknown));
        } catch (error) {
          finish(transportError('CONTROL_BAD_RESPONSE', 'the control API answered with invalid JSON', error));
        }
      });
    });
    const timer = setTimeout(() => {
      finish(new DeutError('timeout', 'CONTROL_TIMEOUT', `the daemon at ${where} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (error: NodeJS.ErrnoException) => {
      const unreachable = ['ECONNREFUSED', 'EADDRNOTAVAIL', 'ENETUNREACH', 'EHOSTUNREACH'].includes(error.code ?? '');
      finish(
        unreachable
          ? transportError('CONTROL_UNREACHABLE', `cannot connect to the control API at ${where} (${error.code ?? 'error'}): is the daemon running?`, error)
          : transportError('CONTROL_REQUEST_FAILED', `control request to ${where} failed: ${error.message}`, error),
      );
    });
    req.end(payload);
  });
}

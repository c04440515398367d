/**
 * The daemon's side of the control API (control.ts): a loopback HTTP/JSON server that
 * answers only holders of the control file's cookie (control-file.ts).
 *
 * Checks, in this order (the first failure answers and nothing after it runs):
 *   1. cookie (constant-time)                     401 UNAUTHORIZED
 *   2. Host is a loopback literal or `localhost`  403 FORBIDDEN_HOST     (DNS rebinding)
 *      and there is no Origin header              403 FORBIDDEN_ORIGIN   (browsers)
 *   3. route: unknown path / wrong method         404 NOT_FOUND / 405 METHOD_NOT_ALLOWED
 *   4. POST body: JSON media type, <= 64 KiB,     415 UNSUPPORTED_MEDIA_TYPE / 413 BODY_TOO_LARGE
 *      parses                                     400 BAD_JSON
 *   5. the route; its result is 200, its error is mapped by `errorStatus`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import type { AddressInfo } from 'node:net';
import { DeutError, addressKey, configError, silentLogger, transportError } from '@deut/common';
import type { Logger, UdpAddress } from '@deut/common';
import { CONTROL_MAX_BODY_BYTES, isLoopbackIp, requireLoopback, toJson } from './control.js';
import { CONTROL_COOKIE_BYTES, refuseLiveControlFile, removeControlFile, writeControlFile } from './control-file.js';

/** How long `close()` lets in-flight requests finish before cutting their connections. */
export const CONTROL_CLOSE_GRACE_MS = 2_000;
/** Time allowed to receive a whole request (headers and body); slow senders are cut off. */
const REQUEST_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 10_000;

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

  await refuseLiveControlFile(file);

  const cookieBytes = randomBytes(CONTROL_COOKIE_BYTES);
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
    await writeControlFile(file, { version: 1, address: addressKey(address), cookie, pid: process.pid });
  } catch (error) {
    await closeServer();
    throw error;
  }

  let closing: Promise<void> | undefined;
  return {
    address,
    close(): Promise<void> {
      closing ??= (async () => {
        await closeServer();
        await removeControlFile(file, cookie);
      })();
      return closing;
    },
  };
}


/**
 * The CLI's side of the control API (control.ts): reads the control file (control-file.ts)
 * for the daemon's address and cookie, and makes one HTTP/JSON call, sending the cookie as
 * `Authorization: Bearer <cookie>`. Every command that asks a running daemon (`deut status`,
 * `tunnels`, `peers`, `send`, `dht ...`) and `deut mesh --processes` go through {@link callControl}.
 *
 * Why node:http and not fetch: each command makes one call and exits, so the connection is
 * made without an agent and closed after the answer (`connection: close`, a header fetch
 * forbids). fetch pools keep-alive sockets that hold a one-shot process open: the same call
 * to a local server took 266 ms to exit with node:http and 519-1,060 ms with fetch here.
 */
import { request as httpRequest } from 'node:http';
import { DeutError, addressKey, configError, parseAddress, transportError } from '@deut/common';
import type { UdpAddress } from '@deut/common';
import { CONTROL_MAX_BODY_BYTES, requireLoopback, toJson } from './control.js';
import { defaultControlFile, readControlFile, type ControlFile } from './control-file.js';

/** Largest response body `callControl` will buffer. */
export const CONTROL_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Default for `ControlClientOptions.timeoutMs`. */
export const CONTROL_DEFAULT_TIMEOUT_MS = 10_000;

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

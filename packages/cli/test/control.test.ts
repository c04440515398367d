/**
 * Tests of the control API (src/control*.ts): cookie authentication, Host/Origin checks,
 * body limits, error mapping, the control file's life cycle. Everything runs on loopback
 * with port 0 and temp directories that are removed in `finally`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeutError, addressKey, configError, timeoutError, transportError } from '@deut/common';
import type { LogFields, Logger, UdpAddress } from '@deut/common';
import { CONTROL_MAX_BODY_BYTES } from '../src/control.js';
import { callControl } from '../src/control-client.js';
import { defaultControlFile, type ControlFile } from '../src/control-file.js';
import { startControlServer, type ControlRoute } from '../src/control-server.js';

/** Upper bound on any single wait in these tests. */
const WAIT_MS = 5_000;

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'deut-control-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type Server = Awaited<ReturnType<typeof startControlServer>>;

async function withServer<T>(
  routes: Record<string, ControlRoute>,
  fn: (server: Server, file: string, dir: string) => Promise<T>,
  host = '127.0.0.1',
  extra: { logger?: Logger } = {},
): Promise<T> {
  return withTempDir(async (dir) => {
    const file = join(dir, 'control.json');
    const server = await startControlServer({ listen: { host, port: 0 }, file, routes, ...extra });
    try {
      return await fn(server, file, dir);
    } finally {
      await server.close();
    }
  });
}

function readControl(file: string): ControlFile {
  return JSON.parse(readFileSync(file, 'utf8')) as ControlFile;
}

/** Asserts `promise` rejects with a DeutError of this code (and kind, if given). */
async function rejectsWith(promise: Promise<unknown>, code: string, kind?: string): Promise<DeutError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof DeutError, `expected a DeutError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (kind !== undefined) assert.equal(caught.kind, kind);
  return caught;
}

interface RawAnswer {
  readonly status: number;
  readonly text: string;
  readonly json: { error?: { code: string; message: string } } & Record<string, unknown>;
}

/** One raw HTTP request with full control over headers; bounded by WAIT_MS. */
function raw(
  address: UdpAddress,
  method: string,
  path: string,
  headers: Record<string, string | number>,
  body?: string | Buffer | readonly Buffer[],
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let done = false;
    const req = httpRequest({ host: address.host, port: address.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, text, json: JSON.parse(text) as RawAnswer['json'] });
      });
    });
    const timer = setTimeout(() => {
      done = true;
      req.destroy();
      reject(new Error(`no answer within ${WAIT_MS} ms`));
    }, WAIT_MS);
    // The server may close while we are still sending a refused body: the answer counts.
    req.on('error', (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(error);
    });
    if (Array.isArray(body)) {
      for (const chunk of body as readonly Buffer[]) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });
}

function auth(file: string): Record<string, string> {
  return { authorization: `Bearer ${readControl(file).cookie}` };
}

test('control - GET and POST round trip, byte arrays as hex, file 0600 in a created 0700 dir', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'made', 'by', 'server', 'control.json');
    const seen: unknown[] = [];
    const server = await startControlServer({
      listen: { host: '127.0.0.1', port: 0 },
      file,
      routes: {
        'GET /v1/status': () => ({ ok: true, key: new Uint8Array([1, 2, 255]), nested: [{ buf: Buffer.from('ab') }], big: 2n ** 64n }),
        'POST /v1/echo': async (body) => {
          seen.push(body);
          await Promise.resolve();
          return { got: body ?? null };
        },
        'GET /v1/nothing': () => undefined,
      },
    });
    try {
      assert.equal(server.address.host, '127.0.0.1');
      assert.ok(server.address.port > 0);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, 'made', 'by', 'server')).mode & 0o777, 0o700);
      assert.equal(statSync(join(dir, 'made')).mode & 0o777, 0o700);
      const control = readControl(file);
      assert.equal(control.version, 1);
      assert.equal(control.address, addressKey(server.address));
      assert.match(control.cookie, /^[0-9a-f]{64}$/);
      assert.equal(control.pid, process.pid);

      assert.deepEqual(await callControl({ file }, 'GET', '/v1/status'), {
        ok: true,
        key: '0102ff',
        nested: [{ buf: '6162' }],
        big: '18446744073709551616',
      });
      assert.deepEqual(await callControl({ file }, 'POST', '/v1/echo', { a: 1, list: [1, 'x'], bytes: new Uint8Array([0xde, 0xad]) }), {
        got: { a: 1, list: [1, 'x'], bytes: 'dead' },
      });
      assert.deepEqual(await callControl({ file }, 'POST', '/v1/echo'), { got: null });
      assert.equal(await callControl({ file }, 'GET', '/v1/nothing'), null);
      assert.deepEqual(seen, [{ a: 1, list: [1, 'x'], bytes: 'dead' }, undefined]);
      // The address override (same address here) and a query string, which is ignored.
      assert.deepEqual(await callControl({ file, address: control.address }, 'GET', '/v1/status?x=1'), {
        ok: true,
        key: '0102ff',
        nested: [{ buf: '6162' }],
        big: '18446744073709551616',
      });
    } finally {
      await server.close();
    }
  });
});

test('control - the default control file honours DEUT_CONTROL_FILE at call time', async () => {
  const saved = process.env['DEUT_CONTROL_FILE'];
  try {
    await withServer({ 'GET /v1/status': () => ({ ok: true }) }, async (_server, file) => {
      process.env['DEUT_CONTROL_FILE'] = file;
      assert.equal(defaultControlFile(), file);
      assert.deepEqual(await callControl({}, 'GET', '/v1/status'), { ok: true });
      delete process.env['DEUT_CONTROL_FILE'];
      assert.match(defaultControlFile(), /[/\\]\.deut[/\\]control\.json$/);
    });
  } finally {
    if (saved === undefined) delete process.env['DEUT_CONTROL_FILE'];
    else process.env['DEUT_CONTROL_FILE'] = saved;
  }
});

test('control - no cookie or a wrong cookie is refused with 401 before anything else', async () => {
  await withServer({ 'GET /v1/status': () => ({ ok: true }) }, async (server, file, dir) => {
    const url = `http://${addressKey(server.address)}/v1/status`;
    const none = await fetch(url);
    assert.equal(none.status, 401);
    assert.deepEqual(((await none.json()) as RawAnswer['json']).error?.code, 'UNAUTHORIZED');

    const wrong = await fetch(url, { headers: { authorization: `Bearer ${'0'.repeat(64)}` } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const short = await fetch(url, { headers: { authorization: 'Bearer abc' } });
    assert.equal(short.status, 401);
    await short.body?.cancel();
    const right = await fetch(url, { headers: auth(file) });
    assert.equal(right.status, 200);
    assert.deepEqual(await right.json(), { ok: true });

    // Nothing else is evaluated: a bad Host, an Origin and an unknown path still get 401.
    const unauth = await raw(server.address, 'GET', '/nowhere', { host: 'evil.example', origin: 'http://evil.example' });
    assert.equal(unauth.status, 401);
    assert.equal(unauth.json.error?.code, 'UNAUTHORIZED');

    // The client with a stale cookie.
    const stale = join(dir, 'stale.json');
    writeFileSync(stale, JSON.stringify({ ...readControl(file), cookie: 'ab'.repeat(32) }));
    await rejectsWith(callControl({ file: stale }, 'GET', '/v1/status'), 'CONTROL_UNAUTHORIZED', 'config');
  });
});

test('control - a foreign Host header or any Origin header is refused with 403', async () => {
  await withServer({ 'GET /v1/status': () => ({ ok: true }) }, async (server, file) => {
    const port = server.address.port;
    for (const host of ['evil.example', `evil.example:${port}`, '127.0.0.1.evil.example', '10.0.0.1', '[::2]', 'localhost.evil.example', '[::1]x', '127.0.0.1:80:80']) {
      const answer = await raw(server.address, 'GET', '/v1/status', { ...auth(file), host });
      assert.equal(answer.status, 403, host);
      assert.equal(answer.json.error?.code, 'FORBIDDEN_HOST');
    }
    const origin = await raw(server.address, 'GET', '/v1/status', { ...auth(file), origin: `http://127.0.0.1:${port}` });
    assert.equal(origin.status, 403);
    assert.equal(origin.json.error?.code, 'FORBIDDEN_ORIGIN');
    for (const host of [`localhost:${port}`, 'LOCALHOST', `127.0.0.1:${port}`, '127.1.2.3', `[::1]:${port}`]) {
      const answer = await raw(server.address, 'GET', '/v1/status', { ...auth(file), host });
      assert.equal(answer.status, 200, host);
    }
  });
});

test('control - request bodies: 64 KiB accepted, one byte more 413, bad JSON 400, not JSON 415', async () => {
  await withServer({ 'POST /v1/echo': (body) => ({ length: typeof body === 'string' ? body.length : -1 }) }, async (server, file) => {
    const json = { ...auth(file), 'content-type': 'application/json' };
    const exact = JSON.stringify('x'.repeat(CONTROL_MAX_BODY_BYTES - 2));
    assert.equal(Buffer.byteLength(exact), CONTROL_MAX_BODY_BYTES);
    const ok = await raw(server.address, 'POST', '/v1/echo', json, exact);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, { length: CONTROL_MAX_BODY_BYTES - 2 });

    const over = JSON.stringify('x'.repeat(CONTROL_MAX_BODY_BYTES - 1));
    // Declared by Content-Length: refused before reading.
    const declared = await raw(server.address, 'POST', '/v1/echo', { ...json, 'content-length': Buffer.byteLength(over) }, over);
    assert.equal(declared.status, 413);
    assert.equal(declared.json.error?.code, 'BODY_TOO_LARGE');
    // Chunked, no length: refused once the count passes the limit.
    const chunks = [Buffer.from(over.slice(0, 40_000)), Buffer.from(over.slice(40_000))];
    const chunked = await raw(server.address, 'POST', '/v1/echo', json, chunks);
    assert.equal(chunked.status, 413);

    const bad = await raw(server.address, 'POST', '/v1/echo', json, '{"a":');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error?.code, 'BAD_JSON');
    const text = await raw(server.address, 'POST', '/v1/echo', { ...auth(file), 'content-type': 'text/plain' }, '"hi"');
    assert.equal(text.status, 415);

    // The client refuses to send what the server would refuse.
    await rejectsWith(callControl({ file }, 'POST', '/v1/echo', 'x'.repeat(CONTROL_MAX_BODY_BYTES)), 'CONTROL_BODY_TOO_LARGE', 'config');
  });
});

test('control - unknown route 404, known path with the wrong method 405', async () => {
  await withServer({ 'GET /v1/status': () => ({ ok: true }) }, async (server, file) => {
    const missing = await raw(server.address, 'GET', '/v1/nope', auth(file));
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error?.code, 'NOT_FOUND');
    const wrong = await raw(server.address, 'DELETE', '/v1/status', auth(file));
    assert.equal(wrong.status, 405);
    assert.equal(wrong.json.error?.code, 'METHOD_NOT_ALLOWED');

    await rejectsWith(callControl({ file }, 'GET', '/v1/nope'), 'NOT_FOUND', 'config');
    await rejectsWith(callControl({ file }, 'POST', '/v1/status', {}), 'METHOD_NOT_ALLOWED', 'config');
  });
});

test('control - listening on a non-loopback address is refused before binding', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'sub', 'control.json');
    for (const host of ['0.0.0.0', '::', '192.0.2.1', 'localhost']) {
      await rejectsWith(startControlServer({ listen: { host, port: 0 }, file, routes: {} }), 'CONTROL_NOT_LOOPBACK', 'config');
    }
    assert.equal(existsSync(join(dir, 'sub')), false);
    await rejectsWith(startControlServer({ listen: { host: '127.0.0.1', port: 0 }, file, routes: { 'PUT /x': () => 1 } }), 'CONTROL_BAD_ROUTE');
  });
});

test('control - route errors: config 400 with its code, timeout 504, transport 502, others 500 without their message', async () => {
  const logged: { message: string; fields: LogFields | undefined }[] = [];
  const logger: Logger = {
    error: (message, fields) => logged.push({ message, fields }),
    warn: () => undefined,
    info: () => undefined,
    debug: () => undefined,
  };
  const routes: Record<string, ControlRoute> = {
    'POST /v1/config': () => {
      throw configError('BAD_KEY', 'key must be 32 bytes');
    },
    'GET /v1/timeout': () => Promise.reject(timeoutError('LOOKUP_TIMEOUT', 'no answer')),
    'GET /v1/transport': () => {
      throw transportError('SEND_FAILED', 'socket closed');
    },
    'GET /v1/bug': () => {
      throw new Error('secret-internal-detail');
    },
  };
  await withServer(
    routes,
    async (server, file) => {
      const config = await rejectsWith(callControl({ file }, 'POST', '/v1/config', {}), 'BAD_KEY', 'config');
      assert.equal(config.message, 'key must be 32 bytes');
      const rawConfig = await raw(server.address, 'POST', '/v1/config', auth(file));
      assert.equal(rawConfig.status, 400);
      await rejectsWith(callControl({ file }, 'GET', '/v1/timeout'), 'LOOKUP_TIMEOUT', 'timeout');
      assert.equal((await raw(server.address, 'GET', '/v1/timeout', auth(file))).status, 504);
      await rejectsWith(callControl({ file }, 'GET', '/v1/transport'), 'SEND_FAILED', 'transport');
      assert.equal((await raw(server.address, 'GET', '/v1/transport', auth(file))).status, 502);

      const bug = await raw(server.address, 'GET', '/v1/bug', auth(file));
      assert.equal(bug.status, 500);
      assert.equal(bug.json.error?.code, 'INTERNAL');
      assert.ok(!bug.text.includes('secret-internal-detail'));
      await rejectsWith(callControl({ file }, 'GET', '/v1/bug'), 'INTERNAL', 'transport');
      assert.ok(logged.length >= 2);
      assert.equal(logged[0]?.fields?.['error'], 'secret-internal-detail');
    },
    '127.0.0.1',
    { logger },
  );
});

test('control - client: missing file, malformed file, closed port, non-loopback override', async () => {
  await withTempDir(async (dir) => {
    const missing = join(dir, 'absent.json');
    const unreadable = await rejectsWith(callControl({ file: missing }, 'GET', '/v1/status'), 'CONTROL_FILE_UNREADABLE', 'config');
    assert.ok(unreadable.message.includes(missing));
    assert.match(unreadable.message, /not be running|permission/);

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"version":1,"address":"127.0.0.1:1","cookie":"zz","pid":1}');
    await rejectsWith(callControl({ file: bad }, 'GET', '/v1/status'), 'CONTROL_FILE_BAD', 'config');
    writeFileSync(bad, 'not json');
    await rejectsWith(callControl({ file: bad }, 'GET', '/v1/status'), 'CONTROL_FILE_BAD', 'config');

    // A port that was just ours and is now closed.
    const probe = createNetServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const closed = join(dir, 'closed.json');
    const content: ControlFile = { version: 1, address: `127.0.0.1:${port}`, cookie: 'cd'.repeat(32), pid: process.pid };
    writeFileSync(closed, JSON.stringify(content));
    await rejectsWith(callControl({ file: closed, timeoutMs: WAIT_MS }, 'GET', '/v1/status'), 'CONTROL_UNREACHABLE', 'transport');

    // The cookie never leaves the machine.
    await rejectsWith(callControl({ file: closed, address: '192.0.2.1:80' }, 'GET', '/v1/status'), 'CONTROL_NOT_LOOPBACK', 'config');
    await rejectsWith(callControl({ file: closed, address: 'nonsense' }, 'GET', '/v1/status'), 'CONTROL_ADDRESS_BAD', 'config');
  });
});

test('control - client: a route slower than timeoutMs is CONTROL_TIMEOUT', async () => {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  await withServer({ 'GET /v1/slow': () => held.then(() => ({ late: true })) }, async (_server, file) => {
    try {
      await rejectsWith(callControl({ file, timeoutMs: 100 }, 'GET', '/v1/slow'), 'CONTROL_TIMEOUT', 'timeout');
    } finally {
      release();
    }
  });
});

test('control - a file unreadable to the user is CONTROL_FILE_UNREADABLE', async (t) => {
  if (process.getuid?.() === 0) {
    t.skip('root reads any file');
    return;
  }
  await withServer({ 'GET /v1/status': () => ({ ok: true }) }, async (_server, file) => {
    chmodSync(file, 0o000);
    try {
      await rejectsWith(callControl({ file }, 'GET', '/v1/status'), 'CONTROL_FILE_UNREADABLE', 'config');
    } finally {
      chmodSync(file, 0o600);
    }
  });
});

test('control - close removes the file only while it is ours; a second server on the same file works', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'control.json');
    const routes = { 'GET /v1/status': () => ({ ok: true }) };
    const first = await startControlServer({ listen: { host: '127.0.0.1', port: 0 }, file, routes });
    const firstControl = readControl(file);
    await first.close();
    await first.close(); // idempotent
    assert.equal(existsSync(file), false);

    const second = await startControlServer({ listen: { host: '127.0.0.1', port: 0 }, file, routes });
    try {
      assert.deepEqual(await callControl({ file }, 'GET', '/v1/status'), { ok: true });
      assert.notEqual(readControl(file).cookie, firstControl.cookie);
      // The first server's cookie is worthless against the second.
      const old = join(dir, 'old.json');
      writeFileSync(old, JSON.stringify({ ...firstControl, address: addressKey(second.address) }));
      await rejectsWith(callControl({ file: old }, 'GET', '/v1/status'), 'CONTROL_UNAUTHORIZED');
      // Someone else's file at the same path is left alone by close().
      writeFileSync(file, JSON.stringify({ ...readControl(file), cookie: 'ef'.repeat(32) }));
    } finally {
      await second.close();
    }
    assert.equal(existsSync(file), true);
    rmSync(file);
    await rejectsWith(callControl({ file, timeoutMs: WAIT_MS }, 'GET', '/v1/status'), 'CONTROL_FILE_UNREADABLE');
  });
});

test('control - a control file held by another live process is not clobbered', async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, 'control.json');
    const foreign: ControlFile = { version: 1, address: '127.0.0.1:9', cookie: '12'.repeat(32), pid: process.ppid };
    writeFileSync(file, JSON.stringify(foreign));
    await rejectsWith(startControlServer({ listen: { host: '127.0.0.1', port: 0 }, file, routes: {} }), 'CONTROL_FILE_IN_USE', 'config');
    assert.deepEqual(readControl(file), foreign);
  });
});

test('control - IPv6 loopback round trip (skipped without ::1)', async (t) => {
  let server: Server;
  const dir = mkdtempSync(join(tmpdir(), 'deut-control-'));
  try {
    const file = join(dir, 'control.json');
    try {
      server = await startControlServer({ listen: { host: '::1', port: 0 }, file, routes: { 'GET /v1/status': () => ({ v6: true }) } });
    } catch (error) {
      if (error instanceof DeutError && error.code === 'CONTROL_LISTEN_FAILED') {
        t.skip(`no ::1 here: ${error.message}`);
        return;
      }
      throw error;
    }
    try {
      assert.equal(readControl(file).address, `[::1]:${server.address.port}`);
      assert.deepEqual(await callControl({ file }, 'GET', '/v1/status'), { v6: true });
      const viaFetch = await fetch(`http://[::1]:${server.address.port}/v1/status`, { headers: auth(file) });
      assert.equal(viaFetch.status, 200);
      assert.deepEqual(await viaFetch.json(), { v6: true });
      const foreign = await raw(server.address, 'GET', '/v1/status', { ...auth(file), host: 'evil.example' });
      assert.equal(foreign.status, 403);
    } finally {
      await server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('control - no servers or sockets are left behind', async () => {
  const leaked = (): string[] => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap' || r === 'TCPSocketWrap');
  // Closed sockets leave the list on a later turn of the event loop: poll, bounded.
  for (let i = 0; i < 100 && leaked().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(leaked(), []);
});

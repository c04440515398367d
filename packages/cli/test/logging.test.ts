/** The daemon's logger: formats, levels, safe logging (canaries), repeat limits, close. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createCliLogger, isSensitiveFieldName, scrubString, type CliLoggerOptions } from '../src/logging.js';

/** A stream that keeps what is written; `slow` acknowledges each chunk on a later turn. */
function memoryStream(slow = false): { stream: Writable; text(): string; lines(): string[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      if (slow) setImmediate(callback);
      else callback();
    },
  });
  const text = (): string => chunks.join('');
  return { stream, text, lines: () => text().split('\n').filter((line) => line !== '') };
}

async function logged(options: Omit<CliLoggerOptions, 'stream'>, body: (logger: ReturnType<typeof createCliLogger>['logger']) => void): Promise<string[]> {
  const out = memoryStream();
  const { logger, close } = createCliLogger({ ...options, stream: out.stream });
  body(logger);
  await close();
  return out.lines();
}

const CANARY_V4 = '198.51.100.77:4242';
const CANARY_V6 = '[2001:db8::77]:4242';
const CANARY_V6_BARE = '2001:db8::77';
const CANARY_KEY = 'c0ffee'.repeat(10) + 'abcd';
const CANARY_PAYLOAD = 'CANARY-PAYLOAD-123';
const CANARY_PAYLOAD_HEX = Buffer.from(CANARY_PAYLOAD).toString('hex');
const LEVELS = ['error', 'warn', 'info', 'debug'] as const;

function logCanaries(logger: ReturnType<typeof createCliLogger>['logger']): void {
  const payload = new Uint8Array(Buffer.from(CANARY_PAYLOAD));
  for (const level of LEVELS) {
    logger[level](`${level}: relaying for ${CANARY_V4} via ${CANARY_V6} key ${CANARY_KEY}`, {
      peer: CANARY_V4,
      endpoint: CANARY_V6,
      publicKey: CANARY_KEY,
      payload,
      note: `heard from ${CANARY_V4} and ${CANARY_V6_BARE}`,
      blob: payload,
      nested: { list: [`k=${CANARY_KEY}`, { where: CANARY_V6 }], buffer: Buffer.from(CANARY_PAYLOAD) },
      error: new Error(`send to ${CANARY_V4} failed`, { cause: new Error(`key ${CANARY_KEY}`) }),
      tunnelId: 123456,
      count: 3,
    });
  }
}

test('logging - json lines parse and carry level, message, time and fields', async () => {
  const lines = await logged({ level: 'debug', unsafe: false, format: 'json' }, (logger) => {
    logger.info('node started', { roles: 'relay,master', tunnels: 8, ok: true });
    logger.error('went wrong', { level: 'shadowed', attempt: 2 });
  });
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(first['level'], 'info');
  assert.equal(first['message'], 'node started');
  assert.equal(first['roles'], 'relay,master');
  assert.equal(first['tunnels'], 8);
  assert.equal(first['ok'], true);
  assert.equal(typeof first['time'], 'string');
  assert.equal(new Date(first['time'] as string).toISOString(), first['time']);
  const second = JSON.parse(lines[1]!) as Record<string, unknown>;
  assert.equal(second['level'], 'error');
  // A field named like a line property does not overwrite it.
  assert.equal(second['_level'], 'shadowed');
  assert.equal(second['attempt'], 2);
});

test('logging - pretty lines: clock time, level, message, key=value', async () => {
  const lines = await logged({ level: 'debug', unsafe: false, format: 'pretty' }, (logger) => {
    logger.info('node started', { roles: 'relay', count: 3, text: 'two words' });
    logger.warn('control\u001b[31m\ninjected');
  });
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^\d{2}:\d{2}:\d{2}\.\d{3} INFO {2}node started roles=relay count=3 text="two words"$/);
  // No colours on a stream that is not a TTY, and no raw control characters from a message.
  assert.match(lines[1]!, /^\d{2}:\d{2}:\d{2}\.\d{3} WARN {2}control\\u001b\[31m\\u000ainjected$/);
  assert.ok(!lines.join('\n').includes('\u001b'));
});

test('logging - level filtering: debug < info < warn < error', async () => {
  const expected: Record<(typeof LEVELS)[number], string[]> = {
    error: ['error'],
    warn: ['error', 'warn'],
    info: ['error', 'warn', 'info'],
    debug: ['error', 'warn', 'info', 'debug'],
  };
  for (const level of LEVELS) {
    const lines = await logged({ level, unsafe: false, format: 'json' }, (logger) => {
      for (const at of LEVELS) logger[at](`at ${at}`);
    });
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as { level: string }).level),
      expected[level],
      `level ${level}`,
    );
  }
});

test('logging - canaries: addresses, keys, payloads and error messages never appear by default', async () => {
  for (const format of ['json', 'pretty'] as const) {
    const lines = await logged({ level: 'debug', unsafe: false, format }, logCanaries);
    assert.equal(lines.length, LEVELS.length, format);
    const out = lines.join('\n');
    for (const canary of [CANARY_V4, '198.51.100.77', CANARY_V6, CANARY_V6_BARE, CANARY_KEY, CANARY_KEY.slice(0, 16), CANARY_PAYLOAD, CANARY_PAYLOAD_HEX, '123456']) {
      assert.ok(!out.includes(canary), `${format} output shows ${canary}`);
    }
    assert.ok(out.includes('[scrubbed]'));
    // What is not sensitive stays readable.
    assert.ok(out.includes('count'));
    assert.ok(out.includes('failed'));
  }
});

test('logging - unsafe logs show every canary (byte arrays as hex)', async () => {
  for (const format of ['json', 'pretty'] as const) {
    const out = (await logged({ level: 'debug', unsafe: true, format }, logCanaries)).join('\n');
    for (const canary of [CANARY_V4, CANARY_V6, CANARY_V6_BARE, CANARY_KEY, CANARY_PAYLOAD_HEX, '123456', `send to ${CANARY_V4} failed`]) {
      assert.ok(out.includes(canary), `${format} output lacks ${canary}`);
    }
    assert.ok(!out.includes('[scrubbed]'));
  }
});

test('logging - sensitive field names and string scrubbing', () => {
  for (const name of ['address', 'Host', 'from', 'to', 'peer', 'endpoint', 'remote', 'key', 'publicKey', 'PRIVATEKEY', 'secret', 'cookie', 'sessionId', 'session', 'tunnel', 'tunnelId', 'id', 'payload', 'data', 'value', 'peerAddress', 'nodeId', 'hopKeys', 'node_id', 'public-key']) {
    assert.ok(isSensitiveFieldName(name), name);
  }
  for (const name of ['count', 'valid', 'monkey', 'reason', 'error', 'roles', 'tunnels', 'ms']) assert.ok(!isSensitiveFieldName(name), name);
  assert.equal(scrubString('at 10.0.0.1, [::1]:53, fe80::1%eth0 and ::ffff:10.1.2.3'), 'at [scrubbed], [scrubbed], [scrubbed] and [scrubbed]');
  assert.equal(scrubString('1:2:3:4:5:6:7:8'), '[scrubbed]');
  // Times, versions and short hex are not addresses.
  assert.equal(scrubString('at 12:34:56 took 1.5 ms, code 0xdeadbeef, v1.2.3'), 'at 12:34:56 took 1.5 ms, code 0xdeadbeef, v1.2.3');
});

test('logging - repeated warnings: a few per window, then one summary', async () => {
  let now = 1_000_000;
  const lines = await logged({ level: 'debug', unsafe: false, format: 'json', repeatLimit: { count: 3, windowMs: 1_000 }, now: () => now }, (logger) => {
    for (let i = 0; i < 10; i++) logger.warn('flood', { i });
    for (let i = 0; i < 10; i++) logger.info('chatty', { i });
    for (let i = 0; i < 4; i++) logger.error('flood', { i });
    now += 999;
    logger.warn('flood', { i: 10 });
    now += 1;
    // The window ended: its summary, then this line as the first of a new window.
    logger.warn('flood', { i: 11 });
    for (let i = 12; i < 17; i++) logger.warn('flood', { i });
    // close() reports what is still suppressed.
  });
  const parsed = lines.map((line) => JSON.parse(line) as { level: string; message: string; i?: number; suppressed?: number });
  const floods = parsed.filter((p) => p.level === 'warn').map((p) => (p.suppressed !== undefined ? `summary ${p.suppressed}` : p.i));
  assert.deepEqual(floods, [0, 1, 2, 'summary 8', 11, 12, 13, 'summary 3']);
  assert.equal(parsed.filter((p) => p.message === 'flood (8 similar suppressed)').length, 1);
  assert.equal(parsed.filter((p) => p.message === 'flood (3 similar suppressed)').length, 1);
  // Errors are limited separately from warnings; info is never limited.
  assert.deepEqual(
    parsed.filter((p) => p.level === 'error').map((p) => p.message),
    ['flood', 'flood', 'flood', 'flood (1 similar suppressed)'],
  );
  assert.equal(parsed.filter((p) => p.message === 'chatty').length, 10);
});

test('logging - repeated warnings on the real clock with a small window', async () => {
  const out = memoryStream();
  const { logger, close } = createCliLogger({ level: 'warn', unsafe: false, format: 'json', stream: out.stream, repeatLimit: { count: 2, windowMs: 20 } });
  try {
    for (let i = 0; i < 6; i++) logger.warn('burst');
    await new Promise((resolve) => setTimeout(resolve, 40));
    logger.warn('burst');
  } finally {
    await close();
  }
  const lines = out.lines().map((line) => JSON.parse(line) as { message: string; suppressed?: number });
  // However the burst fell into windows: every line is either shown or counted in a summary.
  const shown = lines.filter((line) => line.message === 'burst').length;
  const suppressed = lines.reduce((sum, line) => sum + (line.suppressed ?? 0), 0);
  assert.equal(shown + suppressed, 7);
  for (const line of lines) if (line.suppressed !== undefined) assert.equal(line.message, `burst (${line.suppressed} similar suppressed)`);
  assert.ok(suppressed > 0, 'a burst of six in one window with a limit of two is limited');
  assert.equal(lines.at(-1)?.message, 'burst', 'the line after the window is shown');
});

test('logging - cycles, BigInt, undefined, throwing getters and huge inputs never throw', async () => {
  const cyclic: Record<string, unknown> = { name: 'loop', n: 10n };
  cyclic['self'] = cyclic;
  cyclic['list'] = [cyclic, undefined, null, Symbol('s'), () => 1];
  const getter = Object.defineProperty({}, 'boom', {
    enumerable: true,
    get() {
      throw new Error('getter threw');
    },
  });
  const huge = 'x'.repeat(1_000_000);
  const deep: Record<string, unknown> = {};
  let cursor = deep;
  for (let i = 0; i < 1_000; i++) {
    const next: Record<string, unknown> = {};
    cursor['next'] = next;
    cursor = next;
  }
  const wide = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i]));
  for (const unsafe of [false, true]) {
    const lines = await logged({ level: 'debug', unsafe, format: 'json' }, (logger) => {
      logger.info('cyclic', { cyclic });
      logger.info('bigint and undefined', { big: 2n ** 70n, nothing: undefined });
      logger.info('getter', { getter });
      logger.info(huge, { huge, array: new Array<number>(100_000).fill(1), deep, wide, bytes: new Uint8Array(1_000_000) });
      logger.info(undefined as unknown as string, 42 as unknown as Record<string, unknown>);
      logger.info('proto', JSON.parse('{"__proto__": {"polluted": 1}, "nested": {"__proto__": 2}}') as Record<string, unknown>);
    });
    assert.equal(lines.length, 6);
    assert.deepEqual(JSON.parse(lines[5]!), { level: 'info', message: 'proto', time: (JSON.parse(lines[5]!) as { time: string }).time, ['__proto__']: { polluted: 1 }, nested: { ['__proto__']: 2 } });
    for (const line of lines) JSON.parse(line);
    const first = JSON.parse(lines[0]!) as { cyclic: { self: unknown; n: string } };
    assert.equal(first.cyclic.self, '[circular]');
    assert.equal(first.cyclic.n, '10');
    const second = JSON.parse(lines[1]!) as Record<string, unknown>;
    assert.equal(second['big'], (2n ** 70n).toString());
    assert.ok(!('nothing' in second));
    assert.ok(lines[3]!.length < 64 * 1024, `a huge line is cut (${lines[3]!.length} chars)`);
  }
});

test('logging - a string cut at 4 KiB never leaves half an address', async () => {
  const text = 'a '.repeat(2_045) + ' 198.51.100.77 tail';
  assert.ok(text.length > 4096 && text.indexOf('198.51') < 4096 && text.indexOf('100.77') > 4096);
  const lines = await logged({ level: 'info', unsafe: false, format: 'json' }, (logger) => logger.info('cut', { text }));
  const shown = (JSON.parse(lines[0]!) as { text: string }).text;
  assert.ok(!shown.includes('198.51'), shown.slice(-40));
  assert.match(shown, /chars cut\]$/);
});

test('logging - close() resolves after a slow stream took every line; later lines are dropped', async () => {
  const out = memoryStream(true);
  const { logger, close } = createCliLogger({ level: 'info', unsafe: false, format: 'json', stream: out.stream });
  for (let i = 0; i < 200; i++) logger.info('line', { i });
  await close();
  const lines = out.lines();
  assert.equal(lines.length, 200);
  assert.equal((JSON.parse(lines[199]!) as { i: number }).i, 199);
  logger.error('after close');
  await close();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(out.lines().length, 200);
  assert.ok(!out.stream.writableEnded, 'the caller’s stream stays open');
});

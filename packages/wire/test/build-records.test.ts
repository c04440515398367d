/** Tests of build instructions (PROTOCOL.md §4.6) and build replies (§4.3). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import {
  BUILD_INSTRUCTIONS_BYTES,
  BUILD_REPLY_BYTES,
  decodeBuildInstructions,
  decodeBuildReply,
  encodeBuildInstructions,
  encodeBuildReply,
} from '../src/index.js';
import type { BuildInstructions, BuildReply } from '../src/index.js';
import { assertProtocolError, fromHex, onlyProtocolErrors, pattern, toHex } from './helpers.js';

/** A plain msgpack writer for crafting hostile maps: smallest headers, keys in insertion order. */
const raw = new Packr({ useRecords: false, variableMapSize: true, moreTypes: false, structuredClone: false, bundleStrings: false });

/** The 112-byte block around arbitrary msgpack bytes. */
function block(packed: Uint8Array): Uint8Array {
  const out = new Uint8Array(BUILD_INSTRUCTIONS_BYTES);
  out[0] = packed.length;
  out.set(packed, 1);
  return out;
}

const KEY = pattern(32, 0x20);
const relay: BuildInstructions = {
  role: 'relay',
  timeSeconds: 1_700_000_000,
  lifetimeSeconds: 600,
  next: { address: { host: '192.0.2.7', port: 4000 }, staticKey: KEY },
};
const validMap = (): Record<string, unknown> => ({ r: 0, t: 1_700_000_000, l: 600, n: { a: Uint8Array.of(192, 0, 2, 7), p: 4000, k: KEY } });

test('build instructions - endpoint block is len, fixmap {r, t, l}, zeros', () => {
  const bytes = encodeBuildInstructions({ role: 'endpoint', timeSeconds: 0xffffffff, lifetimeSeconds: 900 });
  assert.equal(bytes.length, BUILD_INSTRUCTIONS_BYTES);
  assert.equal(toHex(bytes.subarray(0, 17)), '10' + '83' + 'a17201' + 'a174ceffffffff' + 'a16ccd0384');
  assert.ok(bytes.subarray(17).every((b) => b === 0));
});

test('build instructions - relay block carries a 4-byte IPv4 or a 16-byte IPv6 next hop', () => {
  const v4 = encodeBuildInstructions(relay);
  assert.equal(toHex(v4.subarray(1, 1 + (v4[0] ?? 0))), toHex(raw.pack(validMap())));
  assert.deepStrictEqual(decodeBuildInstructions(v4), relay);
  const v6: BuildInstructions = { ...relay, next: { address: { host: '2001:db8::7', port: 1 }, staticKey: KEY } };
  const bytes = encodeBuildInstructions(v6);
  assert.ok(toHex(bytes).includes('a161c41020010db8000000000000000000000007'));
  assert.deepStrictEqual(decodeBuildInstructions(bytes), v6);
});

test('build instructions - the largest valid map fits with room to spare', () => {
  const biggest: BuildInstructions = {
    role: 'relay',
    timeSeconds: 0xffffffff,
    lifetimeSeconds: 900,
    next: { address: { host: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 }, staticKey: KEY },
  };
  assert.equal(encodeBuildInstructions(biggest)[0], 80);
});

test('build instructions - wrong block length, length prefix and padding are refused', () => {
  const good = encodeBuildInstructions(relay);
  assertProtocolError(() => decodeBuildInstructions(good.subarray(0, 111)), 'BAD_LENGTH');
  assertProtocolError(() => decodeBuildInstructions(new Uint8Array(113)), 'BAD_LENGTH');
  assertProtocolError(() => decodeBuildInstructions(new Uint8Array(BUILD_INSTRUCTIONS_BYTES)), 'BAD_LENGTH');
  for (const length of [112, 113, 255]) {
    const bad = new Uint8Array(good);
    bad[0] = length;
    assertProtocolError(() => decodeBuildInstructions(bad), 'BAD_LENGTH');
  }
  const padded = new Uint8Array(good);
  padded[111] = 1;
  assertProtocolError(() => decodeBuildInstructions(padded), 'BAD_PADDING');
  // a length prefix one short leaves a non-zero msgpack byte in the padding
  const short = new Uint8Array(good);
  short[0] = (short[0] ?? 0) - 1;
  assertProtocolError(() => decodeBuildInstructions(short), 'BAD_PADDING');
});

test('build instructions - a length prefix one long leaves a trailing zero byte and is refused', () => {
  const good = encodeBuildInstructions(relay);
  const long = new Uint8Array(good);
  long[0] = (long[0] ?? 0) + 1;
  assertProtocolError(() => decodeBuildInstructions(long), 'BAD_MSGPACK');
});

test('build instructions - truncated, reserved and extension msgpack is refused', () => {
  // never-used 0xc1, truncated map, huge array header, timestamp, unknown and record extensions, a string
  for (const hex of ['c1', '84', 'dd05f5e100', 'd6ff00000001', 'c7010100', 'd57200', 'a3616263']) {
    assertProtocolError(() => decodeBuildInstructions(block(fromHex(hex))));
  }
  assertProtocolError(() => decodeBuildInstructions(block(fromHex('84a17200'))), 'BAD_MSGPACK');
});

test('build instructions - extra, missing and mistyped keys are refused', () => {
  const cases: readonly Record<string, unknown>[] = [
    { ...validMap(), x: 1 },
    { r: 1, t: 1, l: 1, x: 1 },
    { r: 1, t: 1 },
    { r: 1, t: 1, l: 1, n: validMap().n },
    { r: 0, t: 1, l: 1 },
    { r: 2, t: 1, l: 1 },
    { r: '1', t: 1, l: 1 },
    { r: true, t: 1, l: 1 },
    { r: 1, t: -1, l: 1 },
    { r: 1, t: 2 ** 32, l: 1 },
    { r: 1, t: 1.5, l: 1 },
    { r: 1, t: 1, l: 0 },
    { r: 1, t: 1, l: 901 },
    { r: 1, t: 1, l: null },
    { r: 0, t: 1, l: 1, n: [1, 2, 3] },
    { r: 0, t: 1, l: 1, n: { a: Uint8Array.of(1, 2, 3, 4), p: 1 } },
    { r: 0, t: 1, l: 1, n: { a: Uint8Array.of(1, 2, 3, 4), p: 1, k: KEY, z: 0 } },
    { r: 0, t: 1, l: 1, n: { a: Uint8Array.of(1, 2, 3, 4, 5), p: 1, k: KEY } },
    { r: 0, t: 1, l: 1, n: { a: '1.2.3.4', p: 1, k: KEY } },
    { r: 0, t: 1, l: 1, n: { a: Uint8Array.of(1, 2, 3, 4), p: 0, k: KEY } },
    { r: 0, t: 1, l: 1, n: { a: Uint8Array.of(1, 2, 3, 4), p: 65536, k: KEY } },
    { r: 0, t: 1, l: 1, n: { a: Uint8Array.of(1, 2, 3, 4), p: 1, k: KEY.subarray(1) } },
    { r: 0, t: 1, l: 1, n: { a: Uint8Array.of(1, 2, 3, 4), p: 1, k: 'k' } },
  ];
  for (const map of cases) assertProtocolError(() => decodeBuildInstructions(block(raw.pack(map))), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildInstructions(block(raw.pack([1, 2, 3]))), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildInstructions(block(raw.pack(7))), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildInstructions(block(raw.pack({ r: 1, t: 1, l: 1, ['__proto__']: 1 }))), 'BAD_FIELD');
});

test('build instructions - an IPv4-mapped next hop in 16 bytes is refused', () => {
  const mapped = fromHex('00000000000000000000ffffc0000207');
  const map = { r: 0, t: 1, l: 1, n: { a: mapped, p: 1, k: KEY } };
  assertProtocolError(() => decodeBuildInstructions(block(raw.pack(map))), 'BAD_ADDRESS');
});

test('build instructions - other encodings of a valid map are refused (one reading only)', () => {
  const variants: readonly (readonly [string, Uint8Array, string])[] = [
    ['keys out of order', raw.pack({ t: 1, r: 1, l: 1 }), 'BAD_MSGPACK'],
    // {r:0, r:1, t, l} reads as r = 1 here, and perhaps as r = 0 elsewhere
    ['a duplicate key', fromHex('84' + 'a17200' + 'a17201' + 'a17401' + 'a16c01'), 'BAD_MSGPACK'],
    ['a map16 header', fromHex('de0003' + 'a17201' + 'a17401' + 'a16c01'), 'BAD_MSGPACK'],
    ['t as uint64', fromHex('83' + 'a17201' + 'a174cf0000000000000001' + 'a16c01'), 'BAD_FIELD'],
    ['t as uint32 where a fixint fits', fromHex('83' + 'a17201' + 'a174ce00000001' + 'a16c01'), 'BAD_MSGPACK'],
    ['t as float64', fromHex('83' + 'a17201' + 'a174cb3ff0000000000000' + 'a16c01'), 'BAD_MSGPACK'],
    ['a str8 key', fromHex('83' + 'd90172' + '01' + 'a17401' + 'a16c01'), 'BAD_MSGPACK'],
  ];
  assert.deepStrictEqual(decodeBuildInstructions(block(fromHex('83a17201a17401a16c01'))), { role: 'endpoint', timeSeconds: 1, lifetimeSeconds: 1 });
  for (const [name, packed, code] of variants) {
    assert.doesNotThrow(() => raw.unpack(packed), name);
    assertProtocolError(() => decodeBuildInstructions(block(packed)), code);
  }
});

test('build instructions - encoding refuses out-of-range fields', () => {
  const bad: readonly BuildInstructions[] = [
    { role: 'endpoint', timeSeconds: -1, lifetimeSeconds: 1 },
    { role: 'endpoint', timeSeconds: 2 ** 32, lifetimeSeconds: 1 },
    { role: 'endpoint', timeSeconds: 1, lifetimeSeconds: 0 },
    { role: 'endpoint', timeSeconds: 1, lifetimeSeconds: 901 },
    { ...relay, next: { address: { host: '192.0.2.7', port: 0 }, staticKey: KEY } },
    { ...relay, next: { address: { host: '192.0.2.7', port: 1 }, staticKey: KEY.subarray(1) } },
  ];
  for (const instructions of bad) assertProtocolError(() => encodeBuildInstructions(instructions), 'BAD_FIELD');
  assertProtocolError(() => encodeBuildInstructions({ ...relay, next: { address: { host: 'example.org', port: 1 }, staticKey: KEY } }), 'BAD_ADDRESS');
});

test('build instructions - arbitrary msgpack values in the block throw ProtocolError only', () => {
  const keyArb = fc.constantFrom('r', 't', 'l', 'n', 'a', 'p', 'k', 'x', '__proto__');
  const leaf = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 4 }), fc.uint8Array({ maxLength: 33 }));
  const mapArb = fc.dictionary(keyArb, fc.oneof(leaf, fc.dictionary(keyArb, leaf, { maxKeys: 4 })), { maxKeys: 5 });
  fc.assert(
    fc.property(fc.oneof(mapArb, fc.anything({ maxDepth: 2 })), (value) => {
      let packed: Uint8Array;
      try {
        packed = raw.pack(value);
      } catch {
        return;
      }
      if (packed.length === 0 || packed.length > 111) return;
      onlyProtocolErrors(() => {
        const decoded = decodeBuildInstructions(block(packed));
        assert.deepStrictEqual(encodeBuildInstructions(decoded), block(packed));
      });
    }),
    { numRuns: 1000 },
  );
});

test('build reply - layout is status, reason, port, 16-byte address, 12 zeros', () => {
  const accepted = encodeBuildReply({ status: 'accepted', reason: 'none', endpoint: { host: '198.51.100.1', port: 0x1234 } });
  assert.equal(toHex(accepted), '0000' + '1234' + '00000000000000000000ffffc6336401' + '00'.repeat(12));
  const relayAccept = encodeBuildReply({ status: 'accepted', reason: 'none', endpoint: null });
  assert.equal(toHex(relayAccept), '00'.repeat(BUILD_REPLY_BYTES));
  assert.equal(toHex(encodeBuildReply({ status: 'refused', reason: 'stale', endpoint: null })), '0106' + '00'.repeat(30));
  assert.deepStrictEqual(decodeBuildReply(fromHex('0105' + '00'.repeat(30))), { status: 'refused', reason: 'next-hop-unreachable', endpoint: null });
  assert.deepStrictEqual(decodeBuildReply(fromHex('00000001' + '20010db8' + '00'.repeat(11) + '01' + '00'.repeat(12))), {
    status: 'accepted',
    reason: 'none',
    endpoint: { host: '2001:db8::1', port: 1 },
  });
});

test('build reply - every reason code has its name', () => {
  const names = ['overloaded', 'rate-limited', 'exit-policy', 'bad-record', 'next-hop-unreachable', 'stale'];
  names.forEach((name, i) => {
    const bytes = new Uint8Array(BUILD_REPLY_BYTES);
    bytes[0] = 1;
    bytes[1] = i + 1;
    assert.equal(decodeBuildReply(bytes).reason, name);
  });
});

test('build reply - malformed replies are refused', () => {
  const zero = '00'.repeat(12);
  const ip = '00'.repeat(16);
  assertProtocolError(() => decodeBuildReply(new Uint8Array(31)), 'BAD_LENGTH');
  assertProtocolError(() => decodeBuildReply(new Uint8Array(33)), 'BAD_LENGTH');
  assertProtocolError(() => decodeBuildReply(fromHex('0200' + '0000' + ip + zero)), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildReply(fromHex('0107' + '0000' + ip + zero)), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildReply(fromHex('0001' + '0000' + ip + zero)), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildReply(fromHex('0100' + '0000' + ip + zero)), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildReply(fromHex('0101' + '0001' + ip + zero)), 'BAD_FIELD');
  assertProtocolError(() => decodeBuildReply(fromHex('0000' + '0000' + '00'.repeat(15) + '01' + zero)), 'BAD_ADDRESS');
  assertProtocolError(() => decodeBuildReply(fromHex('0000' + '0001' + ip + '00'.repeat(11) + '01')), 'BAD_PADDING');
});

test('build reply - encoding refuses inconsistent replies', () => {
  const bad: readonly BuildReply[] = [
    { status: 'accepted', reason: 'stale', endpoint: null } as unknown as BuildReply,
    { status: 'refused', reason: 'none', endpoint: null } as unknown as BuildReply,
    { status: 'refused', reason: 'stale', endpoint: { host: '1.2.3.4', port: 1 } } as unknown as BuildReply,
    { status: 'accepted', reason: 'none', endpoint: { host: '1.2.3.4', port: 0 } },
  ];
  for (const reply of bad) assertProtocolError(() => encodeBuildReply(reply), 'BAD_FIELD');
});

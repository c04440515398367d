/** Tests of the tunnel-layer link payloads (PROTOCOL.md §4.1, §5.1). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BUILD_RECORDS_BYTES,
  BUILD_SLOTS_BYTES,
  CELL_BODY_BYTES,
  CELL_BYTES,
  MAX_CELL_SEQ,
  RELAYER_FILLER_BYTES,
  TUNNEL_MESSAGE_BYTES,
  TUNNEL_MESSAGE_TYPES,
  buildRecordAt,
  buildSlotAt,
  decodeTunnelMessage,
  encodeCellInto,
  encodeTunnelMessage,
  tunnelId,
} from '../src/index.js';
import type { TunnelMessage, TunnelMessageType } from '../src/index.js';
import { assertProtocolError, fromHex, pattern, toHex } from './helpers.js';

const ID = tunnelId(0x01020304);

/** One valid message of each type. */
const SAMPLES: Readonly<Record<TunnelMessageType, TunnelMessage>> = {
  'cell-out': { type: 'cell-out', tunnelId: ID, seq: 5, body: pattern(CELL_BODY_BYTES) },
  'cell-in': { type: 'cell-in', tunnelId: ID, seq: 5, body: pattern(CELL_BODY_BYTES) },
  'build-request': { type: 'build-request', tunnelId: ID, records: pattern(BUILD_RECORDS_BYTES) },
  'build-request-relayer': {
    type: 'build-request-relayer',
    tunnelId: ID,
    ttl: 2,
    ephemeralKey: pattern(32, 0x40),
    filler: pattern(RELAYER_FILLER_BYTES, 3),
  },
  'build-response': { type: 'build-response', tunnelId: ID, slots: pattern(BUILD_SLOTS_BYTES) },
  'destroy-out': { type: 'destroy-out', tunnelId: ID, reason: 1 },
  'destroy-in': { type: 'destroy-in', tunnelId: ID, reason: 255 },
};

test('tunnel message - each type has its type byte and exact size', () => {
  const sizes = { 'cell-out': 1173, 'cell-in': 1173, 'build-request': 1125, 'build-request-relayer': 1125, 'build-response': 565, 'destroy-out': 6, 'destroy-in': 6 };
  for (const [type, message] of Object.entries(SAMPLES) as [TunnelMessageType, TunnelMessage][]) {
    const bytes = encodeTunnelMessage(message);
    assert.equal(bytes.length, sizes[type], type);
    assert.equal(bytes.length, TUNNEL_MESSAGE_BYTES[type], type);
    assert.equal(bytes[0], TUNNEL_MESSAGE_TYPES[type], type);
    assert.equal(toHex(bytes.subarray(1, 5)), '01020304', type);
    assert.deepStrictEqual(decodeTunnelMessage(bytes), message);
  }
});

test('tunnel message - cell header is type, tunnelId u32, seq u64, all big-endian', () => {
  const bytes = encodeTunnelMessage({ type: 'cell-in', tunnelId: tunnelId(0xfffffffe), seq: MAX_CELL_SEQ, body: new Uint8Array(CELL_BODY_BYTES) });
  assert.equal(toHex(bytes.subarray(0, 13)), '02' + 'fffffffe' + '001fffffffffffff');
  const small = encodeTunnelMessage({ type: 'cell-out', tunnelId: ID, seq: 0x1_0000_0001, body: new Uint8Array(CELL_BODY_BYTES) });
  assert.equal(toHex(small.subarray(0, 13)), '01' + '01020304' + '0000000100000001');
});

test('tunnel message - a decoded cell body is a view of the input', () => {
  const bytes = encodeTunnelMessage(SAMPLES['cell-out']);
  const cell = decodeTunnelMessage(bytes);
  assert.ok(cell.type === 'cell-out');
  assert.equal(cell.body.buffer, bytes.buffer);
  assert.equal(cell.body.byteOffset, bytes.byteOffset + 13);
});

test('tunnel message - encodeCellInto writes into a caller buffer, body in place or not', () => {
  const out = new Uint8Array(CELL_BYTES + 10).fill(0xee);
  encodeCellInto(out, 'cell-out', ID, 7, pattern(CELL_BODY_BYTES, 9));
  assert.deepStrictEqual(out.subarray(0, CELL_BYTES), encodeTunnelMessage({ type: 'cell-out', tunnelId: ID, seq: 7, body: pattern(CELL_BODY_BYTES, 9) }));
  assert.ok(out.subarray(CELL_BYTES).every((b) => b === 0xee));
  const inPlace = out.subarray(13, 13 + CELL_BODY_BYTES);
  encodeCellInto(out, 'cell-in', ID, 8, inPlace);
  assert.deepStrictEqual(decodeTunnelMessage(out.subarray(0, CELL_BYTES)), { type: 'cell-in', tunnelId: ID, seq: 8, body: pattern(CELL_BODY_BYTES, 9) });
  assertProtocolError(() => encodeCellInto(new Uint8Array(CELL_BYTES - 1), 'cell-out', ID, 0, inPlace), 'BAD_LENGTH');
  assertProtocolError(() => encodeCellInto(out, 'destroy-in' as 'cell-in', ID, 0, inPlace), 'BAD_TYPE');
});

test('tunnel message - seq of 2^53 or more is refused both ways', () => {
  const bytes = encodeTunnelMessage({ type: 'cell-out', tunnelId: ID, seq: MAX_CELL_SEQ, body: new Uint8Array(CELL_BODY_BYTES) });
  assert.ok(decodeTunnelMessage(bytes).type === 'cell-out');
  bytes.set(fromHex('0020000000000000'), 5); // 2^53
  assertProtocolError(() => decodeTunnelMessage(bytes), 'BAD_FIELD');
  bytes.set(fromHex('ffffffffffffffff'), 5);
  assertProtocolError(() => decodeTunnelMessage(bytes), 'BAD_FIELD');
  const body = new Uint8Array(CELL_BODY_BYTES);
  for (const seq of [2 ** 53, 2 ** 64, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    assertProtocolError(() => encodeTunnelMessage({ type: 'cell-out', tunnelId: ID, seq, body }), 'BAD_FIELD');
  }
});

test('tunnel message - every type refuses every other length', () => {
  for (const [type, message] of Object.entries(SAMPLES) as [TunnelMessageType, TunnelMessage][]) {
    const bytes = encodeTunnelMessage(message);
    assertProtocolError(() => decodeTunnelMessage(bytes.subarray(0, bytes.length - 1)), 'BAD_LENGTH');
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    assertProtocolError(() => decodeTunnelMessage(longer), 'BAD_LENGTH');
    assertProtocolError(() => decodeTunnelMessage(Uint8Array.of(TUNNEL_MESSAGE_TYPES[type])), 'BAD_LENGTH');
  }
  assertProtocolError(() => decodeTunnelMessage(new Uint8Array(0)), 'BAD_LENGTH');
});

test('tunnel message - unknown type bytes are refused', () => {
  const known = new Set<number>(Object.values(TUNNEL_MESSAGE_TYPES));
  for (let type = 0; type < 256; type++) {
    if (known.has(type)) continue;
    const bytes = new Uint8Array(CELL_BYTES);
    bytes[0] = type;
    assertProtocolError(() => decodeTunnelMessage(bytes), 'BAD_TYPE');
  }
});

test('tunnel message - relayer ttl over 6 is refused both ways', () => {
  const bytes = encodeTunnelMessage(SAMPLES['build-request-relayer']);
  bytes[5] = 6;
  assert.ok(decodeTunnelMessage(bytes).type === 'build-request-relayer');
  bytes[5] = 7;
  assertProtocolError(() => decodeTunnelMessage(bytes), 'BAD_FIELD');
  assertProtocolError(() => encodeTunnelMessage({ ...SAMPLES['build-request-relayer'], ttl: 7 } as TunnelMessage), 'BAD_FIELD');
});

test('tunnel message - relayer filler is carried as is, never validated', () => {
  const message = { ...SAMPLES['build-request-relayer'], filler: new Uint8Array(RELAYER_FILLER_BYTES).fill(0xff) } as TunnelMessage;
  assert.deepStrictEqual(decodeTunnelMessage(encodeTunnelMessage(message)), message);
});

test('tunnel message - encoding refuses wrong field sizes and ids', () => {
  const bad: readonly TunnelMessage[] = [
    { type: 'cell-out', tunnelId: ID, seq: 0, body: new Uint8Array(CELL_BODY_BYTES - 1) },
    { type: 'build-request', tunnelId: ID, records: new Uint8Array(BUILD_RECORDS_BYTES + 1) },
    { type: 'build-response', tunnelId: ID, slots: new Uint8Array(BUILD_SLOTS_BYTES - 80) },
    { type: 'build-request-relayer', tunnelId: ID, ttl: 0, ephemeralKey: new Uint8Array(31), filler: new Uint8Array(RELAYER_FILLER_BYTES) },
    { type: 'build-request-relayer', tunnelId: ID, ttl: 0, ephemeralKey: new Uint8Array(32), filler: new Uint8Array(10) },
    { type: 'destroy-out', tunnelId: ID, reason: 256 },
    { type: 'destroy-in', tunnelId: 2 ** 32 as typeof ID, reason: 0 },
    { type: 'cell-in', tunnelId: -1 as typeof ID, seq: 0, body: new Uint8Array(CELL_BODY_BYTES) },
  ];
  for (const message of bad) assertProtocolError(() => encodeTunnelMessage(message), 'BAD_FIELD');
});

test('tunnel message - tunnelId() accepts exactly the u32 range', () => {
  assert.equal(tunnelId(0), 0);
  assert.equal(tunnelId(0xffffffff), 0xffffffff);
  for (const n of [-1, 2 ** 32, 0.5, Number.NaN]) assertProtocolError(() => tunnelId(n), 'BAD_FIELD');
});

test('tunnel message - record and slot accessors are views of 160 and 80 bytes', () => {
  const records = pattern(BUILD_RECORDS_BYTES);
  assert.equal(buildRecordAt(records, 0).length, 160);
  assert.equal(buildRecordAt(records, 6)[0], (6 * 160) & 0xff);
  buildRecordAt(records, 1)[0] = 0xaa;
  assert.equal(records[160], 0xaa);
  assert.equal(buildSlotAt(pattern(BUILD_SLOTS_BYTES), 6).length, 80);
  assert.throws(() => buildRecordAt(records, 7));
  assert.throws(() => buildSlotAt(records, -1));
});

/** Tests of the cell plaintext frames (PROTOCOL.md §6). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CELL_FRAME_TYPES,
  CELL_PLAINTEXT_BYTES,
  MAX_DATAGRAM_BYTES,
  MAX_FRAGMENTS,
  MAX_FRAGMENT_DATA,
  decodeCellFrame,
  encodeCellFrame,
  encodeCellFrameInto,
} from '../src/index.js';
import type { CellFrame } from '../src/index.js';
import { assertProtocolError, fromHex, pattern, toHex } from './helpers.js';

const DEST = { host: '203.0.113.5', port: 53 };
const ADDRESS_HEX = '04' + '00000000000000000000ffffcb007105' + '0035';

function datagram(overrides: Partial<Extract<CellFrame, { type: 'datagram' }>> = {}): CellFrame {
  return { type: 'datagram', datagramId: 0x0a0b0c0d, index: 1, count: 3, address: DEST, data: Uint8Array.of(1, 2, 3), ...overrides };
}

test('cell frame - datagram layout: type, id, index, count, length, address, data, zeros', () => {
  const bytes = encodeCellFrame(datagram());
  assert.equal(bytes.length, CELL_PLAINTEXT_BYTES);
  assert.equal(toHex(bytes.subarray(0, 31)), '01' + '0a0b0c0d' + '01' + '03' + '0003' + ADDRESS_HEX + '010203');
  assert.ok(bytes.subarray(31).every((b) => b === 0));
});

test('cell frame - probe, probe reply and exit refused layouts', () => {
  const probeId = pattern(8, 0xf0);
  assert.equal(toHex(encodeCellFrame({ type: 'probe', probeId }).subarray(0, 10)), '02f0f1f2f3f4f5f6f700');
  assert.equal(toHex(encodeCellFrame({ type: 'probe-reply', probeId }).subarray(0, 10)), '03f0f1f2f3f4f5f6f700');
  assert.equal(toHex(encodeCellFrame({ type: 'exit-refused', datagramId: 7, reason: 3 }).subarray(0, 7)), '04000000070300');
});

test('cell frame - a full fragment of 1020 bytes fills the plaintext exactly', () => {
  const frame = datagram({ data: pattern(MAX_FRAGMENT_DATA, 5), index: MAX_FRAGMENTS - 1, count: MAX_FRAGMENTS });
  const bytes = encodeCellFrame(frame);
  assert.equal(bytes[CELL_PLAINTEXT_BYTES - 1], (5 + MAX_FRAGMENT_DATA - 1) & 0xff);
  assert.deepStrictEqual(decodeCellFrame(bytes), frame);
  assert.ok((MAX_FRAGMENTS - 1) * MAX_FRAGMENT_DATA < MAX_DATAGRAM_BYTES && MAX_FRAGMENTS * MAX_FRAGMENT_DATA >= MAX_DATAGRAM_BYTES);
});

test('cell frame - encodeCellFrameInto clears an earlier, longer frame', () => {
  const out = encodeCellFrame(datagram({ data: pattern(MAX_FRAGMENT_DATA, 1) }));
  encodeCellFrameInto({ type: 'probe', probeId: pattern(8) }, out);
  assert.deepStrictEqual(decodeCellFrame(out), { type: 'probe', probeId: pattern(8) });
  assertProtocolError(() => encodeCellFrameInto({ type: 'probe', probeId: pattern(8) }, new Uint8Array(CELL_PLAINTEXT_BYTES - 1)), 'BAD_LENGTH');
});

test('cell frame - wrong length and unknown types are refused', () => {
  assertProtocolError(() => decodeCellFrame(new Uint8Array(CELL_PLAINTEXT_BYTES - 1)), 'BAD_LENGTH');
  assertProtocolError(() => decodeCellFrame(new Uint8Array(CELL_PLAINTEXT_BYTES + 1)), 'BAD_LENGTH');
  const known = new Set<number>(Object.values(CELL_FRAME_TYPES));
  for (let type = 0; type < 256; type++) {
    if (known.has(type)) continue;
    const bytes = new Uint8Array(CELL_PLAINTEXT_BYTES);
    bytes[0] = type;
    assertProtocolError(() => decodeCellFrame(bytes), 'BAD_TYPE');
  }
});

test('cell frame - index, count and length out of range are refused', () => {
  const at = (index: number, count: number, lengthHex = '0000'): Uint8Array => {
    const bytes = new Uint8Array(CELL_PLAINTEXT_BYTES);
    bytes.set(fromHex('01' + '00000001' + index.toString(16).padStart(2, '0') + count.toString(16).padStart(2, '0') + lengthHex + ADDRESS_HEX));
    return bytes;
  };
  assert.equal(decodeCellFrame(at(64, 65)).type, 'datagram');
  assertProtocolError(() => decodeCellFrame(at(0, 0)), 'BAD_FIELD');
  assertProtocolError(() => decodeCellFrame(at(3, 3)), 'BAD_FIELD');
  assertProtocolError(() => decodeCellFrame(at(0, 66)), 'BAD_FIELD');
  assertProtocolError(() => decodeCellFrame(at(255, 255)), 'BAD_FIELD');
  assert.equal(decodeCellFrame(at(0, 1, '03fc')).type, 'datagram');
  assertProtocolError(() => decodeCellFrame(at(0, 1, '03fd')), 'BAD_LENGTH');
  assertProtocolError(() => decodeCellFrame(at(0, 1, 'ffff')), 'BAD_LENGTH');
});

test('cell frame - a bad address is refused', () => {
  const bytes = encodeCellFrame(datagram());
  bytes[9] = 5;
  assertProtocolError(() => decodeCellFrame(bytes), 'BAD_ADDRESS');
  const port0 = encodeCellFrame(datagram());
  port0[26] = 0;
  port0[27] = 0;
  assertProtocolError(() => decodeCellFrame(port0), 'BAD_ADDRESS');
});

test('cell frame - non-zero bytes after any frame are refused', () => {
  const frames: readonly [CellFrame, number][] = [
    [datagram(), 31],
    [{ type: 'probe', probeId: pattern(8) }, 9],
    [{ type: 'probe-reply', probeId: pattern(8) }, 9],
    [{ type: 'exit-refused', datagramId: 1, reason: 2 }, 6],
  ];
  for (const [frame, end] of frames) {
    for (const at of [end, CELL_PLAINTEXT_BYTES - 1]) {
      const bytes = encodeCellFrame(frame);
      bytes[at] = 1;
      assertProtocolError(() => decodeCellFrame(bytes), 'BAD_PADDING');
    }
  }
});

test('cell frame - encoding refuses out-of-range fields', () => {
  const bad: readonly CellFrame[] = [
    datagram({ index: 3, count: 3 }),
    datagram({ count: 0, index: 0 }),
    datagram({ count: 66, index: 0 }),
    datagram({ data: new Uint8Array(MAX_FRAGMENT_DATA + 1) }),
    datagram({ datagramId: 2 ** 32 }),
    { type: 'probe', probeId: new Uint8Array(7) },
    { type: 'exit-refused', datagramId: 1, reason: 256 },
  ];
  for (const frame of bad) assertProtocolError(() => encodeCellFrame(frame), 'BAD_FIELD');
  assertProtocolError(() => encodeCellFrame(datagram({ address: { host: '1.2.3.4', port: 0 } })), 'BAD_ADDRESS');
});

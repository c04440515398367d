/** Tests of link frames, the plaintext of data datagrams (PROTOCOL.md §3.4). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LINK_FRAME_BYTES, MAX_LINK_PAYLOAD, decodeLinkFrame, encodeLinkFrame, encodeLinkFrameInto } from '../src/index.js';
import { assertProtocolError, pattern, toHex } from './helpers.js';

test('link frame - keepalive is type 0, length 0, all zero', () => {
  const bytes = encodeLinkFrame({ type: 'keepalive' });
  assert.equal(bytes.length, LINK_FRAME_BYTES);
  assert.ok(bytes.every((b) => b === 0));
  assert.deepStrictEqual(decodeLinkFrame(bytes), { type: 'keepalive' });
});

test('link frame - payload is type 1, u16 length, bytes, zero padding', () => {
  const bytes = encodeLinkFrame({ type: 'payload', payload: Uint8Array.of(0xaa, 0xbb) });
  assert.equal(toHex(bytes.subarray(0, 6)), '010002aabb00');
  assert.ok(bytes.subarray(5).every((b) => b === 0));
  const full = encodeLinkFrame({ type: 'payload', payload: pattern(MAX_LINK_PAYLOAD, 1) });
  assert.equal(toHex(full.subarray(0, 3)), '010495');
});

test('link frame - a decoded payload is a view of the input', () => {
  const bytes = encodeLinkFrame({ type: 'payload', payload: Uint8Array.of(1, 2, 3) });
  const frame = decodeLinkFrame(bytes);
  assert.equal(frame.type, 'payload');
  if (frame.type !== 'payload') return;
  bytes[3] = 9;
  assert.equal(frame.payload[0], 9);
});

test('link frame - encodeLinkFrameInto overwrites an earlier frame, padding included', () => {
  const out = new Uint8Array(8 + LINK_FRAME_BYTES + 16).fill(0xee);
  encodeLinkFrameInto({ type: 'payload', payload: Uint8Array.of(7) }, out, 8);
  assert.ok(out.subarray(0, 8).every((b) => b === 0xee));
  assert.ok(out.subarray(8 + LINK_FRAME_BYTES).every((b) => b === 0xee));
  assert.deepStrictEqual(decodeLinkFrame(out.subarray(8, 8 + LINK_FRAME_BYTES)), { type: 'payload', payload: Uint8Array.of(7) });
  assertProtocolError(() => encodeLinkFrameInto({ type: 'keepalive' }, new Uint8Array(LINK_FRAME_BYTES), 1), 'BAD_LENGTH');
});

test('link frame - wrong length is refused', () => {
  for (const n of [0, 3, LINK_FRAME_BYTES - 1, LINK_FRAME_BYTES + 1, 1200]) {
    assertProtocolError(() => decodeLinkFrame(new Uint8Array(n)), 'BAD_LENGTH');
  }
});

test('link frame - unknown types are refused', () => {
  for (const type of [2, 0x10, 0xff]) {
    const bytes = new Uint8Array(LINK_FRAME_BYTES);
    bytes[0] = type;
    assertProtocolError(() => decodeLinkFrame(bytes), 'BAD_TYPE');
  }
});

test('link frame - a length over 1173 and a keepalive with a length are refused', () => {
  const bytes = new Uint8Array(LINK_FRAME_BYTES);
  bytes[0] = 1;
  bytes[1] = 0x04;
  bytes[2] = 0x96; // 1174
  assertProtocolError(() => decodeLinkFrame(bytes), 'BAD_LENGTH');
  bytes[1] = 0xff;
  bytes[2] = 0xff;
  assertProtocolError(() => decodeLinkFrame(bytes), 'BAD_LENGTH');
  const keepalive = new Uint8Array(LINK_FRAME_BYTES);
  keepalive[2] = 1;
  assertProtocolError(() => decodeLinkFrame(keepalive), 'BAD_LENGTH');
});

test('link frame - non-zero padding is refused', () => {
  for (const at of [5, 100, LINK_FRAME_BYTES - 1]) {
    const bytes = encodeLinkFrame({ type: 'payload', payload: Uint8Array.of(1, 2) });
    bytes[at] = 0x80;
    assertProtocolError(() => decodeLinkFrame(bytes), 'BAD_PADDING');
  }
  const keepalive = encodeLinkFrame({ type: 'keepalive' });
  keepalive[LINK_FRAME_BYTES - 1] = 1;
  assertProtocolError(() => decodeLinkFrame(keepalive), 'BAD_PADDING');
});

test('link frame - encoding refuses a payload over 1173 bytes', () => {
  assertProtocolError(() => encodeLinkFrame({ type: 'payload', payload: new Uint8Array(MAX_LINK_PAYLOAD + 1) }), 'BAD_FIELD');
});

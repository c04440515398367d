/** Tests of the message envelope (PROTOCOL.md §7). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ENVELOPE_HEADER_BYTES,
  MAX_ENVELOPE_BYTES,
  MAX_ENVELOPE_PAYLOAD,
  MAX_REPLY_TO,
  TOO_LARGE_ENVELOPE_BYTES,
  decodeEnvelope,
  encodeEnvelope,
  encodeTooLarge,
  tooLargeSize,
} from '../src/index.js';
import type { Envelope } from '../src/index.js';
import { assertProtocolError, fromHex, pattern, toHex } from './helpers.js';

const ID = pattern(16, 0xa0);
const ADDR = { host: '192.0.2.1', port: 7000 };
const ADDR_HEX = '04' + '00000000000000000000ffffc0000201' + '1b58';

test('envelope - layout is version, kind, id, count, padding length, addresses, padding, payload', () => {
  const bytes = encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [ADDR], payload: Uint8Array.of(0xde, 0xad) });
  assert.equal(toHex(bytes), '01' + '01' + toHex(ID) + '01' + '0000' + ADDR_HEX + 'dead');
  const padded = encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [ADDR], padding: 3, payload: Uint8Array.of(0xde, 0xad) });
  assert.equal(toHex(padded), '01' + '01' + toHex(ID) + '01' + '0003' + ADDR_HEX + '000000' + 'dead');
  assert.deepStrictEqual(decodeEnvelope(padded), { kind: 'request', messageId: ID, replyTo: [ADDR], padding: 3, payload: Uint8Array.of(0xde, 0xad) });
  assert.equal(toHex(encodeEnvelope({ kind: 'oneway', messageId: ID, replyTo: [], payload: new Uint8Array(0) })), '0103' + toHex(ID) + '00' + '0000');
  assert.equal(encodeEnvelope({ kind: 'response', messageId: ID, replyTo: [], payload: new Uint8Array(0) })[1], 2);
});

test('envelope - the largest envelope is exactly MAX_ENVELOPE_BYTES', () => {
  const big: Envelope = { kind: 'oneway', messageId: ID, replyTo: [], payload: new Uint8Array(MAX_ENVELOPE_PAYLOAD) };
  const bytes = encodeEnvelope(big);
  assert.equal(bytes.length, MAX_ENVELOPE_BYTES);
  assert.deepStrictEqual(decodeEnvelope(bytes), big);
  assertProtocolError(() => encodeEnvelope({ ...big, payload: new Uint8Array(MAX_ENVELOPE_PAYLOAD + 1) }), 'BAD_LENGTH');
  const four = Array.from({ length: MAX_REPLY_TO }, () => ADDR);
  assertProtocolError(() => encodeEnvelope({ ...big, replyTo: four, payload: new Uint8Array(MAX_ENVELOPE_PAYLOAD - 4 * 19 + 1) }), 'BAD_LENGTH');
  const request: Envelope = { kind: 'request', messageId: ID, replyTo: four, padding: MAX_ENVELOPE_PAYLOAD - 4 * 19 - 1, payload: Uint8Array.of(7) };
  assert.equal(encodeEnvelope(request).length, MAX_ENVELOPE_BYTES, 'padding counts towards the size');
  assertProtocolError(() => encodeEnvelope({ ...request, padding: MAX_ENVELOPE_PAYLOAD - 4 * 19 }), 'BAD_LENGTH');
  const longer = new Uint8Array(MAX_ENVELOPE_BYTES + 1);
  longer.set(bytes);
  assertProtocolError(() => decodeEnvelope(longer), 'BAD_LENGTH');
});

test('envelope - too short, bad version and unknown kinds are refused', () => {
  const good = encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [], payload: new Uint8Array(0) });
  assertProtocolError(() => decodeEnvelope(good.subarray(0, ENVELOPE_HEADER_BYTES - 1)), 'BAD_LENGTH');
  assertProtocolError(() => decodeEnvelope(new Uint8Array(0)), 'BAD_LENGTH');
  for (const version of [0, 2, 255]) {
    const bad = new Uint8Array(good);
    bad[0] = version;
    assertProtocolError(() => decodeEnvelope(bad), 'BAD_VERSION');
  }
  for (const kind of [0, 5, 255]) {
    const bad = new Uint8Array(good);
    bad[1] = kind;
    assertProtocolError(() => decodeEnvelope(bad), 'BAD_TYPE');
  }
});

test('envelope - more than four reply addresses are refused', () => {
  const five = fromHex('0101' + toHex(ID) + '05' + '0000' + ADDR_HEX.repeat(5));
  assertProtocolError(() => decodeEnvelope(five), 'TOO_MANY');
  const replyTo = Array.from({ length: 5 }, () => ADDR);
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: ID, replyTo, payload: new Uint8Array(0) }), 'TOO_MANY');
});

test('envelope - a reply count beyond the bytes present is refused', () => {
  assertProtocolError(() => decodeEnvelope(fromHex('0101' + toHex(ID) + '02' + '0000' + ADDR_HEX)), 'BAD_LENGTH');
});

test('envelope - bad reply addresses are refused', () => {
  assertProtocolError(() => decodeEnvelope(fromHex('0101' + toHex(ID) + '01' + '0000' + '07' + ADDR_HEX.slice(2))), 'BAD_ADDRESS');
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [{ host: 'host', port: 1 }], payload: new Uint8Array(0) }), 'BAD_ADDRESS');
});

test('envelope - encoding refuses a message id of the wrong size and an unknown kind', () => {
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: new Uint8Array(15), replyTo: [], payload: new Uint8Array(0) }), 'BAD_FIELD');
  assertProtocolError(() => encodeEnvelope({ kind: 'other' as 'request', messageId: ID, replyTo: [], payload: new Uint8Array(0) }), 'BAD_TYPE');
  assertProtocolError(() => encodeEnvelope({ kind: 'toString' as 'request', messageId: ID, replyTo: [], payload: new Uint8Array(0) }), 'BAD_TYPE');
});

test('envelope - padding is zeros, only on requests, and within the bytes present', () => {
  const padded = encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [], padding: 100, payload: Uint8Array.of(1, 2) });
  assert.equal(padded.length, ENVELOPE_HEADER_BYTES + 100 + 2);
  const dirty = new Uint8Array(padded);
  dirty[ENVELOPE_HEADER_BYTES + 99] = 1;
  assertProtocolError(() => decodeEnvelope(dirty), 'BAD_PADDING');
  assertProtocolError(() => decodeEnvelope(padded.subarray(0, ENVELOPE_HEADER_BYTES + 99)), 'BAD_LENGTH');
  for (const kind of ['response', 'oneway'] as const) {
    assertProtocolError(() => encodeEnvelope({ kind, messageId: ID, replyTo: [], padding: 1, payload: new Uint8Array(0) }), 'BAD_FIELD');
    const bad = new Uint8Array(padded);
    bad[1] = kind === 'response' ? 2 : 3;
    assertProtocolError(() => decodeEnvelope(bad), 'BAD_FIELD');
  }
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [], padding: -1, payload: new Uint8Array(0) }), 'BAD_FIELD');
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [], padding: 1.5, payload: new Uint8Array(0) }), 'BAD_FIELD');
});

test('envelope - a too-large answer is 23 bytes naming a size, and nothing else', () => {
  const answer = encodeTooLarge(ID, 2_100);
  assert.equal(answer.length, TOO_LARGE_ENVELOPE_BYTES);
  assert.equal(TOO_LARGE_ENVELOPE_BYTES, 23);
  assert.equal(toHex(answer), '0104' + toHex(ID) + '00' + '0000' + '0834');
  const decoded = decodeEnvelope(answer);
  assert.equal(decoded.kind, 'too-large');
  assert.equal(tooLargeSize(decoded), 2_100);
  assertProtocolError(() => encodeTooLarge(ID, ENVELOPE_HEADER_BYTES - 1), 'BAD_FIELD');
  assertProtocolError(() => encodeTooLarge(ID, MAX_ENVELOPE_BYTES + 1), 'BAD_FIELD');
  assertProtocolError(() => decodeEnvelope(fromHex('0104' + toHex(ID) + '00' + '0000' + '08')), 'BAD_FIELD');
  assertProtocolError(() => decodeEnvelope(fromHex('0104' + toHex(ID) + '00' + '0000' + '083400')), 'BAD_FIELD');
  assertProtocolError(() => decodeEnvelope(fromHex('0104' + toHex(ID) + '00' + '0000' + 'ffff')), 'BAD_FIELD');
  assertProtocolError(() => decodeEnvelope(fromHex('0104' + toHex(ID) + '01' + '0000' + ADDR_HEX + '0834')), 'BAD_FIELD');
  assertProtocolError(() => encodeEnvelope({ kind: 'too-large', messageId: ID, replyTo: [ADDR], payload: Uint8Array.of(8, 0x34) }), 'BAD_FIELD');
});

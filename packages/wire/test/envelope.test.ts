/** Tests of the message envelope (PROTOCOL.md §7). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ENVELOPE_HEADER_BYTES,
  MAX_ENVELOPE_BYTES,
  MAX_ENVELOPE_PAYLOAD,
  MAX_REPLY_TO,
  decodeEnvelope,
  encodeEnvelope,
} from '../src/index.js';
import type { Envelope } from '../src/index.js';
import { assertProtocolError, fromHex, pattern, toHex } from './helpers.js';

const ID = pattern(16, 0xa0);
const ADDR = { host: '192.0.2.1', port: 7000 };
const ADDR_HEX = '04' + '00000000000000000000ffffc0000201' + '1b58';

test('envelope - layout is version, kind, id, count, addresses, payload', () => {
  const bytes = encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [ADDR], payload: Uint8Array.of(0xde, 0xad) });
  assert.equal(toHex(bytes), '01' + '01' + toHex(ID) + '01' + ADDR_HEX + 'dead');
  assert.equal(toHex(encodeEnvelope({ kind: 'oneway', messageId: ID, replyTo: [], payload: new Uint8Array(0) })), '0103' + toHex(ID) + '00');
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
  for (const kind of [0, 4, 255]) {
    const bad = new Uint8Array(good);
    bad[1] = kind;
    assertProtocolError(() => decodeEnvelope(bad), 'BAD_TYPE');
  }
});

test('envelope - more than four reply addresses are refused', () => {
  const five = fromHex('0101' + toHex(ID) + '05' + ADDR_HEX.repeat(5));
  assertProtocolError(() => decodeEnvelope(five), 'TOO_MANY');
  const replyTo = Array.from({ length: 5 }, () => ADDR);
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: ID, replyTo, payload: new Uint8Array(0) }), 'TOO_MANY');
});

test('envelope - a reply count beyond the bytes present is refused', () => {
  assertProtocolError(() => decodeEnvelope(fromHex('0101' + toHex(ID) + '02' + ADDR_HEX)), 'BAD_LENGTH');
});

test('envelope - bad reply addresses are refused', () => {
  assertProtocolError(() => decodeEnvelope(fromHex('0101' + toHex(ID) + '01' + '07' + ADDR_HEX.slice(2))), 'BAD_ADDRESS');
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: ID, replyTo: [{ host: 'host', port: 1 }], payload: new Uint8Array(0) }), 'BAD_ADDRESS');
});

test('envelope - encoding refuses a message id of the wrong size and an unknown kind', () => {
  assertProtocolError(() => encodeEnvelope({ kind: 'request', messageId: new Uint8Array(15), replyTo: [], payload: new Uint8Array(0) }), 'BAD_FIELD');
  assertProtocolError(() => encodeEnvelope({ kind: 'other' as 'request', messageId: ID, replyTo: [], payload: new Uint8Array(0) }), 'BAD_TYPE');
  assertProtocolError(() => encodeEnvelope({ kind: 'toString' as 'request', messageId: ID, replyTo: [], payload: new Uint8Array(0) }), 'BAD_TYPE');
});

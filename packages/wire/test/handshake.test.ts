/** Tests of the 32-byte handshake payload (PROTOCOL.md §3.3). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeHandshakePayload, encodeHandshakePayload } from '../src/index.js';
import type { HandshakePayload } from '../src/index.js';
import { assertProtocolError, fromHex, toHex } from './helpers.js';

const ZERO_29 = '00'.repeat(29);

test('handshake payload - layout is minVersion, maxVersion, flags, 29 zeros', () => {
  assert.equal(toHex(encodeHandshakePayload({ minVersion: 1, maxVersion: 1, ephemeralIdentity: true })), '010101' + ZERO_29);
  assert.equal(toHex(encodeHandshakePayload({ minVersion: 1, maxVersion: 3, ephemeralIdentity: false })), '010300' + ZERO_29);
  assert.deepStrictEqual(decodeHandshakePayload(fromHex('020500' + ZERO_29)), {
    minVersion: 2,
    maxVersion: 5,
    ephemeralIdentity: false,
  });
});

test('handshake payload - wrong length is refused', () => {
  assertProtocolError(() => decodeHandshakePayload(fromHex('010100' + '00'.repeat(28))), 'BAD_LENGTH');
  assertProtocolError(() => decodeHandshakePayload(fromHex('010100' + '00'.repeat(30))), 'BAD_LENGTH');
  assertProtocolError(() => decodeHandshakePayload(new Uint8Array(0)), 'BAD_LENGTH');
});

test('handshake payload - minVersion 0 and min > max are refused', () => {
  assertProtocolError(() => decodeHandshakePayload(fromHex('000100' + ZERO_29)), 'BAD_FIELD');
  assertProtocolError(() => decodeHandshakePayload(fromHex('000000' + ZERO_29)), 'BAD_FIELD');
  assertProtocolError(() => decodeHandshakePayload(fromHex('020100' + ZERO_29)), 'BAD_FIELD');
});

test('handshake payload - unknown flag bits are refused', () => {
  for (const flags of ['02', '03', '80', 'ff']) {
    assertProtocolError(() => decodeHandshakePayload(fromHex('0101' + flags + ZERO_29)), 'BAD_FIELD');
  }
});

test('handshake payload - non-zero reserved bytes are refused', () => {
  for (const at of [3, 17, 31]) {
    const bytes = encodeHandshakePayload({ minVersion: 1, maxVersion: 1, ephemeralIdentity: false });
    bytes[at] = 1;
    assertProtocolError(() => decodeHandshakePayload(bytes), 'BAD_PADDING');
  }
});

test('handshake payload - encoding refuses what decoding would refuse', () => {
  const bad: readonly HandshakePayload[] = [
    { minVersion: 0, maxVersion: 1, ephemeralIdentity: false },
    { minVersion: 2, maxVersion: 1, ephemeralIdentity: false },
    { minVersion: 1, maxVersion: 256, ephemeralIdentity: false },
    { minVersion: 1.5, maxVersion: 2, ephemeralIdentity: false },
    { minVersion: 1, maxVersion: 1, ephemeralIdentity: 1 as unknown as boolean },
  ];
  for (const payload of bad) assertProtocolError(() => encodeHandshakePayload(payload), 'BAD_FIELD');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolError } from '@deut/common';
import { MAX_PEER_LIST, PEER_ENTRY_BYTES, decodePeerExchange, encodePeerExchange, isPeerExchange } from '../src/index.js';

const refuses = (bytes: Uint8Array, code: string): void =>
  assert.throws(() => decodePeerExchange(bytes), (e: unknown) => e instanceof ProtocolError && e.code === code);

test('peer exchange - request flags and lengths are exact', () => {
  assert.deepEqual(decodePeerExchange(Uint8Array.of(0x30, 0)), { type: 'peer-request', relay: false });
  refuses(Uint8Array.of(0x30, 2), 'BAD_FIELD');
  refuses(Uint8Array.of(0x30, 1, 0), 'BAD_LENGTH');
  refuses(Uint8Array.of(0x32, 0), 'BAD_TYPE');
  assert.equal(isPeerExchange(Uint8Array.of(0x31)), true);
  assert.equal(isPeerExchange(Uint8Array.of(0x01)), false);
});

test('peer exchange - lists are capped and their length must match the count', () => {
  const over = new Uint8Array(2 + (MAX_PEER_LIST + 1) * PEER_ENTRY_BYTES);
  over[0] = 0x31;
  over[1] = MAX_PEER_LIST + 1;
  refuses(over, 'TOO_MANY');
  const one = encodePeerExchange({ type: 'peer-list', peers: [{ address: { host: '10.1.2.3', port: 7 }, publicKey: new Uint8Array(32) }] });
  refuses(one.subarray(0, one.length - 1), 'BAD_LENGTH');
  const padded = new Uint8Array(one.length + 1);
  padded.set(one);
  refuses(padded, 'BAD_LENGTH');
  const tooMany = Array.from({ length: MAX_PEER_LIST + 1 }, () => ({ address: { host: '10.1.2.3', port: 7 }, publicKey: new Uint8Array(32) }));
  assert.throws(() => encodePeerExchange({ type: 'peer-list', peers: tooMany }), { code: 'TOO_MANY' });
});

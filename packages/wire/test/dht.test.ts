/**
 * Tests of the DHT datagram and body codecs (PROTOCOL.md §11): layouts, the size limits,
 * every rejection with its code, and properties over the DHT structure (the generic
 * properties of every codec run in codecs.test.ts, the vectors in vectors.test.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  DHT_CONTACT_BYTES,
  DHT_HEADER_BYTES,
  DHT_ID_BYTES,
  DHT_MAX_CONTACTS,
  DHT_MAX_DATAGRAM_BYTES,
  DHT_MAX_REQUEST_BODY_BYTES,
  DHT_MAX_RESPONSE_BODY_BYTES,
  DHT_MAX_TTL_SECONDS,
  DHT_MAX_VALUES,
  DHT_MAX_VALUE_BYTES,
  DHT_PADDED_REQUEST_BYTES,
  DHT_REQUEST_OVERHEAD_BYTES,
  DHT_RESPONSE_OVERHEAD_BYTES,
  DHT_RPC_ID_BYTES,
  DHT_STORE_RESULTS,
  DHT_VERSION,
  PROTOCOL_VERSION,
  decodeDhtDatagram,
  decodeDhtRequestBody,
  decodeDhtResponseBody,
  dhtPrologue,
  encodeDhtDatagram,
  encodeDhtRequestBody,
  encodeDhtResponseBody,
  encodeEnvelope,
  isDhtDatagram,
} from '../src/index.js';
import type { DhtContactEntry, DhtDatagram, DhtKind, DhtRequestBody, DhtResponseBody } from '../src/index.js';
import {
  assertProtocolError,
  dhtDatagramArb,
  dhtRequestBodyArb,
  dhtResponseBodyArb,
  fromHex,
  minDhtMessageBytes,
  onlyProtocolErrors,
  pattern,
  toHex,
} from './helpers.js';

const RPC_ID = pattern(DHT_RPC_ID_BYTES, 0xa0);
const KEY = pattern(DHT_ID_BYTES, 0x30);
const PK = pattern(32, 0x40);
/** 192.0.2.7:7000 as 19 bytes. */
const ADDR_HEX = '04' + '00000000000000000000ffffc0000207' + '1b58';
/** A STORE of `value` for an hour at timestamp 0x0000_018b_cfe5_6800 (1_700_000_000_000 ms). */
const storeHex = (valueHex: string, lengthHex = (valueHex.length / 2).toString(16).padStart(4, '0')): string =>
  '04' + toHex(KEY) + '0000018bcfe56800' + '00000e10' + lengthHex + valueHex;

/** Bytes with the byte at `at` set to `value`. */
function withByte(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out[at] = value;
  return out;
}

/** Bytes followed by one more byte. */
function extended(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The values body with `count` values of `length` bytes each. */
function valuesBody(count: number, length: number): DhtResponseBody {
  return { type: 'values', values: Array.from({ length: count }, (_, i) => ({ value: pattern(length, i), ttlSeconds: 60 + i })) };
}

/** `count` contacts alternating between IPv4 and IPv6 addresses. */
function contacts(count: number): DhtContactEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    publicKey: pattern(32, i * 7),
    address: i % 2 === 0 ? { host: `198.51.100.${i + 1}`, port: 1000 + i } : { host: `2001:db8::${(i + 1).toString(16)}`, port: 65535 - i },
  }));
}

/** A datagram of `kind` whose message is `length` bytes. */
function datagramOf(kind: DhtKind, length: number): DhtDatagram {
  return { kind, rpcId: RPC_ID, message: pattern(length, 0x11) };
}

test('dht - constants are the sizes of their parts', () => {
  assert.equal(DHT_HEADER_BYTES, 10);
  assert.equal(DHT_CONTACT_BYTES, 51);
  assert.equal(DHT_REQUEST_OVERHEAD_BYTES, 96);
  assert.equal(DHT_RESPONSE_OVERHEAD_BYTES, 48);
  assert.equal(DHT_MAX_REQUEST_BODY_BYTES, 1047);
  assert.equal(DHT_MAX_RESPONSE_BODY_BYTES, 8050);
  assert.equal(DHT_MAX_DATAGRAM_BYTES, 8108);
  assert.notEqual(DHT_VERSION, PROTOCOL_VERSION, 'a DHT datagram and an envelope differ in their first byte');
  assert.ok(2 + DHT_MAX_CONTACTS * DHT_CONTACT_BYTES <= DHT_MAX_RESPONSE_BODY_BYTES, 'the largest NODES fits a response');
  assert.ok(DHT_MAX_CONTACTS <= 255 && DHT_MAX_VALUES <= 255, 'counts are u8');
  assert.ok(DHT_MAX_VALUE_BYTES <= 0xffff, 'value lengths are u16');
  assert.deepEqual(DHT_STORE_RESULTS, ['stored', 'too-large', 'ttl', 'full', 'quota', 'stale', 'skew', 'rate-limited']);
});

test('dht - request body layouts', () => {
  assert.equal(toHex(encodeDhtRequestBody({ type: 'ping' })), '01');
  assert.equal(toHex(encodeDhtRequestBody({ type: 'find-node', target: KEY })), '02' + toHex(KEY));
  assert.equal(toHex(encodeDhtRequestBody({ type: 'find-value', key: KEY })), '03' + toHex(KEY));
  const store = encodeDhtRequestBody({ type: 'store', key: KEY, timestampMs: 1_700_000_000_000, ttlSeconds: 3600, value: Uint8Array.of(0xde, 0xad) });
  assert.equal(toHex(store), storeHex('dead'));
  const maxTimestamp = encodeDhtRequestBody({ type: 'store', key: KEY, timestampMs: Number.MAX_SAFE_INTEGER, ttlSeconds: 1, value: new Uint8Array(0) });
  assert.equal(toHex(maxTimestamp), '04' + toHex(KEY) + '001fffffffffffff' + '00000001' + '0000');
});

test('dht - response body layouts', () => {
  assert.equal(toHex(encodeDhtResponseBody({ type: 'pong' })), '81');
  const nodes = encodeDhtResponseBody({ type: 'nodes', contacts: [{ publicKey: PK, address: { host: '192.0.2.7', port: 7000 } }] });
  assert.equal(toHex(nodes), '82' + '01' + toHex(PK) + ADDR_HEX);
  assert.equal(toHex(encodeDhtResponseBody({ type: 'nodes', contacts: [] })), '8200');
  const values = encodeDhtResponseBody({
    type: 'values',
    values: [
      { value: Uint8Array.of(0xbe, 0xef), ttlSeconds: DHT_MAX_TTL_SECONDS },
      { value: new Uint8Array(0), ttlSeconds: 1 },
    ],
  });
  assert.equal(toHex(values), '83' + '02' + '00015180' + '0002' + 'beef' + '00000001' + '0000');
  DHT_STORE_RESULTS.forEach((result, code) => {
    assert.equal(toHex(encodeDhtResponseBody({ type: 'stored', result })), '84' + code.toString(16).padStart(2, '0'));
  });
});

test('dht - datagram layout, classification and prologue', () => {
  const message = pattern(DHT_REQUEST_OVERHEAD_BYTES + 1, 0x11);
  const bytes = encodeDhtDatagram({ kind: 'request', rpcId: RPC_ID, message });
  assert.equal(toHex(bytes), 'd1' + '01' + toHex(RPC_ID) + toHex(message));
  assert.equal(encodeDhtDatagram(datagramOf('response', DHT_RESPONSE_OVERHEAD_BYTES + 1))[1], 0x02);
  assert.equal(isDhtDatagram(bytes), true);
  assert.equal(isDhtDatagram(new Uint8Array(0)), false);
  const envelope = encodeEnvelope({ kind: 'request', messageId: pattern(16), replyTo: [], payload: new Uint8Array(0) });
  assert.equal(isDhtDatagram(envelope), false);
  // 'deut/1 dht' in UTF-8 ‖ DHT_VERSION ‖ rpc id
  assert.equal(toHex(dhtPrologue(RPC_ID)), '646575742f3120646874' + 'd1' + toHex(RPC_ID));
  assert.notEqual(toHex(dhtPrologue(RPC_ID)), toHex(dhtPrologue(pattern(DHT_RPC_ID_BYTES, 0xa1))));
});

test('dht - every body type and both datagram kinds round-trip', () => {
  const requests: DhtRequestBody[] = [
    { type: 'ping' },
    { type: 'find-node', target: KEY },
    { type: 'find-value', key: pattern(DHT_ID_BYTES, 0x90) },
    { type: 'store', key: KEY, timestampMs: 0, ttlSeconds: DHT_MAX_TTL_SECONDS, value: new Uint8Array(0) },
    { type: 'store', key: KEY, timestampMs: Number.MAX_SAFE_INTEGER, ttlSeconds: 1, value: pattern(DHT_MAX_VALUE_BYTES) },
  ];
  for (const body of requests) assert.deepStrictEqual(decodeDhtRequestBody(encodeDhtRequestBody(body)), body);
  const responses: DhtResponseBody[] = [
    { type: 'pong' },
    { type: 'nodes', contacts: [] },
    { type: 'nodes', contacts: contacts(3) },
    valuesBody(1, 0),
    valuesBody(3, 17),
    ...DHT_STORE_RESULTS.map((result): DhtResponseBody => ({ type: 'stored', result })),
  ];
  for (const body of responses) assert.deepStrictEqual(decodeDhtResponseBody(encodeDhtResponseBody(body)), body);
  for (const datagram of [datagramOf('request', minDhtMessageBytes('request')), datagramOf('response', minDhtMessageBytes('response'))]) {
    const decoded = decodeDhtDatagram(encodeDhtDatagram(datagram));
    assert.deepStrictEqual(decoded, datagram);
  }
});

test('dht - decoded byte fields are views of the input', () => {
  const bytes = encodeDhtDatagram(datagramOf('request', 200));
  const decoded = decodeDhtDatagram(bytes);
  assert.equal(decoded.message.buffer, bytes.buffer);
  assert.equal(decoded.rpcId.byteOffset, bytes.byteOffset + 2);
  const store = decodeDhtRequestBody(fromHex(storeHex('dead')));
  assert.ok(store.type === 'store');
  assert.equal(store.value.byteOffset, 47);
});

test('dht - the largest bodies and datagrams are exactly the maxima', () => {
  const store = encodeDhtRequestBody({ type: 'store', key: KEY, timestampMs: 1, ttlSeconds: 1, value: pattern(DHT_MAX_VALUE_BYTES) });
  assert.equal(store.length, DHT_MAX_REQUEST_BODY_BYTES);
  const values = valuesBody(DHT_MAX_VALUES, DHT_MAX_VALUE_BYTES);
  const valuesBytes = encodeDhtResponseBody(values);
  assert.equal(valuesBytes.length, DHT_MAX_RESPONSE_BODY_BYTES);
  assert.deepStrictEqual(decodeDhtResponseBody(valuesBytes), values);
  const nodes: DhtResponseBody = { type: 'nodes', contacts: contacts(DHT_MAX_CONTACTS) };
  const nodesBytes = encodeDhtResponseBody(nodes);
  assert.equal(nodesBytes.length, 2 + DHT_MAX_CONTACTS * DHT_CONTACT_BYTES);
  assert.deepStrictEqual(decodeDhtResponseBody(nodesBytes), nodes);

  // The largest datagram is a response carrying the largest VALUES.
  const largest = datagramOf('response', DHT_RESPONSE_OVERHEAD_BYTES + DHT_MAX_RESPONSE_BODY_BYTES);
  const largestBytes = encodeDhtDatagram(largest);
  assert.equal(largestBytes.length, DHT_MAX_DATAGRAM_BYTES);
  assert.deepStrictEqual(decodeDhtDatagram(largestBytes), largest);
  const fullest = encodeDhtDatagram(datagramOf('request', DHT_REQUEST_OVERHEAD_BYTES + DHT_MAX_REQUEST_BODY_BYTES));
  assert.ok(fullest.length <= DHT_PADDED_REQUEST_BYTES, 'the largest unpadded request fits a padded one');
  // The largest request is a padded one (PROTOCOL.md §11.2); one byte more is refused before anyone opens it.
  const largestRequest = encodeDhtDatagram(datagramOf('request', DHT_PADDED_REQUEST_BYTES - DHT_HEADER_BYTES));
  assert.equal(largestRequest.length, DHT_PADDED_REQUEST_BYTES);
  assert.ok(largestRequest.length <= DHT_MAX_DATAGRAM_BYTES);
  const overRequest = datagramOf('request', DHT_PADDED_REQUEST_BYTES - DHT_HEADER_BYTES + 1);
  assertProtocolError(() => encodeDhtDatagram(overRequest), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtDatagram(extended(largestRequest)), 'BAD_LENGTH');

  // One byte more is refused by both sides, for either kind.
  for (const kind of ['request', 'response'] as const) {
    const over = datagramOf(kind, DHT_MAX_DATAGRAM_BYTES - DHT_HEADER_BYTES + 1);
    assertProtocolError(() => encodeDhtDatagram(over), 'BAD_LENGTH');
    const overBytes = extended(withByte(largestBytes, 1, kind === 'request' ? 0x01 : 0x02));
    assertProtocolError(() => decodeDhtDatagram(overBytes), 'BAD_LENGTH');
  }
});

test('dht - datagrams: short, over-long, bad version and unknown kinds are refused', () => {
  const good = encodeDhtDatagram(datagramOf('request', minDhtMessageBytes('request')));
  assertProtocolError(() => decodeDhtDatagram(new Uint8Array(0)), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtDatagram(good.subarray(0, DHT_HEADER_BYTES - 1)), 'BAD_LENGTH');
  for (const version of [0x00, PROTOCOL_VERSION, 0xd0, 0xd2, 0xff]) assertProtocolError(() => decodeDhtDatagram(withByte(good, 0, version)), 'BAD_VERSION');
  for (const kind of [0x00, 0x03, 0x81, 0xff]) assertProtocolError(() => decodeDhtDatagram(withByte(good, 1, kind)), 'BAD_TYPE');
});

test('dht - datagrams: a message shorter than its overhead and a type byte is refused', () => {
  for (const kind of ['request', 'response'] as const) {
    const min = minDhtMessageBytes(kind);
    assert.equal(decodeDhtDatagram(encodeDhtDatagram(datagramOf(kind, min))).message.length, min);
    assertProtocolError(() => encodeDhtDatagram(datagramOf(kind, min - 1)), 'BAD_LENGTH');
    const short = encodeDhtDatagram(datagramOf(kind, min)).subarray(0, DHT_HEADER_BYTES + min - 1);
    assertProtocolError(() => decodeDhtDatagram(short), 'BAD_LENGTH');
    assertProtocolError(() => decodeDhtDatagram(short.subarray(0, DHT_HEADER_BYTES)), 'BAD_LENGTH');
  }
  // A response's minimum is below a request's: the kind byte decides which applies.
  const response = encodeDhtDatagram(datagramOf('response', minDhtMessageBytes('response')));
  assertProtocolError(() => decodeDhtDatagram(withByte(response, 1, 0x01)), 'BAD_LENGTH');
});

test('dht - datagrams: encoding refuses bad kinds, rpc ids and messages', () => {
  const good = datagramOf('request', minDhtMessageBytes('request'));
  assertProtocolError(() => encodeDhtDatagram({ ...good, kind: 'other' as DhtKind }), 'BAD_TYPE');
  assertProtocolError(() => encodeDhtDatagram({ ...good, kind: 'toString' as DhtKind }), 'BAD_TYPE');
  assertProtocolError(() => encodeDhtDatagram({ ...good, rpcId: new Uint8Array(DHT_RPC_ID_BYTES - 1) }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtDatagram({ ...good, rpcId: new Uint8Array(DHT_RPC_ID_BYTES + 1) }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtDatagram({ ...good, message: [1, 2, 3] as unknown as Uint8Array }), 'BAD_FIELD');
  assertProtocolError(() => dhtPrologue(new Uint8Array(DHT_RPC_ID_BYTES - 1)), 'BAD_FIELD');
});

test('dht - request bodies: empty, unknown types and wrong lengths are refused', () => {
  assertProtocolError(() => decodeDhtRequestBody(new Uint8Array(0)), 'BAD_LENGTH');
  for (const type of [0x00, 0x05, 0x7f, 0x81, 0x84, 0xff]) assertProtocolError(() => decodeDhtRequestBody(Uint8Array.of(type)), 'BAD_TYPE');
  assertProtocolError(() => decodeDhtRequestBody(Uint8Array.of(0x01, 0x01)), 'BAD_PADDING');
  for (const type of ['02', '03']) {
    assertProtocolError(() => decodeDhtRequestBody(fromHex(type + toHex(KEY).slice(2))), 'BAD_LENGTH');
    assertProtocolError(() => decodeDhtRequestBody(fromHex(type + toHex(KEY) + '01')), 'BAD_PADDING');
    assert.equal(decodeDhtRequestBody(fromHex(type + toHex(KEY) + '0000')).padding, 2, 'zero bytes after the body are padding');
    assertProtocolError(() => decodeDhtRequestBody(fromHex(type)), 'BAD_LENGTH');
  }
});

test('dht - request bodies: STORE lengths must add up and numbers must be in range', () => {
  assert.deepStrictEqual(decodeDhtRequestBody(fromHex(storeHex('dead'))), {
    type: 'store',
    key: KEY,
    timestampMs: 1_700_000_000_000,
    ttlSeconds: 3600,
    value: Uint8Array.of(0xde, 0xad),
  });
  const good = fromHex(storeHex('dead'));
  assertProtocolError(() => decodeDhtRequestBody(good.subarray(0, 46)), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtRequestBody(good.subarray(0, 48)), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtRequestBody(withByte(extended(good), good.length, 0x01)), 'BAD_PADDING');
  assert.deepStrictEqual(decodeDhtRequestBody(extended(good)), { ...decodeDhtRequestBody(good), padding: 1 });
  assertProtocolError(() => decodeDhtRequestBody(fromHex(storeHex('00'.repeat(1001)))), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtRequestBody(fromHex(storeHex('', '03e9'))), 'BAD_LENGTH');
  assert.equal(decodeDhtRequestBody(fromHex(storeHex('00'.repeat(1000)))).type, 'store');

  const at = (offset: number, hex: string): Uint8Array => {
    const out = new Uint8Array(good);
    out.set(fromHex(hex), offset);
    return out;
  };
  // timestamp at 33..41: 2^53 and 2^64−1 are out of range, 2^53−1 is not
  assertProtocolError(() => decodeDhtRequestBody(at(33, '0020000000000000')), 'BAD_FIELD');
  assertProtocolError(() => decodeDhtRequestBody(at(33, 'ffffffffffffffff')), 'BAD_FIELD');
  assert.ok(decodeDhtRequestBody(at(33, '001fffffffffffff')).type === 'store');
  // ttl at 41..45: 0 and a day and a second are out of range
  assertProtocolError(() => decodeDhtRequestBody(at(41, '00000000')), 'BAD_FIELD');
  assertProtocolError(() => decodeDhtRequestBody(at(41, '00015181')), 'BAD_FIELD');
  assertProtocolError(() => decodeDhtRequestBody(at(41, 'ffffffff')), 'BAD_FIELD');
  assert.ok(decodeDhtRequestBody(at(41, '00015180')).type === 'store');
});

test('dht - request bodies: encoding refuses what decoding would', () => {
  const store = { type: 'store' as const, key: KEY, timestampMs: 0, ttlSeconds: 60, value: new Uint8Array(0) };
  assertProtocolError(() => encodeDhtRequestBody({ type: 'find-node', target: new Uint8Array(31) }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtRequestBody({ type: 'find-value', key: new Uint8Array(33) }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtRequestBody({ ...store, key: new Uint8Array(31) }), 'BAD_FIELD');
  for (const timestampMs of [-1, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
    assertProtocolError(() => encodeDhtRequestBody({ ...store, timestampMs }), 'BAD_FIELD');
  }
  for (const ttlSeconds of [0, -1, 1.5, DHT_MAX_TTL_SECONDS + 1]) assertProtocolError(() => encodeDhtRequestBody({ ...store, ttlSeconds }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtRequestBody({ ...store, value: new Uint8Array(DHT_MAX_VALUE_BYTES + 1) }), 'BAD_LENGTH');
  assertProtocolError(() => encodeDhtRequestBody({ ...store, value: 'value' as unknown as Uint8Array }), 'BAD_FIELD');
});

test('dht - response bodies: empty, unknown types and wrong lengths are refused', () => {
  assertProtocolError(() => decodeDhtResponseBody(new Uint8Array(0)), 'BAD_LENGTH');
  for (const type of [0x00, 0x01, 0x04, 0x80, 0x85, 0xff]) assertProtocolError(() => decodeDhtResponseBody(Uint8Array.of(type, 0)), 'BAD_TYPE');
  assertProtocolError(() => decodeDhtResponseBody(Uint8Array.of(0x81, 0x00)), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(Uint8Array.of(0x84)), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(Uint8Array.of(0x84, 0x00, 0x00)), 'BAD_LENGTH');
  assert.deepStrictEqual(decodeDhtResponseBody(Uint8Array.of(0x84, 7)), { type: 'stored', result: 'rate-limited' });
  for (const code of [8, 0x80, 0xff]) assertProtocolError(() => decodeDhtResponseBody(Uint8Array.of(0x84, code)), 'BAD_FIELD');
});

test('dht - response bodies: NODES counts are capped, lengths must add up and addresses must be valid', () => {
  const contact = toHex(PK) + ADDR_HEX;
  assert.equal(decodeDhtResponseBody(fromHex('8201' + contact)).type, 'nodes');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('82')), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8215' + contact.repeat(21))), 'TOO_MANY');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('82ff')), 'TOO_MANY');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8202' + contact)), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8201' + contact + '00')), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8200' + '00')), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8201' + contact.slice(0, -2))), 'BAD_LENGTH');
  // family 7; family 6 with an IPv4-mapped IP; port 0
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8201' + toHex(PK) + '07' + ADDR_HEX.slice(2))), 'BAD_ADDRESS');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8201' + toHex(PK) + '06' + ADDR_HEX.slice(2))), 'BAD_ADDRESS');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8201' + toHex(PK) + ADDR_HEX.slice(0, -4) + '0000')), 'BAD_ADDRESS');
});

test('dht - response bodies: VALUES counts are 1..8, lengths must add up and TTLs must be in range', () => {
  const entry = '00000e10' + '0002' + 'beef';
  assert.equal(decodeDhtResponseBody(fromHex('8301' + entry)).type, 'values');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('83')), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8300')), 'BAD_FIELD');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8309' + entry.repeat(9))), 'TOO_MANY');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('83ff')), 'TOO_MANY');
  // one value short, a value cut short, a header cut short, trailing bytes
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8302' + entry)), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8301' + entry.slice(0, -2))), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8302' + entry + '00000e10' + '00')), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8301' + entry + '00')), 'BAD_LENGTH');
  // a length over DHT_MAX_VALUE_BYTES, even with the bytes present
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8301' + '00000e10' + '03e9' + '00'.repeat(1001))), 'BAD_LENGTH');
  assertProtocolError(() => decodeDhtResponseBody(fromHex('8301' + '00000e10' + 'ffff')), 'BAD_LENGTH');
  // ttl 0, a day and a second, 2^32−1
  for (const ttl of ['00000000', '00015181', 'ffffffff']) {
    assertProtocolError(() => decodeDhtResponseBody(fromHex('8301' + ttl + '0002beef')), 'BAD_FIELD');
  }
});

test('dht - response bodies: encoding refuses what decoding would', () => {
  const contact = { publicKey: PK, address: { host: '192.0.2.7', port: 7000 } };
  assertProtocolError(() => encodeDhtResponseBody({ type: 'nodes', contacts: contacts(DHT_MAX_CONTACTS + 1) }), 'TOO_MANY');
  assertProtocolError(() => encodeDhtResponseBody({ type: 'nodes', contacts: [{ ...contact, publicKey: new Uint8Array(31) }] }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtResponseBody({ type: 'nodes', contacts: [{ ...contact, address: { host: 'example.com', port: 1 } }] }), 'BAD_ADDRESS');
  assertProtocolError(() => encodeDhtResponseBody({ type: 'nodes', contacts: [{ ...contact, address: { host: '::1', port: 0 } }] }), 'BAD_ADDRESS');
  assertProtocolError(() => encodeDhtResponseBody({ type: 'values', values: [] }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtResponseBody(valuesBody(DHT_MAX_VALUES + 1, 1)), 'TOO_MANY');
  for (const ttlSeconds of [0, 1.5, DHT_MAX_TTL_SECONDS + 1]) {
    assertProtocolError(() => encodeDhtResponseBody({ type: 'values', values: [{ value: new Uint8Array(1), ttlSeconds }] }), 'BAD_FIELD');
  }
  assertProtocolError(() => encodeDhtResponseBody({ type: 'values', values: [{ value: new Uint8Array(DHT_MAX_VALUE_BYTES + 1), ttlSeconds: 1 }] }), 'BAD_LENGTH');
  assertProtocolError(() => encodeDhtResponseBody({ type: 'values', values: [{ value: null as unknown as Uint8Array, ttlSeconds: 1 }] }), 'BAD_FIELD');
  assertProtocolError(() => encodeDhtResponseBody({ type: 'stored', result: 'lost' as 'stored' }), 'BAD_FIELD');
});

test('dht - every valid body fits a datagram of its kind', () => {
  const fits = (kind: DhtKind, overhead: number, body: Uint8Array): void => {
    const bytes = encodeDhtDatagram({ kind, rpcId: RPC_ID, message: new Uint8Array(overhead + body.length) });
    assert.ok(bytes.length <= DHT_MAX_DATAGRAM_BYTES);
  };
  fc.assert(
    fc.property(dhtRequestBodyArb, dhtResponseBodyArb, (request, response) => {
      fits('request', DHT_REQUEST_OVERHEAD_BYTES, encodeDhtRequestBody(request));
      fits('response', DHT_RESPONSE_OVERHEAD_BYTES, encodeDhtResponseBody(response));
    }),
    { numRuns: 300 },
  );
});

test('dht - bodies and datagrams round-trip for arbitrary valid values', () => {
  fc.assert(
    fc.property(dhtRequestBodyArb, dhtResponseBodyArb, dhtDatagramArb, (request, response, datagram) => {
      assert.deepStrictEqual(decodeDhtRequestBody(encodeDhtRequestBody(request)), request);
      assert.deepStrictEqual(decodeDhtResponseBody(encodeDhtResponseBody(response)), response);
      assert.deepStrictEqual(decodeDhtDatagram(encodeDhtDatagram(datagram)), datagram);
    }),
    { numRuns: 300 },
  );
});

/** Decodes `bytes` with `decode`; on success, checks that `encode` gives `bytes` back. */
function decodesCanonically<T>(decode: (bytes: Uint8Array) => T, encode: (value: T) => Uint8Array, bytes: Uint8Array): void {
  onlyProtocolErrors(() => assert.equal(toHex(encode(decode(bytes))), toHex(bytes)));
}

/** Checks all three decoders against `bytes`. */
function decodersHold(bytes: Uint8Array): void {
  decodesCanonically(decodeDhtRequestBody, encodeDhtRequestBody, bytes);
  decodesCanonically(decodeDhtResponseBody, encodeDhtResponseBody, bytes);
  decodesCanonically(decodeDhtDatagram, encodeDhtDatagram, bytes);
}

/** Type bytes of every body and the datagram version: arbitrary bytes that get past the first check. */
const FIRST_BYTES = [0x01, 0x02, 0x03, 0x04, 0x81, 0x82, 0x83, 0x84, DHT_VERSION];

test('dht - arbitrary bytes behind a known first byte decode canonically or throw ProtocolError only', () => {
  const smallCount = fc.integer({ min: 0, max: 10 });
  fc.assert(
    fc.property(fc.constantFrom(...FIRST_BYTES), smallCount, fc.uint8Array({ maxLength: 1200 }), (first, second, tail) => {
      const bytes = new Uint8Array(2 + tail.length);
      bytes[0] = first;
      bytes[1] = second;
      bytes.set(tail, 2);
      decodersHold(bytes);
      decodersHold(bytes.subarray(0, 1));
    }),
    { numRuns: 3000 },
  );
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), decodersHold), { numRuns: 1000 });
});

/** Byte values likeliest to cross a limit when written into a count, length or TTL. */
const EDGE_BYTES = [0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x14, 0x15, 0x51, 0x80, 0xe8, 0xe9, 0xfe, 0xff];

test('dht - valid encodings mutated anywhere decode canonically or throw ProtocolError only', () => {
  const encodedArb = fc.oneof(
    dhtRequestBodyArb.map(encodeDhtRequestBody),
    dhtResponseBodyArb.map(encodeDhtResponseBody),
    dhtDatagramArb.map(encodeDhtDatagram),
  );
  const editArb = fc.record({ at: fc.nat(), value: fc.oneof(fc.constantFrom(...EDGE_BYTES), fc.integer({ min: 0, max: 255 })) });
  fc.assert(
    fc.property(encodedArb, fc.array(editArb, { minLength: 1, maxLength: 3 }), fc.nat(), (encoded, edits, cut) => {
      const bytes = new Uint8Array(encoded);
      for (const { at, value } of edits) bytes[at % bytes.length] = value;
      decodersHold(bytes);
      decodersHold(bytes.subarray(0, cut % (bytes.length + 1)));
      decodersHold(extended(bytes));
    }),
    { numRuns: 3000 },
  );
});

test('dht - the vectors file holds every body type and both datagram kinds', () => {
  const file = new URL('test/vectors/wire.json', new URL('../../../../', import.meta.url));
  const { vectors } = JSON.parse(readFileSync(file, 'utf8')) as { vectors: { type: string; value: Record<string, unknown> }[] };
  const field = (type: string, key: string): unknown[] => vectors.filter((v) => v.type === type).map((v) => v.value[key]);
  for (const type of ['ping', 'find-node', 'find-value', 'store']) assert.ok(field('dht-request-body', 'type').includes(type), type);
  for (const type of ['pong', 'nodes', 'values', 'stored']) assert.ok(field('dht-response-body', 'type').includes(type), type);
  for (const kind of ['request', 'response']) assert.ok(field('dht-datagram', 'kind').includes(kind), kind);
});

/**
 * Byte-for-byte vectors for every wire format (test/vectors/wire.json): each entry's value
 * must encode to its hex, and its hex must decode to the value. The file is generated from
 * `VECTOR_VALUES` below by running this test with DEUT_WRITE_VECTORS=1, then checked in;
 * afterwards any change to a layout shows up as a failing vector.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  BUILD_RECORDS_BYTES,
  BUILD_SLOTS_BYTES,
  CELL_BODY_BYTES,
  CELL_FRAME_TYPES,
  ENVELOPE_KINDS,
  MAX_CELL_SEQ,
  RELAYER_FILLER_BYTES,
  TUNNEL_MESSAGE_TYPES,
  tunnelId,
} from '../src/index.js';
import { CODECS, codecNamed, fromHex, pattern, toHex } from './helpers.js';

const VECTORS_FILE = new URL('test/vectors/wire.json', new URL('../../../../', import.meta.url));

/** Fields that hold bytes; in the JSON they are lower-case hex strings. */
const BYTE_FIELDS = new Set(['body', 'records', 'slots', 'ephemeralKey', 'filler', 'staticKey', 'probeId', 'data', 'messageId', 'payload', 'publicKey']);
for (const field of ['target', 'key', 'value', 'rpcId', 'message']) BYTE_FIELDS.add(field); // DHT bodies and datagrams

interface Vector {
  readonly type: string;
  readonly name: string;
  readonly value: unknown;
  readonly hex: string;
}

/** The values the vectors are generated from: every message type, with recognisable bytes. */
const VECTOR_VALUES: readonly Omit<Vector, 'hex'>[] = [
  { type: 'address', name: 'IPv4 127.0.0.1:9', value: { host: '127.0.0.1', port: 9 } },
  { type: 'address', name: 'IPv6 2001:db8::1:0:0:1 port 443', value: { host: '2001:db8::1:0:0:1', port: 443 } },
  { type: 'handshake-payload', name: 'master: version 1, ephemeral identity', value: { minVersion: 1, maxVersion: 1, ephemeralIdentity: true } },
  { type: 'handshake-payload', name: 'relayer: versions 1..2, pinned identity', value: { minVersion: 1, maxVersion: 2, ephemeralIdentity: false } },
  { type: 'link-frame', name: 'keepalive', value: { type: 'keepalive' } },
  { type: 'link-frame', name: 'payload of 6 bytes', value: { type: 'payload', payload: pattern(6, 0x10) } },
  {
    type: 'tunnel-message',
    name: 'CELL_OUT, seq 2^53-1',
    value: { type: 'cell-out', tunnelId: tunnelId(0x01020304), seq: MAX_CELL_SEQ, body: pattern(CELL_BODY_BYTES, 0, 7) },
  },
  {
    type: 'tunnel-message',
    name: 'CELL_IN, seq 0x0000_00ab_cdef_0123',
    value: { type: 'cell-in', tunnelId: tunnelId(0xfedcba98), seq: 0xab_cdef_0123, body: pattern(CELL_BODY_BYTES, 1, 3) },
  },
  { type: 'tunnel-message', name: 'BUILD_REQUEST', value: { type: 'build-request', tunnelId: tunnelId(0x11223344), records: pattern(BUILD_RECORDS_BYTES, 0, 5) } },
  {
    type: 'tunnel-message',
    name: 'BUILD_REQUEST_RELAYER, ttl 2',
    value: {
      type: 'build-request-relayer',
      tunnelId: tunnelId(0x55667788),
      ttl: 2,
      ephemeralKey: pattern(32, 0xe0),
      filler: pattern(RELAYER_FILLER_BYTES, 0x80, 11),
    },
  },
  { type: 'tunnel-message', name: 'BUILD_RESPONSE', value: { type: 'build-response', tunnelId: tunnelId(0x99aabbcc), slots: pattern(BUILD_SLOTS_BYTES, 0, 13) } },
  { type: 'tunnel-message', name: 'DESTROY_OUT, reason 0', value: { type: 'destroy-out', tunnelId: tunnelId(0), reason: 0 } },
  { type: 'tunnel-message', name: 'DESTROY_IN, reason 2', value: { type: 'destroy-in', tunnelId: tunnelId(0xffffffff), reason: 2 } },
  { type: 'build-instructions', name: 'endpoint', value: { role: 'endpoint', timeSeconds: 1_700_000_000, lifetimeSeconds: 600 } },
  {
    type: 'build-instructions',
    name: 'relay to an IPv4 next hop',
    value: {
      role: 'relay',
      timeSeconds: 1_700_000_000,
      lifetimeSeconds: 600,
      next: { address: { host: '198.51.100.20', port: 24_000 }, staticKey: pattern(32, 0x30) },
    },
  },
  {
    type: 'build-instructions',
    name: 'relay to an IPv6 next hop',
    value: {
      role: 'relay',
      timeSeconds: 0xffffffff,
      lifetimeSeconds: 900,
      next: { address: { host: '2001:db8:aa::20', port: 65535 }, staticKey: pattern(32, 0x50) },
    },
  },
  { type: 'build-reply', name: 'accepted by a relay', value: { status: 'accepted', reason: 'none', endpoint: null } },
  {
    type: 'build-reply',
    name: 'accepted by an IPv4 endpoint',
    value: { status: 'accepted', reason: 'none', endpoint: { host: '203.0.113.9', port: 50_000 } },
  },
  {
    type: 'build-reply',
    name: 'accepted by an IPv6 endpoint',
    value: { status: 'accepted', reason: 'none', endpoint: { host: '2001:db8::9', port: 50_001 } },
  },
  { type: 'build-reply', name: 'refused: stale', value: { status: 'refused', reason: 'stale', endpoint: null } },
  { type: 'build-reply', name: 'refused: exit policy', value: { status: 'refused', reason: 'exit-policy', endpoint: null } },
  {
    type: 'cell-frame',
    name: 'DATAGRAM fragment 2 of 3 to 192.0.2.53:53',
    value: { type: 'datagram', datagramId: 0xcafe0001, index: 1, count: 3, address: { host: '192.0.2.53', port: 53 }, data: pattern(12, 0x61) },
  },
  { type: 'cell-frame', name: 'PROBE', value: { type: 'probe', probeId: pattern(8, 0xa0) } },
  { type: 'cell-frame', name: 'PROBE_REPLY', value: { type: 'probe-reply', probeId: pattern(8, 0xa0) } },
  { type: 'cell-frame', name: 'EXIT_REFUSED', value: { type: 'exit-refused', datagramId: 0xcafe0002, reason: 3 } },
  {
    type: 'envelope',
    name: 'request with two reply addresses',
    value: {
      kind: 'request',
      messageId: pattern(16, 0xc0),
      replyTo: [
        { host: '192.0.2.1', port: 7000 },
        { host: '2001:db8::2', port: 7001 },
      ],
      payload: pattern(5, 0x41),
    },
  },
  { type: 'envelope', name: 'response', value: { kind: 'response', messageId: pattern(16, 0xc0), replyTo: [], payload: pattern(3, 0x61) } },
  { type: 'envelope', name: 'one-way, empty payload', value: { kind: 'oneway', messageId: pattern(16, 0xd0), replyTo: [], payload: new Uint8Array(0) } },
  {
    type: 'envelope',
    name: 'request padded by 8',
    value: { kind: 'request', messageId: pattern(16, 0xc0), replyTo: [{ host: '192.0.2.1', port: 7000 }], padding: 8, payload: pattern(5, 0x41) },
  },
  { type: 'envelope', name: 'too-large, pad to 2100', value: { kind: 'too-large', messageId: pattern(16, 0xc0), replyTo: [], payload: Uint8Array.of(0x08, 0x34) } },
  { type: 'peer-exchange', name: 'peer request from a relayer', value: { type: 'peer-request', relay: true } },
  {
    type: 'peer-exchange',
    name: 'peer list of two',
    value: {
      type: 'peer-list',
      peers: [
        { address: { host: '127.0.0.1', port: 9 }, publicKey: pattern(32, 0x20) },
        { address: { host: '2001:db8::1', port: 7000 }, publicKey: pattern(32, 0x40) },
      ],
    },
  },
  { type: 'dht-request-body', name: 'PING', value: { type: 'ping' } },
  { type: 'dht-request-body', name: 'FIND_NODE', value: { type: 'find-node', target: pattern(32, 0x10) } },
  { type: 'dht-request-body', name: 'FIND_VALUE', value: { type: 'find-value', key: pattern(32, 0x20) } },
  { type: 'dht-request-body', name: 'FIND_NODE padded by 12 zero bytes', value: { type: 'find-node', target: pattern(32, 0x10), padding: 12 } },
  {
    type: 'dht-request-body',
    name: 'STORE of 5 bytes for an hour',
    value: { type: 'store', key: pattern(32, 0x30), timestampMs: 1_700_000_000_123, ttlSeconds: 3600, value: pattern(5, 0x61) },
  },
  { type: 'dht-response-body', name: 'PONG', value: { type: 'pong' } },
  {
    type: 'dht-response-body',
    name: 'NODES of two',
    value: {
      type: 'nodes',
      contacts: [
        { publicKey: pattern(32, 0x40), address: { host: '192.0.2.7', port: 7000 } },
        { publicKey: pattern(32, 0x60), address: { host: '2001:db8::7', port: 7001 } },
      ],
    },
  },
  {
    type: 'dht-response-body',
    name: 'VALUES of two',
    value: {
      type: 'values',
      values: [
        { value: pattern(3, 0x41), ttlSeconds: 86_400 },
        { value: new Uint8Array(0), ttlSeconds: 1 },
      ],
    },
  },
  { type: 'dht-response-body', name: 'STORED: quota', value: { type: 'stored', result: 'quota' } },
  { type: 'dht-datagram', name: 'request of the smallest size', value: { kind: 'request', rpcId: pattern(8, 0xa0), message: pattern(97, 0, 3) } },
  { type: 'dht-datagram', name: 'response of the smallest size', value: { kind: 'response', rpcId: pattern(8, 0xa0), message: pattern(49, 0x80, 5) } },
];

/** The value with byte fields as hex, for JSON. */
function toJson(value: unknown): unknown {
  if (value instanceof Uint8Array) return toHex(value);
  if (Array.isArray(value)) return value.map(toJson);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  }
  return value;
}

/** The value with the hex strings of byte fields turned back into bytes. */
function fromJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJson);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, BYTE_FIELDS.has(k) && typeof v === 'string' ? fromHex(v) : fromJson(v)]),
    );
  }
  return value;
}

if (process.env['DEUT_WRITE_VECTORS'] === '1') {
  const vectors = VECTOR_VALUES.map((v) => ({ ...v, value: toJson(v.value), hex: toHex(codecNamed(v.type).encode(v.value)) }));
  const file = {
    description: 'deut wire format vectors, protocol version 1 (docs/PROTOCOL.md §3.3, §3.4, §4.1, §4.3, §4.6, §5.1, §6, §7)',
    notes:
      'Each entry: type names the codec, value is the decoded form with byte fields as lower-case hex, hex is the exact encoding. ' +
      'Generated by packages/wire/test/vectors.test.ts with DEUT_WRITE_VECTORS=1; encode(value) must equal hex and decode(hex) must equal value.',
    vectors,
  };
  writeFileSync(VECTORS_FILE, JSON.stringify(file, null, 2) + '\n');
}

const loaded = JSON.parse(readFileSync(VECTORS_FILE, 'utf8')) as { vectors: Vector[] };

for (const vector of loaded.vectors) {
  test(`wire vectors - ${vector.type}: ${vector.name}`, () => {
    const codec = codecNamed(vector.type);
    const value = fromJson(vector.value);
    assert.equal(toHex(codec.encode(value)), vector.hex);
    assert.deepStrictEqual(codec.decode(fromHex(vector.hex)), value);
  });
}

test('wire vectors - every codec and every message type has a vector', () => {
  const names = (type: string): unknown[] =>
    loaded.vectors.filter((v) => v.type === type).map((v) => (v.value as Record<string, unknown>)['type'] ?? (v.value as Record<string, unknown>)['kind']);
  for (const codec of CODECS) assert.ok(loaded.vectors.some((v) => v.type === codec.name), codec.name);
  for (const type of Object.keys(TUNNEL_MESSAGE_TYPES)) assert.ok(names('tunnel-message').includes(type), type);
  for (const type of Object.keys(CELL_FRAME_TYPES)) assert.ok(names('cell-frame').includes(type), type);
  for (const type of ['keepalive', 'payload']) assert.ok(names('link-frame').includes(type), type);
  for (const kind of Object.keys(ENVELOPE_KINDS)) assert.ok(names('envelope').includes(kind), kind);
});

test('wire vectors - hand-checked fields', () => {
  const hexOf = (type: string, name: string): string => {
    const found = loaded.vectors.find((v) => v.type === type && v.name === name);
    assert.ok(found !== undefined, `${type}: ${name}`);
    return found.hex;
  };
  // family 4 ‖ ::ffff:127.0.0.1 ‖ port 9
  assert.equal(hexOf('address', 'IPv4 127.0.0.1:9'), '04' + '00000000000000000000ffff7f000001' + '0009');
  // minVersion 1 ‖ maxVersion 1 ‖ flags: ephemeral ‖ 29 zeros
  assert.equal(hexOf('handshake-payload', 'master: version 1, ephemeral identity'), '010101' + '00'.repeat(29));
  // CELL_OUT ‖ tunnel id ‖ seq 2^53-1 as u64 BE ‖ body starting 00 07 0e
  assert.ok(hexOf('tunnel-message', 'CELL_OUT, seq 2^53-1').startsWith('01' + '01020304' + '001fffffffffffff' + '00070e'));
  // DESTROY_IN ‖ tunnel id ‖ reason
  assert.equal(hexOf('tunnel-message', 'DESTROY_IN, reason 2'), '21' + 'ffffffff' + '02');
  // len 16 ‖ fixmap 3 {"r": 1, "t": uint32 1700000000, "l": uint16 600} ‖ zeros
  assert.equal(hexOf('build-instructions', 'endpoint'), '10' + '83' + 'a17201' + 'a174ce6553f100' + 'a16ccd0258' + '00'.repeat(95));
  // refused ‖ stale ‖ port 0 ‖ address 0 ‖ zeros
  assert.equal(hexOf('build-reply', 'refused: stale'), '0106' + '00'.repeat(30));
  // version 1 ‖ one-way ‖ message id ‖ no reply addresses ‖ no padding
  assert.equal(hexOf('envelope', 'one-way, empty payload'), '0103' + 'd0d1d2d3d4d5d6d7d8d9dadbdcdddedf' + '00' + '0000');
  // version 1 ‖ too-large ‖ message id ‖ no reply addresses ‖ no padding ‖ size 2100
  assert.equal(hexOf('envelope', 'too-large, pad to 2100'), '0104' + 'c0c1c2c3c4c5c6c7c8c9cacbcccdcecf' + '00' + '0000' + '0834');
});

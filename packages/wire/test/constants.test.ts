/** The size constants against the numbers PROTOCOL.md §10 (and the per-format sections) print. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as wire from '../src/index.js';

test('constants - sizes match PROTOCOL.md', () => {
  const expected: Readonly<Record<string, number>> = {
    PROTOCOL_VERSION: 1,
    DATAGRAM_BYTES: 1200,
    HANDSHAKE_PAYLOAD_BYTES: 32,
    LINK_FRAME_BYTES: 1176,
    MAX_LINK_PAYLOAD: 1173,
    MAX_HOPS: 7,
    MAX_RELAYER_TTL: 6,
    BUILD_RECORD_BYTES: 160,
    BUILD_INSTRUCTIONS_BYTES: 112,
    MAX_INSTRUCTIONS_MSGPACK_BYTES: 111,
    BUILD_SLOT_BYTES: 80,
    BUILD_REPLY_BYTES: 32,
    BUILD_REQUEST_BYTES: 1125,
    BUILD_RESPONSE_BYTES: 565,
    RELAYER_FILLER_BYTES: 1087,
    DESTROY_BYTES: 6,
    CELL_BODY_BYTES: 1160,
    CELL_PLAINTEXT_BYTES: 1048,
    CELL_BYTES: 1173,
    MAX_CELL_SEQ: 2 ** 53 - 1,
    ADDRESS_BYTES: 19,
    MAX_FRAGMENT_DATA: 1020,
    MAX_FRAGMENTS: 65,
    MAX_DATAGRAM_BYTES: 65507,
    MAX_TUNNEL_LIFETIME_S: 900,
    MESSAGE_ID_BYTES: 16,
    MAX_REPLY_TO: 4,
    ENVELOPE_HEADER_BYTES: 21,
    MAX_ENVELOPE_BYTES: 65507,
    MAC1_OFFSET: 1184,
    MAC2_OFFSET: 1168,
    MSG1_NOISE_BYTES: 32,
    MSG2_NOISE_BYTES: 32 + 48 + 48,
    MSG3_NOISE_BYTES: 48 + 48,
    COOKIE_REPLY_NONCE_BYTES: 24,
    COOKIE_REPLY_SEALED_BYTES: 32,
    LINK_COUNTER_BYTES: 8,
    LINK_SAMPLE_END: 24,
  };
  for (const [name, value] of Object.entries(expected)) {
    assert.equal((wire as unknown as Record<string, unknown>)[name], value, name);
  }
});

test('constants - 65 fragments are needed and enough for the largest datagram', () => {
  assert.ok(wire.MAX_FRAGMENTS * wire.MAX_FRAGMENT_DATA >= wire.MAX_DATAGRAM_BYTES);
  assert.ok((wire.MAX_FRAGMENTS - 1) * wire.MAX_FRAGMENT_DATA < wire.MAX_DATAGRAM_BYTES);
  assert.ok(wire.MAX_FRAGMENTS <= 255, 'count is a u8');
});

test('constants - a cell fills a link payload and its plaintext leaves room for 7 tags', () => {
  assert.equal(wire.CELL_BYTES, wire.MAX_LINK_PAYLOAD);
  assert.equal(wire.CELL_PLAINTEXT_BYTES + 7 * wire.TAG_BYTES, wire.CELL_BODY_BYTES);
  assert.equal(wire.LINK_COUNTER_BYTES + wire.LINK_FRAME_BYTES + wire.TAG_BYTES, wire.DATAGRAM_BYTES);
});

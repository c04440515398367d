/**
 * Shared test fixtures: one table of every codec in the package with an arbitrary of its
 * valid values, used by the round-trip, fuzz and vector tests, plus byte helpers.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { ProtocolError } from '@deut/common';
import type { UdpAddress } from '@deut/common';
import {
  ADDRESS_BYTES,
  BUILD_INSTRUCTIONS_BYTES,
  BUILD_RECORDS_BYTES,
  BUILD_REPLY_BYTES,
  BUILD_REPLY_REASONS,
  BUILD_SLOTS_BYTES,
  CELL_BODY_BYTES,
  CELL_PLAINTEXT_BYTES,
  DHT_CONTACT_BYTES,
  DHT_HEADER_BYTES,
  DHT_ID_BYTES,
  DHT_MAX_CONTACTS,
  DHT_MAX_DATAGRAM_BYTES,
  DHT_MAX_TTL_SECONDS,
  DHT_MAX_VALUES,
  DHT_MAX_VALUE_BYTES,
  DHT_REQUEST_OVERHEAD_BYTES,
  DHT_RESPONSE_OVERHEAD_BYTES,
  DHT_RPC_ID_BYTES,
  DHT_STORE_RESULTS,
  ENVELOPE_HEADER_BYTES,
  MAX_ENVELOPE_BYTES,
  TOO_LARGE_ENVELOPE_BYTES,
  HANDSHAKE_PAYLOAD_BYTES,
  LINK_FRAME_BYTES,
  MAX_FRAGMENTS,
  MAX_FRAGMENT_DATA,
  MAX_LINK_PAYLOAD,
  MAX_PEER_LIST,
  MAX_RELAYER_TTL,
  MAX_REPLY_TO,
  MAX_TUNNEL_LIFETIME_S,
  MESSAGE_ID_BYTES,
  PEER_ENTRY_BYTES,
  PROBE_ID_BYTES,
  PUBLIC_KEY_BYTES,
  RELAYER_FILLER_BYTES,
  TUNNEL_MESSAGE_BYTES,
  decodeAddress,
  decodeBuildInstructions,
  decodeBuildReply,
  decodeCellFrame,
  decodeDhtDatagram,
  decodeDhtRequestBody,
  decodeDhtResponseBody,
  decodeEnvelope,
  decodeHandshakePayload,
  decodeLinkFrame,
  decodePeerExchange,
  decodeTunnelMessage,
  encodeAddress,
  encodeBuildInstructions,
  encodeBuildReply,
  encodeCellFrame,
  encodeDhtDatagram,
  encodeDhtRequestBody,
  encodeDhtResponseBody,
  encodeEnvelope,
  encodeHandshakePayload,
  encodeLinkFrame,
  encodePeerExchange,
  encodeTunnelMessage,
  tunnelId,
  type PeerExchangeMessage,
} from '../src/index.js';
import type {
  BuildInstructions,
  BuildRefusalReason,
  BuildReply,
  CellFrame,
  DhtDatagram,
  DhtKind,
  DhtRequestBody,
  DhtResponseBody,
  Envelope,
  HandshakePayload,
  LinkFrame,
  TunnelMessage,
} from '../src/index.js';

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Bytes of an even-length hex string; spaces are ignored so vectors can be grouped. */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, '');
  assert.match(clean, /^([0-9a-f]{2})*$/);
  return new Uint8Array(Buffer.from(clean, 'hex'));
}

/** A deterministic, recognisable byte pattern for vectors: `start, start+step, ...` mod 256. */
export function pattern(length: number, start = 0, step = 1): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (start + i * step) & 0xff;
  return out;
}

/** Asserts that `fn` throws a ProtocolError, with `code` when given. */
export function assertProtocolError(fn: () => unknown, code?: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected ProtocolError, got ${String(error)}`);
    if (code !== undefined) assert.equal(error.code, code, error.message);
    return true;
  });
}

/** Runs `fn` and fails the test if it throws anything but a ProtocolError. */
export function onlyProtocolErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
  }
}

/** Exactly `n` arbitrary bytes. */
export function bytesArb(n: number): fc.Arbitrary<Uint8Array> {
  return fc.uint8Array({ minLength: n, maxLength: n });
}

/** fc.record with ordinary objects, as decoders return (deepStrictEqual compares prototypes). */
function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true });
}

const u16 = fc.integer({ min: 0, max: 0xffff });

/** 16 IP bytes that are not IPv4-mapped, with runs of zero groups to exercise `::`. */
export const ipv6BytesArb: fc.Arbitrary<Uint8Array> = fc
  .array(fc.oneof(fc.constant(0), fc.constant(0), u16), { minLength: 8, maxLength: 8 })
  .map((groups) => {
    const out = new Uint8Array(16);
    groups.forEach((g, i) => {
      out[2 * i] = g >>> 8;
      out[2 * i + 1] = g & 0xff;
    });
    return out;
  })
  .filter((b) => !(b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff));

/** The WHATWG URL serializer: an independent oracle for the RFC 5952 text of an IPv6 address. */
export function urlIpv6Text(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** Canonical host texts of both families. */
export const hostArb: fc.Arbitrary<string> = fc.oneof(fc.ipV4(), ipv6BytesArb.map(urlIpv6Text));

/** Valid UDP addresses with canonical hosts. */
export const addressArb: fc.Arbitrary<UdpAddress> = record({ host: hostArb, port: fc.integer({ min: 1, max: 65535 }) });

const tunnelIdArb = fc.integer({ min: 0, max: 0xffffffff }).map(tunnelId);
const u8 = fc.integer({ min: 0, max: 255 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

/** Valid handshake payloads. */
export const handshakeArb: fc.Arbitrary<HandshakePayload> = fc
  .tuple(fc.integer({ min: 1, max: 255 }), fc.integer({ min: 0, max: 254 }), fc.boolean())
  .map(([minVersion, extra, ephemeralIdentity]) => ({
    minVersion,
    maxVersion: Math.min(255, minVersion + extra),
    ephemeralIdentity,
  }));

/** Valid link frames, with empty, arbitrary and full payloads. */
export const linkFrameArb: fc.Arbitrary<LinkFrame> = fc.oneof(
  fc.constant<LinkFrame>({ type: 'keepalive' }),
  fc.uint8Array({ maxLength: MAX_LINK_PAYLOAD }).map<LinkFrame>((payload) => ({ type: 'payload', payload })),
  bytesArb(MAX_LINK_PAYLOAD).map<LinkFrame>((payload) => ({ type: 'payload', payload })),
);

/** Valid tunnel messages of every type, seq over the whole 0..2^53−1 range. */
export const tunnelMessageArb: fc.Arbitrary<TunnelMessage> = fc.oneof(
  record({
    type: fc.constantFrom('cell-out' as const, 'cell-in' as const),
    tunnelId: tunnelIdArb,
    seq: fc.maxSafeNat(),
    body: bytesArb(CELL_BODY_BYTES),
  }).map((m): TunnelMessage => m),
  record({ type: fc.constant('build-request' as const), tunnelId: tunnelIdArb, records: bytesArb(BUILD_RECORDS_BYTES) }),
  record({
    type: fc.constant('build-request-relayer' as const),
    tunnelId: tunnelIdArb,
    ttl: fc.integer({ min: 0, max: MAX_RELAYER_TTL }),
    ephemeralKey: bytesArb(PUBLIC_KEY_BYTES),
    filler: bytesArb(RELAYER_FILLER_BYTES),
  }),
  record({ type: fc.constant('build-response' as const), tunnelId: tunnelIdArb, slots: bytesArb(BUILD_SLOTS_BYTES) }),
  record({ type: fc.constantFrom('destroy-out' as const, 'destroy-in' as const), tunnelId: tunnelIdArb, reason: u8 }).map((m): TunnelMessage => m),
);

/** Valid instructions for relays and endpoints. */
export const buildInstructionsArb: fc.Arbitrary<BuildInstructions> = fc.oneof(
  record({
    role: fc.constant('endpoint' as const),
    timeSeconds: u32,
    lifetimeSeconds: fc.integer({ min: 1, max: MAX_TUNNEL_LIFETIME_S }),
  }),
  record({
    role: fc.constant('relay' as const),
    timeSeconds: u32,
    lifetimeSeconds: fc.integer({ min: 1, max: MAX_TUNNEL_LIFETIME_S }),
    next: record({ address: addressArb, staticKey: bytesArb(PUBLIC_KEY_BYTES) }),
  }),
);

/** Valid build replies: acceptances with and without an endpoint, refusals. */
export const buildReplyArb: fc.Arbitrary<BuildReply> = fc.oneof(
  fc.option(fc.oneof(addressArb, fc.integer({ min: 1, max: 65535 }).map((port) => ({ host: '::', port }))), { nil: null }).map(
    (endpoint): BuildReply => ({ status: 'accepted', reason: 'none', endpoint }),
  ),
  fc
    .constantFrom(...(BUILD_REPLY_REASONS.filter((r) => r !== 'none') as BuildRefusalReason[]))
    .map((reason): BuildReply => ({ status: 'refused', reason, endpoint: null })),
);

/** Valid cell frames of every type. */
export const cellFrameArb: fc.Arbitrary<CellFrame> = fc.oneof(
  record({
    datagramId: u32,
    count: fc.integer({ min: 1, max: MAX_FRAGMENTS }),
    indexSeed: fc.nat(),
    address: addressArb,
    data: fc.uint8Array({ maxLength: MAX_FRAGMENT_DATA }),
  }).map(({ datagramId, count, indexSeed, address, data }): CellFrame => ({
    type: 'datagram',
    datagramId,
    index: indexSeed % count,
    count,
    address,
    data,
  })),
  record({ type: fc.constantFrom('probe' as const, 'probe-reply' as const), probeId: bytesArb(PROBE_ID_BYTES) }).map((f): CellFrame => f),
  record({ type: fc.constant('exit-refused' as const), datagramId: u32, reason: u8 }),
);

/** Valid envelopes (payloads kept short; the size limit has its own tests). */
export const envelopeArb: fc.Arbitrary<Envelope> = fc.oneof(
  record({
    kind: fc.constantFrom('request' as const, 'response' as const, 'oneway' as const),
    messageId: bytesArb(MESSAGE_ID_BYTES),
    replyTo: fc.array(addressArb, { maxLength: MAX_REPLY_TO }),
    payload: fc.uint8Array({ maxLength: 3000 }),
  }),
  record({
    kind: fc.constant('request' as const),
    messageId: bytesArb(MESSAGE_ID_BYTES),
    replyTo: fc.array(addressArb, { maxLength: MAX_REPLY_TO }),
    padding: fc.integer({ min: 1, max: 3000 }),
    payload: fc.uint8Array({ maxLength: 300 }),
  }),
  record({
    kind: fc.constant('too-large' as const),
    messageId: bytesArb(MESSAGE_ID_BYTES),
    replyTo: fc.constant([]),
    payload: fc.integer({ min: ENVELOPE_HEADER_BYTES, max: MAX_ENVELOPE_BYTES }).map((size) => Uint8Array.of(size >> 8, size & 0xff)),
  }),
);

/** Valid peer exchange messages. */
export const peerExchangeArb: fc.Arbitrary<PeerExchangeMessage> = fc.oneof(
  record({ type: fc.constant('peer-request' as const), relay: fc.boolean() }),
  record({
    type: fc.constant('peer-list' as const),
    peers: fc.array(record({ address: addressArb, publicKey: bytesArb(PUBLIC_KEY_BYTES) }), { maxLength: MAX_PEER_LIST }),
  }),
);

const dhtTtlArb = fc.integer({ min: 1, max: DHT_MAX_TTL_SECONDS });
const dhtValueArb = fc.uint8Array({ maxLength: DHT_MAX_VALUE_BYTES });

/** Valid DHT request bodies of every type, timestamps over the whole 0..2^53−1 range. */
export const dhtRequestBodyArb: fc.Arbitrary<DhtRequestBody> = fc.oneof(
  fc.constant<DhtRequestBody>({ type: 'ping' }),
  record({ type: fc.constant('find-node' as const), target: bytesArb(DHT_ID_BYTES) }),
  record({ type: fc.constant('find-value' as const), key: bytesArb(DHT_ID_BYTES) }),
  record({
    type: fc.constant('store' as const),
    key: bytesArb(DHT_ID_BYTES),
    timestampMs: fc.maxSafeNat(),
    ttlSeconds: dhtTtlArb,
    value: dhtValueArb,
  }),
);

/** Valid DHT response bodies of every type. */
export const dhtResponseBodyArb: fc.Arbitrary<DhtResponseBody> = fc.oneof(
  fc.constant<DhtResponseBody>({ type: 'pong' }),
  record({
    type: fc.constant('nodes' as const),
    contacts: fc.array(record({ publicKey: bytesArb(PUBLIC_KEY_BYTES), address: addressArb }), { maxLength: DHT_MAX_CONTACTS }),
  }),
  record({
    type: fc.constant('values' as const),
    values: fc.array(record({ value: dhtValueArb, ttlSeconds: dhtTtlArb }), { minLength: 1, maxLength: DHT_MAX_VALUES }),
  }),
  record({ type: fc.constant('stored' as const), result: fc.constantFrom(...DHT_STORE_RESULTS) }),
);

/** The smallest Noise message a DHT datagram of `kind` carries: its overhead and a type byte. */
export function minDhtMessageBytes(kind: DhtKind): number {
  return (kind === 'request' ? DHT_REQUEST_OVERHEAD_BYTES : DHT_RESPONSE_OVERHEAD_BYTES) + 1;
}

/** Valid DHT datagrams of both kinds, from the smallest message to the largest. */
export const dhtDatagramArb: fc.Arbitrary<DhtDatagram> = fc.constantFrom<DhtKind>('request', 'response').chain((kind) =>
  record({
    kind: fc.constant(kind),
    rpcId: bytesArb(DHT_RPC_ID_BYTES),
    message: fc.uint8Array({ minLength: minDhtMessageBytes(kind), maxLength: DHT_MAX_DATAGRAM_BYTES - DHT_HEADER_BYTES }),
  }),
);

/** A codec under test, erased to `unknown` so that the table can hold all of them. */
export interface AnyCodec {
  readonly name: string;
  readonly encode: (value: unknown) => Uint8Array;
  readonly decode: (bytes: Uint8Array) => unknown;
  readonly arb: fc.Arbitrary<unknown>;
  /** Valid encoded lengths; fuzzing concentrates on and around them. */
  readonly sizes: readonly number[];
}

function codec<T>(
  name: string,
  encode: (value: T) => Uint8Array,
  decode: (bytes: Uint8Array) => T,
  arb: fc.Arbitrary<T>,
  sizes: readonly number[],
): AnyCodec {
  return { name, encode: (value) => encode(value as T), decode, arb, sizes };
}

/** Every codec of the package, keyed by the `type` used in test/vectors/wire.json. */
export const CODECS: readonly AnyCodec[] = [
  codec('address', encodeAddress, decodeAddress, addressArb, [ADDRESS_BYTES]),
  codec('handshake-payload', encodeHandshakePayload, decodeHandshakePayload, handshakeArb, [HANDSHAKE_PAYLOAD_BYTES]),
  codec('link-frame', encodeLinkFrame, decodeLinkFrame, linkFrameArb, [LINK_FRAME_BYTES]),
  codec('tunnel-message', encodeTunnelMessage, decodeTunnelMessage, tunnelMessageArb, [...new Set(Object.values(TUNNEL_MESSAGE_BYTES))]),
  codec('build-instructions', encodeBuildInstructions, decodeBuildInstructions, buildInstructionsArb, [BUILD_INSTRUCTIONS_BYTES]),
  codec('build-reply', encodeBuildReply, decodeBuildReply, buildReplyArb, [BUILD_REPLY_BYTES]),
  codec('cell-frame', encodeCellFrame, decodeCellFrame, cellFrameArb, [CELL_PLAINTEXT_BYTES]),
  codec('envelope', encodeEnvelope, decodeEnvelope, envelopeArb, [ENVELOPE_HEADER_BYTES, TOO_LARGE_ENVELOPE_BYTES, ENVELOPE_HEADER_BYTES + ADDRESS_BYTES]),
  codec('peer-exchange', encodePeerExchange, decodePeerExchange, peerExchangeArb, [2, 2 + PEER_ENTRY_BYTES, 2 + MAX_PEER_LIST * PEER_ENTRY_BYTES]),
  codec('dht-request-body', encodeDhtRequestBody, decodeDhtRequestBody, dhtRequestBodyArb, [1, 1 + DHT_ID_BYTES, 47, 47 + DHT_MAX_VALUE_BYTES]),
  codec('dht-response-body', encodeDhtResponseBody, decodeDhtResponseBody, dhtResponseBodyArb, [1, 2, 2 + 6, 2 + DHT_CONTACT_BYTES, 2 + DHT_MAX_CONTACTS * DHT_CONTACT_BYTES]),
  codec('dht-datagram', encodeDhtDatagram, decodeDhtDatagram, dhtDatagramArb, [
    DHT_HEADER_BYTES + minDhtMessageBytes('response'),
    DHT_HEADER_BYTES + minDhtMessageBytes('request'),
    DHT_MAX_DATAGRAM_BYTES,
  ]),
];

/** The codec named `name`. */
export function codecNamed(name: string): AnyCodec {
  const found = CODECS.find((c) => c.name === name);
  assert.ok(found !== undefined, `no codec ${name}`);
  return found;
}

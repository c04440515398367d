/**
 * DHT datagrams and the bodies of DHT requests and responses (PROTOCOL.md §11 "The DHT"):
 * a datagram is `version u8 ‖ kind u8 ‖ rpcId 8 ‖ Noise IK message`, and the Noise message
 * carries one body (PING, FIND_NODE, FIND_VALUE, STORE; PONG, NODES, VALUES, STORED).
 *
 * The layouts are binary and exact, not msgpack: every length, count, range and address
 * is checked here, and trailing bytes are an error, so a node validates every field of a
 * body before it touches its routing table or value store, and one value has one encoding.
 *
 * A contact carries the peer's public key, not its node id: the receiver derives the id
 * (BLAKE2b of the key) itself, so a peer cannot claim an id it has no key for.
 */
import { assertNever } from '@deut/common';
import type { UdpAddress } from '@deut/common';
import { readAddress, writeAddress } from './address.js';
import { expectBytes, expectInt, expectZero, fail, readU16, readU32, writeU16, writeU32 } from './checks.js';
import { ADDRESS_BYTES, PUBLIC_KEY_BYTES, TAG_BYTES } from './constants.js';

/**
 * First byte of every DHT datagram. Distinct from the message envelope's first byte
 * (PROTOCOL_VERSION = 1), so one byte tells the two apart.
 */
export const DHT_VERSION = 0xd1;

/** Bytes of an rpc id: requester-chosen randomness that a response repeats. */
export const DHT_RPC_ID_BYTES = 8;

/** Bytes of the datagram header: version u8 ‖ kind u8 ‖ rpcId. */
export const DHT_HEADER_BYTES = 1 + 1 + DHT_RPC_ID_BYTES;

/** Bytes of a node id, a lookup target and a value key (BLAKE2b-256). */
export const DHT_ID_BYTES = 32;

/** Most contacts in one NODES response (Kademlia's k). */
export const DHT_MAX_CONTACTS = 20;

/** Most values in one VALUES response. */
export const DHT_MAX_VALUES = 8;

/** Largest stored value, in bytes. */
export const DHT_MAX_VALUE_BYTES = 1000;

/** Longest TTL a value may be stored for, in seconds: 24 hours, Kademlia's expiry. */
export const DHT_MAX_TTL_SECONDS = 86_400;

/** Bytes of one contact in NODES: public key ‖ address. */
export const DHT_CONTACT_BYTES = PUBLIC_KEY_BYTES + ADDRESS_BYTES;

/** Bytes Noise IK message 1 adds around the body: e (32) ‖ encrypted s (32 + 16) ‖ tag (16). */
export const DHT_REQUEST_OVERHEAD_BYTES = PUBLIC_KEY_BYTES + (PUBLIC_KEY_BYTES + TAG_BYTES) + TAG_BYTES;

/** Bytes Noise IK message 2 adds around the body: e (32) ‖ tag (16). */
export const DHT_RESPONSE_OVERHEAD_BYTES = PUBLIC_KEY_BYTES + TAG_BYTES;

/** Bytes of the fixed part of a STORE body: type, key, timestampMs u64, ttlSeconds u32, length u16. */
const STORE_HEADER_BYTES = 1 + DHT_ID_BYTES + 8 + 4 + 2;

/** Bytes of the fixed part of one VALUES entry: ttlSeconds u32 ‖ length u16. */
const VALUE_HEADER_BYTES = 4 + 2;

/** Largest request body in bytes: a STORE of the largest value. */
export const DHT_MAX_REQUEST_BODY_BYTES = STORE_HEADER_BYTES + DHT_MAX_VALUE_BYTES;

/**
 * Largest response body in bytes: VALUES with the most and largest values.
 * INVARIANT: at least the largest NODES body, 2 + DHT_MAX_CONTACTS × DHT_CONTACT_BYTES.
 */
export const DHT_MAX_RESPONSE_BODY_BYTES = 2 + DHT_MAX_VALUES * (VALUE_HEADER_BYTES + DHT_MAX_VALUE_BYTES);

/**
 * Bytes of a padded request datagram, and the most any request datagram may have. Callers pad
 * FIND_NODE and FIND_VALUE to exactly this, because a callee never answers with more bytes
 * than the request it answers (PROTOCOL.md §11.2): the answer goes to the request's source
 * address, which nothing authenticates, so a larger answer would make the DHT an amplifier.
 */
export const DHT_PADDED_REQUEST_BYTES = 1_200;

/** Largest DHT datagram in bytes: the header and the larger of a full request and a full response. */
export const DHT_MAX_DATAGRAM_BYTES =
  DHT_HEADER_BYTES +
  Math.max(DHT_REQUEST_OVERHEAD_BYTES + DHT_MAX_REQUEST_BODY_BYTES, DHT_RESPONSE_OVERHEAD_BYTES + DHT_MAX_RESPONSE_BODY_BYTES);

/** Kind byte of each datagram kind. */
const DHT_KINDS = { request: 0x01, response: 0x02 } as const;

/** What a DHT datagram carries: Noise IK message 1 with a request, or message 2 with its response. */
export type DhtKind = keyof typeof DHT_KINDS;

/** Smallest Noise message of each kind: its overhead around a body of at least a type byte. */
const MIN_MESSAGE_BYTES: Readonly<Record<DhtKind, number>> = {
  request: DHT_REQUEST_OVERHEAD_BYTES + 1,
  response: DHT_RESPONSE_OVERHEAD_BYTES + 1,
};

/** One DHT datagram. */
export interface DhtDatagram {
  readonly kind: DhtKind;
  /** DHT_RPC_ID_BYTES chosen by the requester, repeated by the response (a view when decoded). */
  readonly rpcId: Uint8Array;
  /** The Noise message, still encrypted. Decoding returns a view that aliases the input. */
  readonly message: Uint8Array;
}

/** Offsets of the header fields. */
const KIND = 1;
const RPC_ID = 2;

/** true if a datagram's first byte marks it as a DHT datagram. */
export function isDhtDatagram(bytes: Uint8Array): boolean {
  return bytes[0] === DHT_VERSION;
}

/** Requires a Noise message of `kind` to fit between its minimum and the datagram limit. */
/** The longest message of each kind: its overhead around its largest body. */
const MAX_MESSAGE_BYTES: Readonly<Record<DhtKind, number>> = {
  request: DHT_PADDED_REQUEST_BYTES - DHT_HEADER_BYTES,
  response: DHT_RESPONSE_OVERHEAD_BYTES + DHT_MAX_RESPONSE_BODY_BYTES,
};

// Per kind, so that a request too long to hold any valid body is refused before the DH.
function expectMessageLength(kind: DhtKind, length: number): void {
  if (length < MIN_MESSAGE_BYTES[kind]) fail('BAD_LENGTH', `dht ${kind}: ${length}-byte message, at least ${MIN_MESSAGE_BYTES[kind]}`);
  if (length > MAX_MESSAGE_BYTES[kind]) fail('BAD_LENGTH', `dht ${kind}: ${length}-byte message, at most ${MAX_MESSAGE_BYTES[kind]}`);
}

/**
 * Encodes a DHT datagram: header ‖ message.
 * @throws ProtocolError `BAD_TYPE` for an unknown kind; `BAD_FIELD` for an rpc id that is
 *   not DHT_RPC_ID_BYTES or a message that is not bytes; `BAD_LENGTH` for a message shorter
 *   than its kind's overhead plus a type byte or a datagram over DHT_MAX_DATAGRAM_BYTES
 */
export function encodeDhtDatagram(datagram: DhtDatagram): Uint8Array {
  const kind = Object.hasOwn(DHT_KINDS, datagram.kind) ? DHT_KINDS[datagram.kind] : undefined;
  if (kind === undefined) fail('BAD_TYPE', 'dht datagram: unknown kind');
  expectBytes(datagram.rpcId, DHT_RPC_ID_BYTES, 'dht rpc id');
  const { message } = datagram;
  if (!(message instanceof Uint8Array)) fail('BAD_FIELD', 'dht datagram: message is not bytes');
  expectMessageLength(datagram.kind, message.length);
  const out = new Uint8Array(DHT_HEADER_BYTES + message.length);
  out[0] = DHT_VERSION;
  out[KIND] = kind;
  out.set(datagram.rpcId, RPC_ID);
  out.set(message, DHT_HEADER_BYTES);
  return out;
}

/** The kind named by `code`, or undefined for an unknown byte. */
function kindOfCode(code: number | undefined): DhtKind | undefined {
  switch (code) {
    case DHT_KINDS.request:
      return 'request';
    case DHT_KINDS.response:
      return 'response';
    default:
      return undefined;
  }
}

/**
 * Decodes and validates a DHT datagram's header and lengths; the message is not opened.
 * `rpcId` and `message` are subarray views of `bytes`: copy them if `bytes` is reused.
 * @throws ProtocolError `BAD_LENGTH` for a datagram shorter than its header or over
 *   DHT_MAX_DATAGRAM_BYTES, or a message shorter than its kind's overhead plus a type byte;
 *   `BAD_VERSION` for a first byte other than DHT_VERSION; `BAD_TYPE` for an unknown kind
 */
export function decodeDhtDatagram(bytes: Uint8Array): DhtDatagram {
  if (bytes.length < DHT_HEADER_BYTES) fail('BAD_LENGTH', `dht datagram: ${bytes.length} bytes, shorter than its header`);
  if (bytes.length > DHT_MAX_DATAGRAM_BYTES) fail('BAD_LENGTH', `dht datagram: ${bytes.length} bytes, over ${DHT_MAX_DATAGRAM_BYTES}`);
  if (bytes[0] !== DHT_VERSION) fail('BAD_VERSION', `dht datagram: version ${String(bytes[0])}`);
  const kind = kindOfCode(bytes[KIND]);
  if (kind === undefined) fail('BAD_TYPE', `dht datagram: unknown kind ${String(bytes[KIND])}`);
  expectMessageLength(kind, bytes.length - DHT_HEADER_BYTES);
  return { kind, rpcId: bytes.subarray(RPC_ID, DHT_HEADER_BYTES), message: bytes.subarray(DHT_HEADER_BYTES) };
}

const PROLOGUE_LABEL = new TextEncoder().encode('deut/1 dht');

/**
 * The Noise prologue of one rpc: `'deut/1 dht' ‖ DHT_VERSION ‖ rpcId`. Both sides mix it
 * into the handshake hash, so a message only opens for the rpc id in its header.
 * @throws ProtocolError `BAD_FIELD` for an rpc id that is not DHT_RPC_ID_BYTES
 */
export function dhtPrologue(rpcId: Uint8Array): Uint8Array {
  expectBytes(rpcId, DHT_RPC_ID_BYTES, 'dht rpc id');
  const out = new Uint8Array(PROLOGUE_LABEL.length + 1 + DHT_RPC_ID_BYTES);
  out.set(PROLOGUE_LABEL);
  out[PROLOGUE_LABEL.length] = DHT_VERSION;
  out.set(rpcId, PROLOGUE_LABEL.length + 1);
  return out;
}

/** A node as listed in NODES. */
export interface DhtContactEntry {
  /** The node's static key (PUBLIC_KEY_BYTES); its id is derived from it. A view when decoded. */
  readonly publicKey: Uint8Array;
  readonly address: UdpAddress;
}

/** The outcome of a STORE, codes 0..7 in the order of DHT_STORE_RESULTS. */
export const DHT_STORE_RESULTS = ['stored', 'too-large', 'ttl', 'full', 'quota', 'stale', 'skew', 'rate-limited'] as const;

/** Whether a STORE was kept, and if not, why. */
export type DhtStoreResult = (typeof DHT_STORE_RESULTS)[number];

/**
 * A DHT request body, the plaintext of Noise IK message 1. Byte fields are views of the
 * input when decoded.
 *
 * - `ping`: is the node alive
 * - `find-node`: the contacts closest to `target` (DHT_ID_BYTES)
 * - `find-value`: the values under `key` (DHT_ID_BYTES), or else the contacts closest to it
 * - `store`: keep `value` (0..DHT_MAX_VALUE_BYTES) under `key` for `ttlSeconds`
 *   (1..DHT_MAX_TTL_SECONDS); `timestampMs` (0..2^53−1) is the publisher's clock
 */
export type DhtRequestBody = (
  | { readonly type: 'ping' }
  | { readonly type: 'find-node'; readonly target: Uint8Array }
  | { readonly type: 'find-value'; readonly key: Uint8Array }
  | {
      readonly type: 'store';
      readonly key: Uint8Array;
      readonly timestampMs: number;
      readonly ttlSeconds: number;
      readonly value: Uint8Array;
    }
) & {
  /**
   * Zero bytes after the body (PROTOCOL.md §11.3): a request is padded to the size of the
   * answer it asks for, since no answer is larger than its request. Absent when 0.
   */
  readonly padding?: number;
};

/** One value in VALUES: the bytes (a view when decoded) and the seconds it has left. */
export interface DhtValueEntry {
  readonly value: Uint8Array;
  readonly ttlSeconds: number;
}

/**
 * A DHT response body, the plaintext of Noise IK message 2.
 *
 * - `pong`: the answer to `ping`
 * - `nodes`: up to DHT_MAX_CONTACTS contacts closest to the target
 * - `values`: 1..DHT_MAX_VALUES values; a node that has none answers with `nodes` instead
 * - `stored`: the outcome of a `store`
 */
export type DhtResponseBody =
  | { readonly type: 'pong' }
  | { readonly type: 'nodes'; readonly contacts: readonly DhtContactEntry[] }
  | { readonly type: 'values'; readonly values: readonly DhtValueEntry[] }
  | { readonly type: 'stored'; readonly result: DhtStoreResult };

/** Type byte of each request body. */
const REQUEST_TYPES = { ping: 0x01, 'find-node': 0x02, 'find-value': 0x03, store: 0x04 } as const;

/** Type byte of each response body. */
const RESPONSE_TYPES = { pong: 0x81, nodes: 0x82, values: 0x83, stored: 0x84 } as const;

/** Offsets of the STORE fields after the type byte. */
const STORE_KEY = 1;
const STORE_TIMESTAMP = STORE_KEY + DHT_ID_BYTES;
const STORE_TTL = STORE_TIMESTAMP + 8;
const STORE_LENGTH = STORE_TTL + 4;

const TWO_POW_32 = 0x1_0000_0000;
/** The high word of any timestamp below 2^53 fits in 21 bits. */
const MAX_TIMESTAMP_HIGH = Math.floor(Number.MAX_SAFE_INTEGER / TWO_POW_32);

/** Requires `value` to be bytes of at most DHT_MAX_VALUE_BYTES. */
function expectValue(value: unknown, what: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) fail('BAD_FIELD', `${what}: not bytes`);
  if (value.length > DHT_MAX_VALUE_BYTES) fail('BAD_LENGTH', `${what}: ${value.length} bytes, at most ${DHT_MAX_VALUE_BYTES}`);
}

/** A new array of `length` bytes starting with `type`. */
function startBody(type: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  out[0] = type;
  return out;
}

/**
 * Encodes a request body.
 * @throws ProtocolError `BAD_FIELD` for a target or key that is not DHT_ID_BYTES, a
 *   timestamp not in 0..2^53−1, a TTL not in 1..DHT_MAX_TTL_SECONDS or a value that is not
 *   bytes; `BAD_LENGTH` for a value over DHT_MAX_VALUE_BYTES; DeutError (kind `bug`) for a
 *   type outside the union
 */
export function encodeDhtRequestBody(body: DhtRequestBody): Uint8Array {
  const padding = body.padding ?? 0;
  expectInt(padding, 0, DHT_PADDED_REQUEST_BYTES, 'dht request padding');
  const unpadded = encodeUnpaddedRequestBody(body);
  if (padding === 0) return unpadded;
  const out = new Uint8Array(unpadded.length + padding);
  out.set(unpadded);
  return out;
}

function encodeUnpaddedRequestBody(body: DhtRequestBody): Uint8Array {
  switch (body.type) {
    case 'ping':
      return Uint8Array.of(REQUEST_TYPES.ping);
    case 'find-node': {
      expectBytes(body.target, DHT_ID_BYTES, 'dht find-node target');
      const out = startBody(REQUEST_TYPES['find-node'], 1 + DHT_ID_BYTES);
      out.set(body.target, 1);
      return out;
    }
    case 'find-value': {
      expectBytes(body.key, DHT_ID_BYTES, 'dht find-value key');
      const out = startBody(REQUEST_TYPES['find-value'], 1 + DHT_ID_BYTES);
      out.set(body.key, 1);
      return out;
    }
    case 'store': {
      expectBytes(body.key, DHT_ID_BYTES, 'dht store key');
      expectInt(body.timestampMs, 0, Number.MAX_SAFE_INTEGER, 'dht store timestamp');
      expectInt(body.ttlSeconds, 1, DHT_MAX_TTL_SECONDS, 'dht store ttl');
      expectValue(body.value, 'dht store value');
      const out = startBody(REQUEST_TYPES.store, STORE_HEADER_BYTES + body.value.length);
      out.set(body.key, STORE_KEY);
      writeU32(out, STORE_TIMESTAMP, Math.floor(body.timestampMs / TWO_POW_32));
      writeU32(out, STORE_TIMESTAMP + 4, body.timestampMs >>> 0);
      writeU32(out, STORE_TTL, body.ttlSeconds);
      writeU16(out, STORE_LENGTH, body.value.length);
      out.set(body.value, STORE_HEADER_BYTES);
      return out;
    }
    default:
      return assertNever(body, 'dht request body');
  }
}

/** Requires `bytes` to be exactly `length` long. */
function expectBodyLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) fail('BAD_LENGTH', `dht ${what}: ${bytes.length} bytes, expected ${length}`);
}

/** Checks that `bytes` is a `length`-byte body and zero padding; the padding, or {} when none. */
function unpad(bytes: Uint8Array, length: number, what: string): { padding?: number } {
  if (bytes.length < length) fail('BAD_LENGTH', `dht ${what}: ${bytes.length} bytes, expected ${length}`);
  expectZero(bytes, length, bytes.length, `dht ${what} padding`);
  return bytes.length > length ? { padding: bytes.length - length } : {};
}

/** Decodes a STORE body whose type byte has been checked. */
function decodeStore(bytes: Uint8Array): DhtRequestBody {
  if (bytes.length < STORE_HEADER_BYTES) fail('BAD_LENGTH', `dht store: ${bytes.length} bytes, shorter than its header`);
  const length = readU16(bytes, STORE_LENGTH);
  if (length > DHT_MAX_VALUE_BYTES) fail('BAD_LENGTH', `dht store: ${length}-byte value, at most ${DHT_MAX_VALUE_BYTES}`);
  const padding = unpad(bytes, STORE_HEADER_BYTES + length, 'store');
  const high = readU32(bytes, STORE_TIMESTAMP);
  if (high > MAX_TIMESTAMP_HIGH) fail('BAD_FIELD', 'dht store: timestamp not below 2^53');
  const ttlSeconds = readU32(bytes, STORE_TTL);
  expectInt(ttlSeconds, 1, DHT_MAX_TTL_SECONDS, 'dht store ttl');
  return {
    type: 'store',
    key: bytes.subarray(STORE_KEY, STORE_KEY + DHT_ID_BYTES),
    timestampMs: high * TWO_POW_32 + readU32(bytes, STORE_TIMESTAMP + 4),
    ttlSeconds,
    value: bytes.subarray(STORE_HEADER_BYTES, STORE_HEADER_BYTES + length),
    ...padding,
  };
}

/**
 * Decodes and validates a request body. Byte fields (`target`, `key`, `value`) are
 * subarray views of `bytes`: copy them if `bytes` is reused.
 * The body may be followed by zero padding, returned as `padding`.
 * @throws ProtocolError `BAD_LENGTH` for an empty body, a body shorter than the type's or a
 *   value length over DHT_MAX_VALUE_BYTES; `BAD_PADDING` for non-zero bytes after the body;
 *   `BAD_TYPE` for an unknown type byte; `BAD_FIELD` for a timestamp ≥ 2^53 or a TTL not in
 *   1..DHT_MAX_TTL_SECONDS
 */
export function decodeDhtRequestBody(bytes: Uint8Array): DhtRequestBody {
  if (bytes.length === 0) fail('BAD_LENGTH', 'dht request: empty');
  switch (bytes[0]) {
    case REQUEST_TYPES.ping:
      return { type: 'ping', ...unpad(bytes, 1, 'ping') };
    case REQUEST_TYPES['find-node']:
      return { type: 'find-node', target: bytes.subarray(1, 1 + DHT_ID_BYTES), ...unpad(bytes, 1 + DHT_ID_BYTES, 'find-node') };
    case REQUEST_TYPES['find-value']:
      return { type: 'find-value', key: bytes.subarray(1, 1 + DHT_ID_BYTES), ...unpad(bytes, 1 + DHT_ID_BYTES, 'find-value') };
    case REQUEST_TYPES.store:
      return decodeStore(bytes);
    default:
      return fail('BAD_TYPE', `dht request: unknown type ${String(bytes[0])}`);
  }
}

/**
 * Encodes a response body.
 * @throws ProtocolError `TOO_MANY` for more than DHT_MAX_CONTACTS contacts or
 *   DHT_MAX_VALUES values; `BAD_FIELD` for no values, a key that is not PUBLIC_KEY_BYTES, a
 *   TTL not in 1..DHT_MAX_TTL_SECONDS, a value that is not bytes or an unknown store
 *   result; `BAD_LENGTH` for a value over DHT_MAX_VALUE_BYTES; `BAD_ADDRESS`; DeutError
 *   (kind `bug`) for a type outside the union
 */
export function encodeDhtResponseBody(body: DhtResponseBody): Uint8Array {
  switch (body.type) {
    case 'pong':
      return Uint8Array.of(RESPONSE_TYPES.pong);
    case 'nodes': {
      const { contacts } = body;
      if (!Array.isArray(contacts)) fail('BAD_FIELD', 'dht nodes: contacts is not an array');
      if (contacts.length > DHT_MAX_CONTACTS) fail('TOO_MANY', `dht nodes: ${contacts.length} contacts, at most ${DHT_MAX_CONTACTS}`);
      const out = startBody(RESPONSE_TYPES.nodes, 2 + contacts.length * DHT_CONTACT_BYTES);
      out[1] = contacts.length;
      contacts.forEach((contact: DhtContactEntry, i) => {
        expectBytes(contact.publicKey, PUBLIC_KEY_BYTES, 'dht contact key');
        const offset = 2 + i * DHT_CONTACT_BYTES;
        out.set(contact.publicKey, offset);
        writeAddress(out, offset + PUBLIC_KEY_BYTES, contact.address);
      });
      return out;
    }
    case 'values': {
      const { values } = body;
      if (!Array.isArray(values)) fail('BAD_FIELD', 'dht values: values is not an array');
      if (values.length === 0) fail('BAD_FIELD', 'dht values: no values (a node without any answers with nodes)');
      if (values.length > DHT_MAX_VALUES) fail('TOO_MANY', `dht values: ${values.length} values, at most ${DHT_MAX_VALUES}`);
      let length = 2;
      for (const entry of values as readonly DhtValueEntry[]) {
        expectInt(entry.ttlSeconds, 1, DHT_MAX_TTL_SECONDS, 'dht value ttl');
        expectValue(entry.value, 'dht value');
        length += VALUE_HEADER_BYTES + entry.value.length;
      }
      const out = startBody(RESPONSE_TYPES.values, length);
      out[1] = values.length;
      let offset = 2;
      for (const entry of values as readonly DhtValueEntry[]) {
        writeU32(out, offset, entry.ttlSeconds);
        writeU16(out, offset + 4, entry.value.length);
        out.set(entry.value, offset + VALUE_HEADER_BYTES);
        offset += VALUE_HEADER_BYTES + entry.value.length;
      }
      return out;
    }
    case 'stored': {
      const code = DHT_STORE_RESULTS.indexOf(body.result);
      if (code < 0) fail('BAD_FIELD', 'dht stored: unknown result');
      return Uint8Array.of(RESPONSE_TYPES.stored, code);
    }
    default:
      return assertNever(body, 'dht response body');
  }
}

/** Decodes a NODES body whose type byte has been checked. */
function decodeNodes(bytes: Uint8Array): DhtResponseBody {
  const count = bytes[1];
  if (count === undefined) fail('BAD_LENGTH', 'dht nodes: no count');
  if (count > DHT_MAX_CONTACTS) fail('TOO_MANY', `dht nodes: ${count} contacts, at most ${DHT_MAX_CONTACTS}`);
  expectBodyLength(bytes, 2 + count * DHT_CONTACT_BYTES, `nodes of ${count}`);
  const contacts: DhtContactEntry[] = [];
  for (let i = 0; i < count; i++) {
    const offset = 2 + i * DHT_CONTACT_BYTES;
    const address = readAddress(bytes, offset + PUBLIC_KEY_BYTES);
    contacts.push({ publicKey: bytes.subarray(offset, offset + PUBLIC_KEY_BYTES), address });
  }
  return { type: 'nodes', contacts };
}

/** Decodes a VALUES body whose type byte has been checked. */
function decodeValues(bytes: Uint8Array): DhtResponseBody {
  const count = bytes[1];
  if (count === undefined) fail('BAD_LENGTH', 'dht values: no count');
  if (count === 0) fail('BAD_FIELD', 'dht values: no values');
  if (count > DHT_MAX_VALUES) fail('TOO_MANY', `dht values: ${count} values, at most ${DHT_MAX_VALUES}`);
  const values: DhtValueEntry[] = [];
  let offset = 2;
  for (let i = 0; i < count; i++) {
    if (bytes.length < offset + VALUE_HEADER_BYTES) fail('BAD_LENGTH', `dht values: value ${i} cut short`);
    const ttlSeconds = readU32(bytes, offset);
    const length = readU16(bytes, offset + 4);
    expectInt(ttlSeconds, 1, DHT_MAX_TTL_SECONDS, 'dht value ttl');
    if (length > DHT_MAX_VALUE_BYTES) fail('BAD_LENGTH', `dht values: ${length}-byte value, at most ${DHT_MAX_VALUE_BYTES}`);
    const start = offset + VALUE_HEADER_BYTES;
    if (bytes.length < start + length) fail('BAD_LENGTH', `dht values: value ${i} cut short`);
    values.push({ value: bytes.subarray(start, start + length), ttlSeconds });
    offset = start + length;
  }
  if (offset !== bytes.length) fail('BAD_LENGTH', `dht values: ${bytes.length - offset} bytes after the last value`);
  return { type: 'values', values };
}

/**
 * Decodes and validates a response body. Byte fields (`publicKey`, `value`) are subarray
 * views of `bytes`: copy them if `bytes` is reused.
 * @throws ProtocolError `BAD_LENGTH` for an empty body or lengths that do not add up to
 *   the body's; `BAD_TYPE` for an unknown type byte; `TOO_MANY` for a count over
 *   DHT_MAX_CONTACTS or DHT_MAX_VALUES; `BAD_FIELD` for no values, a TTL not in
 *   1..DHT_MAX_TTL_SECONDS or an unknown store result; `BAD_ADDRESS`
 */
export function decodeDhtResponseBody(bytes: Uint8Array): DhtResponseBody {
  if (bytes.length === 0) fail('BAD_LENGTH', 'dht response: empty');
  switch (bytes[0]) {
    case RESPONSE_TYPES.pong:
      expectBodyLength(bytes, 1, 'pong');
      return { type: 'pong' };
    case RESPONSE_TYPES.nodes:
      return decodeNodes(bytes);
    case RESPONSE_TYPES.values:
      return decodeValues(bytes);
    case RESPONSE_TYPES.stored: {
      expectBodyLength(bytes, 2, 'stored');
      const result = DHT_STORE_RESULTS[bytes[1] ?? 0];
      if (result === undefined) fail('BAD_FIELD', `dht stored: unknown result ${String(bytes[1])}`);
      return { type: 'stored', result };
    }
    default:
      return fail('BAD_TYPE', `dht response: unknown type ${String(bytes[0])}`);
  }
}

/**
 * The plaintexts inside build records and reply slots: instructions (PROTOCOL.md §4.2,
 * §4.6), a length-prefixed msgpack map zero-padded to 112 bytes, and the 32-byte build
 * reply (§4.3). The encryption around them belongs to the crypto and tunnel packages.
 */
import { assertNever } from '@deut/common';
import type { UdpAddress } from '@deut/common';
import { Packr, Unpackr } from 'msgpackr';
import type { Options as MsgpackOptions } from 'msgpackr';
import {
  BUILD_INSTRUCTIONS_BYTES,
  BUILD_REPLY_BYTES,
  IP_BYTES,
  MAX_INSTRUCTIONS_MSGPACK_BYTES,
  MAX_TUNNEL_LIFETIME_S,
  PUBLIC_KEY_BYTES,
} from './constants.js';
import { ADDRESS_FAMILY_V4, formatIp, parseIp } from './address.js';
import { expectBytes, expectInt, expectLength, expectZero, fail, readU16, writeU16 } from './checks.js';

/** The hop a relay forwards to (§4.6 key `n`). */
export interface NextHop {
  /** Address of the next hop's node port; carried as `a` (4 or 16 bytes) and `p`. */
  readonly address: UdpAddress;
  /** The static X25519 key the next hop must prove (§3.7), PUBLIC_KEY_BYTES; `k`. */
  readonly staticKey: Uint8Array;
}

/** Instructions for a relay: forward to `next` (§4.6, `r` = 0). */
export interface RelayInstructions {
  readonly role: 'relay';
  /** Request time, Unix seconds (u32); `t`. */
  readonly timeSeconds: number;
  /** Tunnel lifetime, 1..MAX_TUNNEL_LIFETIME_S seconds; `l`. */
  readonly lifetimeSeconds: number;
  readonly next: NextHop;
}

/** Instructions for the endpoint (§4.6, `r` = 1). */
export interface EndpointInstructions {
  readonly role: 'endpoint';
  /** Request time, Unix seconds (u32); `t`. */
  readonly timeSeconds: number;
  /** Tunnel lifetime, 1..MAX_TUNNEL_LIFETIME_S seconds; `l`. */
  readonly lifetimeSeconds: number;
}

/** What one hop is told by the master in its build record (§4.6). */
export type BuildInstructions = RelayInstructions | EndpointInstructions;

/**
 * msgpackr settings for instructions. Each record is read alone, from a request that may
 * be lost, replayed or forged, so nothing may carry from one message to the next: no
 * records or shared structures (`useRecords`; a record definition would otherwise be
 * remembered by the reader), no structured-clone references, no bundled strings, no
 * extension types beyond plain msgpack (`moreTypes`). Maps are plain objects and are
 * written with their smallest header (`variableMapSize`), as any msgpack encoder would.
 */
const MSGPACK_OPTIONS: MsgpackOptions = {
  useRecords: false,
  structuredClone: false,
  mapsAsObjects: true,
  moreTypes: false,
  bundleStrings: false,
  variableMapSize: true,
};

/**
 * One packer is enough: with the options above its output depends only on the value, and
 * every result is copied out before the next call reuses its buffer.
 */
const packer = new Packr(MSGPACK_OPTIONS);

/** The msgpack map of §4.6, keys in the canonical order r, t, l, n and a, p, k. */
function toMsgpackMap(instructions: BuildInstructions): Record<string, unknown> {
  const { role, timeSeconds, lifetimeSeconds } = instructions;
  expectInt(timeSeconds, 0, 0xffffffff, 'instructions time');
  expectInt(lifetimeSeconds, 1, MAX_TUNNEL_LIFETIME_S, 'instructions lifetime');
  switch (role) {
    case 'endpoint':
      return { r: 1, t: timeSeconds, l: lifetimeSeconds };
    case 'relay': {
      if (typeof instructions.next !== 'object' || instructions.next === null) fail('BAD_FIELD', 'instructions: a relay needs a next hop');
      const { address, staticKey } = instructions.next;
      expectBytes(staticKey, PUBLIC_KEY_BYTES, 'instructions next-hop key');
      expectInt(address.port, 1, 65535, 'instructions next-hop port');
      const ip = parseIp(address.host);
      const a = ip.family === ADDRESS_FAMILY_V4 ? ip.bytes.slice(12) : ip.bytes;
      return { r: 0, t: timeSeconds, l: lifetimeSeconds, n: { a, p: address.port, k: staticKey } };
    }
    default:
      return assertNever(role, 'instructions role');
  }
}

/** true for an object literal as msgpackr decodes a map: not null, an array, a Date or bytes. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype;
}

/** Requires `map` to have exactly the keys `required`, in any order (canonical order is checked later). */
function expectKeys(map: Record<string, unknown>, required: readonly string[], what: string): void {
  const keys = Object.keys(map);
  if (keys.length !== required.length || !required.every((k) => Object.hasOwn(map, k))) {
    fail('BAD_FIELD', `${what}: keys must be exactly ${required.join(', ')}`);
  }
}

/** Validates a decoded map and turns it into instructions. */
function fromMsgpackMap(map: unknown): BuildInstructions {
  if (!isPlainObject(map)) fail('BAD_FIELD', 'instructions: not a map');
  const { r, t, l, n } = map;
  expectInt(r, 0, 1, 'instructions role');
  expectKeys(map, r === 0 ? ['r', 't', 'l', 'n'] : ['r', 't', 'l'], 'instructions');
  expectInt(t, 0, 0xffffffff, 'instructions time');
  expectInt(l, 1, MAX_TUNNEL_LIFETIME_S, 'instructions lifetime');
  if (r === 1) return { role: 'endpoint', timeSeconds: t, lifetimeSeconds: l };
  if (!isPlainObject(n)) fail('BAD_FIELD', 'instructions next hop: not a map');
  expectKeys(n, ['a', 'p', 'k'], 'instructions next hop');
  const { a, p, k } = n;
  if (!(a instanceof Uint8Array) || (a.length !== 4 && a.length !== IP_BYTES)) {
    fail('BAD_FIELD', 'instructions next-hop address: expected 4 or 16 bytes');
  }
  expectInt(p, 1, 65535, 'instructions next-hop port');
  expectBytes(k, PUBLIC_KEY_BYTES, 'instructions next-hop key');
  const ip = new Uint8Array(IP_BYTES);
  if (a.length === 4) {
    ip[10] = 0xff;
    ip[11] = 0xff;
    ip.set(a, 12);
  } else {
    ip.set(a);
  }
  const host = formatIp(ip);
  // One address, one encoding: IPv4 travels as 4 bytes, never as 16 IPv4-mapped ones.
  if (a.length === IP_BYTES && parseIp(host).family === ADDRESS_FAMILY_V4) {
    fail('BAD_ADDRESS', 'instructions next-hop address: IPv4-mapped IPv6 must be sent as 4 bytes');
  }
  // A copy, not msgpackr's view: the block is decrypted record memory the caller may wipe.
  const staticKey = new Uint8Array(k);
  return { role: 'relay', timeSeconds: t, lifetimeSeconds: l, next: { address: { host, port: p }, staticKey } };
}

function packInstructions(instructions: BuildInstructions): Uint8Array {
  return packer.pack(toMsgpackMap(instructions));
}

/**
 * Encodes instructions as the 112-byte block `len u8 ‖ msgpack ‖ zero` (§4.2, §4.6).
 * @throws ProtocolError `BAD_FIELD` or `BAD_ADDRESS` for a field out of range; DeutError
 *   (kind `bug`) for a role outside the union
 */
export function encodeBuildInstructions(instructions: BuildInstructions): Uint8Array {
  const packed = packInstructions(instructions);
  // INVARIANT: the largest valid map is about 80 bytes, so this only fires on a bug.
  if (packed.length > MAX_INSTRUCTIONS_MSGPACK_BYTES) fail('BAD_LENGTH', 'instructions: msgpack map too long');
  const out = new Uint8Array(BUILD_INSTRUCTIONS_BYTES);
  out[0] = packed.length;
  out.set(packed, 1);
  return out;
}

/**
 * Decodes and validates a 112-byte instructions block. The map must be in the form
 * `encodeBuildInstructions` writes (smallest headers and integers, keys in the order r, t,
 * l, n and a, p, k), so that no record has two readings: duplicate keys, floats posing as
 * integers and other encodings of the same value are refused.
 * @throws ProtocolError `BAD_LENGTH` (block size, length prefix 0 or over 111),
 *   `BAD_PADDING`, `BAD_MSGPACK` (unparseable or not canonical), `BAD_FIELD` (missing,
 *   extra or mistyped keys, values out of range), `BAD_ADDRESS`
 */
export function decodeBuildInstructions(block: Uint8Array): BuildInstructions {
  expectLength(block, BUILD_INSTRUCTIONS_BYTES, 'instructions block');
  const length = block[0] ?? 0;
  if (length === 0 || length > MAX_INSTRUCTIONS_MSGPACK_BYTES) {
    fail('BAD_LENGTH', `instructions: msgpack length ${length} not in 1..${MAX_INSTRUCTIONS_MSGPACK_BYTES}`);
  }
  expectZero(block, 1 + length, BUILD_INSTRUCTIONS_BYTES, 'instructions padding');
  const packed = block.subarray(1, 1 + length);
  let map: unknown;
  try {
    // A fresh reader per record: belt and braces against state kept between messages.
    map = new Unpackr(MSGPACK_OPTIONS).unpack(packed);
  } catch {
    // msgpackr's messages quote the decoded data, here a decrypted record naming the next
    // hop, so the cause is not chained: it would carry that into logs.
    fail('BAD_MSGPACK', 'instructions: not a msgpack value');
  }
  const instructions = fromMsgpackMap(map);
  const canonical = packInstructions(instructions);
  if (canonical.length !== packed.length || !canonical.every((b, i) => b === packed[i])) {
    fail('BAD_MSGPACK', 'instructions: msgpack map not in canonical form');
  }
  return instructions;
}

/** Reason codes of a build reply, indexed by their wire value (§4.3). */
export const BUILD_REPLY_REASONS = [
  'none',
  'overloaded',
  'rate-limited',
  'exit-policy',
  'bad-record',
  'next-hop-unreachable',
  'stale',
] as const;

/** Why a hop answered as it did; `none` for an acceptance. */
export type BuildReplyReason = (typeof BUILD_REPLY_REASONS)[number];

/** Why a hop refused a build. */
export type BuildRefusalReason = Exclude<BuildReplyReason, 'none'>;

/** Every {@link BuildRefusalReason}, from the same list as the type. */
export const BUILD_REFUSAL_REASONS: readonly BuildRefusalReason[] = BUILD_REPLY_REASONS.filter((reason): reason is BuildRefusalReason => reason !== 'none');

/** A hop accepted the build. */
export interface BuildAccepted {
  readonly status: 'accepted';
  readonly reason: 'none';
  /** The endpoint's tunnel port and address; null from a relay (sent as zeros). */
  readonly endpoint: UdpAddress | null;
}

/** A hop refused the build; it keeps no state (§4.2 step 3). */
export interface BuildRefused {
  readonly status: 'refused';
  readonly reason: BuildRefusalReason;
  readonly endpoint: null;
}

/** The plaintext of a reply slot (§4.3). */
export type BuildReply = BuildAccepted | BuildRefused;

const STATUS_ACCEPTED = 0;
const STATUS_REFUSED = 1;
/** Offsets inside the reply: status, reason, port u16, address 16, zero 12. */
const REPLY_PORT = 2;
const REPLY_ADDRESS = 4;
const REPLY_ZERO = REPLY_ADDRESS + IP_BYTES;

/**
 * Encodes a build reply as 32 bytes: `status ‖ reason ‖ port u16 ‖ address 16 ‖ zero 12`.
 * @throws ProtocolError `BAD_FIELD` for a reason that does not match the status or an
 *   endpoint on a refusal; `BAD_ADDRESS` for an endpoint that is not IP and port;
 *   DeutError (kind `bug`) for a status outside the union
 */
export function encodeBuildReply(reply: BuildReply): Uint8Array {
  const out = new Uint8Array(BUILD_REPLY_BYTES);
  const reason = BUILD_REPLY_REASONS.indexOf(reply.reason);
  if (reply.status === 'accepted') {
    if (reason !== 0) fail('BAD_FIELD', 'build reply: an acceptance has reason none');
    out[0] = STATUS_ACCEPTED;
    if (reply.endpoint !== null) {
      expectInt(reply.endpoint.port, 1, 65535, 'build reply port');
      out.set(parseIp(reply.endpoint.host).bytes, REPLY_ADDRESS);
      writeU16(out, REPLY_PORT, reply.endpoint.port);
    }
  } else if (reply.status === 'refused') {
    if (reason < 1) fail('BAD_FIELD', 'build reply: a refusal needs a reason');
    if (reply.endpoint !== null) fail('BAD_FIELD', 'build reply: a refusal has no endpoint');
    out[0] = STATUS_REFUSED;
    out[1] = reason;
  } else {
    assertNever(reply, 'build reply');
  }
  return out;
}

/**
 * Decodes and validates a 32-byte build reply.
 * @throws ProtocolError `BAD_LENGTH`; `BAD_FIELD` for an unknown status or reason, a
 *   reason that does not match the status, or a port on a refusal; `BAD_ADDRESS` for an
 *   address without a port; `BAD_PADDING`
 */
export function decodeBuildReply(bytes: Uint8Array): BuildReply {
  expectLength(bytes, BUILD_REPLY_BYTES, 'build reply');
  const status = bytes[0];
  const reasonCode = bytes[1] ?? 0;
  const port = readU16(bytes, REPLY_PORT);
  expectZero(bytes, REPLY_ZERO, BUILD_REPLY_BYTES, 'build reply padding');
  const reason = BUILD_REPLY_REASONS[reasonCode];
  if (reason === undefined) fail('BAD_FIELD', `build reply: unknown reason ${reasonCode}`);
  if (port === 0 && bytes.subarray(REPLY_ADDRESS, REPLY_ZERO).some((b) => b !== 0)) {
    fail('BAD_ADDRESS', 'build reply: an address without a port');
  }
  if (status === STATUS_ACCEPTED) {
    if (reason !== 'none') fail('BAD_FIELD', 'build reply: an acceptance has reason none');
    return {
      status: 'accepted',
      reason,
      endpoint: port === 0 ? null : { host: formatIp(bytes, REPLY_ADDRESS), port },
    };
  }
  if (status !== STATUS_REFUSED) fail('BAD_FIELD', `build reply: unknown status ${String(status)}`);
  if (reason === 'none') fail('BAD_FIELD', 'build reply: a refusal needs a reason');
  if (port !== 0) fail('BAD_FIELD', 'build reply: a refusal has no endpoint');
  return { status: 'refused', reason, endpoint: null };
}

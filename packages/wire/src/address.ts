/**
 * IP addresses and UDP addresses on the wire (PROTOCOL.md §6 for the 19-byte address;
 * §4.3 and §4.6 carry bare IPs). An IP is always 16 bytes, IPv4 as IPv4-mapped IPv6
 * (`::ffff:a.b.c.d`), so one layout serves both families.
 *
 * Every address has exactly one encoding and one text form: IPv4 dotted decimal, IPv6 in
 * RFC 5952 compressed lower-case form. An IPv4-mapped IPv6 text (what a dual-stack socket
 * reports for an IPv4 peer) is the same endpoint as the IPv4 text, so it encodes as IPv4,
 * and a family-6 address whose bytes are IPv4-mapped is refused: otherwise one endpoint
 * would have two encodings and two map keys.
 */
import type { UdpAddress } from '@deut/common';
import { ADDRESS_BYTES, IP_BYTES } from './constants.js';
import { expectLength, fail, readU16, writeU16 } from './checks.js';

/** Address family byte for IPv4 (§6). */
export const ADDRESS_FAMILY_V4 = 4;

/** Address family byte for IPv6 (§6). */
export const ADDRESS_FAMILY_V6 = 6;

/** An IP family as carried in the family byte. */
export type IpFamily = typeof ADDRESS_FAMILY_V4 | typeof ADDRESS_FAMILY_V6;

const V4_DOTTED = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Parses strict dotted decimal into 4 bytes, or returns undefined. */
function parseV4(text: string): Uint8Array | undefined {
  const match = V4_DOTTED.exec(text);
  if (match === null) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = Number(match[i + 1]);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

/** Parses the groups on one side of `::` into 16-bit values, or returns undefined. */
function parseV6Groups(text: string, allowV4Tail: boolean): number[] | undefined {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    if (allowV4Tail && i === parts.length - 1 && part.includes('.')) {
      const v4 = parseV4(part);
      if (v4 === undefined) return undefined;
      groups.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
    } else if (V6_GROUP.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return groups;
}

/** Parses IPv6 text (compressed or not, optionally with a dotted IPv4 tail) into 16 bytes. */
function parseV6(text: string): Uint8Array | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = parseV6Groups(halves[0] ?? '', halves.length === 1);
  const tail = halves.length === 2 ? parseV6Groups(halves[1] ?? '', true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const explicit = head.length + tail.length;
  // `::` stands for at least one zero group; without it all eight must be present.
  if (halves.length === 2 ? explicit > 7 : explicit !== 8) return undefined;
  const groups = [...head, ...new Array<number>(8 - explicit).fill(0), ...tail];
  const out = new Uint8Array(IP_BYTES);
  groups.forEach((g, i) => writeU16(out, 2 * i, g));
  return out;
}

/** true when the 16 bytes are an IPv4-mapped IPv6 address (`::ffff:0:0/96`). */
function isV4Mapped(ip: Uint8Array, offset = 0): boolean {
  for (let i = 0; i < 10; i++) if (ip[offset + i] !== 0) return false;
  return ip[offset + 10] === 0xff && ip[offset + 11] === 0xff;
}

/**
 * Parses an IP literal into its 16-byte wire form and family. IPv4 must be strict dotted
 * decimal (no leading zeros); IPv6 may be in any valid RFC 4291 text form but without a
 * zone (`%eth0`); an IPv4-mapped IPv6 text yields family 4.
 * @throws ProtocolError `BAD_ADDRESS` for anything that is not an IP literal
 */
export function parseIp(host: string): { readonly family: IpFamily; readonly bytes: Uint8Array } {
  if (typeof host !== 'string') fail('BAD_ADDRESS', 'host is not a string');
  const v4 = parseV4(host);
  if (v4 !== undefined) {
    const bytes = new Uint8Array(IP_BYTES);
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    bytes.set(v4, 12);
    return { family: ADDRESS_FAMILY_V4, bytes };
  }
  const v6 = host.includes(':') ? parseV6(host) : undefined;
  if (v6 === undefined) fail('BAD_ADDRESS', 'not an IP literal');
  return { family: isV4Mapped(v6) ? ADDRESS_FAMILY_V4 : ADDRESS_FAMILY_V6, bytes: v6 };
}

/**
 * The canonical text of the 16-byte IP at `bytes[offset..offset+16)`: dotted decimal when
 * it is IPv4-mapped, else RFC 5952 (lower case, no leading zeros, the longest run of two or
 * more zero groups, leftmost on a tie, replaced by `::`).
 * @param offset - where the 16 bytes start in `bytes`; default 0
 */
export function formatIp(bytes: Uint8Array, offset = 0): string {
  if (isV4Mapped(bytes, offset)) {
    return `${bytes[offset + 12]}.${bytes[offset + 13]}.${bytes[offset + 14]}.${bytes[offset + 15]}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(readU16(bytes, offset + 2 * i));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]): string => list.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/**
 * The form `decodeAddress` would return for `host`: use it to compare or key addresses
 * that did not come from the wire.
 * @throws ProtocolError `BAD_ADDRESS` if `host` is not an IP literal
 */
export function canonicalHost(host: string): string {
  return formatIp(parseIp(host).bytes);
}

/** Requires `port` to be a valid, non-zero UDP port. */
function expectPort(port: unknown): asserts port is number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    fail('BAD_ADDRESS', 'port not in 1..65535');
  }
}

/**
 * Writes the 19-byte form of `address` (`family u8 ‖ IP 16 ‖ port u16`) at `out[offset]`.
 * @throws ProtocolError `BAD_ADDRESS` if the host is not an IP literal or the port is 0
 */
export function writeAddress(out: Uint8Array, offset: number, address: UdpAddress): void {
  expectPort(address.port);
  const ip = parseIp(address.host);
  out[offset] = ip.family;
  out.set(ip.bytes, offset + 1);
  writeU16(out, offset + 1 + IP_BYTES, address.port);
}

/**
 * Reads the 19-byte address at `bytes[offset]`; the caller has checked that it is there.
 * @throws ProtocolError `BAD_ADDRESS` for a family other than 4 or 6, an IP that does not
 *   match its family (IPv4 must be IPv4-mapped, IPv6 must not be) or port 0
 */
export function readAddress(bytes: Uint8Array, offset: number): UdpAddress {
  const family = bytes[offset];
  const mapped = isV4Mapped(bytes, offset + 1);
  if (family === ADDRESS_FAMILY_V4) {
    if (!mapped) fail('BAD_ADDRESS', 'family 4 with an IP that is not IPv4-mapped');
  } else if (family === ADDRESS_FAMILY_V6) {
    if (mapped) fail('BAD_ADDRESS', 'family 6 with an IPv4-mapped IP (must be sent as family 4)');
  } else {
    fail('BAD_ADDRESS', `unknown address family ${String(family)}`);
  }
  const port = readU16(bytes, offset + 1 + IP_BYTES);
  expectPort(port);
  return { host: formatIp(bytes, offset + 1), port };
}

/**
 * Encodes a UDP address as 19 bytes (§6).
 * @throws ProtocolError `BAD_ADDRESS` if the host is not an IP literal or the port is 0
 */
export function encodeAddress(address: UdpAddress): Uint8Array {
  const out = new Uint8Array(ADDRESS_BYTES);
  writeAddress(out, 0, address);
  return out;
}

/**
 * Decodes exactly 19 bytes into a UDP address with a canonical host text (§6).
 * @throws ProtocolError `BAD_LENGTH`, or `BAD_ADDRESS` as `readAddress`
 */
export function decodeAddress(bytes: Uint8Array): UdpAddress {
  expectLength(bytes, ADDRESS_BYTES, 'address');
  return readAddress(bytes, 0);
}

/**
 * UDP addresses as plain values. A node is identified on the network by IP and port
 * (ARCHITECTURE.md "Roles"); `addressKey` is the one canonical string form used as a map key.
 */
import { isIP } from 'node:net';
import { ProtocolError } from './errors.js';

/** A UDP address. `host` is an IP literal (v4 dotted or v6 without brackets). */
export interface UdpAddress {
  readonly host: string;
  readonly port: number;
}

/** Canonical `host:port` (IPv6 in brackets), for map keys, known-peers files and logs. */
export function addressKey(address: UdpAddress): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** Parses `host:port` or `[v6]:port`; throws ProtocolError on anything else. */
export function parseAddress(text: string): UdpAddress {
  const match = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([0-9.]+):(\d{1,5})$/.exec(text);
  const host = match?.[1];
  const port = Number(match?.[2]);
  if (host === undefined || isIP(host) === 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ProtocolError('BAD_ADDRESS', `not an IP:port address: ${JSON.stringify(text)}`);
  }
  return { host, port };
}

/** Largest UDP payload over IPv4: 65,535 minus a 20-byte IP header and an 8-byte UDP header. */
export const MAX_UDP_PAYLOAD_BYTES = 65_507;

/** Largest UDP payload over IPv6: 65,535 minus the 8-byte UDP header (the IPv6 header is not counted). */
export const MAX_UDP6_PAYLOAD_BYTES = 65_527;

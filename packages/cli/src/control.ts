/**
 * The daemon's control API: HTTP/JSON on a loopback address, authenticated by the secret
 * cookie of the control file (control-file.ts). The daemon serves it (control-server.ts);
 * CLI commands call it (control-client.ts). This module holds what both ends must agree on:
 * the API never leaves this machine, the body limit, and how values become JSON.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { configError } from '@deut/common';

/** Largest accepted request body, and the largest body `callControl` will send. */
export const CONTROL_MAX_BODY_BYTES = 64 * 1024;

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** True for an IP literal in 127.0.0.0/8 or ::1 (IPv4-mapped forms included). */
export function isLoopbackIp(host: string): boolean {
  if (isIPv4(host)) return loopback.check(host, 'ipv4');
  if (isIPv6(host)) return loopback.check(host, 'ipv6');
  return false;
}

/**
 * Refuses a host that is not a loopback IP literal: the cookie travels in clear text, and
 * the API has no other defence against the network.
 * @throws DeutError `CONTROL_NOT_LOOPBACK` (config)
 */
export function requireLoopback(host: string, what: string): void {
  if (!isLoopbackIp(host)) {
    throw configError('CONTROL_NOT_LOOPBACK', `${what} ${JSON.stringify(host)} is not a loopback address (127.0.0.0/8 or ::1); the control API never leaves this machine`);
  }
}

/** JSON text of a value, with byte arrays as hex and bigints as decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value === undefined ? null : value, function (this: unknown, key: string, v: unknown) {
    // Buffer.toJSON runs before the replacer, so look at the holder's original value.
    const original = (this as Record<string, unknown>)[key];
    if (original instanceof Uint8Array) return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('hex');
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}

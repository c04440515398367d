/**
 * The text form of a DHT contact, `<public key hex>@<host>:<port>`, used for bootstrap
 * nodes in flags and config files: a key is needed before the first call, since every call
 * is authenticated (PROTOCOL.md §11.1).
 */
import { addressKey, parseAddress } from '@deut/common';
import { configError } from './errors.js';
import { fromHex, toHex } from '@deut/crypto';
import { PUBLIC_KEY_BYTES } from './id.js';
import type { RemoteNode } from './rpc.js';

/** `<public key hex>@<host>:<port>` (IPv6 hosts in brackets). */
export function formatDhtContact(node: RemoteNode): string {
  return `${toHex(node.publicKey)}@${addressKey(node.address)}`;
}

/**
 * Parses `<public key hex>@<host>:<port>`.
 * @throws DeutError (kind config) `BAD_CONTACT` with a message saying what is wrong
 */
export function parseDhtContact(text: string): RemoteNode {
  const at = text.indexOf('@');
  if (at < 0) throw configError('BAD_CONTACT', `dht contact "${text}": expected <public key hex>@<host>:<port>`);
  const keyHex = text.slice(0, at);
  if (!new RegExp(`^[0-9a-fA-F]{${PUBLIC_KEY_BYTES * 2}}$`).test(keyHex)) {
    throw configError('BAD_CONTACT', `dht contact "${text}": the public key must be ${PUBLIC_KEY_BYTES * 2} hex digits`);
  }
  let address;
  try {
    address = parseAddress(text.slice(at + 1));
  } catch (error) {
    throw configError('BAD_CONTACT', `dht contact "${text}": ${error instanceof Error ? error.message : String(error)}`);
  }
  return { publicKey: fromHex(keyHex.toLowerCase()), address };
}

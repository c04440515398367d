/**
 * Peer exchange link payloads (PROTOCOL.md §4.7): PEER_REQUEST asks a neighbour for
 * relayers (and, with the relay flag, announces the sender as one); PEER_LIST answers with
 * up to 20 relayers and the static keys the answerer authenticated for them.
 */
import type { UdpAddress } from '@deut/common';
import { readAddress, writeAddress } from './address.js';
import { expectBytes, fail } from './checks.js';
import { ADDRESS_BYTES, PUBLIC_KEY_BYTES } from './constants.js';

/** Type byte of PEER_REQUEST. */
export const PEER_REQUEST_TYPE = 0x30;
/** Type byte of PEER_LIST. */
export const PEER_LIST_TYPE = 0x31;
/** Most relayers in one PEER_LIST. */
export const MAX_PEER_LIST = 20;
/** Bytes of one PEER_LIST entry: address and static key. */
export const PEER_ENTRY_BYTES = ADDRESS_BYTES + PUBLIC_KEY_BYTES;

const RELAY_FLAG = 0x01;

/** A relayer as listed in PEER_LIST. */
export interface PeerEntry {
  readonly address: UdpAddress;
  /** The relayer's static key (PUBLIC_KEY_BYTES); a view of the input when decoded. */
  readonly publicKey: Uint8Array;
}

/** A peer exchange message. */
export type PeerExchangeMessage =
  | { readonly type: 'peer-request'; readonly relay: boolean }
  | { readonly type: 'peer-list'; readonly peers: readonly PeerEntry[] };

/** true if a link payload's first byte names a peer exchange message. */
export function isPeerExchange(payload: Uint8Array): boolean {
  return payload[0] === PEER_REQUEST_TYPE || payload[0] === PEER_LIST_TYPE;
}

/**
 * Encodes a peer exchange message.
 * @throws ProtocolError `TOO_MANY` for more than MAX_PEER_LIST peers, `BAD_FIELD` for a bad key
 */
export function encodePeerExchange(message: PeerExchangeMessage): Uint8Array {
  if (message.type === 'peer-request') return Uint8Array.of(PEER_REQUEST_TYPE, message.relay ? RELAY_FLAG : 0);
  if (message.peers.length > MAX_PEER_LIST) fail('TOO_MANY', `peer list: ${message.peers.length} peers, at most ${MAX_PEER_LIST}`);
  const out = new Uint8Array(2 + message.peers.length * PEER_ENTRY_BYTES);
  out[0] = PEER_LIST_TYPE;
  out[1] = message.peers.length;
  message.peers.forEach((peer, i) => {
    expectBytes(peer.publicKey, PUBLIC_KEY_BYTES, 'peer list key');
    const offset = 2 + i * PEER_ENTRY_BYTES;
    writeAddress(out, offset, peer.address);
    out.set(peer.publicKey, offset + ADDRESS_BYTES);
  });
  return out;
}

/**
 * Decodes and validates a peer exchange message.
 * @throws ProtocolError `BAD_TYPE`, `BAD_LENGTH`, `BAD_FIELD` (unknown flag bits), `TOO_MANY`,
 *   `BAD_ADDRESS`
 */
export function decodePeerExchange(bytes: Uint8Array): PeerExchangeMessage {
  if (bytes[0] === PEER_REQUEST_TYPE) {
    if (bytes.length !== 2) fail('BAD_LENGTH', `peer request: ${bytes.length} bytes, expected 2`);
    const flags = bytes[1] ?? 0;
    if ((flags & ~RELAY_FLAG) !== 0) fail('BAD_FIELD', 'peer request: unknown flag bits');
    return { type: 'peer-request', relay: flags === RELAY_FLAG };
  }
  if (bytes[0] !== PEER_LIST_TYPE) fail('BAD_TYPE', 'not a peer exchange message');
  const count = bytes[1];
  if (count === undefined) fail('BAD_LENGTH', 'peer list: no count');
  if (count > MAX_PEER_LIST) fail('TOO_MANY', `peer list: ${count} peers, at most ${MAX_PEER_LIST}`);
  if (bytes.length !== 2 + count * PEER_ENTRY_BYTES) fail('BAD_LENGTH', `peer list: ${bytes.length} bytes for ${count} peers`);
  const peers: PeerEntry[] = [];
  for (let i = 0; i < count; i++) {
    const offset = 2 + i * PEER_ENTRY_BYTES;
    const address = readAddress(bytes, offset);
    peers.push({ address, publicKey: bytes.subarray(offset + ADDRESS_BYTES, offset + PEER_ENTRY_BYTES) });
  }
  return { type: 'peer-list', peers };
}

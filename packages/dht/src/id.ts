/**
 * Kademlia identifiers (PROTOCOL.md §11.1): 256-bit node ids and value keys as 32-byte
 * arrays, the XOR metric over them, and the bucket arithmetic the routing table uses.
 * Node ids are hashes of public keys, never chosen, so a peer cannot place itself next to
 * a target key for free.
 */
import { fromHex, hash32, randomBytes, toHex } from '@deut/crypto';
import { protocolError } from './errors.js';

/** Length of node ids and value keys, in bytes (256 bits). */
export const ID_BYTES = 32;

/** Number of bits in an id, and so the number of routing-table buckets. */
export const ID_BITS = ID_BYTES * 8;

/** Length of the public keys node ids are derived from, in bytes. */
export const PUBLIC_KEY_BYTES = 32;

const utf8 = new TextEncoder();
const NODE_ID_LABEL = utf8.encode('deut/1 dht node id');
const KEY_LABEL = utf8.encode('deut/1 dht key');

/** True when `id` is a Uint8Array of exactly {@link ID_BYTES} bytes. */
export function isId(id: unknown): id is Uint8Array {
  return id instanceof Uint8Array && id.length === ID_BYTES;
}

/** Throws ProtocolError `BAD_ID_LENGTH` unless `id` is a 32-byte array. */
export function assertId(id: Uint8Array, what = 'id'): void {
  if (!isId(id)) throw protocolError('BAD_ID_LENGTH', `${what} must be ${ID_BYTES} bytes`);
}

/**
 * The node id of the holder of `publicKey`: BLAKE2b-256 over a label and the key. The label
 * keeps a node id from ever equalling a hash of the same key taken for another purpose.
 * Requires `cryptoReady()` to have resolved.
 * @throws ProtocolError `BAD_KEY_LENGTH` unless `publicKey` is 32 bytes
 */
export function nodeIdFromPublicKey(publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== PUBLIC_KEY_BYTES) {
    throw protocolError('BAD_KEY_LENGTH', `public key must be ${PUBLIC_KEY_BYTES} bytes`);
  }
  return hash32(NODE_ID_LABEL, publicKey);
}

/**
 * The DHT key under which a user-level key (any bytes, e.g. a name) is stored. Hashed with
 * its own label, so a user key can never collide with a node id by construction.
 */
export function keyFromBytes(bytes: Uint8Array): Uint8Array {
  return hash32(KEY_LABEL, bytes);
}

/** `a XOR b`, a fresh 32-byte array: the Kademlia distance. */
export function xorDistance(a: Uint8Array, b: Uint8Array): Uint8Array {
  assertId(a);
  assertId(b);
  const out = new Uint8Array(ID_BYTES);
  for (let i = 0; i < ID_BYTES; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/**
 * Orders `a` and `b` by their XOR distance to `target`: -1 if `a` is closer, 1 if `b` is,
 * 0 if equally close (only when a = b). Allocates nothing, since sorts call it n log n times.
 */
export function compareDistance(target: Uint8Array, a: Uint8Array, b: Uint8Array): -1 | 0 | 1 {
  for (let i = 0; i < ID_BYTES; i++) {
    const t = target[i]!;
    const da = a[i]! ^ t;
    const db = b[i]! ^ t;
    if (da !== db) return da < db ? -1 : 1;
  }
  return 0;
}

/**
 * Index of the highest bit in which `self` and `other` differ, counting the least
 * significant bit of the last byte as 0 and the top bit of the first byte as 255; that is
 * floor(log2(distance)). Undefined for equal ids. Bucket i holds the ids at distance
 * [2^i, 2^(i+1)) from self.
 */
export function bucketIndex(self: Uint8Array, other: Uint8Array): number | undefined {
  for (let i = 0; i < ID_BYTES; i++) {
    const x = self[i]! ^ other[i]!;
    if (x !== 0) return (ID_BYTES - 1 - i) * 8 + (31 - Math.clz32(x));
  }
  return undefined;
}

/**
 * A random id that falls in bucket `index` of `self`: the bits above `index` copied from
 * self, bit `index` flipped, the bits below random. Bucket refresh looks this id up.
 * @throws ProtocolError `BAD_BUCKET` unless `index` is an integer in 0..255
 */
export function randomIdInBucket(self: Uint8Array, index: number): Uint8Array {
  assertId(self, 'self');
  if (!Number.isInteger(index) || index < 0 || index >= ID_BITS) {
    throw protocolError('BAD_BUCKET', `bucket index must be 0..${ID_BITS - 1}`);
  }
  const out = randomBytes(ID_BYTES);
  const byte = ID_BYTES - 1 - (index >> 3);
  const bit = 1 << (index & 7);
  for (let i = 0; i < byte; i++) out[i] = self[i]!;
  const below = bit - 1;
  out[byte] = (self[byte]! & ~(below | bit) & 0xff) | (~self[byte]! & bit) | (out[byte]! & below);
  return out;
}

/** Lower-case hex of an id, the form used as a map key and in logs. */
export function idToHex(id: Uint8Array): string {
  assertId(id);
  return toHex(id);
}

/**
 * Parses 64 hex digits into an id.
 * @throws ProtocolError `BAD_ID_LENGTH` for anything but 32 bytes of hex; DeutError `BAD_HEX` for non-hex
 */
export function idFromHex(hex: string): Uint8Array {
  const id = fromHex(hex);
  assertId(id);
  return id;
}

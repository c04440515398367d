/**
 * Key derivation for tunnel builds and the keys a hop shares with the master
 * (docs/PROTOCOL.md §2 labels, §4.2-§4.4 build keys, §5.2 layer keys, §5.3 sequence
 * offsets). Every function here is a pure KDF step: the Diffie-Hellman and AEAD work that
 * feeds them lives in build-crypto.ts, so the derivations can be checked against vectors
 * on their own.
 */
import { cryptoError } from '@deut/common';
import { X25519_KEY_BYTES, concatBytes, deriveKey, zero } from '@deut/crypto';

/** Bytes of a hop secret `H` (§4.2 step 4, §4.4 step 2) and of every key derived from it. */
export const HOP_SECRET_BYTES = 32;

/** Bytes of KDF output a sequence offset is cut from (§5.3). */
const OFFSET_KDF_BYTES = 16;

/** Bytes of that output that make the 48-bit offset (§5.3). */
const OFFSET_BYTES = 6;

/** Exclusive upper bound of a sequence offset. */
export const MAX_SEQ_OFFSET = 2 ** 48;

/** The keys and offsets a hop and the master share for one tunnel (§5.2-§5.3). */
export interface HopKeys {
  /** XChaCha20 layer key for cells travelling away from the master (32 bytes, secret). */
  readonly outboundKey: Uint8Array;
  /** XChaCha20 layer key for cells travelling toward the master (32 bytes, secret). */
  readonly inboundKey: Uint8Array;
  /** What this hop adds to `seq` when it forwards an outbound cell; an integer below 2^48. */
  readonly outboundOffset: number;
  /** What this hop adds to `seq` when it forwards an inbound cell; an integer below 2^48. */
  readonly inboundOffset: number;
}

/** Everything derived from one hop secret `H`. All keys are 32 bytes and secret. */
export interface HopSecrets {
  /** The long-lived part: kept by the hop and the master for the tunnel's lifetime. */
  readonly keys: HopKeys;
  /** Seals this hop's reply slot (§4.3); single use. */
  readonly replyKey: Uint8Array;
  /** Keys the hop's response-step keystream (§4.3); single use. */
  readonly responseLayerKey: Uint8Array;
  /** Blinding scalar for the next hop's ephemeral key (§4.4); only relayer mode uses it. */
  readonly blind: Uint8Array;
}

function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) {
    throw cryptoError('BAD_KEY_LENGTH', `${what} must be ${length} bytes, got ${bytes.length}`);
  }
}

/** The first 6 bytes of a 16-byte KDF output, big-endian: exact in a double, below 2^48. */
function readOffset(label: string, hopSecret: Uint8Array): number {
  const bytes = deriveKey(label, hopSecret, undefined, OFFSET_KDF_BYTES);
  let value = 0;
  for (let i = 0; i < OFFSET_BYTES; i++) value = value * 256 + (bytes[i] ?? 0);
  zero(bytes);
  return value;
}

/**
 * Derives everything a hop secret keys (§2 table): both layer keys and offsets, the reply
 * key, the response layer key and the relayer-mode blinding scalar. The same function runs
 * on the hop and on the master, which is what makes their keys agree.
 * @param hopSecret `H`, HOP_SECRET_BYTES; the caller still owns it and should zero it
 * @throws DeutError `BAD_KEY_LENGTH` (kind `crypto`) unless `hopSecret` is 32 bytes
 */
export function deriveHopSecrets(hopSecret: Uint8Array): HopSecrets {
  checkLength(hopSecret, HOP_SECRET_BYTES, 'hop secret');
  const keys: HopKeys = {
    outboundKey: deriveKey('deut/1 layer outbound', hopSecret),
    inboundKey: deriveKey('deut/1 layer inbound', hopSecret),
    outboundOffset: readOffset('deut/1 seq offset outbound', hopSecret),
    inboundOffset: readOffset('deut/1 seq offset inbound', hopSecret),
  };
  return {
    keys,
    replyKey: deriveKey('deut/1 build reply', hopSecret),
    responseLayerKey: deriveKey('deut/1 build response layer', hopSecret),
    blind: deriveKey('deut/1 blind', hopSecret),
  };
}

/**
 * The AEAD key of a master-mode build record (§4.2): `KDF('deut/1 build record', DH1,
 * E ‖ S)`. Binding `S` means a record sealed for one node opens for no other, even if two
 * nodes were handed the same `E`.
 * @param dh1 X25519(e, S) = X25519(s, E), 32 bytes
 * @param ephemeral the master's `E` for this hop
 * @param staticKey the hop's static public key `S`
 */
export function deriveRecordKey(dh1: Uint8Array, ephemeral: Uint8Array, staticKey: Uint8Array): Uint8Array {
  checkLength(dh1, X25519_KEY_BYTES, 'DH1');
  checkLength(ephemeral, X25519_KEY_BYTES, 'build ephemeral key');
  checkLength(staticKey, X25519_KEY_BYTES, 'hop static key');
  return deriveKey('deut/1 build record', dh1, concatBytes(ephemeral, staticKey));
}

/**
 * The key of a hop's request-transform keystream (§4.2): `KDF('deut/1 build request
 * layer', DH1, E)`. It needs only DH1 because the master must know it before the hop has
 * chosen `Y`: the master pre-XORs every later record with it.
 */
export function deriveRequestLayerKey(dh1: Uint8Array, ephemeral: Uint8Array): Uint8Array {
  checkLength(dh1, X25519_KEY_BYTES, 'DH1');
  checkLength(ephemeral, X25519_KEY_BYTES, 'build ephemeral key');
  return deriveKey('deut/1 build request layer', dh1, ephemeral);
}

/**
 * A master-mode hop secret (§4.2 step 4): `KDF('deut/1 hop secret', DH1 ‖ DH2, E ‖ Y ‖ S)`.
 * DH1 (ephemeral-static) authenticates the hop to the master; DH2 (ephemeral-ephemeral)
 * gives forward secrecy: leaking `s` later does not reveal `H`.
 * @param dh1 X25519(e, S), 32 bytes
 * @param dh2 X25519(e, Y) = X25519(y, E), 32 bytes
 */
export function deriveMasterHopSecret(
  dh1: Uint8Array,
  dh2: Uint8Array,
  ephemeral: Uint8Array,
  hopEphemeral: Uint8Array,
  staticKey: Uint8Array,
): Uint8Array {
  checkLength(dh1, X25519_KEY_BYTES, 'DH1');
  checkLength(dh2, X25519_KEY_BYTES, 'DH2');
  checkLength(ephemeral, X25519_KEY_BYTES, 'build ephemeral key');
  checkLength(hopEphemeral, X25519_KEY_BYTES, 'hop ephemeral key');
  checkLength(staticKey, X25519_KEY_BYTES, 'hop static key');
  // Step 1: both shared secrets form one 64-byte KDF key, so neither alone determines H.
  const ikm = concatBytes(dh1, dh2);
  // Step 2: the transcript E ‖ Y ‖ S is the context, so H names this exact exchange.
  const hopSecret = deriveKey('deut/1 hop secret', ikm, concatBytes(ephemeral, hopEphemeral, staticKey));
  zero(ikm);
  return hopSecret;
}

/**
 * A relayer-mode hop secret (§4.4 step 2): `KDF('deut/1 hop secret relayer', Z, E ‖ Y)`
 * with `Z = X25519(y, E)`. No static key takes part: in relayer mode nobody is
 * authenticated but the first hop, over its link.
 */
export function deriveRelayerHopSecret(z: Uint8Array, ephemeral: Uint8Array, hopEphemeral: Uint8Array): Uint8Array {
  checkLength(z, X25519_KEY_BYTES, 'Z');
  checkLength(ephemeral, X25519_KEY_BYTES, 'build ephemeral key');
  checkLength(hopEphemeral, X25519_KEY_BYTES, 'hop ephemeral key');
  return deriveKey('deut/1 hop secret relayer', z, concatBytes(ephemeral, hopEphemeral));
}

/**
 * Where things sit in a link handshake datagram and in a cookie reply (docs/PROTOCOL.md
 * §3.1, §3.2 and §3.3): Noise bytes first, whose first 32 bytes in msg1 and msg2 are the
 * Elligator2 representative of the sender's ephemeral key, then random padding, then (msg1
 * under load) mac2, then mac1 at the end. Offsets and views only: the MACs, the Noise
 * messages and the padding's randomness are computed by @deut/link with @deut/crypto.
 */
import { DATAGRAM_BYTES, HANDSHAKE_PAYLOAD_BYTES, PUBLIC_KEY_BYTES, TAG_BYTES } from './constants.js';

/** Bytes of mac1 and of mac2, each a BLAKE2b-128 MAC (§3.3). */
export const HANDSHAKE_MAC_BYTES = 16;

/** Where mac1 starts (1184): it ends every handshake datagram and covers every byte before it (§3.3). */
export const MAC1_OFFSET = DATAGRAM_BYTES - HANDSHAKE_MAC_BYTES;

/** Where mac2 starts (1168) in a msg1 sent under load: just before mac1, over every byte before it (§3.3). */
export const MAC2_OFFSET = MAC1_OFFSET - HANDSHAKE_MAC_BYTES;

/** Bytes of an ephemeral key's Elligator2 representative, at offset 0 of msg1, msg2 and of the msg1 a cookie reply answers (§3.2). */
export const REPRESENTATIVE_BYTES = PUBLIC_KEY_BYTES;

/** Noise bytes that start msg1: `e` as its representative (§3.1). */
export const MSG1_NOISE_BYTES = REPRESENTATIVE_BYTES;

/** Noise bytes that start msg2 (128): `repr(e) 32 ‖ enc(s) 48 ‖ enc(payload) 48` (§3.1). */
export const MSG2_NOISE_BYTES = REPRESENTATIVE_BYTES + PUBLIC_KEY_BYTES + TAG_BYTES + HANDSHAKE_PAYLOAD_BYTES + TAG_BYTES;

/** Noise bytes that start msg3 (96): `enc(s) 48 ‖ enc(payload) 48` (§3.1). */
export const MSG3_NOISE_BYTES = PUBLIC_KEY_BYTES + TAG_BYTES + HANDSHAKE_PAYLOAD_BYTES + TAG_BYTES;

/** Bytes of a cookie, a BLAKE2b-128 MAC of the source address (§3.3 "Under load"). */
export const COOKIE_BYTES = 16;

/** Bytes of the random XChaCha20 nonce that starts a cookie reply (§3.3). */
export const COOKIE_REPLY_NONCE_BYTES = 24;

/** Bytes of the sealed cookie after the nonce: cookie and its Poly1305 tag (§3.3). */
export const COOKIE_REPLY_SEALED_BYTES = COOKIE_BYTES + TAG_BYTES;

/** The bytes mac1 covers: all of the datagram before it. */
export function mac1Input(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(0, MAC1_OFFSET);
}

/** The mac1 field, the datagram's last HANDSHAKE_MAC_BYTES. */
export function mac1Field(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(MAC1_OFFSET, DATAGRAM_BYTES);
}

/** The bytes mac2 covers: all of msg1 before it. */
export function mac2Input(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(0, MAC2_OFFSET);
}

/** The mac2 field of a msg1 (random padding when the msg1 carries no cookie). */
export function mac2Field(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(MAC2_OFFSET, MAC1_OFFSET);
}

/** The ephemeral representative that starts a msg1 or msg2. */
export function representativeField(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(0, REPRESENTATIVE_BYTES);
}

/** The nonce that starts a cookie reply. */
export function cookieReplyNonce(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(0, COOKIE_REPLY_NONCE_BYTES);
}

/** The sealed cookie that follows a cookie reply's nonce. */
export function cookieReplySealed(datagram: Uint8Array): Uint8Array {
  return datagram.subarray(COOKIE_REPLY_NONCE_BYTES, COOKIE_REPLY_NONCE_BYTES + COOKIE_REPLY_SEALED_BYTES);
}

/**
 * Stateless cookies for handshakes under load (PROTOCOL.md §3.3 "Under load"), after
 * WireGuard's MAC2: a responder whose msg1 budget is spent answers a msg1 with a cookie
 * instead of doing Diffie-Hellman; the cookie is a MAC of the source address under a
 * rotating secret, so only a sender that receives at its claimed address can echo it. The
 * reply is one 1200-byte datagram of random-looking bytes, no larger than the msg1 it
 * answers, and it costs the responder no state.
 */
import { addressKey, type Clock, type UdpAddress } from '@deut/common';
import { constantTimeEqual, deriveKey, mac16, randomBytes, xchachaOpen, xchachaSeal } from '@deut/crypto';
import { DATAGRAM_BYTES } from '@deut/wire';

/** Bytes of a cookie (a BLAKE2b-128 MAC). */
export const COOKIE_BYTES = 16;
/** How long one cookie secret is used; the previous one is still accepted (WireGuard: 2 min). */
export const COOKIE_SECRET_MS = 120_000;

const MAC_BYTES = 16;
const KEY_BYTES = 32;
const NONCE_BYTES = 24;
const MAC1_OFFSET = DATAGRAM_BYTES - MAC_BYTES;
/** mac2 sits just before mac1 and covers everything before it. */
export const MAC2_OFFSET = MAC1_OFFSET - MAC_BYTES;
const SEALED_COOKIE_BYTES = COOKIE_BYTES + MAC_BYTES;
const ZERO_KEY = new Uint8Array(32);
const utf8 = new TextEncoder();

/** mac1 key of a cookie reply: bound to the representative of the msg1 it answers. */
function cookieReplyMac1Key(representative: Uint8Array): Uint8Array {
  return deriveKey('deut/1 mac1 cookie', ZERO_KEY, representative);
}

/** Encryption key of a cookie reply; it hides the cookie's bytes, it is not a secret. */
function cookieSealKey(representative: Uint8Array): Uint8Array {
  return deriveKey('deut/1 cookie key', ZERO_KEY, representative);
}

/** `mac2 = mac16(cookie, msg1[0..1168])`. */
export function computeMac2(cookie: Uint8Array, datagram: Uint8Array): Uint8Array {
  return mac16(cookie, datagram.subarray(0, MAC2_OFFSET));
}

/** The responder's side: makes cookies for source addresses and checks echoed mac2s. */
export class CookieIssuer {
  readonly #clock: Clock;
  #current = randomBytes(KEY_BYTES);
  #previous = randomBytes(KEY_BYTES);
  #rotatedAt: number;

  constructor(clock: Clock) {
    this.#clock = clock;
    this.#rotatedAt = clock.now();
  }

  /** true if msg1's mac2 is the cookie of `source` under the current or previous secret. */
  mac2Valid(msg1: Uint8Array, source: UdpAddress): boolean {
    if (msg1.length !== DATAGRAM_BYTES) return false;
    this.#rotate();
    const echoed = msg1.subarray(MAC2_OFFSET, MAC1_OFFSET);
    const ok = (secret: Uint8Array): boolean => constantTimeEqual(computeMac2(this.#cookie(secret, source), msg1), echoed);
    // Both are computed so the time taken does not tell which secret matched.
    const current = ok(this.#current);
    const previous = ok(this.#previous);
    return current || previous;
  }

  /** The cookie reply to `msg1` from `source`: `nonce 24 ‖ sealed cookie 32 ‖ random ‖ mac1 16`. */
  reply(msg1: Uint8Array, source: UdpAddress): Uint8Array {
    this.#rotate();
    const representative = msg1.subarray(0, KEY_BYTES);
    const datagram = randomBytes(DATAGRAM_BYTES);
    const nonce = datagram.subarray(0, NONCE_BYTES);
    datagram.set(xchachaSeal(cookieSealKey(representative), nonce, this.#cookie(this.#current, source)), NONCE_BYTES);
    datagram.set(mac16(cookieReplyMac1Key(representative), datagram.subarray(0, MAC1_OFFSET)), MAC1_OFFSET);
    return datagram;
  }

  #cookie(secret: Uint8Array, source: UdpAddress): Uint8Array {
    return mac16(secret, utf8.encode(addressKey(source)));
  }

  #rotate(): void {
    const now = this.#clock.now();
    if (now - this.#rotatedAt < COOKIE_SECRET_MS) return;
    // After a long quiet spell both secrets are stale: replace both.
    this.#previous = now - this.#rotatedAt < 2 * COOKIE_SECRET_MS ? this.#current : randomBytes(KEY_BYTES);
    this.#current = randomBytes(KEY_BYTES);
    this.#rotatedAt = now;
  }
}

/**
 * The initiator's side: recognises a cookie reply to its msg1 (by its representative) and
 * opens the cookie. Returns null for anything else.
 */
export function openCookieReply(datagram: Uint8Array, representative: Uint8Array): Uint8Array | null {
  if (datagram.length !== DATAGRAM_BYTES) return null;
  const mac1 = mac16(cookieReplyMac1Key(representative), datagram.subarray(0, MAC1_OFFSET));
  if (!constantTimeEqual(mac1, datagram.subarray(MAC1_OFFSET))) return null;
  const nonce = datagram.subarray(0, NONCE_BYTES);
  return xchachaOpen(cookieSealKey(representative), nonce, datagram.subarray(NONCE_BYTES, NONCE_BYTES + SEALED_COOKIE_BYTES));
}

/**
 * Stateless cookies for handshakes under load (PROTOCOL.md §3.3 "Under load"), after
 * WireGuard's MAC2: a responder whose msg1 budget is spent answers a msg1 with a cookie
 * instead of doing Diffie-Hellman; the cookie is a MAC of the source address under a
 * rotating secret, so only a sender that receives at its claimed address can echo it. The
 * reply is one 1200-byte datagram of random-looking bytes, no larger than the msg1 it
 * answers, and it costs the responder no state.
 */
import { addressKey, type Clock, type UdpAddress } from '@deut/common';
import { constantTimeEqual, mac16, randomBytes, xchachaOpen, xchachaSeal } from '@deut/crypto';
import {
  DATAGRAM_BYTES,
  MAC1_OFFSET,
  cookieReplyNonce,
  cookieReplySealed,
  mac1Field,
  mac1Input,
  mac2Field,
  mac2Input,
  representativeField,
} from '@deut/wire';
import { COOKIE_SECRET_BYTES, COOKIE_SECRET_MS } from './constants.js';
import { cookieReplyMac1Key, cookieSealKey } from './mac-keys.js';

const utf8 = new TextEncoder();

/** `mac2 = mac16(cookie, msg1[0..1168])`. */
export function computeMac2(cookie: Uint8Array, datagram: Uint8Array): Uint8Array {
  return mac16(cookie, mac2Input(datagram));
}

/** The responder's side: makes cookies for source addresses and checks echoed mac2s. */
export class CookieIssuer {
  readonly #clock: Clock;
  #current = randomBytes(COOKIE_SECRET_BYTES);
  #previous = randomBytes(COOKIE_SECRET_BYTES);
  #rotatedAt: number;

  constructor(clock: Clock) {
    this.#clock = clock;
    this.#rotatedAt = clock.now();
  }

  /** true if msg1's mac2 is the cookie of `source` under the current or previous secret. */
  mac2Valid(msg1: Uint8Array, source: UdpAddress): boolean {
    if (msg1.length !== DATAGRAM_BYTES) return false;
    this.#rotate();
    const echoed = mac2Field(msg1);
    const ok = (secret: Uint8Array): boolean => constantTimeEqual(computeMac2(this.#cookie(secret, source), msg1), echoed);
    // Both are computed so the time taken does not tell which secret matched.
    const current = ok(this.#current);
    const previous = ok(this.#previous);
    return current || previous;
  }

  /** The cookie reply to `msg1` from `source`: `nonce 24 ‖ sealed cookie 32 ‖ random ‖ mac1 16`. */
  reply(msg1: Uint8Array, source: UdpAddress): Uint8Array {
    this.#rotate();
    const representative = representativeField(msg1);
    const datagram = randomBytes(DATAGRAM_BYTES);
    cookieReplySealed(datagram).set(xchachaSeal(cookieSealKey(representative), cookieReplyNonce(datagram), this.#cookie(this.#current, source)));
    datagram.set(mac16(cookieReplyMac1Key(representative), mac1Input(datagram)), MAC1_OFFSET);
    return datagram;
  }

  #cookie(secret: Uint8Array, source: UdpAddress): Uint8Array {
    return mac16(secret, utf8.encode(addressKey(source)));
  }

  #rotate(): void {
    const now = this.#clock.now();
    if (now - this.#rotatedAt < COOKIE_SECRET_MS) return;
    // After a long quiet spell both secrets are stale: replace both.
    this.#previous = now - this.#rotatedAt < 2 * COOKIE_SECRET_MS ? this.#current : randomBytes(COOKIE_SECRET_BYTES);
    this.#current = randomBytes(COOKIE_SECRET_BYTES);
    this.#rotatedAt = now;
  }
}

/**
 * The initiator's side: recognises a cookie reply to its msg1 (by its representative) and
 * opens the cookie. Returns null for anything else.
 */
export function openCookieReply(datagram: Uint8Array, representative: Uint8Array): Uint8Array | null {
  if (datagram.length !== DATAGRAM_BYTES) return null;
  const mac1 = mac16(cookieReplyMac1Key(representative), mac1Input(datagram));
  if (!constantTimeEqual(mac1, mac1Field(datagram))) return null;
  return xchachaOpen(cookieSealKey(representative), cookieReplyNonce(datagram), cookieReplySealed(datagram));
}

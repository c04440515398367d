/**
 * The public keys of the handshake MACs (PROTOCOL.md §3.3 "mac1" and "Under load"): each is
 * `KDF(label, 0^32, context)`, bound to what the receiver already knows, so a datagram is
 * classified with one BLAKE2b before any Diffie-Hellman. None of them is secret.
 */
import { deriveKey } from '@deut/crypto';

/** The KDF key of derivations whose output is public: only the label and context matter. */
const ZERO_KEY = new Uint8Array(32);

/** mac1 key for msg1 addressed to a responder whose static key the initiator knows. */
export function responderMac1Key(responderStatic: Uint8Array): Uint8Array {
  return deriveKey('deut/1 mac1 responder', ZERO_KEY, responderStatic);
}

/** mac1 key for msg1 on first contact; public by design (PROTOCOL.md §3.3). */
export function openMac1Key(): Uint8Array {
  return deriveKey('deut/1 mac1 open', ZERO_KEY);
}

/** mac1 key of msg2: the initiator's ephemeral public key (not its representative). */
export function msg2Mac1Key(initiatorEphemeral: Uint8Array): Uint8Array {
  return deriveKey('deut/1 mac1 msg2', ZERO_KEY, initiatorEphemeral);
}

/** mac1 key of msg3: the responder's ephemeral public key. */
export function msg3Mac1Key(responderEphemeral: Uint8Array): Uint8Array {
  return deriveKey('deut/1 mac1 msg3', ZERO_KEY, responderEphemeral);
}

/** mac1 key of a cookie reply: bound to the representative of the msg1 it answers. */
export function cookieReplyMac1Key(representative: Uint8Array): Uint8Array {
  return deriveKey('deut/1 mac1 cookie', ZERO_KEY, representative);
}

/** Encryption key of a cookie reply; it hides the cookie's bytes, it is not a secret. */
export function cookieSealKey(representative: Uint8Array): Uint8Array {
  return deriveKey('deut/1 cookie key', ZERO_KEY, representative);
}

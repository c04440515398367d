/**
 * An observer of every (key, nonce) pair this process encrypts under: AEAD seals and the
 * tunnel cell layers. Reusing a pair with a stream cipher leaks the XOR of two plaintexts
 * and, for Poly1305, the one-time key; the hardening tests record every pair across link
 * rekeys and tunnel traffic and check none repeats (issue #8). Decryption is not reported:
 * opening a ciphertext uses the pair its sender used.
 *
 * Off by default and then a single branch per seal. Not for production use: the observer
 * sees raw keys.
 */

/** What was encrypted under one (key, nonce) pair. */
export type NonceUseKind = 'chacha20-poly1305' | 'xchacha20-poly1305' | 'cell-layer';

/** One encryption: the kind, the key and the nonce (copies, the observer may keep them). */
export interface NonceUse {
  readonly kind: NonceUseKind;
  readonly key: Uint8Array;
  readonly nonce: Uint8Array;
}

let observer: ((use: NonceUse) => void) | undefined;

/** Installs `next` as the one observer (undefined removes it); returns the previous one. */
export function observeNonceUses(next: ((use: NonceUse) => void) | undefined): ((use: NonceUse) => void) | undefined {
  const previous = observer;
  observer = next;
  return previous;
}

/** True while an observer is installed: lets a hot path skip building what it would report. */
export function observingNonceUses(): boolean {
  return observer !== undefined;
}

/** Reports one encryption to the observer, if there is one. */
export function reportNonceUse(kind: NonceUseKind, key: Uint8Array, nonce: Uint8Array): void {
  if (observer !== undefined) observer({ kind, key: key.slice(), nonce: nonce.slice() });
}

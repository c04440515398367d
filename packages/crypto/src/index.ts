/**
 * @deut/crypto: the primitives of deut (docs/PROTOCOL.md §2) on libsodium: randomness and
 * byte helpers, the BLAKE2b KDF and MACs, ChaCha20-Poly1305 AEADs, X25519 keys and key
 * files, Noise handshakes (XX for links, IK for the DHT), Elligator2 representatives (§3.2), link header protection (§3.4),
 * the onion layers of cells (§5.2, sized by the caller from @deut/wire), reused-memory
 * variants for hot paths (scratch.ts), a nonce-use observer for tests, and the closed
 * unions of its error codes. It knows no byte layout of the protocol: that is @deut/wire's.
 */
export * from './sodium.js';
export * from './bytes.js';
export * from './kdf.js';
export * from './aead.js';
export * from './keys.js';
export * from './noise.js';
export * from './elligator.js';
export * from './header-protection.js';
export * from './onion.js';
export * from './nonce-uses.js';
export * from './scratch.js';
export { NOISE_ERROR_CODES, type CryptoBugCode, type CryptoErrorCode, type KeyFileErrorCode, type NoiseErrorCode } from './errors.js';

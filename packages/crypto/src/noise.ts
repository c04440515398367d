/**
 * The Noise Protocol Framework, revision 34 (https://noiseprotocol.org/noise.html), for
 * the single cipher suite 25519_ChaChaPoly_BLAKE2b and the patterns NN, NK, XK, IK and XX.
 *
 * The structure follows the spec's sections 5.1-5.3 (CipherState, SymmetricState,
 * HandshakeState) and is table-driven: a pattern is a list of pre-message and message
 * token lists, and one loop interprets the tokens. No PSK modes, no fallback, no rekey.
 *
 * Failures a remote peer can cause throw `ProtocolError`: `NOISE_DECRYPT` (a ciphertext
 * does not authenticate) and `NOISE_LENGTH` (a message of impossible size). Calling
 * write/read out of turn throws `ProtocolError` `NOISE_STATE`. A low-order remote key
 * throws the `LOW_ORDER_KEY` crypto error from keys.ts.
 */
import { cryptoBug, noiseError } from './errors.js';
import { AEAD_KEY_BYTES, AEAD_TAG_BYTES, chachaOpen, chachaSeal } from './aead.js';
import { concatBytes, zero } from './bytes.js';
import type { KeyPair } from './keys.js';
import { X25519_KEY_BYTES, generateKeyPair, x25519 } from './keys.js';
import { sodium } from './sodium.js';

/** The handshake patterns implemented here (Noise spec section 7). */
export type NoisePatternName = 'NN' | 'NK' | 'XK' | 'IK' | 'XX';

type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss';

interface PatternDef {
  /** Pre-message tokens of the initiator and of the responder (only `s` is used here). */
  readonly preInitiator: readonly 's'[];
  readonly preResponder: readonly 's'[];
  /** Messages in order; even indices are sent by the initiator, odd by the responder. */
  readonly messages: readonly (readonly Token[])[];
}

/** Section 7.4 and 7.5 of the spec, transcribed. */
const PATTERNS: Readonly<Record<NoisePatternName, PatternDef>> = {
  NN: { preInitiator: [], preResponder: [], messages: [['e'], ['e', 'ee']] },
  NK: { preInitiator: [], preResponder: ['s'], messages: [['e', 'es'], ['e', 'ee']] },
  XK: { preInitiator: [], preResponder: ['s'], messages: [['e', 'es'], ['e', 'ee'], ['s', 'se']] },
  IK: { preInitiator: [], preResponder: ['s'], messages: [['e', 'es', 's', 'ss'], ['e', 'ee', 'se']] },
  XX: { preInitiator: [], preResponder: [], messages: [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']] },
};

/** BLAKE2b-512 output length (HASHLEN), in bytes. */
export const NOISE_HASH_BYTES = 64;

/** BLAKE2b block length (BLOCKLEN), used by HMAC, in bytes. */
const BLOCK_BYTES = 128;

/** X25519 public key length (DHLEN), in bytes. */
export const NOISE_DH_BYTES = X25519_KEY_BYTES;

/** Largest Noise message, in bytes (spec section 3). */
export const NOISE_MAX_MESSAGE_BYTES = 65535;

const EMPTY = new Uint8Array(0);
const ascii = new TextEncoder();

/** The full protocol name, e.g. `Noise_XX_25519_ChaChaPoly_BLAKE2b`. */
export function noiseProtocolName(pattern: NoisePatternName): string {
  return `Noise_${pattern}_25519_ChaChaPoly_BLAKE2b`;
}

function patternDef(pattern: NoisePatternName): PatternDef {
  const def = PATTERNS[pattern] as PatternDef | undefined;
  if (def === undefined) throw cryptoBug('NOISE_PATTERN', `unsupported Noise pattern ${String(pattern)}`);
  return def;
}

function hash(...parts: readonly Uint8Array[]): Uint8Array {
  return sodium().crypto_generichash(NOISE_HASH_BYTES, concatBytes(...parts), null);
}

/**
 * HMAC-BLAKE2b built from the plain hash (RFC 2104), as section 4.3 requires; BLAKE2b's
 * own keyed mode would give different bytes and fail interop.
 */
function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  // Keys here are always HASHLEN (64) bytes, below BLOCKLEN, so no pre-hashing of the key.
  const ipad = new Uint8Array(BLOCK_BYTES).fill(0x36);
  const opad = new Uint8Array(BLOCK_BYTES).fill(0x5c);
  for (let i = 0; i < key.length; i++) {
    const k = key[i] ?? 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  const inner = hash(ipad, data);
  const outer = hash(opad, inner);
  zero(ipad);
  zero(opad);
  zero(inner);
  return outer;
}

/** HKDF with two outputs (section 4.3); the three-output form is only needed for PSKs. */
function hkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const tempKey = hmac(chainingKey, ikm);
  const out1 = hmac(tempKey, Uint8Array.of(0x01));
  const out2 = hmac(tempKey, concatBytes(out1, Uint8Array.of(0x02)));
  zero(tempKey);
  return [out1, out2];
}

/** Truncates a HASHLEN output to a 32-byte cipher key and wipes the rest. */
function cipherKeyFrom(output: Uint8Array): Uint8Array {
  const key = output.slice(0, AEAD_KEY_BYTES);
  zero(output);
  return key;
}

/** Section 5.1: a key (or none) and a nonce counter. */
class CipherState {
  private k: Uint8Array | null = null;
  private n = 0;

  initializeKey(key: Uint8Array): void {
    if (this.k !== null) zero(this.k);
    this.k = key;
    this.n = 0;
  }

  hasKey(): boolean {
    return this.k !== null;
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.k === null) return plaintext.slice();
    const ciphertext = chachaSeal(this.k, this.n, plaintext, ad);
    this.n++;
    return ciphertext;
  }

  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (this.k === null) return ciphertext.slice();
    const plaintext = chachaOpen(this.k, this.n, ciphertext, ad);
    if (plaintext === null) throw noiseError('NOISE_DECRYPT', 'Noise handshake message does not authenticate');
    // Only a successful decryption consumes the nonce (section 5.1).
    this.n++;
    return plaintext;
  }

  wipe(): void {
    if (this.k !== null) zero(this.k);
    this.k = null;
  }

  snapshot(): { k: Uint8Array | null; n: number } {
    return { k: this.k?.slice() ?? null, n: this.n };
  }

  restore(saved: { k: Uint8Array | null; n: number }): void {
    if (this.k !== null) zero(this.k);
    this.k = saved.k?.slice() ?? null;
    this.n = saved.n;
  }
}

interface SymmetricSnapshot {
  readonly ck: Uint8Array;
  readonly h: Uint8Array;
  readonly cipher: { k: Uint8Array | null; n: number };
}

function wipeSnapshot(saved: SymmetricSnapshot): void {
  zero(saved.ck);
  if (saved.cipher.k !== null) zero(saved.cipher.k);
}

/** Section 5.2: chaining key, handshake hash, and the CipherState keyed from them. */
class SymmetricState {
  readonly cipher = new CipherState();
  ck: Uint8Array;
  h: Uint8Array;

  constructor(protocolName: string) {
    const name = ascii.encode(protocolName);
    if (name.length <= NOISE_HASH_BYTES) {
      this.h = new Uint8Array(NOISE_HASH_BYTES);
      this.h.set(name);
    } else {
      this.h = hash(name);
    }
    this.ck = this.h.slice();
  }

  mixKey(inputKeyMaterial: Uint8Array): void {
    const [ck, tempK] = hkdf2(this.ck, inputKeyMaterial);
    zero(this.ck);
    this.ck = ck;
    this.cipher.initializeKey(cipherKeyFrom(tempK));
  }

  mixHash(data: Uint8Array): void {
    this.h = hash(this.h, data);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cipher.encryptWithAd(this.h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.cipher.decryptWithAd(this.h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  snapshot(): SymmetricSnapshot {
    return { ck: this.ck.slice(), h: this.h, cipher: this.cipher.snapshot() };
  }

  restore(saved: SymmetricSnapshot): void {
    zero(this.ck);
    this.ck = saved.ck.slice();
    this.h = saved.h;
    this.cipher.restore(saved.cipher);
  }

  /** Returns the two transport keys and wipes everything secret this state held. */
  split(): [Uint8Array, Uint8Array] {
    const [k1, k2] = hkdf2(this.ck, EMPTY);
    zero(this.ck);
    this.cipher.wipe();
    return [cipherKeyFrom(k1), cipherKeyFrom(k2)];
  }
}

/** Transport keys produced by {@link NoiseHandshake.split}, 32 bytes each. */
export interface NoiseSplit {
  /** Key of the initiator-to-responder CipherState (the spec's first Split output). */
  initiatorToResponder: Uint8Array;
  /** Key of the responder-to-initiator CipherState (the spec's second Split output). */
  responderToInitiator: Uint8Array;
  /** The key this side sends with: the same array as one of the two above. */
  sendKey: Uint8Array;
  /** The key this side receives with: the same array as one of the two above. */
  receiveKey: Uint8Array;
}

/** Options for {@link NoiseHandshake}. */
export interface NoiseHandshakeOptions {
  /** Handshake pattern. */
  pattern: NoisePatternName;
  /** True for the party that sends the first message. */
  initiator: boolean;
  /**
   * Bytes both sides must agree on before the handshake (protocol version, addresses);
   * a mismatch makes the first authenticated message fail.
   * @default empty
   */
  prologue?: Uint8Array | undefined;
  /** Our static key pair; required when the pattern sends it or pre-shares it. */
  staticKeyPair?: KeyPair | undefined;
  /** The peer's static public key, known in advance; required for the initiator of NK, XK and IK. */
  remoteStaticKey?: Uint8Array | undefined;
  /**
   * Our ephemeral key pair, instead of a fresh random one. Used by test vectors and by the
   * link layer, which needs ephemerals it can encode with Elligator2. The public key is
   * sent as given and not re-derived, so it may carry a low-order component. Zeroed when
   * the handshake completes.
   */
  ephemeralKeyPair?: KeyPair | undefined;
}

/**
 * One side of a Noise handshake (section 5.3). Call {@link writeMessage} and
 * {@link readMessage} alternately, in the order the pattern dictates; once
 * {@link isComplete}, take the transport keys with {@link split}.
 */
export class NoiseHandshake {
  /** Number of messages in `pattern`. */
  static messageCount(pattern: NoisePatternName): number {
    return patternDef(pattern).messages.length;
  }

  /**
   * Exact length in bytes of handshake message `index` (0-based) of `pattern` carrying a
   * payload of `payloadLength` bytes: ephemeral keys, encrypted static keys, then the
   * payload with its tag once a key has been mixed in.
   */
  static messageLength(pattern: NoisePatternName, index: number, payloadLength: number): number {
    const def = patternDef(pattern);
    if (!Number.isInteger(index) || index < 0 || index >= def.messages.length) {
      throw cryptoBug('NOISE_MESSAGE_INDEX', `${pattern} has no message ${String(index)}`);
    }
    if (!Number.isInteger(payloadLength) || payloadLength < 0) {
      throw cryptoBug('NOISE_PAYLOAD_LENGTH', `invalid payload length ${String(payloadLength)}`);
    }
    let hasKey = false;
    let length = 0;
    for (let i = 0; i <= index; i++) {
      for (const token of def.messages[i] ?? []) {
        if (token === 'e') {
          if (i === index) length += NOISE_DH_BYTES;
        } else if (token === 's') {
          if (i === index) length += NOISE_DH_BYTES + (hasKey ? AEAD_TAG_BYTES : 0);
        } else {
          hasKey = true;
        }
      }
    }
    return length + payloadLength + (hasKey ? AEAD_TAG_BYTES : 0);
  }

  private readonly pattern: NoisePatternName;
  private readonly def: PatternDef;
  private readonly initiator: boolean;
  private readonly symmetric: SymmetricState;
  private readonly s: KeyPair | null;
  private e: KeyPair | null;
  private rs: Uint8Array | null;
  private re: Uint8Array | null = null;
  private index = 0;
  private keys: [Uint8Array, Uint8Array] | null = null;
  private splitTaken = false;

  /**
   * Initialises the handshake (section 5.3 Initialize): protocol name, prologue and
   * pre-message keys are hashed in.
   * @throws DeutError (kind `bug`) `NOISE_OPTIONS` if a key the pattern needs is missing,
   *   a key is given that the pattern cannot use, or a key has the wrong length
   */
  constructor(options: NoiseHandshakeOptions) {
    this.pattern = options.pattern;
    this.def = patternDef(options.pattern);
    this.initiator = options.initiator;
    this.s = options.staticKeyPair ?? null;
    this.e = options.ephemeralKeyPair ?? null;
    this.rs = options.remoteStaticKey?.slice() ?? null;
    this.checkKeys();

    this.symmetric = new SymmetricState(noiseProtocolName(options.pattern));
    this.symmetric.mixHash(options.prologue ?? EMPTY);
    // Pre-messages: the initiator's keys first, then the responder's (section 7.1).
    for (const fromInitiator of [true, false]) {
      const tokens = fromInitiator ? this.def.preInitiator : this.def.preResponder;
      for (const token of tokens) {
        if (token !== 's') throw cryptoBug('NOISE_PATTERN', `unsupported pre-message token ${String(token)}`);
        const ours = fromInitiator === this.initiator;
        this.symmetric.mixHash(ours ? this.requireStatic().publicKey : this.requireRemoteStatic());
      }
    }
  }

  private checkKeys(): void {
    const { def, initiator } = this;
    const sends = (who: boolean): readonly Token[] =>
      def.messages.filter((_, i) => (i % 2 === 0) === who).flat();
    const needOwnStatic =
      sends(initiator).includes('s') || (initiator ? def.preInitiator : def.preResponder).includes('s');
    const knowsRemoteStatic = (initiator ? def.preResponder : def.preInitiator).includes('s');
    const learnsRemoteStatic = sends(!initiator).includes('s');
    const fail = (message: string): never => {
      throw cryptoBug('NOISE_OPTIONS', `Noise_${this.pattern} ${initiator ? 'initiator' : 'responder'}: ${message}`);
    };

    if (needOwnStatic && this.s === null) fail('staticKeyPair is required');
    if (!needOwnStatic && this.s !== null) fail('the pattern does not use a local static key');
    if (knowsRemoteStatic && this.rs === null) fail('remoteStaticKey is required');
    if (!knowsRemoteStatic && this.rs !== null) {
      fail(learnsRemoteStatic ? 'the remote static key is learned, not given' : 'the pattern has no remote static key');
    }
    for (const [name, key] of [
      ['staticKeyPair.publicKey', this.s?.publicKey],
      ['staticKeyPair.privateKey', this.s?.privateKey],
      ['ephemeralKeyPair.publicKey', this.e?.publicKey],
      ['ephemeralKeyPair.privateKey', this.e?.privateKey],
      ['remoteStaticKey', this.rs],
    ] as const) {
      if (key !== undefined && key !== null && key.length !== X25519_KEY_BYTES) {
        fail(`${name} must be ${X25519_KEY_BYTES} bytes`);
      }
    }
  }

  /** True once the last handshake message has been written or read. */
  get isComplete(): boolean {
    return this.keys !== null || this.splitTaken;
  }

  /** True for the initiator. */
  get isInitiator(): boolean {
    return this.initiator;
  }

  /** Index of the next message to write or read; equals the message count when complete. */
  get messageIndex(): number {
    return this.index;
  }

  /** True if the next step is {@link writeMessage}, false if it is {@link readMessage} or the handshake is over. */
  get isMyTurn(): boolean {
    return !this.isComplete && (this.index % 2 === 0) === this.initiator;
  }

  /**
   * The handshake hash `h` (64 bytes): a transcript of everything sent, for channel
   * binding. Final once the handshake is complete. Returns a copy.
   */
  get handshakeHash(): Uint8Array {
    return this.symmetric.h.slice();
  }

  /** The peer's static public key, once known (given in advance or received). */
  get remoteStaticKey(): Uint8Array | null {
    return this.rs?.slice() ?? null;
  }

  /** The peer's ephemeral public key, once received. */
  get remoteEphemeralKey(): Uint8Array | null {
    return this.re?.slice() ?? null;
  }

  /**
   * Length of this pattern's message `index` for a payload of `payloadLength` bytes.
   * @see NoiseHandshake.messageLength
   */
  messageLength(index: number, payloadLength: number): number {
    return NoiseHandshake.messageLength(this.pattern, index, payloadLength);
  }

  /**
   * Builds the next handshake message carrying `payload` (section 5.3 WriteMessage).
   * The payload is encrypted once a DH has happened; before that it travels in clear.
   * @throws ProtocolError `NOISE_STATE` if it is not our turn or the handshake is over
   * @throws ProtocolError `NOISE_LENGTH` if the message would exceed 65535 bytes
   */
  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    const tokens = this.nextTokens(true);
    const total = this.messageLength(this.index, payload.length);
    if (total > NOISE_MAX_MESSAGE_BYTES) {
      throw noiseError('NOISE_LENGTH', `Noise message of ${total} bytes exceeds ${NOISE_MAX_MESSAGE_BYTES}`);
    }
    return this.transaction(() => {
      const parts: Uint8Array[] = [];
      for (const token of tokens) {
        switch (token) {
          case 'e': {
            this.e ??= generateKeyPair();
            const publicKey = this.e.publicKey.slice();
            parts.push(publicKey);
            this.symmetric.mixHash(publicKey);
            break;
          }
          case 's':
            parts.push(this.symmetric.encryptAndHash(this.requireStatic().publicKey));
            break;
          default:
            this.mixDh(token);
        }
      }
      parts.push(this.symmetric.encryptAndHash(payload));
      return concatBytes(...parts);
    });
  }

  /**
   * Processes the peer's next handshake message and returns its payload (section 5.3
   * ReadMessage). `message` must be exactly the Noise bytes, without padding.
   * @throws ProtocolError `NOISE_STATE` if it is not the peer's turn or the handshake is over
   * @throws ProtocolError `NOISE_LENGTH` if the message is shorter than the pattern requires or over 65535 bytes
   * @throws ProtocolError `NOISE_DECRYPT` if an encrypted key or the payload does not authenticate
   * @throws DeutError `LOW_ORDER_KEY` (kind `crypto`) if the peer sent a low-order key
   *
   * A message that fails leaves the handshake exactly as it was, so the caller can drop it
   * and wait for the genuine one.
   */
  readMessage(message: Uint8Array): Uint8Array {
    const tokens = this.nextTokens(false);
    const minimum = this.messageLength(this.index, 0);
    if (message.length < minimum || message.length > NOISE_MAX_MESSAGE_BYTES) {
      throw noiseError(
        'NOISE_LENGTH',
        `Noise message ${this.index} of ${this.pattern} must be ${minimum}..${NOISE_MAX_MESSAGE_BYTES} bytes, got ${message.length}`,
      );
    }
    return this.transaction(() => {
      let offset = 0;
      const take = (n: number): Uint8Array => {
        const part = message.slice(offset, offset + n);
        offset += n;
        return part;
      };
      for (const token of tokens) {
        switch (token) {
          case 'e':
            this.re = take(NOISE_DH_BYTES);
            this.symmetric.mixHash(this.re);
            break;
          case 's': {
            const sealed = take(NOISE_DH_BYTES + (this.symmetric.cipher.hasKey() ? AEAD_TAG_BYTES : 0));
            this.rs = this.symmetric.decryptAndHash(sealed);
            break;
          }
          default:
            this.mixDh(token);
        }
      }
      return this.symmetric.decryptAndHash(message.subarray(offset));
    });
  }

  /**
   * Hands over the two transport keys (section 5.2 Split); the handshake keeps no copy.
   * Each direction's CipherState starts at nonce 0 and uses the ChaChaPoly nonce layout
   * of aead.ts (`chachaSeal`/`chachaOpen`).
   * @throws ProtocolError `NOISE_STATE` before completion or on a second call
   */
  split(): NoiseSplit {
    if (this.keys === null) {
      throw noiseError(
        'NOISE_STATE',
        this.splitTaken ? 'Noise split() already called' : 'Noise handshake is not complete',
      );
    }
    const [initiatorToResponder, responderToInitiator] = this.keys;
    this.keys = null;
    this.splitTaken = true;
    return {
      initiatorToResponder,
      responderToInitiator,
      sendKey: this.initiator ? initiatorToResponder : responderToInitiator,
      receiveKey: this.initiator ? responderToInitiator : initiatorToResponder,
    };
  }

  private nextTokens(writing: boolean): readonly Token[] {
    if (this.isComplete) throw noiseError('NOISE_STATE', 'Noise handshake is already complete');
    if (this.isMyTurn !== writing) {
      throw noiseError(
        'NOISE_STATE',
        `Noise_${this.pattern}: message ${this.index} must be ${writing ? 'read' : 'written'} by this side`,
      );
    }
    const tokens = this.def.messages[this.index];
    if (tokens === undefined) throw cryptoBug('NOISE_STATE', 'message index out of range');
    return tokens;
  }

  /**
   * Runs one message's token processing all-or-nothing: on any error the state is rolled
   * back, so a forged or corrupted datagram cannot derail a handshake in progress and the
   * genuine message can still be read after it. On success the message index advances.
   */
  private transaction<T>(step: () => T): T {
    const saved = this.symmetric.snapshot();
    const { e, rs, re } = this;
    try {
      const result = step();
      this.advance();
      return result;
    } catch (err) {
      this.symmetric.restore(saved);
      if (this.e !== e && this.e !== null) zero(this.e.privateKey);
      this.e = e;
      this.rs = rs;
      this.re = re;
      throw err;
    } finally {
      wipeSnapshot(saved);
    }
  }

  private advance(): void {
    this.index++;
    if (this.index === this.def.messages.length) {
      this.keys = this.symmetric.split();
      // The ephemeral secret is what gives forward secrecy; it must not outlive the handshake.
      if (this.e !== null) zero(this.e.privateKey);
    }
  }

  /** ee, es, se, ss: the first letter is the initiator's key, the second the responder's. */
  private mixDh(token: 'ee' | 'es' | 'se' | 'ss'): void {
    const initiatorKey = token[0] === 'e' ? 'e' : 's';
    const responderKey = token[1] === 'e' ? 'e' : 's';
    const localKind = this.initiator ? initiatorKey : responderKey;
    const remoteKind = this.initiator ? responderKey : initiatorKey;
    const local = localKind === 'e' ? this.e : this.s;
    const remote = remoteKind === 'e' ? this.re : this.rs;
    if (local === null || remote === null) {
      throw cryptoBug('NOISE_STATE', `Noise_${this.pattern}: ${token} before both keys are known`);
    }
    const shared = x25519(local.privateKey, remote);
    this.symmetric.mixKey(shared);
    zero(shared);
  }

  private requireStatic(): KeyPair {
    if (this.s === null) throw cryptoBug('NOISE_OPTIONS', 'static key pair missing');
    return this.s;
  }

  private requireRemoteStatic(): Uint8Array {
    if (this.rs === null) throw cryptoBug('NOISE_OPTIONS', 'remote static key missing');
    return this.rs;
  }
}

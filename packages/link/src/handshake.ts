/**
 * The link handshake on the wire (PROTOCOL.md §3.2-§3.3): Noise XX whose ephemeral keys
 * travel as Elligator2 representatives, padded to one datagram size and closed by mac1.
 * Pure computation, no I/O or timers: the link runtime (peer-handshakes.ts) drives these
 * objects. Where each field sits in the datagram is @deut/wire's handshake-datagram.ts.
 */
import {
  NoiseHandshake,
  constantTimeEqual,
  deriveKey,
  generateHiddenKeyPair,
  mac16,
  randomBytes,
  representativeToPublicKey,
  zero,
  type KeyPair,
} from '@deut/crypto';
import {
  DATAGRAM_BYTES,
  MAC1_OFFSET,
  MAC2_OFFSET,
  MSG1_NOISE_BYTES,
  MSG2_NOISE_BYTES,
  MSG3_NOISE_BYTES,
  decodeHandshakePayload,
  encodeHandshakePayload,
  mac1Field,
  mac1Input,
  representativeField,
  type HandshakePayload,
} from '@deut/wire';
import { computeMac2, openCookieReply } from './cookie.js';
import { handshakeError } from './errors.js';
import type { SessionKeys } from './session.js';
import { msg2Mac1Key, msg3Mac1Key, openMac1Key, responderMac1Key } from './mac-keys.js';

const PROLOGUE = new TextEncoder().encode('deut/1 link');
const EMPTY = new Uint8Array(0);

/** The result of a completed handshake, on either side. */
export interface HandshakeOutcome {
  readonly remoteStatic: Uint8Array;
  readonly remotePayload: HandshakePayload;
  /** Highest link protocol version both sides speak. */
  readonly version: number;
  /** 32 hex digits both ends can compare out of band (PROTOCOL.md §3.3). */
  readonly sessionId: string;
  readonly keys: SessionKeys;
  readonly initiator: boolean;
}

/** true if the datagram's trailing mac1 verifies under `key`. One BLAKE2b, no allocation of state. */
export function mac1Matches(datagram: Uint8Array, key: Uint8Array): boolean {
  if (datagram.length !== DATAGRAM_BYTES) return false;
  return constantTimeEqual(mac16(key, mac1Input(datagram)), mac1Field(datagram));
}

/** The ephemeral representative that starts msg1: the same in every retransmission of one handshake. */
export function msg1Ephemeral(datagram: Uint8Array): string {
  return Buffer.from(representativeField(datagram)).toString('hex');
}

/** The last 16 bytes (mac1) identify a handshake datagram well enough to spot retransmissions. */
export function handshakeFingerprint(datagram: Uint8Array): string {
  return Buffer.from(mac1Field(datagram)).toString('hex');
}

/** Noise bytes, random padding, then (msg1 under load) mac2 over what precedes it, then mac1. */
function seal(noiseBytes: Uint8Array, mac1Key: Uint8Array, cookie?: Uint8Array): Uint8Array {
  const datagram = new Uint8Array(DATAGRAM_BYTES);
  datagram.set(noiseBytes);
  datagram.set(randomBytes(MAC1_OFFSET - noiseBytes.length), noiseBytes.length);
  if (cookie !== undefined) datagram.set(computeMac2(cookie, datagram), MAC2_OFFSET);
  datagram.set(mac16(mac1Key, mac1Input(datagram)), MAC1_OFFSET);
  return datagram;
}

/** Copies the first `length` bytes with the leading representative replaced by its public key. */
function revealEphemeral(datagram: Uint8Array, length: number): Uint8Array {
  const message = datagram.slice(0, length);
  message.set(representativeToPublicKey(representativeField(message)), 0);
  return message;
}

function negotiateVersion(own: HandshakePayload, remote: HandshakePayload): number {
  const version = Math.min(own.maxVersion, remote.maxVersion);
  if (version < Math.max(own.minVersion, remote.minVersion)) {
    throw handshakeError('HANDSHAKE_VERSION', `no common link version (ours ${own.minVersion}..${own.maxVersion}, theirs ${remote.minVersion}..${remote.maxVersion})`);
  }
  return version;
}

function readPayload(noise: NoiseHandshake, message: Uint8Array): HandshakePayload {
  return decodeHandshakePayload(noise.readMessage(message));
}

function outcome(noise: NoiseHandshake, own: HandshakePayload, remotePayload: HandshakePayload, initiator: boolean): HandshakeOutcome {
  const remoteStatic = noise.remoteStaticKey;
  if (remoteStatic === null) throw handshakeError('HANDSHAKE_STATE', 'handshake finished without a remote static key');
  const version = negotiateVersion(own, remotePayload);
  const sessionId = Buffer.from(deriveKey('deut/1 session id', noise.handshakeHash, EMPTY, 16)).toString('hex');
  const { initiatorToResponder: i2r, responderToInitiator: r2i } = noise.split();
  const i2rKeys = { data: deriveKey('deut/1 link data i2r', i2r), hp: deriveKey('deut/1 link hp i2r', i2r) };
  const r2iKeys = { data: deriveKey('deut/1 link data r2i', r2i), hp: deriveKey('deut/1 link hp r2i', r2i) };
  zero(i2r);
  zero(r2i);
  const send = initiator ? i2rKeys : r2iKeys;
  const receive = initiator ? r2iKeys : i2rKeys;
  return {
    remoteStatic: remoteStatic.slice(),
    remotePayload,
    version,
    sessionId,
    initiator,
    keys: { sendKey: send.data, sendHp: send.hp, receiveKey: receive.data, receiveHp: receive.hp },
  };
}

/**
 * The initiator's side: builds msg1 at construction, then reads msg2 and writes msg3.
 * The caller checks the responder's static key (pins) between `readMsg2` and `writeMsg3`.
 */
export class InitiatorHandshake {
  /** The msg1 datagram, mac1 keyed to the responder's pinned key if we have one. */
  readonly msg1: Uint8Array;
  /**
   * With a pinned key: the same Noise message under the open mac1 key. Retransmissions
   * alternate between the two, so a peer whose key changed still answers and the change is
   * seen and reported instead of looking like silence (PROTOCOL.md §3.3).
   */
  readonly msg1Open: Uint8Array | undefined;
  /** The representative that starts msg1: a cookie reply is bound to it. */
  readonly representative: Uint8Array;
  readonly #noise: NoiseHandshake;
  readonly #message: Uint8Array;
  readonly #mac1Key: Uint8Array;
  readonly #openKey: Uint8Array | undefined;
  readonly #payload: HandshakePayload;
  readonly #msg2Mac1Key: Uint8Array;
  #remotePayload: HandshakePayload | undefined;

  /** `responderStatic`: the pinned key of the responder, if known (selects the mac1 key). */
  constructor(identity: KeyPair, payload: HandshakePayload, responderStatic?: Uint8Array, openKey: Uint8Array = openMac1Key()) {
    const ephemeral = generateHiddenKeyPair();
    this.#payload = payload;
    this.#noise = new NoiseHandshake({ pattern: 'XX', initiator: true, prologue: PROLOGUE, staticKeyPair: identity, ephemeralKeyPair: ephemeral.keyPair });
    const message = this.#noise.writeMessage(EMPTY);
    message.set(ephemeral.representative, 0);
    this.#msg2Mac1Key = msg2Mac1Key(ephemeral.keyPair.publicKey);
    this.#message = message;
    this.representative = representativeField(message).slice();
    this.#mac1Key = responderStatic === undefined ? openKey : responderMac1Key(responderStatic);
    this.#openKey = responderStatic === undefined ? undefined : openKey;
    this.msg1 = seal(message, this.#mac1Key);
    this.msg1Open = this.#openKey === undefined ? undefined : seal(message, this.#openKey);
  }

  /** The cookie in a cookie reply to our msg1, or null if `datagram` is not one. */
  openCookieReply(datagram: Uint8Array): Uint8Array | null {
    return this.#remotePayload === undefined ? openCookieReply(datagram, this.representative) : null;
  }

  /** msg1 (and its open-key twin) again, carrying mac2 under `cookie` (PROTOCOL.md §3.3). */
  msg1WithCookie(cookie: Uint8Array): { msg1: Uint8Array; msg1Open: Uint8Array | undefined } {
    return {
      msg1: seal(this.#message, this.#mac1Key, cookie),
      msg1Open: this.#openKey === undefined ? undefined : seal(this.#message, this.#openKey, cookie),
    };
  }

  /** true if `datagram` carries msg2 of this handshake (mac1 check only). */
  isMsg2(datagram: Uint8Array): boolean {
    return this.#remotePayload === undefined && mac1Matches(datagram, this.#msg2Mac1Key);
  }

  /**
   * Processes msg2; returns the responder's static key and payload for the caller to check.
   * Throws ProtocolError; the Noise state is then spent and the caller starts afresh.
   */
  readMsg2(datagram: Uint8Array): { remoteStatic: Uint8Array; remotePayload: HandshakePayload } {
    const message = revealEphemeral(datagram, MSG2_NOISE_BYTES);
    this.#remotePayload = readPayload(this.#noise, message);
    negotiateVersion(this.#payload, this.#remotePayload);
    const remoteStatic = this.#noise.remoteStaticKey;
    if (remoteStatic === null) throw handshakeError('HANDSHAKE_STATE', 'msg2 carried no static key');
    return { remoteStatic: remoteStatic.slice(), remotePayload: this.#remotePayload };
  }

  /** Writes msg3 and finishes. Call only after readMsg2 and the caller's key check. */
  writeMsg3(): { msg3: Uint8Array; outcome: HandshakeOutcome } {
    if (this.#remotePayload === undefined) throw handshakeError('HANDSHAKE_STATE', 'msg3 before msg2');
    const remoteEphemeral = this.#noise.remoteEphemeralKey;
    if (remoteEphemeral === null) throw handshakeError('HANDSHAKE_STATE', 'no remote ephemeral key');
    const mac1Key = msg3Mac1Key(remoteEphemeral);
    const message = this.#noise.writeMessage(encodeHandshakePayload(this.#payload));
    const msg3 = seal(message, mac1Key);
    return { msg3, outcome: outcome(this.#noise, this.#payload, this.#remotePayload, true) };
  }
}

/**
 * The responder's side: reads msg1 and writes msg2 at construction (the one key exchange an
 * unauthenticated msg1 may cost), then reads msg3.
 */
export class ResponderHandshake {
  /** The msg2 datagram; a retransmitted msg1 is answered with these exact bytes. */
  readonly msg2: Uint8Array;
  readonly #noise: NoiseHandshake;
  readonly #payload: HandshakePayload;
  readonly #msg3Mac1Key: Uint8Array;

  /** Processes msg1 (whose mac1 the caller has verified). Throws ProtocolError. */
  constructor(identity: KeyPair, payload: HandshakePayload, msg1: Uint8Array) {
    this.#payload = payload;
    const ephemeral = generateHiddenKeyPair();
    this.#noise = new NoiseHandshake({ pattern: 'XX', initiator: false, prologue: PROLOGUE, staticKeyPair: identity, ephemeralKeyPair: ephemeral.keyPair });
    const first = revealEphemeral(msg1, MSG1_NOISE_BYTES);
    this.#noise.readMessage(first);
    const message = this.#noise.writeMessage(encodeHandshakePayload(payload));
    message.set(ephemeral.representative, 0);
    this.msg2 = seal(message, msg2Mac1Key(first));
    this.#msg3Mac1Key = msg3Mac1Key(ephemeral.keyPair.publicKey);
  }

  /** true if `datagram` carries msg3 of this handshake. */
  isMsg3(datagram: Uint8Array): boolean {
    return mac1Matches(datagram, this.#msg3Mac1Key);
  }

  /** Processes msg3 and finishes; the caller then checks the initiator's key. Throws ProtocolError. */
  readMsg3(datagram: Uint8Array): HandshakeOutcome {
    const remotePayload = readPayload(this.#noise, datagram.slice(0, MSG3_NOISE_BYTES));
    return outcome(this.#noise, this.#payload, remotePayload, false);
  }
}

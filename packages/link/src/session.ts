/**
 * One link session's data datagrams (PROTOCOL.md §3.4): ChaCha20-Poly1305 with an explicit
 * counter, the counter hidden by header protection, and an RFC 6479 replay window. The
 * datagram's layout (counter field, sample, frame) is @deut/wire's data-datagram.ts.
 */
import { ReplayWindow, type UdpAddress } from '@deut/common';
import { chachaOpenInto, chachaSealInto, xorHeaderMask } from '@deut/crypto';
import {
  DATAGRAM_BYTES,
  LINK_COUNTER_BYTES,
  LINK_FRAME_BYTES,
  linkCiphertext,
  linkCounterField,
  linkFrameOf,
  linkSample,
  readLinkCounter,
  writeLinkCounter,
} from '@deut/wire';
import { LINK_REPLAY_WINDOW, REJECT_AFTER_MESSAGES } from './constants.js';

/** Directional keys of a session, derived from the Noise split (PROTOCOL.md §3.3). */
export interface SessionKeys {
  readonly sendKey: Uint8Array;
  readonly sendHp: Uint8Array;
  readonly receiveKey: Uint8Array;
  readonly receiveHp: Uint8Array;
}

/** Why `open` refused a datagram. */
export type OpenFailure = 'replay' | 'decrypt';

/** Keys, counter and replay window of one established session with one peer. */
export class LinkSession {
  readonly #keys: SessionKeys;
  readonly #window = new ReplayWindow(LINK_REPLAY_WINDOW);
  /** The unmasked header of the datagram being opened (open is synchronous). */
  readonly #header = new Uint8Array(LINK_COUNTER_BYTES);
  #sent = 0;
  #received = 0;
  /** Initiator: false until the responder proves it has the keys (PROTOCOL.md §3.3). */
  confirmed: boolean;
  /** The peer as payload handlers see it on this session, made once by the link. */
  from: { readonly address: UdpAddress; readonly publicKey: Uint8Array; readonly sessionId: string } | undefined;

  constructor(
    keys: SessionKeys,
    readonly sessionId: string,
    readonly remoteStatic: Uint8Array,
    readonly initiator: boolean,
    readonly version: number,
    readonly establishedAt: number,
  ) {
    this.#keys = keys;
    this.confirmed = !initiator;
  }

  /** Datagrams sent on this session. */
  get sent(): number {
    return this.#sent;
  }

  /** Datagrams accepted on this session. */
  get received(): number {
    return this.#received;
  }

  /** true once the counter may not be used any more. */
  get exhausted(): boolean {
    return this.#sent >= REJECT_AFTER_MESSAGES;
  }

  /**
   * Encrypts one 1176-byte link frame into a new 1200-byte datagram, straight into it: the
   * cipher runs on reused libsodium memory (@deut/crypto scratch), the hot path of every hop.
   */
  seal(frame: Uint8Array): Uint8Array {
    if (frame.length !== LINK_FRAME_BYTES) throw new RangeError(`link frame must be ${LINK_FRAME_BYTES} bytes`);
    const counter = this.#sent++;
    const datagram = new Uint8Array(DATAGRAM_BYTES);
    writeLinkCounter(datagram, counter);
    chachaSealInto(this.#keys.sendKey, counter, frame, linkCounterField(datagram), datagram, LINK_COUNTER_BYTES);
    xorHeaderMask(this.#keys.sendHp, linkSample(datagram), datagram, 0);
    return datagram;
  }

  /**
   * Decrypts a 1200-byte datagram into its link frame, or says why not. Never throws on bad
   * input. The frame is decrypted in place: the result is a view of `datagram`, whose first
   * bytes are left unmasked; a datagram that fails is left as it came.
   */
  open(datagram: Uint8Array): Uint8Array | OpenFailure {
    const header = this.#header;
    header.set(linkCounterField(datagram));
    xorHeaderMask(this.#keys.receiveHp, linkSample(datagram), header, 0);
    const counter = readLinkCounter(header);
    // Counters stay far below 2^53; a larger one is a datagram of another session or junk.
    if (counter < 0) return 'decrypt';
    if (!this.#window.check(counter)) return 'replay';
    if (!chachaOpenInto(this.#keys.receiveKey, counter, linkCiphertext(datagram), header, datagram, LINK_COUNTER_BYTES)) return 'decrypt';
    datagram.set(header, 0);
    this.#window.mark(counter);
    this.#received++;
    return linkFrameOf(datagram);
  }
}

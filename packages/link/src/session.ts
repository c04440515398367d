/**
 * One link session's data datagrams (PROTOCOL.md §3.4): ChaCha20-Poly1305 with an explicit
 * counter, the counter hidden by header protection, and an RFC 6479 replay window.
 */
import { ReplayWindow, type UdpAddress } from '@deut/common';
import { chachaOpenInto, chachaSealInto, xorHeaderMask } from '@deut/crypto';
import { DATAGRAM_BYTES, LINK_FRAME_BYTES } from '@deut/wire';
import { LINK_REPLAY_WINDOW, REJECT_AFTER_MESSAGES } from './constants.js';

const COUNTER_BYTES = 8;
const SAMPLE_END = COUNTER_BYTES + 16;
const TWO_32 = 0x1_0000_0000;

/** Directional keys of a session, derived from the Noise split (PROTOCOL.md §3.3). */
export interface SessionKeys {
  readonly sendKey: Uint8Array;
  readonly sendHp: Uint8Array;
  readonly receiveKey: Uint8Array;
  readonly receiveHp: Uint8Array;
}

/** Why `open` refused a datagram. */
export type OpenFailure = 'replay' | 'decrypt';

function writeCounter(out: Uint8Array, counter: number): void {
  const view = new DataView(out.buffer, out.byteOffset, COUNTER_BYTES);
  view.setUint32(0, counter % TWO_32, true);
  view.setUint32(4, Math.floor(counter / TWO_32), true);
}

/** Keys, counter and replay window of one established session with one peer. */
export class LinkSession {
  readonly #keys: SessionKeys;
  readonly #window = new ReplayWindow(LINK_REPLAY_WINDOW);
  /** The unmasked header of the datagram being opened (open is synchronous). */
  readonly #header = new Uint8Array(COUNTER_BYTES);
  readonly #headerView = new DataView(this.#header.buffer);
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
    if (frame.length !== LINK_FRAME_BYTES) throw new RangeError('link frame must be 1176 bytes');
    const counter = this.#sent++;
    const datagram = new Uint8Array(DATAGRAM_BYTES);
    writeCounter(datagram, counter);
    chachaSealInto(this.#keys.sendKey, counter, frame, datagram.subarray(0, COUNTER_BYTES), datagram, COUNTER_BYTES);
    xorHeaderMask(this.#keys.sendHp, datagram.subarray(COUNTER_BYTES, SAMPLE_END), datagram, 0);
    return datagram;
  }

  /**
   * Decrypts a 1200-byte datagram into its link frame, or says why not. Never throws on bad
   * input. The frame is decrypted in place: the result is a view of `datagram`, whose first
   * bytes are left unmasked; a datagram that fails is left as it came.
   */
  open(datagram: Uint8Array): Uint8Array | OpenFailure {
    const header = this.#header;
    header.set(datagram.subarray(0, COUNTER_BYTES));
    xorHeaderMask(this.#keys.receiveHp, datagram.subarray(COUNTER_BYTES, SAMPLE_END), header, 0);
    const high = this.#headerView.getUint32(4, true);
    // Counters stay far below 2^53; a larger one is a datagram of another session or junk.
    if (high >= 0x20_0000) return 'decrypt';
    const counter = high * TWO_32 + this.#headerView.getUint32(0, true);
    if (!this.#window.check(counter)) return 'replay';
    if (!chachaOpenInto(this.#keys.receiveKey, counter, datagram.subarray(COUNTER_BYTES), header, datagram, COUNTER_BYTES)) return 'decrypt';
    datagram.set(header, 0);
    this.#window.mark(counter);
    this.#received++;
    return datagram.subarray(COUNTER_BYTES, COUNTER_BYTES + LINK_FRAME_BYTES);
  }
}

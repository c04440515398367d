/**
 * One link session's data datagrams (PROTOCOL.md §3.4): ChaCha20-Poly1305 with an explicit
 * counter, the counter hidden by header protection, and an RFC 6479 replay window.
 */
import { ReplayWindow } from '@deut/common';
import { chachaOpen, chachaSeal, headerMask } from '@deut/crypto';
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
  #sent = 0;
  #received = 0;
  /** Initiator: false until the responder proves it has the keys (PROTOCOL.md §3.3). */
  confirmed: boolean;

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

  /** Encrypts one 1176-byte link frame into a 1200-byte datagram. */
  seal(frame: Uint8Array): Uint8Array {
    if (frame.length !== LINK_FRAME_BYTES) throw new RangeError('link frame must be 1176 bytes');
    const counter = this.#sent++;
    const header = new Uint8Array(COUNTER_BYTES);
    writeCounter(header, counter);
    const ciphertext = chachaSeal(this.#keys.sendKey, counter, frame, header);
    const datagram = new Uint8Array(DATAGRAM_BYTES);
    datagram.set(ciphertext, COUNTER_BYTES);
    const mask = headerMask(this.#keys.sendHp, datagram.subarray(COUNTER_BYTES, SAMPLE_END));
    for (let i = 0; i < COUNTER_BYTES; i++) datagram[i] = header[i]! ^ mask[i]!;
    return datagram;
  }

  /** Decrypts a 1200-byte datagram into its link frame, or says why not. Never throws on bad input. */
  open(datagram: Uint8Array): Uint8Array | OpenFailure {
    const mask = headerMask(this.#keys.receiveHp, datagram.subarray(COUNTER_BYTES, SAMPLE_END));
    const header = new Uint8Array(COUNTER_BYTES);
    for (let i = 0; i < COUNTER_BYTES; i++) header[i] = datagram[i]! ^ mask[i]!;
    const view = new DataView(header.buffer);
    const high = view.getUint32(4, true);
    // Counters stay far below 2^53; a larger one is a datagram of another session or junk.
    if (high >= 0x20_0000) return 'decrypt';
    const counter = high * TWO_32 + view.getUint32(0, true);
    if (!this.#window.check(counter)) return 'replay';
    const frame = chachaOpen(this.#keys.receiveKey, counter, datagram.subarray(COUNTER_BYTES), header);
    if (frame === null) return 'decrypt';
    this.#window.mark(counter);
    this.#received++;
    return frame;
  }
}

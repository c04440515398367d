/**
 * A tunnel as its master sees it (PROTOCOL.md §5): the path, every hop's layer keys and
 * offsets, and the cell counters. Sealing applies all outbound layers at once; opening
 * removes all inbound layers and checks the endpoint's tag.
 */
import { ReplayWindow, addressKey, type UdpAddress } from '@deut/common';
import { openInbound, randomBytes, sealOutbound, type LayerKey } from '@deut/crypto';
import { CELL_BYTES, MAX_HOPS, encodeCellInto, type TunnelId } from '@deut/wire';
import type { HopKeys } from './build-crypto.js';
import { CELL_COUNTER_START_LIMIT, CELL_REPLAY_WINDOW } from './constants.js';

/** How a tunnel's path was chosen (PROTOCOL.md §4.2, §4.4). */
export type PathSelection = 'master' | 'relayer';

/** A hop of a path as the master knows it; in relayer mode only the first is known. */
export interface PathHop {
  readonly address: UdpAddress;
  readonly publicKey?: Uint8Array | undefined;
}

/** Parameters of an established tunnel. */
export interface OwnedTunnelInit {
  readonly localId: number;
  readonly linkId: TunnelId;
  readonly mode: PathSelection;
  /** The hops, first to endpoint; in relayer mode, only the first is known. */
  readonly path: readonly PathHop[];
  readonly hopCount: number;
  readonly keys: readonly HopKeys[];
  /** The endpoint's tunnel port: where the world sees this tunnel. */
  readonly endpoint: UdpAddress;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/** A random starting point for a cell counter (PROTOCOL.md §5.3). */
export function randomCounterStart(): number {
  const bytes = randomBytes(6);
  const value = bytes.reduce((n, b) => n * 256 + b, 0);
  return value % CELL_COUNTER_START_LIMIT;
}

/** A tunnel owned by this node as master. */
export class OwnedTunnel {
  readonly localId: number;
  readonly linkId: TunnelId;
  readonly mode: PathSelection;
  readonly path: readonly PathHop[];
  readonly hopCount: number;
  readonly endpoint: UdpAddress;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** Key of the first hop's address, as used by the link layer. */
  readonly firstHopKey: string;
  readonly #keys: readonly HopKeys[];
  readonly #window = new ReplayWindow(CELL_REPLAY_WINDOW);
  #counter = randomCounterStart();
  #datagramId = randomCounterStart() >>> 0;
  #cellsOut = 0;
  #cellsIn = 0;

  constructor(init: OwnedTunnelInit) {
    this.localId = init.localId;
    this.linkId = init.linkId;
    this.mode = init.mode;
    this.path = init.path;
    this.hopCount = init.hopCount;
    this.endpoint = init.endpoint;
    this.createdAt = init.createdAt;
    this.expiresAt = init.expiresAt;
    this.#keys = init.keys;
    const first = init.path[0];
    if (first === undefined) throw new RangeError('a tunnel has at least one hop');
    this.firstHopKey = addressKey(first.address);
  }

  /** The first hop, to which cells are sent. */
  get firstHop(): UdpAddress {
    return this.path[0]!.address;
  }

  /** Cells sent and accepted so far. */
  get counts(): { cellsOut: number; cellsIn: number } {
    return { cellsOut: this.#cellsOut, cellsIn: this.#cellsIn };
  }

  /** The next outbound datagram id (PROTOCOL.md §6: a counter per tunnel and direction). */
  nextDatagramId(): number {
    const id = this.#datagramId;
    this.#datagramId = (this.#datagramId + 1) >>> 0;
    return id;
  }

  /** A CELL_OUT link payload carrying `plaintext` (CELL_PLAINTEXT_BYTES) to the endpoint. */
  sealCell(plaintext: Uint8Array): Uint8Array {
    const counter = this.#counter++;
    const layers: LayerKey[] = [];
    let v = counter;
    for (const keys of this.#keys) {
      layers.push({ key: keys.outboundKey, v });
      v += keys.outboundOffset;
    }
    const cell = new Uint8Array(CELL_BYTES);
    encodeCellInto(cell, 'cell-out', this.linkId, counter, sealOutbound(layers, plaintext, MAX_HOPS));
    this.#cellsOut++;
    return cell;
  }

  /**
   * The plaintext of a CELL_IN that arrived from the first hop, or undefined if it is a
   * replay or fails authentication (a relayer tampered with it, or it is junk).
   */
  openCell(seq: number, body: Uint8Array): Uint8Array | 'replay' | 'bad-tag' {
    if (!this.#window.check(seq)) return 'replay';
    // Undo every relayer's offset, hop 0's first, to find the value each hop used.
    const layers: LayerKey[] = [];
    let v = seq;
    const last = this.#keys.length - 1;
    for (let i = 0; i < last; i++) {
      const keys = this.#keys[i]!;
      v -= keys.inboundOffset;
      if (v < 0) return 'bad-tag';
      layers.push({ key: keys.inboundKey, v });
    }
    layers.push({ key: this.#keys[last]!.inboundKey, v });
    const plaintext = openInbound(layers, body, MAX_HOPS);
    if (plaintext === null) return 'bad-tag';
    this.#window.mark(seq);
    this.#cellsIn++;
    return plaintext;
  }
}

/**
 * Tunnel-layer link payloads (PROTOCOL.md §4.1, cells §5.1): cells, build requests in
 * master and relayer mode (§4.2, §4.4), build responses (§4.3) and teardown (§8). Every type
 * has one exact size. Cells are the hot path: they are laid out with plain byte writes, and
 * decoding returns views of the input instead of copies.
 */
import { assertNever } from '@deut/common';
import {
  BUILD_RECORD_BYTES,
  BUILD_REQUEST_BYTES,
  BUILD_RESPONSE_BYTES,
  BUILD_SLOT_BYTES,
  CELL_BODY_BYTES,
  CELL_BYTES,
  CELL_HEADER_BYTES,
  DESTROY_BYTES,
  MAX_CELL_SEQ,
  MAX_HOPS,
  MAX_RELAYER_TTL,
  PUBLIC_KEY_BYTES,
  RELAYER_FILLER_BYTES,
  TUNNEL_HEADER_BYTES,
} from './constants.js';
import { expectBytes, expectInt, fail, readU32, wireBug, writeU32 } from './checks.js';

/**
 * A per-link tunnel id, chosen by the upstream node of that link (§4.1). Branded so that
 * a plain number (a datagram id, a seq, a port) cannot be passed as a tunnel id without
 * going through the checked constructor `tunnelId()`.
 */
export type TunnelId = number & { readonly __brand: 'TunnelId' };

/**
 * Checks that `n` is a u32 and brands it as a tunnel id.
 * @throws ProtocolError `BAD_FIELD` if `n` is not an integer in 0..2^32−1
 */
export function tunnelId(n: number): TunnelId {
  expectInt(n, 0, 0xffffffff, 'tunnel id');
  return n as TunnelId;
}

/** Type byte of each tunnel message (§4.1). */
export const TUNNEL_MESSAGE_TYPES = {
  'cell-out': 0x01,
  'cell-in': 0x02,
  'build-request': 0x10,
  'build-request-relayer': 0x11,
  'build-response': 0x12,
  'destroy-out': 0x20,
  'destroy-in': 0x21,
} as const;

/** Name of a tunnel message type. */
export type TunnelMessageType = keyof typeof TUNNEL_MESSAGE_TYPES;

/** Exact size in bytes of each tunnel message type (§4.1). */
export const TUNNEL_MESSAGE_BYTES: Readonly<Record<TunnelMessageType, number>> = {
  'cell-out': CELL_BYTES,
  'cell-in': CELL_BYTES,
  'build-request': BUILD_REQUEST_BYTES,
  'build-request-relayer': BUILD_REQUEST_BYTES,
  'build-response': BUILD_RESPONSE_BYTES,
  'destroy-out': DESTROY_BYTES,
  'destroy-in': DESTROY_BYTES,
};

/** Bytes of the 7 build records of a BUILD_REQUEST, as one block. */
export const BUILD_RECORDS_BYTES = MAX_HOPS * BUILD_RECORD_BYTES;

/** Bytes of the 7 reply slots of a BUILD_RESPONSE, as one block. */
export const BUILD_SLOTS_BYTES = MAX_HOPS * BUILD_SLOT_BYTES;

/** A cell travelling away from the master (§5.1). */
export interface CellOut {
  readonly type: 'cell-out';
  readonly tunnelId: TunnelId;
  /** This hop's view of the cell counter, 0..2^53−1 (§5.3); u64 on the wire. */
  readonly seq: number;
  /** CELL_BODY_BYTES. Decoding returns a view that aliases the input. */
  readonly body: Uint8Array;
}

/** A cell travelling toward the master (§5.1); fields as `CellOut`. */
export interface CellIn {
  readonly type: 'cell-in';
  readonly tunnelId: TunnelId;
  /** This hop's view of the cell counter, 0..2^53−1 (§5.3). */
  readonly seq: number;
  /** CELL_BODY_BYTES. Decoding returns a view that aliases the input. */
  readonly body: Uint8Array;
}

/** Either direction of cell. */
export type Cell = CellOut | CellIn;

/**
 * A master-mode build request (§4.2): 7 records of 160 bytes kept as one block, because a
 * hop shifts them and XORs all of them with one keystream. Use `buildRecordAt` for one.
 */
export interface BuildRequest {
  readonly type: 'build-request';
  readonly tunnelId: TunnelId;
  /** BUILD_RECORDS_BYTES. Decoding returns a view that aliases the input. */
  readonly records: Uint8Array;
}

/** A relayer-mode build request (§4.4). */
export interface BuildRequestRelayer {
  readonly type: 'build-request-relayer';
  readonly tunnelId: TunnelId;
  /** Hops still to add after the receiver, 0..MAX_RELAYER_TTL; 0 makes it the endpoint. */
  readonly ttl: number;
  /** The master's ephemeral key as blinded by earlier hops, PUBLIC_KEY_BYTES (a view when decoded). */
  readonly ephemeralKey: Uint8Array;
  /**
   * RELAYER_FILLER_BYTES of fresh random bytes from the sender; never validated. Wire has
   * no randomness of its own, so the caller supplies it (a view when decoded).
   */
  readonly filler: Uint8Array;
}

/** A build response (§4.3): 7 reply slots of 80 bytes as one block; see `buildSlotAt`. */
export interface BuildResponse {
  readonly type: 'build-response';
  readonly tunnelId: TunnelId;
  /** BUILD_SLOTS_BYTES. Decoding returns a view that aliases the input. */
  readonly slots: Uint8Array;
}

/** Teardown travelling away from the master (§8). */
export interface DestroyOut {
  readonly type: 'destroy-out';
  readonly tunnelId: TunnelId;
  /** u8, PROTOCOL.md §4.1: 0 closed, 1 expired, 2 bad cell, 3 neighbour lost, 4 shutdown; other values are carried as is. */
  readonly reason: number;
}

/** Teardown travelling toward the master (§8). */
export interface DestroyIn {
  readonly type: 'destroy-in';
  readonly tunnelId: TunnelId;
  /** u8, PROTOCOL.md §4.1: 0 closed, 1 expired, 2 bad cell, 3 neighbour lost, 4 shutdown; other values are carried as is. */
  readonly reason: number;
}

/** Every link payload of the tunnel layer. */
export type TunnelMessage = CellOut | CellIn | BuildRequest | BuildRequestRelayer | BuildResponse | DestroyOut | DestroyIn;

/**
 * The view of record `index` (0..6) inside a records block.
 * @throws DeutError (kind `bug`) for an index out of range
 */
export function buildRecordAt(records: Uint8Array, index: number): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_HOPS) throw wireBug('BAD_INDEX', `no build record ${index}`);
  return records.subarray(index * BUILD_RECORD_BYTES, (index + 1) * BUILD_RECORD_BYTES);
}

/**
 * The view of reply slot `index` (0..6) inside a slots block.
 * @throws DeutError (kind `bug`) for an index out of range
 */
export function buildSlotAt(slots: Uint8Array, index: number): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_HOPS) throw wireBug('BAD_INDEX', `no reply slot ${index}`);
  return slots.subarray(index * BUILD_SLOT_BYTES, (index + 1) * BUILD_SLOT_BYTES);
}

const TWO_POW_32 = 0x1_0000_0000;
/** The high word of any seq below 2^53 fits in 21 bits. */
const MAX_SEQ_HIGH = Math.floor(MAX_CELL_SEQ / TWO_POW_32);

/**
 * Writes a cell into `out[0..CELL_BYTES)` without allocating: the fast path for relaying.
 * `body` may be the view `out.subarray(CELL_HEADER_BYTES)` (layers applied in place): the
 * copy onto itself is a memmove, cheaper than testing for the alias.
 * @throws ProtocolError `BAD_LENGTH` if `out` is shorter than CELL_BYTES; `BAD_FIELD` for a
 *   tunnel id that is not a u32, a seq that is not an integer in 0..2^53−1, or a body that
 *   is not CELL_BODY_BYTES
 */
export function encodeCellInto(out: Uint8Array, type: Cell['type'], id: TunnelId, seq: number, body: Uint8Array): void {
  if (!(body instanceof Uint8Array) || body.length !== CELL_BODY_BYTES) fail('BAD_FIELD', `cell: body must be ${CELL_BODY_BYTES} bytes`);
  encodeCellHeaderInto(out, type, id, seq);
  out.set(body, CELL_HEADER_BYTES);
}

/**
 * Writes only a cell's header into `out[0..CELL_HEADER_BYTES)`, for a caller that writes
 * the body at `out[CELL_HEADER_BYTES]` itself (a relay peels a layer straight into it).
 * @throws ProtocolError `BAD_LENGTH` if `out` is shorter than CELL_BYTES; `BAD_TYPE` for a
 *   type other than a cell; `BAD_FIELD` for an id that is not a u32 or a seq not in 0..2^53-1
 */
export function encodeCellHeaderInto(out: Uint8Array, type: Cell['type'], id: TunnelId, seq: number): void {
  if (out.length < CELL_BYTES) fail('BAD_LENGTH', 'cell: output buffer too short');
  if (type !== 'cell-out' && type !== 'cell-in') fail('BAD_TYPE', 'cell: not a cell type');
  if (id >>> 0 !== id) fail('BAD_FIELD', 'cell: tunnel id not a u32');
  if (!Number.isSafeInteger(seq) || seq < 0) fail('BAD_FIELD', 'cell: seq not an integer in 0..2^53-1');
  out[0] = TUNNEL_MESSAGE_TYPES[type];
  writeU32(out, 1, id);
  writeU32(out, 5, Math.floor(seq / TWO_POW_32));
  writeU32(out, 9, seq >>> 0);
}

function decodeCell(bytes: Uint8Array, type: Cell['type']): Cell {
  const high = readU32(bytes, 5);
  if (high > MAX_SEQ_HIGH) fail('BAD_FIELD', 'cell: seq not below 2^53');
  return {
    type,
    tunnelId: readU32(bytes, 1) as TunnelId,
    seq: high * TWO_POW_32 + readU32(bytes, 9),
    body: bytes.subarray(CELL_HEADER_BYTES, CELL_BYTES),
  };
}

/** A new message of `type`'s exact size with its type byte and tunnel id written. */
function startMessage(type: TunnelMessageType, id: TunnelId): Uint8Array {
  expectInt(id, 0, 0xffffffff, `${type}: tunnel id`);
  const out = new Uint8Array(TUNNEL_MESSAGE_BYTES[type]);
  out[0] = TUNNEL_MESSAGE_TYPES[type];
  writeU32(out, 1, id);
  return out;
}

/**
 * Encodes any tunnel message as a new array of its exact size (§4.1).
 * @throws ProtocolError `BAD_FIELD` for a field out of range or of the wrong length;
 *   DeutError (kind `bug`) for a type outside the union
 */
export function encodeTunnelMessage(message: TunnelMessage): Uint8Array {
  switch (message.type) {
    case 'cell-out':
    case 'cell-in': {
      const out = new Uint8Array(CELL_BYTES);
      encodeCellInto(out, message.type, message.tunnelId, message.seq, message.body);
      return out;
    }
    case 'build-request': {
      expectBytes(message.records, BUILD_RECORDS_BYTES, 'build request records');
      const out = startMessage(message.type, message.tunnelId);
      out.set(message.records, TUNNEL_HEADER_BYTES);
      return out;
    }
    case 'build-request-relayer': {
      expectInt(message.ttl, 0, MAX_RELAYER_TTL, 'build request ttl');
      expectBytes(message.ephemeralKey, PUBLIC_KEY_BYTES, 'build request ephemeral key');
      expectBytes(message.filler, RELAYER_FILLER_BYTES, 'build request filler');
      const out = startMessage(message.type, message.tunnelId);
      out[TUNNEL_HEADER_BYTES] = message.ttl;
      out.set(message.ephemeralKey, TUNNEL_HEADER_BYTES + 1);
      out.set(message.filler, TUNNEL_HEADER_BYTES + 1 + PUBLIC_KEY_BYTES);
      return out;
    }
    case 'build-response': {
      expectBytes(message.slots, BUILD_SLOTS_BYTES, 'build response slots');
      const out = startMessage(message.type, message.tunnelId);
      out.set(message.slots, TUNNEL_HEADER_BYTES);
      return out;
    }
    case 'destroy-out':
    case 'destroy-in': {
      expectInt(message.reason, 0, 255, 'destroy reason');
      const out = startMessage(message.type, message.tunnelId);
      out[TUNNEL_HEADER_BYTES] = message.reason;
      return out;
    }
    default:
      return assertNever(message, 'tunnel message');
  }
}

/** The message type named by `code`, or undefined for an unknown byte. */
function typeOfCode(code: number | undefined): TunnelMessageType | undefined {
  switch (code) {
    case 0x01:
      return 'cell-out';
    case 0x02:
      return 'cell-in';
    case 0x10:
      return 'build-request';
    case 0x11:
      return 'build-request-relayer';
    case 0x12:
      return 'build-response';
    case 0x20:
      return 'destroy-out';
    case 0x21:
      return 'destroy-in';
    default:
      return undefined;
  }
}

/**
 * Decodes and validates one tunnel message. Byte fields (`body`, `records`, `slots`,
 * `ephemeralKey`, `filler`) are subarray views of `bytes`: copy them if `bytes` is reused.
 * @throws ProtocolError `BAD_TYPE` for an unknown type byte, `BAD_LENGTH` for a size other
 *   than the type's, `BAD_FIELD` for a seq ≥ 2^53 or a relayer ttl over MAX_RELAYER_TTL
 */
export function decodeTunnelMessage(bytes: Uint8Array): TunnelMessage {
  if (bytes.length === 0) fail('BAD_LENGTH', 'tunnel message: empty');
  const type = typeOfCode(bytes[0]);
  if (type === undefined) fail('BAD_TYPE', `tunnel message: unknown type ${String(bytes[0])}`);
  if (bytes.length !== TUNNEL_MESSAGE_BYTES[type]) {
    fail('BAD_LENGTH', `${type}: ${bytes.length} bytes, expected ${TUNNEL_MESSAGE_BYTES[type]}`);
  }
  switch (type) {
    case 'cell-out':
    case 'cell-in':
      return decodeCell(bytes, type);
    case 'build-request':
      return { type, tunnelId: readU32(bytes, 1) as TunnelId, records: bytes.subarray(TUNNEL_HEADER_BYTES) };
    case 'build-request-relayer': {
      const ttl = bytes[TUNNEL_HEADER_BYTES] ?? 0;
      if (ttl > MAX_RELAYER_TTL) fail('BAD_FIELD', `build request ttl ${ttl} over ${MAX_RELAYER_TTL}`);
      const keyStart = TUNNEL_HEADER_BYTES + 1;
      return {
        type,
        tunnelId: readU32(bytes, 1) as TunnelId,
        ttl,
        ephemeralKey: bytes.subarray(keyStart, keyStart + PUBLIC_KEY_BYTES),
        filler: bytes.subarray(keyStart + PUBLIC_KEY_BYTES),
      };
    }
    case 'build-response':
      return { type, tunnelId: readU32(bytes, 1) as TunnelId, slots: bytes.subarray(TUNNEL_HEADER_BYTES) };
    case 'destroy-out':
    case 'destroy-in':
      return { type, tunnelId: readU32(bytes, 1) as TunnelId, reason: bytes[TUNNEL_HEADER_BYTES] ?? 0 };
    default:
      return assertNever(type, 'tunnel message type');
  }
}

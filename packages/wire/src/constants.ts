/**
 * Sizes and format limits of deut protocol version 1 (docs/PROTOCOL.md §10, with the
 * per-format sizes of §3.3, §3.4, §4.1, §4.3, §4.6, §5.1, §6 and §7). Every length a
 * decoder checks comes from here; derived values are computed from their parts so that a
 * change to one part cannot leave a total stale, and `assertLayout` below fails at load
 * time if a total ever disagrees with the number PROTOCOL.md prints.
 */
import { MAX_UDP_PAYLOAD_BYTES, bugError } from '@deut/common';
import type { WireBugCode } from './checks.js';

// checks.ts reads these constants as it loads, so its wireBug() cannot be imported here.
const BAD_CONSTANTS: WireBugCode = 'BAD_CONSTANTS';

/** Link protocol version spoken by this implementation (PROTOCOL.md §9). */
export const PROTOCOL_VERSION = 1;

/** Bytes of every UDP datagram on the node port (PROTOCOL.md §3.1). */
export const DATAGRAM_BYTES = 1200;

/** Bytes of the masked counter at the start of a data datagram (§3.4). */
export const LINK_COUNTER_BYTES = 8;

/** Bytes of a Poly1305 authentication tag (link AEAD, build records and slots, cell tags). */
export const TAG_BYTES = 16;

/** Bytes of an X25519 public key (ephemeral `E`, `Y` and static keys). */
export const PUBLIC_KEY_BYTES = 32;

/** Bytes of the encrypted handshake payload of msg2 and msg3 (§3.3). */
export const HANDSHAKE_PAYLOAD_BYTES = 32;

/** Bytes of a link frame, the plaintext of a data datagram: 1200 − 8 counter − 16 tag (§3.4). */
export const LINK_FRAME_BYTES = DATAGRAM_BYTES - LINK_COUNTER_BYTES - TAG_BYTES;

/** Bytes of the link frame header: type u8 ‖ length u16 (§3.4). */
export const LINK_FRAME_HEADER_BYTES = 3;

/** Largest link payload in bytes: the frame minus its header (§3.4). */
export const MAX_LINK_PAYLOAD = LINK_FRAME_BYTES - LINK_FRAME_HEADER_BYTES;

/** Most hops in a tunnel, and the number of build records and reply slots (§4.2). */
export const MAX_HOPS = 7;

/** Largest relayer-mode `ttl` in hops after the first: a path has at most MAX_HOPS hops (§4.4). */
export const MAX_RELAYER_TTL = MAX_HOPS - 1;

/** Bytes of a tunnel message type byte followed by a u32 tunnel id (§4.1). */
export const TUNNEL_HEADER_BYTES = 1 + 4;

/** Bytes of the padded instructions block inside a build record (§4.2, §4.6). */
export const BUILD_INSTRUCTIONS_BYTES = 112;

/** Largest msgpack map in an instructions block: the block minus its u8 length prefix (§4.6). */
export const MAX_INSTRUCTIONS_MSGPACK_BYTES = BUILD_INSTRUCTIONS_BYTES - 1;

/** Bytes of one build record: E 32 ‖ AEAD(instructions 112) with its tag (§4.2). */
export const BUILD_RECORD_BYTES = PUBLIC_KEY_BYTES + BUILD_INSTRUCTIONS_BYTES + TAG_BYTES;

/** Bytes of the reply plaintext in a reply slot (§4.3). */
export const BUILD_REPLY_BYTES = 32;

/** Bytes of one reply slot: Y 32 ‖ AEAD(reply 32) with its tag (§4.3). */
export const BUILD_SLOT_BYTES = PUBLIC_KEY_BYTES + BUILD_REPLY_BYTES + TAG_BYTES;

/** Largest tunnel lifetime a build may ask for, in seconds (§4.6). */
export const MAX_TUNNEL_LIFETIME_S = 900;

/** Bytes of a cell body (§5.1). */
export const CELL_BODY_BYTES = 1160;

/** Bytes of a cell header: type u8 ‖ tunnelId u32 ‖ seq u64 (§5.1). */
export const CELL_HEADER_BYTES = TUNNEL_HEADER_BYTES + 8;

/** Bytes of a whole cell, which fills a link payload exactly (§4.1, §5.1). */
export const CELL_BYTES = CELL_HEADER_BYTES + CELL_BODY_BYTES;

/** Bytes of the end-to-end cell plaintext: the body minus one tag per possible hop (§5.2). */
export const CELL_PLAINTEXT_BYTES = CELL_BODY_BYTES - TAG_BYTES * MAX_HOPS;

/** Largest cell `seq`: sequence values stay below 2^53 so they are exact JS numbers (§5.3). */
export const MAX_CELL_SEQ = Number.MAX_SAFE_INTEGER;

/** Bytes of a BUILD_REQUEST and of a BUILD_REQUEST_RELAYER (§4.1). */
export const BUILD_REQUEST_BYTES = TUNNEL_HEADER_BYTES + MAX_HOPS * BUILD_RECORD_BYTES;

/** Bytes of random filler that ends a BUILD_REQUEST_RELAYER: header, ttl u8, E 32 (§4.1). */
export const RELAYER_FILLER_BYTES = BUILD_REQUEST_BYTES - TUNNEL_HEADER_BYTES - 1 - PUBLIC_KEY_BYTES;

/** Bytes of a BUILD_RESPONSE (§4.1). */
export const BUILD_RESPONSE_BYTES = TUNNEL_HEADER_BYTES + MAX_HOPS * BUILD_SLOT_BYTES;

/** Bytes of a DESTROY_OUT or DESTROY_IN: header ‖ reason u8 (§4.1). */
export const DESTROY_BYTES = TUNNEL_HEADER_BYTES + 1;

/** Bytes of an IP address field: IPv6, or IPv4 as IPv4-mapped IPv6 (§4.3, §6). */
export const IP_BYTES = 16;

/** Bytes of an encoded UDP address: family u8 ‖ IP 16 ‖ port u16 (§6). */
export const ADDRESS_BYTES = 1 + IP_BYTES + 2;

/** Bytes of the DATAGRAM cell frame header: type, datagramId u32, index, count, length u16, address (§6). */
export const DATAGRAM_FRAME_HEADER_BYTES = 1 + 4 + 1 + 1 + 2 + ADDRESS_BYTES;

/** Largest fragment of a datagram carried by one DATAGRAM frame, in bytes (§6). */
export const MAX_FRAGMENT_DATA = CELL_PLAINTEXT_BYTES - DATAGRAM_FRAME_HEADER_BYTES;

/** Bytes of a probe id (PROBE and PROBE_REPLY frames, §6). */
export const PROBE_ID_BYTES = 8;

/**
 * Largest datagram a tunnel carries and reassembles, in bytes (§6): the largest UDP payload
 * over IPv4, since an endpoint sends it on as one ordinary datagram. The message envelope
 * of §7, header included, is bounded by the same number.
 */
export const MAX_DATAGRAM_BYTES = MAX_UDP_PAYLOAD_BYTES;

/** Most fragments of one datagram: ceil(MAX_DATAGRAM_BYTES / MAX_FRAGMENT_DATA) = 65 (§6). */
export const MAX_FRAGMENTS = Math.ceil(MAX_DATAGRAM_BYTES / MAX_FRAGMENT_DATA);

/** Bytes of a message id (§7). */
export const MESSAGE_ID_BYTES = 16;

/** Most reply-to addresses in a message envelope (§7). */
export const MAX_REPLY_TO = 4;

/** Bytes of the fixed envelope header: version, kind, messageId, replyCount, paddingLength u16 (§7). */
export const ENVELOPE_HEADER_BYTES = 1 + 1 + MESSAGE_ID_BYTES + 1 + 2;

/** Largest whole envelope in bytes: it travels as one datagram (§7). */
export const MAX_ENVELOPE_BYTES = MAX_DATAGRAM_BYTES;

/** Bytes of a TOO_LARGE envelope's payload: the size, u16, the request must be padded to (§7). */
export const TOO_LARGE_PAYLOAD_BYTES = 2;

/** Largest envelope payload in bytes, reached with an empty reply-to list (§7). */
export const MAX_ENVELOPE_PAYLOAD = MAX_ENVELOPE_BYTES - ENVELOPE_HEADER_BYTES;

/**
 * The totals PROTOCOL.md prints, checked against the derivations above once at load.
 * INVARIANT: a mismatch is a bug in this file or in the document, never in the input.
 */
function assertLayout(): void {
  const printed: readonly (readonly [string, number, number])[] = [
    ['LINK_FRAME_BYTES', LINK_FRAME_BYTES, 1176],
    ['MAX_LINK_PAYLOAD', MAX_LINK_PAYLOAD, 1173],
    ['BUILD_RECORD_BYTES', BUILD_RECORD_BYTES, 160],
    ['BUILD_SLOT_BYTES', BUILD_SLOT_BYTES, 80],
    ['CELL_BYTES', CELL_BYTES, 1173],
    ['CELL_PLAINTEXT_BYTES', CELL_PLAINTEXT_BYTES, 1048],
    ['BUILD_REQUEST_BYTES', BUILD_REQUEST_BYTES, 1125],
    ['RELAYER_FILLER_BYTES', RELAYER_FILLER_BYTES, 1087],
    ['BUILD_RESPONSE_BYTES', BUILD_RESPONSE_BYTES, 565],
    ['DESTROY_BYTES', DESTROY_BYTES, 6],
    ['ADDRESS_BYTES', ADDRESS_BYTES, 19],
    ['MAX_FRAGMENT_DATA', MAX_FRAGMENT_DATA, 1020],
    ['MAX_FRAGMENTS', MAX_FRAGMENTS, 65],
  ];
  for (const [name, derived, doc] of printed) {
    if (derived !== doc) throw bugError(BAD_CONSTANTS, `${name} is ${derived}, PROTOCOL.md says ${doc}`);
  }
  // A cell is the largest link payload: cells must fit a frame, and no space may be left over.
  if (CELL_BYTES !== MAX_LINK_PAYLOAD) throw bugError(BAD_CONSTANTS, 'a cell must fill a link payload');
}
assertLayout();

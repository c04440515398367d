/**
 * The cryptography of a tunnel build (docs/PROTOCOL.md §4.2-§4.4): sealing and opening
 * build records, the hop's key exchange, the request and response transforms that change
 * every byte on every link, reply slots, and the master reading the response, in both path
 * modes. Everything here is pure computation on bytes: no I/O, no timers, no policy. The
 * build state machine in this package decides when each step runs.
 *
 * Keystreams (request and response layers) are XChaCha20 with a 24-byte zero nonce.
 * INVARIANT: every keystream key is derived for a single build and used for one transform,
 * so the fixed nonce never repeats under a key.
 */
import { DeutError, ProtocolError, bugError, cryptoError } from '@deut/common';
import {
  X25519_KEY_BYTES,
  XCHACHA_NONCE_BYTES,
  chachaOpen,
  chachaSeal,
  fillRandomBytes,
  generateKeyPair,
  sodium,
  x25519,
  zero,
} from '@deut/crypto';
import type { KeyPair } from '@deut/crypto';
import {
  BUILD_RECORDS_BYTES,
  BUILD_RECORD_BYTES,
  BUILD_SLOTS_BYTES,
  BUILD_SLOT_BYTES,
  MAX_HOPS,
  decodeBuildInstructions,
  decodeBuildReply,
  encodeBuildInstructions,
  encodeBuildReply,
} from '@deut/wire';
import type { BuildAccepted, BuildInstructions, BuildRefused, BuildReply } from '@deut/wire';
import {
  deriveHopSecrets,
  deriveMasterHopSecret,
  deriveRecordKey,
  deriveRelayerHopSecret,
  deriveRequestLayerKey,
} from './hop-keys.js';
import type { HopKeys, HopSecrets } from './hop-keys.js';

export { deriveHopSecrets } from './hop-keys.js';
export type { HopKeys, HopSecrets } from './hop-keys.js';

/** Each keystream key is single-use, so its nonce can be constant (see the file header). */
const ZERO_NONCE = new Uint8Array(XCHACHA_NONCE_BYTES);

/** Where the sealed instructions start in a record, after `E`. */
const RECORD_BODY_OFFSET = X25519_KEY_BYTES;

/** Where the sealed reply starts in a slot, after `Y`. */
const SLOT_BODY_OFFSET = X25519_KEY_BYTES;

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

function checkLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) {
    throw cryptoError('BAD_LENGTH', `${what} must be ${length} bytes, got ${bytes.length}`);
  }
}

function checkHopCount(count: number): void {
  if (!Number.isInteger(count) || count < 1 || count > MAX_HOPS) {
    throw cryptoError('BAD_HOP_COUNT', `a tunnel has 1 to ${MAX_HOPS} hops, got ${String(count)}`);
  }
}

/** `data XOR XChaCha20(key, 0^24)`, as a new array. */
function xorKeystream(data: Uint8Array, key: Uint8Array): Uint8Array {
  return sodium().crypto_stream_xchacha20_xor(data, ZERO_NONCE, key);
}

/**
 * X25519 that turns a low-order peer key into `null`: such a key can only come from junk
 * or a hostile peer, which callers drop rather than treat as our error.
 */
function tryX25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | null {
  try {
    return x25519(privateKey, publicKey);
  } catch (err) {
    if (err instanceof DeutError && err.code === 'LOW_ORDER_KEY') return null;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------
// Both modes: reply slots, the response step, reading a response
// ---------------------------------------------------------------------------------------

/** What a hop needs, after its key exchange, to answer a build (both modes). */
export interface HopAcceptance {
  /** Layer keys and offsets for the tunnel; the hop keeps them if it accepts. */
  readonly keys: HopKeys;
  /** The hop's ephemeral public key `Y`, sent in the clear at the start of its slot. */
  readonly Y: Uint8Array;
  /** Seals the hop's reply slot; secret, single use. */
  readonly replyKey: Uint8Array;
  /** Keys the hop's response step; secret, single use. */
  readonly responseLayerKey: Uint8Array;
}

/**
 * A hop's reply slot (§4.3): `Y ‖ ChaCha20-Poly1305(replyKey, 0, ad = Y, reply)`. A refusing
 * hop seals the same way, after the same key exchange.
 * INVARIANT: one slot per reply key; a second seal would reuse the (key, nonce) pair.
 * Wipe the key with {@link wipeAcceptance} once the response step is done.
 * @throws ProtocolError from `encodeBuildReply` for a reply whose fields disagree
 * @returns BUILD_SLOT_BYTES
 */
export function sealReplySlot(
  acceptance: Pick<HopAcceptance, 'Y' | 'replyKey'>,
  reply: BuildReply,
): Uint8Array {
  checkLength(acceptance.Y, X25519_KEY_BYTES, 'hop ephemeral key');
  const slot = new Uint8Array(BUILD_SLOT_BYTES);
  slot.set(acceptance.Y, 0);
  slot.set(chachaSeal(acceptance.replyKey, 0, encodeBuildReply(reply), acceptance.Y), SLOT_BODY_OFFSET);
  return slot;
}

/**
 * The response step of a hop (§4.3): `out[0] = ownSlot`, `out[p] = in[p-1] XOR R[p-1]` for
 * p = 1..6, the last input slot dropped. Each hop's keystream hides the slots of the hops
 * after it, so no slot byte crosses a link unchanged.
 * @param slots the BUILD_SLOTS_BYTES received from downstream, or `undefined` for the node
 *   that ends the build (the endpoint or a refusing hop), which starts from random slots
 * @param ownSlot this hop's slot from {@link sealReplySlot}, BUILD_SLOT_BYTES
 * @param responseLayerKey the hop's response layer key, 32 bytes
 * @returns the BUILD_SLOTS_BYTES to send upstream (a new array)
 * @throws DeutError `BAD_LENGTH` (kind `crypto`) for inputs of the wrong size
 */
export function addResponseSlot(
  slots: Uint8Array | undefined,
  ownSlot: Uint8Array,
  responseLayerKey: Uint8Array,
): Uint8Array {
  checkLength(ownSlot, BUILD_SLOT_BYTES, 'own reply slot');
  checkLength(responseLayerKey, X25519_KEY_BYTES, 'response layer key');
  let input: Uint8Array;
  if (slots === undefined) {
    input = new Uint8Array(BUILD_SLOTS_BYTES - BUILD_SLOT_BYTES);
    fillRandomBytes(input);
  } else {
    checkLength(slots, BUILD_SLOTS_BYTES, 'response slots');
    input = slots.subarray(0, BUILD_SLOTS_BYTES - BUILD_SLOT_BYTES);
  }
  const out = new Uint8Array(BUILD_SLOTS_BYTES);
  out.set(ownSlot, 0);
  out.set(xorKeystream(input, responseLayerKey), BUILD_SLOT_BYTES);
  return out;
}

/** Overwrites the single-use secrets of an acceptance; its `keys` stay for the tunnel. */
export function wipeAcceptance(acceptance: Pick<HopAcceptance, 'replyKey' | 'responseLayerKey'>): void {
  zero(acceptance.replyKey);
  zero(acceptance.responseLayerKey);
}

/** Why a slot could not be read as a hop's reply. */
export type InvalidSlotProblem =
  /** `Y` is a low-order point: no key exchange is possible. */
  | 'bad-key'
  /** The slot does not authenticate under the hop's reply key: forged, corrupted or junk. */
  | 'bad-tag'
  /** The slot authenticates but its plaintext is not a valid reply: the hop misbehaves. */
  | 'bad-reply';

/** The master's reading of one hop's reply slot (§4.3). */
export type HopOutcome =
  | {
      readonly status: 'accepted';
      /** The keys this hop derived; equal byte for byte to the hop's own. */
      readonly keys: HopKeys;
      /** Carries the endpoint's tunnel address and port when the hop is the endpoint. */
      readonly reply: BuildAccepted;
    }
  | { readonly status: 'refused'; readonly reply: BuildRefused }
  | { readonly status: 'invalid'; readonly problem: InvalidSlotProblem };

/** The mode-specific half of reading a response: how the master finds each hop's `H`. */
interface HopSecretSource {
  /** `H_j` for the `Y` in slot j, or `null` if `Y` is of low order. */
  hopSecret(j: number, hopEphemeral: Uint8Array): Uint8Array | null;
  /** Called after hop j accepted, before `secrets` is wiped. */
  accepted(j: number, secrets: HopSecrets): void;
}

/**
 * The master's side of §4.3: `cur = slots; for j: slot_j = cur[0]; cur[q] = cur[q+1] XOR
 * R_j[q]`. Stops at the first slot that refuses or fails to read, because the slots after
 * it were never written by real hops.
 */
function readResponse(hopCount: number, slots: Uint8Array, source: HopSecretSource): HopOutcome[] {
  checkHopCount(hopCount);
  checkLength(slots, BUILD_SLOTS_BYTES, 'response slots');
  const outcomes: HopOutcome[] = [];
  let current = slots;
  for (let j = 0; j < hopCount; j++) {
    const hopEphemeral = current.slice(0, X25519_KEY_BYTES);
    const hopSecret = source.hopSecret(j, hopEphemeral);
    if (hopSecret === null) {
      outcomes.push({ status: 'invalid', problem: 'bad-key' });
      break;
    }
    const secrets = deriveHopSecrets(hopSecret);
    zero(hopSecret);
    let kept = false;
    try {
      const sealed = current.subarray(SLOT_BODY_OFFSET, BUILD_SLOT_BYTES);
      const plaintext = chachaOpen(secrets.replyKey, 0, sealed, hopEphemeral);
      if (plaintext === null) {
        outcomes.push({ status: 'invalid', problem: 'bad-tag' });
        break;
      }
      let reply: BuildReply;
      try {
        reply = decodeBuildReply(plaintext);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        outcomes.push({ status: 'invalid', problem: 'bad-reply' });
        break;
      }
      if (reply.status === 'refused') {
        outcomes.push({ status: 'refused', reply });
        break;
      }
      outcomes.push({ status: 'accepted', keys: secrets.keys, reply });
      kept = true;
      source.accepted(j, secrets);
      if (j + 1 < hopCount) {
        const peeled = new Uint8Array(BUILD_SLOTS_BYTES);
        peeled.set(xorKeystream(current.subarray(BUILD_SLOT_BYTES), secrets.responseLayerKey), 0);
        current = peeled;
      }
    } finally {
      zero(secrets.replyKey);
      zero(secrets.responseLayerKey);
      zero(secrets.blind);
      if (!kept) {
        zero(secrets.keys.outboundKey);
        zero(secrets.keys.inboundKey);
      }
    }
  }
  return outcomes;
}

// ---------------------------------------------------------------------------------------
// Master mode: the master's side
// ---------------------------------------------------------------------------------------

/** What the master tells one hop, and the key that hop must prove. */
export interface MasterHopPlan {
  /** The hop's static X25519 public key `S_i`, from the peer table. */
  readonly staticKey: Uint8Array;
  /** The hop's instructions (§4.6); the last hop of a plan is normally the endpoint. */
  readonly instructions: BuildInstructions;
}

/** The master's secret state for one hop of a build in progress. */
export interface MasterHopState {
  /** The fresh ephemeral `e_i`, `E_i`; the private key is secret. */
  readonly ephemeral: KeyPair;
  /** X25519(e_i, S_i); secret. */
  readonly dh1: Uint8Array;
  /** The hop's static key `S_i` (a copy). */
  readonly staticKey: Uint8Array;
}

/**
 * A master-mode build request ready to send, and the secrets needed to read its response.
 * Secret: never log it. Its secrets are wiped by {@link readMasterResponse}, or by
 * {@link wipeMasterBuild} if no response comes.
 */
export interface MasterBuild {
  /** The 7 records, BUILD_RECORDS_BYTES, for the BUILD_REQUEST to the first hop. */
  readonly records: Uint8Array;
  /** One entry per hop, in path order. */
  readonly hops: readonly MasterHopState[];
}

/**
 * Seals the records of a master-mode build request (§4.2). Record i is
 * `E_i ‖ AEAD(KDF('deut/1 build record', DH1_i, E_i ‖ S_i), 0, ad = E_i, instructions)`,
 * placed at position i XORed with the keystreams that hops 0..i-1 will XOR into it on the
 * way, so that hop i finds it in the clear at position 0. Positions n..6 are random, so no
 * hop can tell the path length.
 * @param plan 1..MAX_HOPS hops, first hop first
 * @throws DeutError `BAD_HOP_COUNT` or `BAD_KEY_LENGTH` (kind `crypto`) for a bad plan;
 *   `LOW_ORDER_KEY` (kind `crypto`) for a static key of low order; ProtocolError from
 *   `encodeBuildInstructions` for instructions out of range
 */
export function prepareMasterBuild(plan: readonly MasterHopPlan[]): MasterBuild {
  checkHopCount(plan.length);
  const n = plan.length;
  // Encode everything first, so that bad instructions fail before any secret exists.
  const blocks = plan.map((hop) => {
    checkLength(hop.staticKey, X25519_KEY_BYTES, 'hop static key');
    return encodeBuildInstructions(hop.instructions);
  });
  const records = new Uint8Array(BUILD_RECORDS_BYTES);
  fillRandomBytes(records.subarray(n * BUILD_RECORD_BYTES));
  const hops: MasterHopState[] = [];
  const layerKeys: Uint8Array[] = [];
  try {
    for (const [i, hop] of plan.entries()) {
      const block = blocks[i];
      if (block === undefined) throw bugError('UNREACHABLE', `no instructions block ${i}`);
      // Step 1: a fresh ephemeral per hop, so no two records share a public value.
      const ephemeral = generateKeyPair();
      const staticKey = hop.staticKey.slice();
      // Step 2: DH1 = X25519(e_i, S_i); only the holder of s_i can compute it.
      let dh1: Uint8Array;
      try {
        dh1 = x25519(ephemeral.privateKey, staticKey);
      } catch (err) {
        zero(ephemeral.privateKey);
        throw err;
      }
      hops.push({ ephemeral, dh1, staticKey });
      // Step 3: seal the instructions under a key bound to E_i and S_i.
      const recordKey = deriveRecordKey(dh1, ephemeral.publicKey, staticKey);
      const offset = i * BUILD_RECORD_BYTES;
      records.set(ephemeral.publicKey, offset);
      records.set(chachaSeal(recordKey, 0, block, ephemeral.publicKey), offset + RECORD_BODY_OFFSET);
      zero(recordKey);
      layerKeys.push(deriveRequestLayerKey(dh1, ephemeral.publicKey));
    }
    // Step 4: pre-XOR. Hop j XORs K_j[p] into the record that is at position p after its
    // shift, i.e. at position p + j + 1 of this request, so K_j's stream from its start
    // covers positions j+1..n-1 exactly.
    for (let j = 0; j + 1 < n; j++) {
      const key = layerKeys[j];
      if (key === undefined) throw bugError('UNREACHABLE', `no request layer key ${j}`);
      const later = records.subarray((j + 1) * BUILD_RECORD_BYTES, n * BUILD_RECORD_BYTES);
      later.set(xorKeystream(later, key));
    }
  } catch (err) {
    wipeMasterBuild({ records, hops });
    throw err;
  } finally {
    for (const key of layerKeys) zero(key);
    for (const block of blocks) zero(block);
  }
  return { records, hops };
}

/**
 * Reads a master-mode response (§4.3): one outcome per hop read, in path order, ending at
 * the first refusal or unreadable slot. Each hop's `H_i` comes from DH1_i and
 * DH2_i = X25519(e_i, Y_i), so only the hop holding `s_i` can have sealed slot i: a relayer
 * cannot answer for a later hop. All n outcomes `accepted` means the tunnel is built.
 *
 * Wipes the build's secrets when done, whatever the outcome: a response is read once.
 * @param slots the BUILD_SLOTS_BYTES of the BUILD_RESPONSE
 * @throws DeutError `BAD_LENGTH` (kind `crypto`) for slots of the wrong size; `BUILD_CONSUMED`
 *   (kind `bug`) if the build was already read or wiped
 */
export function readMasterResponse(build: MasterBuild, slots: Uint8Array): HopOutcome[] {
  const first = build.hops[0];
  if (first === undefined || sodium().is_zero(first.dh1)) {
    throw bugError('BUILD_CONSUMED', 'master build already read or wiped');
  }
  try {
    return readResponse(build.hops.length, slots, {
      hopSecret(j, hopEphemeral) {
        const hop = build.hops[j];
        if (hop === undefined) throw bugError('UNREACHABLE', `no hop ${j}`);
        // DH2 = X25519(e_j, Y_j): the ephemeral-ephemeral half that gives forward secrecy.
        const dh2 = tryX25519(hop.ephemeral.privateKey, hopEphemeral);
        if (dh2 === null) return null;
        const hopSecret = deriveMasterHopSecret(hop.dh1, dh2, hop.ephemeral.publicKey, hopEphemeral, hop.staticKey);
        zero(dh2);
        return hopSecret;
      },
      accepted() {
        // Master mode needs nothing from one hop to read the next.
      },
    });
  } finally {
    wipeMasterBuild(build);
  }
}

/** Overwrites the secrets of a build whose response will never be read (timeout, error). */
export function wipeMasterBuild(build: MasterBuild): void {
  for (const hop of build.hops) {
    zero(hop.ephemeral.privateKey);
    zero(hop.dh1);
  }
}

// ---------------------------------------------------------------------------------------
// Master mode: the hop's side
// ---------------------------------------------------------------------------------------

/** Record 0 of a request, opened by the hop it was sealed for (§4.2 step 1). */
export interface OpenedRecord {
  /** The master's ephemeral `E` for this hop (a copy): the key of the replay cache. */
  readonly ephemeral: Uint8Array;
  /** The decoded instructions. */
  readonly instructions: BuildInstructions;
  /** X25519(s_hop, E); secret. Zeroed by {@link acceptRecord}. */
  readonly dh1: Uint8Array;
  /** Keys this hop's request transform; secret. Zeroed by {@link wipeOpenedRecord}. */
  readonly requestLayerKey: Uint8Array;
}

/**
 * Opens record 0 of a BUILD_REQUEST (§4.2 step 1) with the node's static key.
 * @param identity the node's static key pair
 * @param records the BUILD_RECORDS_BYTES of the request
 * @returns the opened record, or `null` if record 0 does not authenticate for this node
 *   (junk, or sealed for someone else): drop it and count `build-bad-record`, no reply
 * @throws ProtocolError (`BAD_LENGTH`, `BAD_PADDING`, `BAD_MSGPACK`, `BAD_FIELD`,
 *   `BAD_ADDRESS`) if the record authenticates but the instructions are malformed
 * @throws DeutError `BAD_LENGTH` or `BAD_KEY_LENGTH` (kind `crypto`) for inputs of the
 *   wrong size, which only a bug of ours produces
 */
export function openRecord(identity: KeyPair, records: Uint8Array): OpenedRecord | null {
  checkLength(records, BUILD_RECORDS_BYTES, 'build records');
  const masterEphemeral = records.slice(0, X25519_KEY_BYTES);
  // Step 1: DH1 = X25519(s_hop, E); a low-order E is junk by definition.
  const dh1 = tryX25519(identity.privateKey, masterEphemeral);
  if (dh1 === null) return null;
  // Step 2: the record key binds E and our static key, so the record opens only here.
  const recordKey = deriveRecordKey(dh1, masterEphemeral, identity.publicKey);
  const block = chachaOpen(recordKey, 0, records.subarray(RECORD_BODY_OFFSET, BUILD_RECORD_BYTES), masterEphemeral);
  zero(recordKey);
  if (block === null) {
    zero(dh1);
    return null;
  }
  // Step 3: the instructions must be canonical (§4.6); decode copies what it keeps.
  let instructions: BuildInstructions;
  try {
    instructions = decodeBuildInstructions(block);
  } catch (err) {
    zero(dh1);
    throw err;
  } finally {
    zero(block);
  }
  return { ephemeral: masterEphemeral, instructions, dh1, requestLayerKey: deriveRequestLayerKey(dh1, masterEphemeral) };
}

/**
 * The hop's key exchange (§4.2 step 4): a fresh ephemeral `y`, `DH2 = X25519(y, E)` and
 * `H = KDF('deut/1 hop secret', DH1 ‖ DH2, E ‖ Y ‖ S_hop)`, then the keys of §5. A hop runs
 * it whether it accepts or refuses, since even a refusal is sealed under `H`. Zeroes `y`,
 * DH2 and `opened.dh1`.
 * @param identity the same static key pair that opened the record
 * @throws DeutError `RECORD_CONSUMED` (kind `bug`) if called twice for one record
 */
export function acceptRecord(identity: KeyPair, opened: OpenedRecord): HopAcceptance {
  if (sodium().is_zero(opened.dh1)) throw bugError('RECORD_CONSUMED', 'build record already accepted or wiped');
  // Step 1: a fresh ephemeral, so H stays secret even if s_hop leaks later.
  const y = generateKeyPair();
  let dh2: Uint8Array | undefined;
  try {
    // Step 2: DH2 = X25519(y, E). E passed DH1, so it is not of low order.
    dh2 = x25519(y.privateKey, opened.ephemeral);
    // Step 3: H binds both shared secrets and the whole transcript E ‖ Y ‖ S_hop.
    const hopSecret = deriveMasterHopSecret(opened.dh1, dh2, opened.ephemeral, y.publicKey, identity.publicKey);
    // Step 4: the tunnel's keys, reply key and response layer key (§2 table).
    const secrets = deriveHopSecrets(hopSecret);
    zero(hopSecret);
    zero(secrets.blind);
    return {
      keys: secrets.keys,
      Y: y.publicKey,
      replyKey: secrets.replyKey,
      responseLayerKey: secrets.responseLayerKey,
    };
  } finally {
    zero(y.privateKey);
    zero(opened.dh1);
    if (dh2 !== undefined) zero(dh2);
  }
}

/**
 * The request transform of hop j (§4.2): `out[p] = in[p+1] XOR K_j[p]` for p = 0..5 and
 * `out[6] = random XOR K_j[6]`, with `K_j = XChaCha20(requestLayerKey, 0^24)`. The shift
 * consumes this hop's record and brings the next hop's to position 0; the keystream makes
 * every byte differ from what arrived.
 * @param records the BUILD_RECORDS_BYTES this hop received
 * @param requestLayerKey `OpenedRecord.requestLayerKey`
 * @returns the BUILD_RECORDS_BYTES to forward (a new array)
 */
export function transformRequestRecords(records: Uint8Array, requestLayerKey: Uint8Array): Uint8Array {
  checkLength(records, BUILD_RECORDS_BYTES, 'build records');
  checkLength(requestLayerKey, X25519_KEY_BYTES, 'request layer key');
  const shifted = new Uint8Array(BUILD_RECORDS_BYTES);
  shifted.set(records.subarray(BUILD_RECORD_BYTES), 0);
  fillRandomBytes(shifted.subarray(BUILD_RECORDS_BYTES - BUILD_RECORD_BYTES));
  return xorKeystream(shifted, requestLayerKey);
}

/** Overwrites the secrets of an opened record (DH1 and the request layer key). */
export function wipeOpenedRecord(opened: OpenedRecord): void {
  zero(opened.dh1);
  zero(opened.requestLayerKey);
}

// ---------------------------------------------------------------------------------------
// Relayer mode (§4.4)
// ---------------------------------------------------------------------------------------

/** A relayer-mode build in progress on the master. Secret: never log it. */
export interface RelayerBuild {
  /** `E`, to send in BUILD_REQUEST_RELAYER to the first hop. */
  readonly E: Uint8Array;
  /** `e`; secret, wiped by {@link readRelayerResponse} or {@link wipeRelayerBuild}. */
  readonly privateKey: Uint8Array;
}

/** A relayer-mode hop's acceptance: the keys, and the blinded key for the next hop. */
export interface RelayerAcceptance extends HopAcceptance {
  /** `E_{i+1} = X25519(b_i, E_i)`, to forward when ttl > 0 (fresh padding around it). */
  readonly nextE: Uint8Array;
}

/** A fresh master ephemeral for a relayer-mode build (§4.4). */
export function prepareRelayerBuild(): RelayerBuild {
  const ephemeral = generateKeyPair();
  return { E: ephemeral.publicKey, privateKey: ephemeral.privateKey };
}

/**
 * A relayer-mode hop's key exchange (§4.4 steps 2-3): `Z = X25519(y, E)`,
 * `H = KDF('deut/1 hop secret relayer', Z, E ‖ Y)`, `b = KDF('deut/1 blind', H)` and the
 * next hop's `E' = X25519(b, E)`. Blinding makes `E` differ on every link, so two relayers
 * cannot match a build by its key. Zeroes `y`, `Z`, `H` and `b`.
 * @param masterEphemeral `E_i` from the BUILD_REQUEST_RELAYER, 32 bytes
 * @throws ProtocolError `LOW_ORDER_KEY` if `E_i` is of low order: junk from the neighbour,
 *   to drop and count (no reply is possible without a shared secret)
 * @throws DeutError `BAD_LENGTH` (kind `crypto`) unless `masterEphemeral` is 32 bytes
 */
export function acceptRelayerHop(masterEphemeral: Uint8Array): RelayerAcceptance {
  checkLength(masterEphemeral, X25519_KEY_BYTES, 'relayer ephemeral key');
  const y = generateKeyPair();
  try {
    // Step 1: Z = X25519(y, E_i), the hop's only shared secret with the master.
    const z = tryX25519(y.privateKey, masterEphemeral);
    if (z === null) throw new ProtocolError('LOW_ORDER_KEY', 'relayer build: ephemeral key of low order');
    // Step 2: H_i binds Z to the transcript E_i ‖ Y_i.
    const hopSecret = deriveRelayerHopSecret(z, masterEphemeral, y.publicKey);
    zero(z);
    const secrets = deriveHopSecrets(hopSecret);
    zero(hopSecret);
    // Step 3: blind E for the next hop; the master repeats the blinding on Y_{i+1}.
    const nextE = x25519(secrets.blind, masterEphemeral);
    zero(secrets.blind);
    return {
      keys: secrets.keys,
      Y: y.publicKey,
      replyKey: secrets.replyKey,
      responseLayerKey: secrets.responseLayerKey,
      nextE,
    };
  } finally {
    zero(y.privateKey);
  }
}

/**
 * Reads a relayer-mode response (§4.3 reading, §4.4 keys): `Z_i` by the blinding chain
 * `X25519(b_{i-1}, ... X25519(b_1, X25519(e, Y_i)))` (hops numbered from 1), which equals the
 * hop's `X25519(y_i, E_i)` because scalar multiplication commutes. Outcomes as for
 * {@link readMasterResponse}, but authenticated only by the link to the first hop: the first
 * relayer can make up every later reply (§4.4).
 *
 * Wipes the build's secret when done, whatever the outcome.
 * @param hopCount the path length asked for (ttl + 1), 1..MAX_HOPS
 * @throws DeutError `BAD_HOP_COUNT`, `BAD_LENGTH` (kind `crypto`) for bad arguments;
 *   `BUILD_CONSUMED` (kind `bug`) if the build was already read or wiped
 */
export function readRelayerResponse(build: RelayerBuild, hopCount: number, slots: Uint8Array): HopOutcome[] {
  if (sodium().is_zero(build.privateKey)) throw bugError('BUILD_CONSUMED', 'relayer build already read or wiped');
  // INVARIANT: before reading slot j, `blinds` holds b_0..b_{j-1} and `ephemeral` is E_j.
  const blinds: Uint8Array[] = [];
  let ephemeral = build.E;
  try {
    return readResponse(hopCount, slots, {
      hopSecret(_j, hopEphemeral) {
        // Step 1: X25519(e, Y_j), then each earlier hop's blinding in path order.
        let z = tryX25519(build.privateKey, hopEphemeral);
        if (z === null) return null;
        for (const blind of blinds) {
          const next = x25519(blind, z);
          zero(z);
          z = next;
        }
        // Step 2: H_j exactly as the hop derived it, over the E_j that hop saw.
        const hopSecret = deriveRelayerHopSecret(z, ephemeral, hopEphemeral);
        zero(z);
        return hopSecret;
      },
      accepted(_j, secrets) {
        // Step 3: follow the hop's blinding, for the next hop's E and Z.
        blinds.push(secrets.blind.slice());
        ephemeral = x25519(secrets.blind, ephemeral);
      },
    });
  } finally {
    for (const blind of blinds) zero(blind);
    wipeRelayerBuild(build);
  }
}

/** Overwrites the secret of a relayer build whose response will never be read. */
export function wipeRelayerBuild(build: RelayerBuild): void {
  zero(build.privateKey);
}

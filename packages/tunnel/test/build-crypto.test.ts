/**
 * Tests for the tunnel build cryptography (docs/PROTOCOL.md §4.2-§4.4, §5.2-§5.3): master
 * and relayer builds end to end for every path length, refusals, who can open and who can
 * forge, no byte run crossing a link unchanged, the spec formulas recomputed independently
 * (X25519 cross-checked with @noble/curves), decoding of junk, and checked-in vectors.
 *
 * Regenerate test/vectors/build.json deliberately with `DEUT_WRITE_VECTORS=1`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { DeutError, ProtocolError } from '@deut/common';
import type { UdpAddress } from '@deut/common';
import {
  chachaOpen,
  chachaSeal,
  concatBytes,
  cryptoReady,
  deriveKey,
  fromHex,
  generateKeyPair,
  keyPairFromPrivate,
  randomBytes,
  sodium,
  toHex,
  x25519,
} from '@deut/crypto';
import type { KeyPair } from '@deut/crypto';
import {
  BUILD_RECORDS_BYTES,
  BUILD_RECORD_BYTES,
  BUILD_SLOTS_BYTES,
  BUILD_SLOT_BYTES,
  MAX_HOPS,
  buildRecordAt,
  buildSlotAt,
  decodeBuildReply,
  encodeBuildInstructions,
  encodeBuildReply,
} from '@deut/wire';
import type { BuildInstructions, BuildRefusalReason, BuildReply } from '@deut/wire';
import {
  acceptRecord,
  acceptRelayerHop,
  addResponseSlot,
  openRecord,
  prepareMasterBuild,
  prepareRelayerBuild,
  readMasterResponse,
  readRelayerResponse,
  sealReplySlot,
  transformRequestRecords,
  wipeMasterBuild,
} from '../src/build-crypto.js';
import type { HopAcceptance, HopOutcome, MasterHopPlan, OpenedRecord } from '../src/build-crypto.js';
import {
  MAX_SEQ_OFFSET,
  deriveHopSecrets,
  deriveMasterHopSecret,
  deriveRecordKey,
  deriveRelayerHopSecret,
  deriveRequestLayerKey,
} from '../src/hop-keys.js';
import type { HopKeys } from '../src/hop-keys.js';

await cryptoReady();

const ROOT = new URL('../../../../', import.meta.url);
const VECTORS_URL = new URL('test/vectors/build.json', ROOT);
const ZERO_NONCE = new Uint8Array(24);
const NOW_S = 1_700_000_000;
const LIFETIME_S = 600;
const ENDPOINT: UdpAddress = { host: '198.51.100.7', port: 40001 };

// ---- helpers ------------------------------------------------------------------------------

function at<T>(items: readonly T[], i: number): T {
  const item = items[i];
  assert.ok(item !== undefined, `index ${i} out of range`);
  return item;
}

/** XChaCha20(key, 0^24), recomputed here rather than through the code under test. */
function keystream(key: Uint8Array, length: number): Uint8Array {
  return sodium().crypto_stream_xchacha20_xor(new Uint8Array(length), ZERO_NONCE, key);
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  assert.equal(a.length, b.length);
  return a.map((x, i) => x ^ (b[i] ?? 0));
}

/** Whether `a` and `b` share any run of `run` bytes, at any offsets. */
function sharesRun(a: Uint8Array, b: Uint8Array, run = 8): boolean {
  const seen = new Set<string>();
  const bufA = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const bufB = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i + run <= bufA.length; i++) seen.add(bufA.toString('latin1', i, i + run));
  for (let i = 0; i + run <= bufB.length; i++) if (seen.has(bufB.toString('latin1', i, i + run))) return true;
  return false;
}

/** Deterministic bytes for vectors: `seed, seed+7, seed+14, ...` mod 256. */
function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed + 7 * i) & 0xff);
}

function expectDeutError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof DeutError && err.code === code);
}

interface SimHop {
  readonly identity: KeyPair;
  readonly address: UdpAddress;
}

function makeHops(n: number): SimHop[] {
  return Array.from({ length: n }, (_, i) => ({
    identity: generateKeyPair(),
    address: { host: `192.0.2.${i + 1}`, port: 9000 + i },
  }));
}

function instructionsFor(hops: readonly SimHop[], i: number): BuildInstructions {
  const next = hops[i + 1];
  if (next === undefined) return { role: 'endpoint', timeSeconds: NOW_S, lifetimeSeconds: LIFETIME_S };
  return {
    role: 'relay',
    timeSeconds: NOW_S,
    lifetimeSeconds: LIFETIME_S,
    next: { address: next.address, staticKey: next.identity.publicKey },
  };
}

function planFor(hops: readonly SimHop[]): MasterHopPlan[] {
  return hops.map((hop, i) => ({ staticKey: hop.identity.publicKey, instructions: instructionsFor(hops, i) }));
}

/** What one hop did with a build: what it received and sent each way, and its keys. */
interface HopTrace {
  readonly opened?: OpenedRecord;
  readonly acceptance: HopAcceptance;
  readonly requestIn: Uint8Array;
  requestOut?: Uint8Array;
  responseIn?: Uint8Array;
  responseOut?: Uint8Array;
}

function acceptedReply(isEndpoint: boolean): BuildReply {
  return { status: 'accepted', reason: 'none', endpoint: isEndpoint ? ENDPOINT : null };
}

/**
 * The response travelling back from the hop that ended the build (the last trace) to the
 * first hop, each hop sealing `replyFor(i)` and applying its response step. `tamper`
 * lets hop i change its input first (a misbehaving relayer).
 */
function runResponse(
  traces: HopTrace[],
  replyFor: (i: number) => BuildReply,
  tamper?: (i: number, slots: Uint8Array) => Uint8Array,
): Uint8Array {
  let slots: Uint8Array | undefined;
  for (let i = traces.length - 1; i >= 0; i--) {
    const trace = at(traces, i);
    if (slots !== undefined) {
      trace.responseIn = slots;
      if (tamper !== undefined) slots = tamper(i, slots);
    }
    const own = sealReplySlot(trace.acceptance, replyFor(i));
    slots = addResponseSlot(slots, own, trace.acceptance.responseLayerKey);
    assert.equal(slots.length, BUILD_SLOTS_BYTES);
    trace.responseOut = slots;
  }
  assert.ok(slots !== undefined);
  return slots;
}

/** A master-mode build through `hops`, ending at hop `stopAt` (the endpoint by default). */
function runMasterRequest(hops: readonly SimHop[], records: Uint8Array, stopAt = hops.length - 1): HopTrace[] {
  const traces: HopTrace[] = [];
  let current = records;
  for (let i = 0; i <= stopAt; i++) {
    const hop = at(hops, i);
    const opened = openRecord(hop.identity, current);
    assert.ok(opened !== null, `hop ${i} of ${hops.length} opens its record`);
    assert.deepEqual(opened.instructions, instructionsFor(hops, i));
    assert.deepEqual(opened.ephemeral, current.subarray(0, 32));
    const acceptance = acceptRecord(hop.identity, opened);
    const trace: HopTrace = { opened, acceptance, requestIn: current };
    traces.push(trace);
    if (i < stopAt) {
      trace.requestOut = transformRequestRecords(current, opened.requestLayerKey);
      current = trace.requestOut;
    }
  }
  return traces;
}

function assertAcceptedKeys(outcomes: readonly HopOutcome[], traces: readonly HopTrace[]): void {
  assert.equal(outcomes.length, traces.length);
  for (const [i, outcome] of outcomes.entries()) {
    assert.equal(outcome.status, 'accepted', `hop ${i} accepted`);
    if (outcome.status !== 'accepted') return;
    assert.deepEqual(outcome.keys, at(traces, i).acceptance.keys, `hop ${i} keys agree`);
  }
  const last = at(outcomes, outcomes.length - 1);
  assert.ok(last.status === 'accepted');
  assert.deepEqual(last.reply.endpoint, ENDPOINT);
}

const REASONS: readonly BuildRefusalReason[] = [
  'overloaded',
  'rate-limited',
  'exit-policy',
  'bad-record',
  'next-hop-unreachable',
  'stale',
];

// ---- master mode ---------------------------------------------------------------------------

test('build crypto - master mode end to end for 1..7 hops', () => {
  for (let n = 1; n <= MAX_HOPS; n++) {
    const hops = makeHops(n);
    const build = prepareMasterBuild(planFor(hops));
    assert.equal(build.records.length, BUILD_RECORDS_BYTES);
    const traces = runMasterRequest(hops, build.records);
    const slots = runResponse(traces, (i) => acceptedReply(i === n - 1));
    assertAcceptedKeys(readMasterResponse(build, slots), traces);
  }
});

test('build crypto - a refusal at hop k is reported at k with its reason', () => {
  for (const n of [1, 3, MAX_HOPS]) {
    for (let k = 0; k < n; k++) {
      const hops = makeHops(n);
      const build = prepareMasterBuild(planFor(hops));
      const traces = runMasterRequest(hops, build.records, k);
      const reason = at(REASONS, k % REASONS.length);
      const slots = runResponse(traces, (i) =>
        i === k ? { status: 'refused', reason, endpoint: null } : acceptedReply(false),
      );
      const outcomes = readMasterResponse(build, slots);
      assert.equal(outcomes.length, k + 1, `n=${n} k=${k}`);
      for (let i = 0; i < k; i++) {
        const outcome = at(outcomes, i);
        assert.ok(outcome.status === 'accepted');
        assert.deepEqual(outcome.keys, at(traces, i).acceptance.keys);
      }
      assert.deepEqual(at(outcomes, k), { status: 'refused', reply: { status: 'refused', reason, endpoint: null } });
    }
  }
});

test('build crypto - only the intended hop opens its record', () => {
  const hops = makeHops(3);
  const build = prepareMasterBuild(planFor(hops));
  const stranger = generateKeyPair();
  assert.equal(openRecord(at(hops, 1).identity, build.records), null, 'hop 1 cannot open hop 0 record');
  assert.equal(openRecord(at(hops, 2).identity, build.records), null, 'hop 2 cannot open hop 0 record');
  assert.equal(openRecord(stranger, build.records), null);
  const traces = runMasterRequest(hops, build.records, 1);
  const toHop1 = at(traces, 1).requestIn;
  assert.equal(openRecord(at(hops, 0).identity, toHop1), null, 'hop 0 cannot open what it forwarded');
  assert.equal(openRecord(at(hops, 2).identity, toHop1), null, 'hop 2 cannot open hop 1 record');
  // A bit flipped anywhere in the sealed part makes the record junk.
  for (const bit of [0, 8 * 40, 8 * (BUILD_RECORD_BYTES - 1)]) {
    const flipped = Uint8Array.from(toHop1);
    flipped[bit >> 3] = (flipped[bit >> 3] ?? 0) ^ 1;
    assert.equal(openRecord(at(hops, 1).identity, flipped), null, `flip at bit ${bit}`);
  }
  wipeMasterBuild(build);
});

test('build crypto - a relayer cannot forge a later hop reply', () => {
  const hops = makeHops(4);
  const forgeries: Array<(genuine: Uint8Array) => Uint8Array> = [
    // A made-up hop: its own Y and a key of its choosing.
    () => sealReplySlot({ Y: generateKeyPair().publicKey, replyKey: randomBytes(32) }, acceptedReply(false)),
    // The genuine Y, but the relayer cannot know the reply key under it.
    (genuine) => sealReplySlot({ Y: genuine.slice(0, 32), replyKey: randomBytes(32) }, acceptedReply(false)),
    // The genuine slot with one ciphertext bit flipped.
    (genuine) => {
      const copy = Uint8Array.from(genuine);
      copy[40] = (copy[40] ?? 0) ^ 0x80;
      return copy;
    },
  ];
  for (const forge of forgeries) {
    const build = prepareMasterBuild(planFor(hops));
    const traces = runMasterRequest(hops, build.records);
    // Hop 1 replaces slot 0 of what it received, which is hop 2's slot.
    const slots = runResponse(
      traces,
      (i) => acceptedReply(i === 3),
      (i, input) => {
        if (i !== 1) return input;
        const out = Uint8Array.from(input);
        out.set(forge(buildSlotAt(input, 0)), 0);
        return out;
      },
    );
    const outcomes = readMasterResponse(build, slots);
    assert.equal(outcomes.length, 3);
    assert.equal(at(outcomes, 0).status, 'accepted');
    assert.equal(at(outcomes, 1).status, 'accepted');
    assert.deepEqual(at(outcomes, 2), { status: 'invalid', problem: 'bad-tag' });
  }
});

test('build crypto - no 8-byte run crosses a hop unchanged, request and response (7 hops)', () => {
  const hops = makeHops(MAX_HOPS);
  const build = prepareMasterBuild(planFor(hops));
  const traces = runMasterRequest(hops, build.records);
  const slots = runResponse(traces, (i) => acceptedReply(i === MAX_HOPS - 1));
  for (const [j, trace] of traces.entries()) {
    if (trace.requestOut !== undefined) {
      assert.ok(!sharesRun(trace.requestIn, trace.requestOut), `request through hop ${j}`);
    }
    if (trace.responseIn !== undefined && trace.responseOut !== undefined) {
      assert.ok(!sharesRun(trace.responseIn, trace.responseOut), `response through hop ${j}`);
    }
  }
  // Nor between any two links of the request: the shift alone must not carry records along.
  for (let a = 0; a < traces.length; a++) {
    for (let b = a + 1; b < traces.length; b++) {
      assert.ok(!sharesRun(at(traces, a).requestIn, at(traces, b).requestIn), `links ${a} and ${b}`);
    }
  }
  assertAcceptedKeys(readMasterResponse(build, slots), traces);
});

test('build crypto - offsets are below 2^48 and keys differ between hops and directions', () => {
  const hops = makeHops(MAX_HOPS);
  const build = prepareMasterBuild(planFor(hops));
  const traces = runMasterRequest(hops, build.records);
  const keys = new Set<string>();
  const offsets = new Set<number>();
  for (const { acceptance } of traces) {
    const k = acceptance.keys;
    for (const offset of [k.outboundOffset, k.inboundOffset]) {
      assert.ok(Number.isSafeInteger(offset) && offset >= 0 && offset < MAX_SEQ_OFFSET, `offset ${offset}`);
      offsets.add(offset);
    }
    for (const key of [k.outboundKey, k.inboundKey, acceptance.replyKey, acceptance.responseLayerKey]) {
      assert.equal(key.length, 32);
      keys.add(toHex(key));
    }
  }
  assert.equal(keys.size, 4 * MAX_HOPS);
  assert.equal(offsets.size, 2 * MAX_HOPS);
  wipeMasterBuild(build);
});

test('build crypto - master mode follows the PROTOCOL.md §4.2-§4.3 formulas', () => {
  const hops = makeHops(4);
  const plan = planFor(hops);
  const build = prepareMasterBuild(plan);
  // Records: undo the pre-XOR with K_j[i-1-j] and open with the record key, from scratch.
  const layerStreams = build.hops.map((hop) => {
    const dh1 = x25519(hop.ephemeral.privateKey, hop.staticKey);
    assert.deepEqual(dh1, hop.dh1);
    return keystream(deriveKey('deut/1 build request layer', dh1, hop.ephemeral.publicKey), BUILD_RECORDS_BYTES);
  });
  for (const [i, hop] of build.hops.entries()) {
    let record: Uint8Array = buildRecordAt(build.records, i).slice();
    for (let j = 0; j < i; j++) {
      const segment = at(layerStreams, j).subarray((i - 1 - j) * BUILD_RECORD_BYTES, (i - j) * BUILD_RECORD_BYTES);
      record = xor(record, segment);
    }
    const E = record.subarray(0, 32);
    assert.deepEqual(E, hop.ephemeral.publicKey);
    const recordKey = deriveKey('deut/1 build record', hop.dh1, concatBytes(E, hop.staticKey));
    const block = chachaOpen(recordKey, 0, record.subarray(32), E);
    assert.ok(block !== null, `record ${i} opens`);
    assert.deepEqual(block, encodeBuildInstructions(at(plan, i).instructions));
  }
  // The request transform of hop 0: out[p] = in[p+1] ^ K0[p] for p = 0..5.
  const traces = runMasterRequest(hops, build.records);
  const t0 = at(traces, 0);
  assert.ok(t0.opened !== undefined && t0.requestOut !== undefined);
  const k0 = keystream(t0.opened.requestLayerKey, BUILD_RECORDS_BYTES);
  const shifted = xor(build.records.subarray(BUILD_RECORD_BYTES), k0.subarray(0, 6 * BUILD_RECORD_BYTES));
  assert.deepEqual(t0.requestOut.subarray(0, 6 * BUILD_RECORD_BYTES), shifted);
  // Hop secrets: H = KDF('deut/1 hop secret', DH1 ‖ DH2, E ‖ Y ‖ S), then §2's labels.
  for (const [i, hop] of build.hops.entries()) {
    const { acceptance } = at(traces, i);
    const dh2 = x25519(hop.ephemeral.privateKey, acceptance.Y);
    const H = deriveKey(
      'deut/1 hop secret',
      concatBytes(hop.dh1, dh2),
      concatBytes(hop.ephemeral.publicKey, acceptance.Y, hop.staticKey),
    );
    const offset = (label: string): number =>
      Buffer.from(deriveKey(label, H, new Uint8Array(0), 16).subarray(0, 6)).readUIntBE(0, 6);
    const expected: HopKeys = {
      outboundKey: deriveKey('deut/1 layer outbound', H),
      inboundKey: deriveKey('deut/1 layer inbound', H),
      outboundOffset: offset('deut/1 seq offset outbound'),
      inboundOffset: offset('deut/1 seq offset inbound'),
    };
    assert.deepEqual(acceptance.keys, expected);
    assert.deepEqual(acceptance.replyKey, deriveKey('deut/1 build reply', H));
    assert.deepEqual(acceptance.responseLayerKey, deriveKey('deut/1 build response layer', H));
  }
  // Response: the slot of hop i is Y ‖ AEAD(replyKey, 0, ad = Y, reply), and the master's
  // reading `cur[q] = cur[q+1] ^ R_j[q]` recovers it.
  const slots = runResponse(traces, (i) => acceptedReply(i === 3));
  let cur = slots;
  for (const [i, trace] of traces.entries()) {
    const slot = buildSlotAt(cur, 0);
    const Y = slot.subarray(0, 32);
    assert.deepEqual(Y, trace.acceptance.Y);
    const plaintext = chachaOpen(trace.acceptance.replyKey, 0, slot.subarray(32), Y);
    assert.ok(plaintext !== null);
    assert.deepEqual(decodeBuildReply(plaintext), acceptedReply(i === 3));
    const r = keystream(trace.acceptance.responseLayerKey, 6 * BUILD_SLOT_BYTES);
    cur = concatBytes(xor(cur.subarray(BUILD_SLOT_BYTES), r), new Uint8Array(BUILD_SLOT_BYTES));
  }
  assertAcceptedKeys(readMasterResponse(build, slots), traces);
});

test('build crypto - a record that authenticates with bad instructions throws ProtocolError', () => {
  const identity = generateKeyPair();
  const e = generateKeyPair();
  const dh1 = x25519(e.privateKey, identity.publicKey);
  const recordKey = deriveKey('deut/1 build record', dh1, concatBytes(e.publicKey, identity.publicKey));
  const bad = encodeBuildInstructions({ role: 'endpoint', timeSeconds: NOW_S, lifetimeSeconds: LIFETIME_S });
  bad[bad.length - 1] = 1; // padding must be zero
  const records = concatBytes(e.publicKey, chachaSeal(recordKey, 0, bad, e.publicKey), randomBytes(6 * BUILD_RECORD_BYTES));
  assert.throws(() => openRecord(identity, records), (err: unknown) => err instanceof ProtocolError && err.code === 'BAD_PADDING');
});

test('build crypto - junk requests and responses: null or invalid, never a throw', () => {
  const identity = generateKeyPair();
  fc.assert(
    fc.property(fc.uint8Array({ minLength: BUILD_RECORDS_BYTES, maxLength: BUILD_RECORDS_BYTES }), (records) => {
      assert.equal(openRecord(identity, records), null);
    }),
    { numRuns: 200 },
  );
  // A low-order E (here zero, or the order-8 point u = 1) is junk, not an error of ours.
  for (const lowOrder of [new Uint8Array(32), Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0))]) {
    const records = concatBytes(lowOrder, randomBytes(BUILD_RECORDS_BYTES - 32));
    assert.equal(openRecord(identity, records), null);
    assert.throws(() => acceptRelayerHop(lowOrder), (err: unknown) => err instanceof ProtocolError && err.code === 'LOW_ORDER_KEY');
  }
  const hops = makeHops(2);
  fc.assert(
    fc.property(fc.uint8Array({ minLength: BUILD_SLOTS_BYTES, maxLength: BUILD_SLOTS_BYTES }), (slots) => {
      const outcomes = readMasterResponse(prepareMasterBuild(planFor(hops)), slots);
      assert.equal(outcomes.length, 1);
      assert.equal(at(outcomes, 0).status, 'invalid');
    }),
    { numRuns: 50 },
  );
  const zeroY = readRelayerResponse(prepareRelayerBuild(), 3, new Uint8Array(BUILD_SLOTS_BYTES));
  assert.deepEqual(zeroY, [{ status: 'invalid', problem: 'bad-key' }]);
});

test('build crypto - a hop reply that authenticates but does not decode is invalid', () => {
  const hops = makeHops(2);
  const build = prepareMasterBuild(planFor(hops));
  const traces = runMasterRequest(hops, build.records);
  const t1 = at(traces, 1);
  const bogus = encodeBuildReply(acceptedReply(false));
  bogus[31] = 1; // padding must be zero
  const own = concatBytes(t1.acceptance.Y, chachaSeal(t1.acceptance.replyKey, 0, bogus, t1.acceptance.Y));
  const fromEnd = addResponseSlot(undefined, own, t1.acceptance.responseLayerKey);
  const t0 = at(traces, 0);
  const slots = addResponseSlot(fromEnd, sealReplySlot(t0.acceptance, acceptedReply(false)), t0.acceptance.responseLayerKey);
  const outcomes = readMasterResponse(build, slots);
  assert.equal(at(outcomes, 0).status, 'accepted');
  assert.deepEqual(at(outcomes, 1), { status: 'invalid', problem: 'bad-reply' });
});

test('build crypto - misuse fails loudly', () => {
  const hops = makeHops(MAX_HOPS + 1);
  expectDeutError(() => prepareMasterBuild([]), 'BAD_HOP_COUNT');
  expectDeutError(() => prepareMasterBuild(planFor(hops)), 'BAD_HOP_COUNT');
  expectDeutError(
    () => prepareMasterBuild([{ staticKey: new Uint8Array(31), instructions: instructionsFor(hops, MAX_HOPS) }]),
    'BAD_LENGTH',
  );
  expectDeutError(
    () => prepareMasterBuild([{ staticKey: new Uint8Array(32), instructions: instructionsFor(hops, MAX_HOPS) }]),
    'LOW_ORDER_KEY',
  );
  const identity = at(hops, 0).identity;
  expectDeutError(() => openRecord(identity, new Uint8Array(BUILD_RECORDS_BYTES - 1)), 'BAD_LENGTH');
  expectDeutError(() => transformRequestRecords(new Uint8Array(BUILD_RECORDS_BYTES), new Uint8Array(16)), 'BAD_LENGTH');
  expectDeutError(() => addResponseSlot(new Uint8Array(10), new Uint8Array(BUILD_SLOT_BYTES), new Uint8Array(32)), 'BAD_LENGTH');
  expectDeutError(() => addResponseSlot(undefined, new Uint8Array(BUILD_SLOT_BYTES - 1), new Uint8Array(32)), 'BAD_LENGTH');
  expectDeutError(() => deriveHopSecrets(new Uint8Array(16)), 'BAD_KEY_LENGTH');
  expectDeutError(() => readRelayerResponse(prepareRelayerBuild(), 0, new Uint8Array(BUILD_SLOTS_BYTES)), 'BAD_HOP_COUNT');
  expectDeutError(() => readRelayerResponse(prepareRelayerBuild(), 8, new Uint8Array(BUILD_SLOTS_BYTES)), 'BAD_HOP_COUNT');

  // A build's secrets are read once, then gone.
  const two = hops.slice(0, 2);
  const build = prepareMasterBuild(planFor(two));
  const traces = runMasterRequest(two, build.records);
  const slots = runResponse(traces, (i) => acceptedReply(i === 1));
  readMasterResponse(build, slots);
  for (const hop of build.hops) {
    assert.ok(sodium().is_zero(hop.ephemeral.privateKey) && sodium().is_zero(hop.dh1));
  }
  expectDeutError(() => readMasterResponse(build, slots), 'BUILD_CONSUMED');
  // A record is accepted once: acceptRecord zeroes DH1.
  const again = prepareMasterBuild(planFor(two));
  const opened = openRecord(at(two, 0).identity, again.records);
  assert.ok(opened !== null);
  acceptRecord(at(two, 0).identity, opened);
  assert.ok(sodium().is_zero(opened.dh1));
  expectDeutError(() => acceptRecord(at(two, 0).identity, opened), 'RECORD_CONSUMED');
  wipeMasterBuild(again);
  const relayer = prepareRelayerBuild();
  readRelayerResponse(relayer, 1, randomBytes(BUILD_SLOTS_BYTES));
  expectDeutError(() => readRelayerResponse(relayer, 1, randomBytes(BUILD_SLOTS_BYTES)), 'BUILD_CONSUMED');
});

// ---- relayer mode --------------------------------------------------------------------------

/**
 * A relayer-mode build through n hops: the E_i each hop saw (and last the E_n the endpoint
 * would have forwarded), and each hop's acceptance, in path order.
 */
function runRelayer(n: number, E: Uint8Array): { seen: Uint8Array[]; traces: HopTrace[] } {
  const seen: Uint8Array[] = [];
  const traces: HopTrace[] = [];
  let current = E;
  for (let i = 0; i < n; i++) {
    seen.push(current);
    const acceptance = acceptRelayerHop(current);
    traces.push({ acceptance, requestIn: current });
    current = acceptance.nextE;
  }
  seen.push(current);
  return { seen, traces };
}

test('build crypto - relayer mode end to end for 1..7 hops', () => {
  for (let n = 1; n <= MAX_HOPS; n++) {
    const build = prepareRelayerBuild();
    const { seen, traces } = runRelayer(n, build.E);
    for (let a = 0; a < seen.length; a++) {
      for (let b = a + 1; b < seen.length; b++) {
        assert.ok(!sharesRun(at(seen, a), at(seen, b)), `E on links ${a} and ${b}`);
      }
    }
    const slots = runResponse(traces, (i) => acceptedReply(i === n - 1));
    for (const trace of traces) {
      if (trace.responseIn !== undefined && trace.responseOut !== undefined) {
        assert.ok(!sharesRun(trace.responseIn, trace.responseOut));
      }
    }
    assertAcceptedKeys(readRelayerResponse(build, n, slots), traces);
    assert.ok(sodium().is_zero(build.privateKey), 'the build secret is wiped');
  }
});

test('build crypto - relayer mode refusal at hop k', () => {
  const n = 5;
  for (let k = 0; k < n; k++) {
    const build = prepareRelayerBuild();
    const { traces } = runRelayer(k + 1, build.E);
    const slots = runResponse(traces, (i) =>
      i === k ? { status: 'refused', reason: 'next-hop-unreachable', endpoint: null } : acceptedReply(false),
    );
    const outcomes = readRelayerResponse(build, n, slots);
    assert.equal(outcomes.length, k + 1);
    assert.equal(at(outcomes, k).status, 'refused');
    for (let i = 0; i < k; i++) assert.equal(at(outcomes, i).status, 'accepted');
  }
});

test('build crypto - relayer mode follows the §4.4 blinding chain (X25519 from @noble/curves)', () => {
  const n = 4;
  const build = prepareRelayerBuild();
  const e = build.privateKey.slice();
  const { seen, traces } = runRelayer(n, build.E);
  const blinds: Uint8Array[] = [];
  for (const [i, trace] of traces.entries()) {
    const Y = trace.acceptance.Y;
    // Z_i = X25519(b_{i-1}, ... X25519(b_1, X25519(e, Y_i))), hops numbered from 1 in the spec.
    let z = nobleX25519.getSharedSecret(e, Y);
    for (const blind of blinds) z = nobleX25519.getSharedSecret(blind, z);
    const E = at(seen, i);
    const H = deriveKey('deut/1 hop secret relayer', z, concatBytes(E, Y));
    assert.deepEqual(H, deriveRelayerHopSecret(z, E, Y));
    assert.deepEqual(trace.acceptance.keys, deriveHopSecrets(H).keys, `hop ${i} keys`);
    const blind = deriveKey('deut/1 blind', H);
    assert.deepEqual(at(seen, i + 1), nobleX25519.getSharedSecret(blind, E), `E_${i + 1}`);
    blinds.push(blind);
  }
  const slots = runResponse(traces, (i) => acceptedReply(i === n - 1));
  assertAcceptedKeys(readRelayerResponse(build, n, slots), traces);
});

// ---- vectors -------------------------------------------------------------------------------

interface BuildVectors {
  description: string;
  hopSecrets: {
    hopSecret: string;
    outboundKey: string;
    inboundKey: string;
    outboundOffset: number;
    inboundOffset: number;
    replyKey: string;
    responseLayerKey: string;
    blind: string;
  }[];
  masterHandshake: {
    staticPrivate: string;
    ephemeralPrivate: string;
    hopEphemeralPrivate: string;
    staticKey: string;
    E: string;
    Y: string;
    dh1: string;
    dh2: string;
    recordKey: string;
    requestLayerKey: string;
    hopSecret: string;
    instructions: string;
    record: string;
  }[];
  relayerHandshake: {
    E: string;
    hopEphemeralPrivate: string;
    Y: string;
    z: string;
    hopSecret: string;
    nextE: string;
  }[];
  requestTransform: { requestLayerKey: string; input: string; outputPositions0to5: string }[];
  responseStep: { responseLayerKey: string; input: string; ownSlot: string; output: string }[];
  replySlot: { Y: string; replyKey: string; reply: string; slot: string }[];
}

function generateVectors(): BuildVectors {
  const hopSecrets = [0, 1, 2].map((seed) => {
    const hopSecret = pattern(32, 0x10 * seed + 1);
    const s = deriveHopSecrets(hopSecret);
    return {
      hopSecret: toHex(hopSecret),
      outboundKey: toHex(s.keys.outboundKey),
      inboundKey: toHex(s.keys.inboundKey),
      outboundOffset: s.keys.outboundOffset,
      inboundOffset: s.keys.inboundOffset,
      replyKey: toHex(s.replyKey),
      responseLayerKey: toHex(s.responseLayerKey),
      blind: toHex(s.blind),
    };
  });
  const instructionSets: BuildInstructions[] = [
    {
      role: 'relay',
      timeSeconds: NOW_S,
      lifetimeSeconds: LIFETIME_S,
      next: { address: { host: '192.0.2.44', port: 4433 }, staticKey: pattern(32, 0x55) },
    },
    { role: 'endpoint', timeSeconds: NOW_S + 1, lifetimeSeconds: 900 },
  ];
  const masterHandshake = instructionSets.map((instructions, v) => {
    const hop = keyPairFromPrivate(pattern(32, 0x20 + v));
    const e = keyPairFromPrivate(pattern(32, 0x40 + v));
    const y = keyPairFromPrivate(pattern(32, 0x60 + v));
    const dh1 = x25519(e.privateKey, hop.publicKey);
    const dh2 = x25519(y.privateKey, e.publicKey);
    const recordKey = deriveRecordKey(dh1, e.publicKey, hop.publicKey);
    const block = encodeBuildInstructions(instructions);
    return {
      staticPrivate: toHex(hop.privateKey),
      ephemeralPrivate: toHex(e.privateKey),
      hopEphemeralPrivate: toHex(y.privateKey),
      staticKey: toHex(hop.publicKey),
      E: toHex(e.publicKey),
      Y: toHex(y.publicKey),
      dh1: toHex(dh1),
      dh2: toHex(dh2),
      recordKey: toHex(recordKey),
      requestLayerKey: toHex(deriveRequestLayerKey(dh1, e.publicKey)),
      hopSecret: toHex(deriveMasterHopSecret(dh1, dh2, e.publicKey, y.publicKey, hop.publicKey)),
      instructions: toHex(block),
      record: toHex(concatBytes(e.publicKey, chachaSeal(recordKey, 0, block, e.publicKey))),
    };
  });
  const relayerHandshake = [0, 1].map((v) => {
    const E = keyPairFromPrivate(pattern(32, 0x80 + v)).publicKey;
    const y = keyPairFromPrivate(pattern(32, 0xa0 + v));
    const z = x25519(y.privateKey, E);
    const hopSecret = deriveRelayerHopSecret(z, E, y.publicKey);
    return {
      E: toHex(E),
      hopEphemeralPrivate: toHex(y.privateKey),
      Y: toHex(y.publicKey),
      z: toHex(z),
      hopSecret: toHex(hopSecret),
      nextE: toHex(x25519(deriveHopSecrets(hopSecret).blind, E)),
    };
  });
  const requestTransform = [0, 1].map((v) => {
    const key = pattern(32, 0xc0 + v);
    const input = pattern(BUILD_RECORDS_BYTES, 3 + v);
    return {
      requestLayerKey: toHex(key),
      input: toHex(input),
      outputPositions0to5: toHex(transformRequestRecords(input, key).subarray(0, 6 * BUILD_RECORD_BYTES)),
    };
  });
  const responseStep = [0, 1].map((v) => {
    const key = pattern(32, 0xd0 + v);
    const input = pattern(BUILD_SLOTS_BYTES, 5 + v);
    const ownSlot = pattern(BUILD_SLOT_BYTES, 0xe0 + v);
    return {
      responseLayerKey: toHex(key),
      input: toHex(input),
      ownSlot: toHex(ownSlot),
      output: toHex(addResponseSlot(input, ownSlot, key)),
    };
  });
  const replies: BuildReply[] = [
    { status: 'accepted', reason: 'none', endpoint: { host: '2001:db8::7', port: 40001 } },
    { status: 'refused', reason: 'overloaded', endpoint: null },
  ];
  const replySlot = replies.map((reply, v) => {
    const Y = keyPairFromPrivate(pattern(32, 0xf0 + v)).publicKey;
    const replyKey = pattern(32, 0x30 + v);
    return {
      Y: toHex(Y),
      replyKey: toHex(replyKey),
      reply: toHex(encodeBuildReply(reply)),
      slot: toHex(sealReplySlot({ Y, replyKey }, reply)),
    };
  });
  return {
    description:
      'Tunnel build vectors (docs/PROTOCOL.md §4.2-§4.4, §5.2-§5.3), self-generated by ' +
      'packages/tunnel/test/build-crypto.test.ts with DEUT_WRITE_VECTORS=1. Keys are X25519 (private keys as ' +
      'given; X25519 clamps them). hopSecrets: every output of deriveHopSecrets for a hop secret H (offsets are ' +
      'the first 6 bytes, big-endian, of a 16-byte KDF output). masterHandshake: DH1 = X25519(e, S), DH2 = ' +
      'X25519(y, E), record = E ‖ ChaCha20-Poly1305(recordKey, counter 0, ad = E, instructions). ' +
      'relayerHandshake: Z = X25519(y, E), nextE = X25519(KDF(deut/1 blind, H), E). requestTransform: record ' +
      'positions 0..5 of the output (position 6 is random). responseStep: the whole output. replySlot: Y ‖ ' +
      'ChaCha20-Poly1305(replyKey, counter 0, ad = Y, reply).',
    hopSecrets,
    masterHandshake,
    relayerHandshake,
    requestTransform,
    responseStep,
    replySlot,
  };
}

if (process.env['DEUT_WRITE_VECTORS'] === '1') {
  writeFileSync(VECTORS_URL, JSON.stringify(generateVectors(), null, 2) + '\n');
  console.log(`wrote ${VECTORS_URL.pathname}`);
}

test('build crypto - checked-in vectors', () => {
  const vectors = JSON.parse(readFileSync(VECTORS_URL, 'utf8')) as BuildVectors;
  assert.ok(vectors.hopSecrets.length >= 3 && vectors.masterHandshake.length >= 2);
  for (const v of vectors.hopSecrets) {
    const s = deriveHopSecrets(fromHex(v.hopSecret));
    assert.equal(toHex(s.keys.outboundKey), v.outboundKey);
    assert.equal(toHex(s.keys.inboundKey), v.inboundKey);
    assert.equal(s.keys.outboundOffset, v.outboundOffset);
    assert.equal(s.keys.inboundOffset, v.inboundOffset);
    assert.equal(toHex(s.replyKey), v.replyKey);
    assert.equal(toHex(s.responseLayerKey), v.responseLayerKey);
    assert.equal(toHex(s.blind), v.blind);
  }
  for (const v of vectors.masterHandshake) {
    const hop = keyPairFromPrivate(fromHex(v.staticPrivate));
    const e = keyPairFromPrivate(fromHex(v.ephemeralPrivate));
    const y = keyPairFromPrivate(fromHex(v.hopEphemeralPrivate));
    assert.equal(toHex(hop.publicKey), v.staticKey);
    assert.equal(toHex(e.publicKey), v.E);
    assert.equal(toHex(y.publicKey), v.Y);
    const dh1 = x25519(hop.privateKey, e.publicKey);
    const dh2 = x25519(e.privateKey, y.publicKey);
    assert.equal(toHex(dh1), v.dh1);
    assert.equal(toHex(dh2), v.dh2);
    assert.equal(toHex(deriveRecordKey(dh1, e.publicKey, hop.publicKey)), v.recordKey);
    assert.equal(toHex(deriveMasterHopSecret(dh1, dh2, e.publicKey, y.publicKey, hop.publicKey)), v.hopSecret);
    // The hop side opens the checked-in record, whatever follows it.
    const records = concatBytes(fromHex(v.record), randomBytes(6 * BUILD_RECORD_BYTES));
    const opened = openRecord(hop, records);
    assert.ok(opened !== null);
    assert.equal(toHex(encodeBuildInstructions(opened.instructions)), v.instructions);
    assert.equal(toHex(opened.requestLayerKey), v.requestLayerKey);
    assert.equal(toHex(opened.dh1), v.dh1);
  }
  for (const v of vectors.relayerHandshake) {
    const y = keyPairFromPrivate(fromHex(v.hopEphemeralPrivate));
    const E = fromHex(v.E);
    assert.equal(toHex(y.publicKey), v.Y);
    const z = x25519(y.privateKey, E);
    assert.equal(toHex(z), v.z);
    const hopSecret = deriveRelayerHopSecret(z, E, y.publicKey);
    assert.equal(toHex(hopSecret), v.hopSecret);
    assert.equal(toHex(x25519(deriveHopSecrets(hopSecret).blind, E)), v.nextE);
  }
  for (const v of vectors.requestTransform) {
    const out = transformRequestRecords(fromHex(v.input), fromHex(v.requestLayerKey));
    assert.equal(toHex(out.subarray(0, 6 * BUILD_RECORD_BYTES)), v.outputPositions0to5);
  }
  for (const v of vectors.responseStep) {
    assert.equal(toHex(addResponseSlot(fromHex(v.input), fromHex(v.ownSlot), fromHex(v.responseLayerKey))), v.output);
  }
  for (const v of vectors.replySlot) {
    const reply = decodeBuildReply(fromHex(v.reply));
    assert.equal(toHex(sealReplySlot({ Y: fromHex(v.Y), replyKey: fromHex(v.replyKey) }, reply)), v.slot);
  }
});

// ---- speed -----------------------------------------------------------------------------------

test('build crypto - handshake rates (printed)', () => {
  const hops = makeHops(3);
  const plan = planFor(hops);
  const hop0 = at(hops, 0).identity;
  const requests = Array.from({ length: 300 }, () => prepareMasterBuild(plan));
  let start = performance.now();
  for (const build of requests) {
    const opened = openRecord(hop0, build.records);
    assert.ok(opened !== null);
    acceptRecord(hop0, opened);
  }
  const hopRate = requests.length / ((performance.now() - start) / 1000);
  start = performance.now();
  for (let i = 0; i < 100; i++) wipeMasterBuild(prepareMasterBuild(plan));
  const prepareRate = 100 / ((performance.now() - start) / 1000);
  console.log(
    `# master-mode hop handshakes (openRecord + acceptRecord): ${hopRate.toFixed(0)}/s; ` +
      `prepareMasterBuild(3 hops): ${prepareRate.toFixed(0)}/s`,
  );
  for (const build of requests) wipeMasterBuild(build);
});

// Tests for noise.ts: the published cacophony vectors for NN, NK, XK, IK and XX with
// 25519_ChaChaPoly_BLAKE2b (test/vectors/noise-25519-chachapoly-blake2b.json), replayed on
// both sides including the transport messages after Split; tampering; turn order; lengths.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DeutError, ProtocolError } from '@deut/common';
import { chachaOpen, chachaSeal } from '../src/aead.js';
import { fromHex, toHex } from '../src/bytes.js';
import type { KeyPair } from '../src/keys.js';
import { generateKeyPair, keyPairFromPrivate } from '../src/keys.js';
import type { NoisePatternName } from '../src/noise.js';
import { NoiseHandshake } from '../src/noise.js';
import { cryptoReady } from '../src/sodium.js';

const ROOT = new URL('../../../../', import.meta.url);

interface NoiseVector {
  protocol_name: string;
  init_prologue: string;
  init_static?: string;
  init_ephemeral: string;
  init_remote_static?: string;
  resp_prologue: string;
  resp_static?: string;
  resp_ephemeral: string;
  resp_remote_static?: string;
  handshake_hash: string;
  messages: { payload: string; ciphertext: string }[];
}

const file = JSON.parse(
  readFileSync(new URL('test/vectors/noise-25519-chachapoly-blake2b.json', ROOT), 'utf8'),
) as { source: string; vectors: NoiseVector[] };

const PATTERNS: readonly NoisePatternName[] = ['NN', 'NK', 'XK', 'IK', 'XX'];

function patternOf(v: NoiseVector): NoisePatternName {
  const match = /^Noise_([A-Z]+)_25519_ChaChaPoly_BLAKE2b$/.exec(v.protocol_name);
  const name = match?.[1] as NoisePatternName | undefined;
  if (name === undefined || !PATTERNS.includes(name)) throw new Error(`unexpected vector ${v.protocol_name}`);
  return name;
}

const pairOrUndefined = (hex: string | undefined): KeyPair | undefined =>
  hex === undefined ? undefined : keyPairFromPrivate(fromHex(hex));
const bytesOrUndefined = (hex: string | undefined): Uint8Array | undefined =>
  hex === undefined ? undefined : fromHex(hex);

interface Sides {
  pattern: NoisePatternName;
  initiator: NoiseHandshake;
  responder: NoiseHandshake;
  initEphemeral: KeyPair;
  respEphemeral: KeyPair;
}

function sidesFor(v: NoiseVector): Sides {
  const pattern = patternOf(v);
  const initEphemeral = keyPairFromPrivate(fromHex(v.init_ephemeral));
  const respEphemeral = keyPairFromPrivate(fromHex(v.resp_ephemeral));
  const initiator = new NoiseHandshake({
    pattern,
    initiator: true,
    prologue: fromHex(v.init_prologue),
    staticKeyPair: pairOrUndefined(v.init_static),
    remoteStaticKey: bytesOrUndefined(v.init_remote_static),
    ephemeralKeyPair: initEphemeral,
  });
  const responder = new NoiseHandshake({
    pattern,
    initiator: false,
    prologue: fromHex(v.resp_prologue),
    staticKeyPair: pairOrUndefined(v.resp_static),
    remoteStaticKey: bytesOrUndefined(v.resp_remote_static),
    ephemeralKeyPair: respEphemeral,
  });
  return { pattern, initiator, responder, initEphemeral, respEphemeral };
}

const message = (v: NoiseVector, i: number): { payload: string; ciphertext: string } => {
  const m = v.messages[i];
  if (m === undefined) throw new Error(`vector ${v.protocol_name} has no message ${i}`);
  return m;
};

const isProtocolError = (code?: string) => (err: unknown) =>
  err instanceof ProtocolError && (code === undefined || err.code === code);

function flipped(bytes: Uint8Array, index: number): Uint8Array {
  const copy = bytes.slice();
  copy[index] = (copy[index] ?? 0) ^ 0x01;
  return copy;
}

before(async () => {
  await cryptoReady();
});

test('noise vectors - the file holds every pattern we implement, from a named source', () => {
  assert.match(file.source, /cacophony/);
  assert.deepEqual(file.vectors.map(patternOf).sort(), [...PATTERNS].sort());
});

describe('noise vectors - replay', () => {
  for (const v of file.vectors) {
    test(`noise vectors - ${v.protocol_name} replays byte for byte`, () => {
      const { pattern, initiator, responder, initEphemeral, respEphemeral } = sidesFor(v);
      const count = NoiseHandshake.messageCount(pattern);
      assert.ok(v.messages.length > count, 'vector includes transport messages');

      // The pre-shared responder key in the vector is the public half of resp_static.
      if (v.init_remote_static !== undefined && v.resp_static !== undefined) {
        assert.equal(toHex(keyPairFromPrivate(fromHex(v.resp_static)).publicKey), v.init_remote_static);
      }

      for (let i = 0; i < count; i++) {
        const { payload, ciphertext } = message(v, i);
        const [sender, receiver] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
        assert.ok(sender.isMyTurn && !receiver.isMyTurn);
        const written = sender.writeMessage(fromHex(payload));
        assert.equal(toHex(written), ciphertext, `message ${i} ciphertext`);
        assert.equal(NoiseHandshake.messageLength(pattern, i, fromHex(payload).length), written.length);
        assert.equal(toHex(receiver.readMessage(fromHex(ciphertext))), payload, `message ${i} payload`);
      }

      assert.ok(initiator.isComplete && responder.isComplete);
      assert.equal(toHex(initiator.handshakeHash), v.handshake_hash);
      assert.equal(toHex(responder.handshakeHash), v.handshake_hash);
      assert.equal(toHex(responder.remoteEphemeralKey ?? new Uint8Array(0)), toHex(initEphemeral.publicKey));
      assert.equal(toHex(initiator.remoteEphemeralKey ?? new Uint8Array(0)), toHex(respEphemeral.publicKey));
      if (v.resp_static !== undefined) {
        assert.equal(
          toHex(initiator.remoteStaticKey ?? new Uint8Array(0)),
          toHex(keyPairFromPrivate(fromHex(v.resp_static)).publicKey),
        );
      }
      if (v.init_static !== undefined) {
        assert.equal(
          toHex(responder.remoteStaticKey ?? new Uint8Array(0)),
          toHex(keyPairFromPrivate(fromHex(v.init_static)).publicKey),
        );
      } else {
        assert.equal(responder.remoteStaticKey, null);
      }

      const a = initiator.split();
      const b = responder.split();
      assert.equal(toHex(a.initiatorToResponder), toHex(b.initiatorToResponder));
      assert.equal(toHex(a.responderToInitiator), toHex(b.responderToInitiator));
      assert.notEqual(toHex(a.initiatorToResponder), toHex(a.responderToInitiator));
      assert.equal(a.sendKey, a.initiatorToResponder);
      assert.equal(b.sendKey, b.responderToInitiator);
      assert.equal(b.receiveKey, b.initiatorToResponder);

      // Transport messages: each direction's nonce counts from 0.
      const counters = { initiator: 0, responder: 0 };
      for (let i = count; i < v.messages.length; i++) {
        const { payload, ciphertext } = message(v, i);
        const fromInitiator = i % 2 === 0;
        const [sendKey, receiveKey] = fromInitiator ? [a.sendKey, b.receiveKey] : [b.sendKey, a.receiveKey];
        const n = fromInitiator ? counters.initiator++ : counters.responder++;
        assert.equal(toHex(chachaSeal(sendKey, n, fromHex(payload))), ciphertext, `transport message ${i}`);
        assert.equal(toHex(chachaOpen(receiveKey, n, fromHex(ciphertext)) ?? new Uint8Array(0)), payload);
      }

      // The ephemeral secrets are wiped once the handshake is over.
      assert.ok(initEphemeral.privateKey.every((byte) => byte === 0));
      assert.ok(respEphemeral.privateKey.every((byte) => byte === 0));
    });
  }
});

describe('noise vectors - tampering', () => {
  for (const v of file.vectors) {
    test(`noise tamper - ${v.protocol_name}: any flipped byte of any handshake message fails with ProtocolError`, () => {
      const pattern = patternOf(v);
      const count = NoiseHandshake.messageCount(pattern);
      for (let i = 0; i < count; i++) {
        const genuine = fromHex(message(v, i).ciphertext);
        // The first message of NN and XX is only an ephemeral key and a clear payload: nothing
        // to authenticate yet. Tampering with it must surface when the next message is read.
        const authenticated = !(i === 0 && (pattern === 'NN' || pattern === 'XX'));
        for (let byte = 0; byte < genuine.length; byte++) {
          const { initiator, responder } = sidesFor(v);
          const sideOf = (j: number): [NoiseHandshake, NoiseHandshake] =>
            j % 2 === 0 ? [initiator, responder] : [responder, initiator];
          for (let j = 0; j < i; j++) {
            const [sender, receiver] = sideOf(j);
            receiver.readMessage(sender.writeMessage(fromHex(message(v, j).payload)));
          }
          const [sender, receiver] = sideOf(i);
          sender.writeMessage(fromHex(message(v, i).payload));
          const forged = flipped(genuine, byte);
          if (authenticated) {
            assert.throws(() => receiver.readMessage(forged), isProtocolError('NOISE_DECRYPT'), `message ${i} byte ${byte}`);
            // The failed read changed nothing: the genuine message is still accepted, and
            // the handshake finishes with the published hash.
            receiver.readMessage(genuine);
            for (let j = i + 1; j < count; j++) {
              const [s, r] = sideOf(j);
              r.readMessage(s.writeMessage(fromHex(message(v, j).payload)));
            }
            assert.equal(toHex(initiator.handshakeHash), v.handshake_hash);
          } else {
            receiver.readMessage(forged);
            const [nextSender, nextReceiver] = sideOf(i + 1);
            const reply = nextSender.writeMessage(fromHex(message(v, i + 1).payload));
            assert.throws(() => nextReceiver.readMessage(reply), isProtocolError('NOISE_DECRYPT'), `message ${i} byte ${byte}`);
          }
        }
      }
    });
  }
});

describe('noise state and lengths', () => {
  // Built in before(), not at describe time: describe bodies run before libsodium is ready.
  let statics: { initiator: KeyPair; responder: KeyPair };
  before(() => {
    statics = { initiator: generateKeyPair(), responder: generateKeyPair() };
  });

  function fresh(pattern: NoisePatternName, prologue = new Uint8Array(0)): [NoiseHandshake, NoiseHandshake] {
    const needsInitStatic = pattern === 'XK' || pattern === 'IK' || pattern === 'XX';
    const needsRespStatic = pattern !== 'NN';
    const knowsRemote = pattern === 'NK' || pattern === 'XK' || pattern === 'IK';
    return [
      new NoiseHandshake({
        pattern,
        initiator: true,
        prologue,
        staticKeyPair: needsInitStatic ? statics.initiator : undefined,
        remoteStaticKey: knowsRemote ? statics.responder.publicKey : undefined,
      }),
      new NoiseHandshake({
        pattern,
        initiator: false,
        prologue,
        staticKeyPair: needsRespStatic ? statics.responder : undefined,
      }),
    ];
  }

  test('noise - fresh handshakes of every pattern agree, and messageLength is exact', () => {
    for (const pattern of PATTERNS) {
      for (const payloadLength of [0, 1, 100, 1200]) {
        const [initiator, responder] = fresh(pattern);
        const count = NoiseHandshake.messageCount(pattern);
        for (let i = 0; i < count; i++) {
          const [sender, receiver] = i % 2 === 0 ? [initiator, responder] : [responder, initiator];
          assert.equal(sender.messageIndex, i);
          const payload = new Uint8Array(payloadLength).fill(i + 1);
          const msg = sender.writeMessage(payload);
          assert.equal(msg.length, sender.messageLength(i, payloadLength), `${pattern} message ${i}`);
          assert.deepEqual(receiver.readMessage(msg), payload);
        }
        assert.equal(toHex(initiator.handshakeHash), toHex(responder.handshakeHash));
        const a = initiator.split();
        const b = responder.split();
        assert.equal(toHex(a.sendKey), toHex(b.receiveKey));
        assert.equal(toHex(a.receiveKey), toHex(b.sendKey));
        if (pattern === 'XX' || pattern === 'XK' || pattern === 'IK') {
          assert.equal(toHex(responder.remoteStaticKey ?? new Uint8Array(0)), toHex(statics.initiator.publicKey));
        }
      }
    }
  });

  test('noise - messageLength matches the spec for known shapes', () => {
    assert.equal(NoiseHandshake.messageLength('XX', 0, 0), 32);
    assert.equal(NoiseHandshake.messageLength('XX', 1, 0), 32 + 48 + 16);
    assert.equal(NoiseHandshake.messageLength('XX', 2, 10), 48 + 10 + 16);
    assert.equal(NoiseHandshake.messageLength('IK', 0, 0), 32 + 48 + 16);
    assert.equal(NoiseHandshake.messageLength('IK', 1, 0), 32 + 16);
    assert.equal(NoiseHandshake.messageLength('NN', 0, 5), 37);
    assert.equal(NoiseHandshake.messageLength('NK', 0, 0), 48);
    assert.throws(() => NoiseHandshake.messageLength('NN', 2, 0), (err: unknown) => err instanceof DeutError);
  });

  test('noise - a mismatched prologue fails the first authenticated message', () => {
    const [initiator] = fresh('XX', Uint8Array.of(1));
    const [, responder] = fresh('XX', Uint8Array.of(2));
    responder.readMessage(initiator.writeMessage());
    assert.throws(() => initiator.readMessage(responder.writeMessage()), isProtocolError('NOISE_DECRYPT'));
  });

  test('noise - out-of-turn calls throw NOISE_STATE', () => {
    const [initiator, responder] = fresh('NN');
    assert.throws(() => responder.writeMessage(), isProtocolError('NOISE_STATE'));
    assert.throws(() => initiator.readMessage(new Uint8Array(48)), isProtocolError('NOISE_STATE'));
    assert.throws(() => initiator.split(), isProtocolError('NOISE_STATE'));
    const m0 = initiator.writeMessage();
    assert.throws(() => initiator.writeMessage(), isProtocolError('NOISE_STATE'));
    responder.readMessage(m0);
    initiator.readMessage(responder.writeMessage());
    assert.ok(initiator.isComplete && !initiator.isMyTurn);
    assert.throws(() => initiator.writeMessage(), isProtocolError('NOISE_STATE'));
    assert.throws(() => responder.readMessage(m0), isProtocolError('NOISE_STATE'));
    initiator.split();
    assert.throws(() => initiator.split(), isProtocolError('NOISE_STATE'));
  });

  test('noise - short and oversized messages throw NOISE_LENGTH', () => {
    const [initiator, responder] = fresh('XX');
    const m0 = initiator.writeMessage();
    assert.throws(() => responder.readMessage(m0.subarray(0, 31)), isProtocolError('NOISE_LENGTH'));
    assert.throws(() => responder.readMessage(new Uint8Array(65536)), isProtocolError('NOISE_LENGTH'));
    responder.readMessage(m0);
    const m1 = responder.writeMessage();
    assert.throws(() => initiator.readMessage(m1.subarray(0, m1.length - 1)), isProtocolError('NOISE_LENGTH'));
    assert.throws(() => responder.writeMessage(new Uint8Array(65535)), isProtocolError());
    initiator.readMessage(m1);
    assert.throws(() => initiator.writeMessage(new Uint8Array(65535 - 48 - 16 + 1)), isProtocolError('NOISE_LENGTH'));
    assert.equal(initiator.writeMessage(new Uint8Array(65535 - 48 - 16)).length, 65535);
  });

  test('noise - a low-order remote ephemeral is refused with LOW_ORDER_KEY', () => {
    const [initiator, responder] = fresh('IK');
    const m0 = initiator.writeMessage();
    const forged = m0.slice();
    forged.fill(0, 0, 32);
    assert.throws(
      () => responder.readMessage(forged),
      (err: unknown) => err instanceof DeutError && err.kind === 'crypto' && err.code === 'LOW_ORDER_KEY',
    );
    // The responder is unharmed and still completes with the genuine initiator.
    responder.readMessage(m0);
    initiator.readMessage(responder.writeMessage());
    assert.equal(toHex(initiator.handshakeHash), toHex(responder.handshakeHash));
  });

  test('noise - missing or superfluous keys are refused at construction', () => {
    const bug = (err: unknown) => err instanceof DeutError && err.kind === 'bug' && err.code === 'NOISE_OPTIONS';
    assert.throws(() => new NoiseHandshake({ pattern: 'XX', initiator: true }), bug);
    assert.throws(() => new NoiseHandshake({ pattern: 'NK', initiator: true }), bug);
    assert.throws(() => new NoiseHandshake({ pattern: 'NK', initiator: false }), bug);
    assert.throws(
      () => new NoiseHandshake({ pattern: 'NN', initiator: true, staticKeyPair: statics.initiator }),
      bug,
    );
    assert.throws(
      () =>
        new NoiseHandshake({
          pattern: 'XX',
          initiator: true,
          staticKeyPair: statics.initiator,
          remoteStaticKey: statics.responder.publicKey,
        }),
      bug,
    );
    assert.throws(
      () => new NoiseHandshake({ pattern: 'NK', initiator: true, remoteStaticKey: new Uint8Array(31) }),
      bug,
    );
  });
});

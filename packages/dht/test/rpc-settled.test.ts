/**
 * Answers to calls that already settled: a fan-out copy's answer is a duplicate, an answer
 * after the call gave up is late, and neither is a drop; only an answer to nothing we
 * remember is `drop:answer-unmatched`. The ids remembered are bounded in number and time.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { ManualClock, addressKey, type UdpAddress } from '@deut/common';
import { cryptoReady, generateKeyPair, randomBytes } from '@deut/crypto';
import { encodeDhtDatagram } from '@deut/wire';
import type { DatagramChannel } from '../src/channel.js';
import { DhtRpc, type DhtRpcOptions } from '../src/rpc.js';

before(async () => {
  await cryptoReady();
});

/** Two channels joined directly; `copies` of every datagram the caller sends are delivered, as a fan-out of that many tunnels would. */
function pair(copies: number): { caller: DatagramChannel; callee: DatagramChannel & { address: UdpAddress }; answers: Uint8Array[]; inject(data: Uint8Array): void } {
  const handlers = new Map<string, (data: Uint8Array, from: UdpAddress) => void>();
  const callerAddress = { host: '10.0.0.1', port: 4000 };
  const calleeAddress = { host: '10.0.0.2', port: 4000 };
  const answers: Uint8Array[] = [];
  const deliver = (to: UdpAddress, from: UdpAddress, data: Uint8Array): void => {
    setImmediate(() => handlers.get(addressKey(to))?.(data.slice(), from));
  };
  return {
    caller: {
      send: (to, data) => {
        for (let i = 0; i < copies; i++) deliver(to, callerAddress, data);
      },
      onDatagram: (h) => void handlers.set(addressKey(callerAddress), h),
      close: () => void handlers.delete(addressKey(callerAddress)),
    },
    callee: {
      address: calleeAddress,
      send: (to, data) => {
        answers.push(data.slice());
        deliver(to, calleeAddress, data);
      },
      onDatagram: (h) => void handlers.set(addressKey(calleeAddress), h),
      close: () => void handlers.delete(addressKey(calleeAddress)),
    },
    answers,
    inject: (data) => deliver(callerAddress, calleeAddress, data),
  };
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0)).then(() => new Promise((resolve) => setImmediate(resolve)));

function rpcs(copies: number, callerOptions: Partial<DhtRpcOptions> = {}): { caller: DhtRpc; callee: DhtRpc; to: { publicKey: Uint8Array; address: UdpAddress }; net: ReturnType<typeof pair>; close: () => void } {
  const net = pair(copies);
  const calleeKey = generateKeyPair();
  const caller = new DhtRpc({ identity: generateKeyPair(), channel: net.caller, ...callerOptions });
  const callee = new DhtRpc({ identity: calleeKey, channel: net.callee });
  callee.handle(() => ({ type: 'pong' }));
  return {
    caller,
    callee,
    to: { publicKey: calleeKey.publicKey, address: net.callee.address },
    net,
    close: () => {
      caller.close();
      callee.close();
    },
  };
}

test('rpc - the answer to a fan-out copy of an answered call is a duplicate, not a drop', { timeout: 10_000 }, async () => {
  const { caller, callee, to, net, close } = rpcs(2);
  try {
    const reply = await caller.call(to, { type: 'ping' });
    assert.equal(reply.body.type, 'pong');
    while (net.answers.length < 2) await settle();
    await settle();
    assert.equal(callee.stats().counters['answers-from-cache'], 1, 'the callee answered the second copy from its cache');
    const counters = caller.stats().counters;
    assert.equal(counters['answers-duplicate'], 1);
    assert.equal(counters['drop:answer-unmatched'], undefined);
    assert.equal(counters['calls-answered'], 1);

    // An answer to an id we never used is still unmatched.
    net.inject(encodeDhtDatagram({ kind: 'response', rpcId: randomBytes(8), message: randomBytes(60) }));
    await settle();
    assert.equal(caller.stats().counters['drop:answer-unmatched'], 1);
    assert.equal(caller.stats().counters['answers-duplicate'], 1);
  } finally {
    close();
  }
});

test('rpc - an answer after the call was aborted is late, not a drop', { timeout: 10_000 }, async () => {
  const { caller, to, net, close } = rpcs(1);
  try {
    const abort = new AbortController();
    const call = caller.call(to, { type: 'ping' }, { signal: abort.signal });
    abort.abort();
    await assert.rejects(call, { code: 'ABORTED' });
    while (net.answers.length < 1) await settle();
    await settle();
    const counters = caller.stats().counters;
    assert.equal(counters['answers-late'], 1);
    assert.equal(counters['answers-duplicate'], undefined);
    assert.equal(counters['drop:answer-unmatched'], undefined);
  } finally {
    close();
  }
});

test('rpc - settled calls are remembered for a bounded number and time, then their answers are unmatched', { timeout: 10_000 }, async () => {
  const clock = new ManualClock(Date.now());
  const { caller, to, net, close } = rpcs(1, { clock, settledMemoryLimit: 2, settledMemoryMs: 1_000 });
  try {
    for (let i = 0; i < 3; i++) await caller.call(to, { type: 'ping' });
    assert.equal(net.answers.length, 3);
    // The first call's id was pushed out by the third: its answer again is unmatched.
    net.inject(net.answers[0]!);
    net.inject(net.answers[2]!);
    await settle();
    assert.equal(caller.stats().counters['drop:answer-unmatched'], 1);
    assert.equal(caller.stats().counters['answers-duplicate'], 1);
    // And past the memory's time, so is the last one's.
    clock.advance(1_001);
    net.inject(net.answers[2]!);
    await settle();
    assert.equal(caller.stats().counters['drop:answer-unmatched'], 2);
    assert.equal(caller.stats().counters['answers-duplicate'], 1);
  } finally {
    close();
  }
});

/**
 * Hardening, tagging and malleability (issue #8; docs/PROTOCOL.md §5.2, §8): a relayer that
 * flips a bit or swaps two blocks of a cell, in either direction, is detected; nothing
 * reaches the world through the endpoint and the master never sees altered plaintext; every
 * hop frees the tunnel and the master learns it ended with reason 'bad-cell'.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { cryptoReady, randomBytes } from '@deut/crypto';
import { CELL_BYTES, CELL_HEADER_BYTES, CELL_PLAINTEXT_BYTES, TUNNEL_MESSAGE_TYPES } from '@deut/wire';
import { createEngineMesh, tamperOnce, type EngineMeshNode } from '@deut/testkit';
import { assertProperty } from './assert-property.js';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const CELL_OUT = TUNNEL_MESSAGE_TYPES['cell-out'];
const CELL_IN = TUNNEL_MESSAGE_TYPES['cell-in'];
const BLOCK = 16;
const BODY_BLOCKS = Math.floor((CELL_BYTES - CELL_HEADER_BYTES) / BLOCK);
// The seq field (u64, big-endian) sits just before the body; the tunnel id before it selects
// the tunnel, and a changed id reaches no tunnel at all (cell-unknown-tunnel). The top two
// seq bytes are left out: a value of 2^53 or more fails decoding (decode-* drop) before any
// tunnel is looked up, which is a dropped cell, not an altered one.
const SEQ_OFFSET = CELL_HEADER_BYTES - 6;

type Tamper = { kind: 'flip'; offset: number; bit: number } | { kind: 'swap'; a: number; b: number };

function applyTamper(payload: Uint8Array, tamper: Tamper): Uint8Array {
  const copy = payload.slice();
  if (tamper.kind === 'flip') {
    copy[tamper.offset]! ^= 1 << tamper.bit;
    return copy;
  }
  const a = CELL_HEADER_BYTES + tamper.a * BLOCK;
  const b = CELL_HEADER_BYTES + tamper.b * BLOCK;
  copy.set(payload.subarray(b, b + BLOCK), a);
  copy.set(payload.subarray(a, a + BLOCK), b);
  return copy;
}

const tamperArb: fc.Arbitrary<Tamper> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), offset: fc.integer({ min: SEQ_OFFSET, max: CELL_BYTES - 1 }), bit: fc.integer({ min: 0, max: 7 }) }),
  fc
    .tuple(fc.integer({ min: 0, max: BODY_BLOCKS - 1 }), fc.integer({ min: 0, max: BODY_BLOCKS - 1 }))
    .filter(([a, b]) => a !== b)
    .map(([a, b]) => ({ kind: 'swap' as const, a, b })),
);

test('hardening tagging - a bit flipped or a block swapped by one relayer, either direction, tears the tunnel down and the master sees bad-cell', { timeout: 120_000 }, async () => {
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2', 'R3'] });
  const [M, R1, R2, R3] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode, EngineMeshNode];
  // Where a malicious relayer's change lands: the node that receives what it forwards.
  const positions = [
    { what: 'R1 forwards outbound', direction: 'out', at: 'R2', from: 'R1' },
    { what: 'R2 forwards outbound', direction: 'out', at: 'R3', from: 'R2' },
    { what: 'R2 forwards inbound', direction: 'in', at: 'R1', from: 'R2' },
    { what: 'R1 forwards inbound', direction: 'in', at: 'M', from: 'R1' },
  ] as const;
  const named = (name: string): EngineMeshNode => mesh.nodes.find((n) => n.name === name)!;
  try {
    await assertProperty(
      fc.asyncProperty(fc.constantFrom(...positions), tamperArb, async (position, tamper) => {
        // Relative to before the build, so that a shrinking run is judged on its own.
        const baseline = mesh.totalState();
        const tunnel = await mesh.build(M, [R1, R2, R3]);
        const endpoint = R3.endpoints.at(-1)!;
        const framesOut = R3.endpointFrames.length;
        const framesIn = M.ownFrames.length;
        const closedBefore = M.ownClosed.length;
        const endpointsClosed = R3.closedEndpoints.length;
        const tornDown = M.count('tunnels-torn-down-bad-cell');
        const badTags = mesh.nodes.reduce((n, node) => n + node.count('drop:cell-bad-tag'), 0);
        tamperOnce(named(position.at), position.direction === 'out' ? CELL_OUT : CELL_IN, named(position.from), (payload) => applyTamper(payload, tamper));
        if (position.direction === 'out') assert.ok(M.engine.send(tunnel, randomBytes(CELL_PLAINTEXT_BYTES)));
        else assert.ok(R3.engine.sendFromEndpoint(endpoint, randomBytes(CELL_PLAINTEXT_BYTES)));
        await mesh.settle();
        const label = `${position.what}, ${JSON.stringify(tamper)}`;
        assert.equal(R3.endpointFrames.length, framesOut, `${label}: nothing left the endpoint`);
        assert.equal(M.ownFrames.length, framesIn, `${label}: the master saw no altered plaintext`);
        assert.equal(mesh.nodes.reduce((n, node) => n + node.count('drop:cell-bad-tag'), 0), badTags + 1, `${label}: one hop counted the bad tag`);
        assert.equal(mesh.totalState(), baseline, `${label}: every hop and the master freed the tunnel`);
        assert.deepEqual(
          M.ownClosed.slice(closedBefore).map((c) => [c.tunnel, c.reason]),
          [[tunnel, 'bad-cell']],
          `${label}: the master learned the tunnel failed a tag`,
        );
        assert.equal(M.count('tunnels-torn-down-bad-cell'), tornDown + 1, `${label}: the master counts it`);
        assert.deepEqual(R3.closedEndpoints.slice(endpointsClosed).map((c) => c.reason), ['bad-cell'], `${label}: the endpoint released its port`);
        assert.equal(M.engine.send(tunnel, randomBytes(CELL_PLAINTEXT_BYTES)), false, `${label}: the tunnel is unusable`);
        assert.equal(R3.engine.sendFromEndpoint(endpoint, randomBytes(CELL_PLAINTEXT_BYTES)), false, `${label}: so is the endpoint's side`);
      }),
      { numRuns: 200 },
    );
  } finally {
    await mesh.close();
  }
});

test('hardening tagging - an untouched cell still passes both ways (the property above is not vacuous)', { timeout: 30_000 }, async () => {
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2', 'R3'] });
  const [M, R1, R2, R3] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode, EngineMeshNode];
  try {
    const tunnel = await mesh.build(M, [R1, R2, R3]);
    const out = randomBytes(CELL_PLAINTEXT_BYTES);
    const back = randomBytes(CELL_PLAINTEXT_BYTES);
    // An identity "tamper" through the same interception path.
    tamperOnce(R2, CELL_OUT, R1, (payload) => payload);
    assert.ok(M.engine.send(tunnel, out));
    await mesh.settle();
    tamperOnce(M, CELL_IN, R1, (payload) => payload);
    assert.ok(R3.engine.sendFromEndpoint(R3.endpoints[0]!, back));
    await mesh.settle();
    assert.deepEqual(R3.endpointFrames, [out]);
    assert.deepEqual(M.ownFrames.map((f) => f.plaintext), [back]);
    assert.equal(M.ownClosed.length, 0);
  } finally {
    await mesh.close();
  }
});

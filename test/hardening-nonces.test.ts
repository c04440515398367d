/**
 * Hardening, rekey and nonce exhaustion (issue #8; docs/PROTOCOL.md §3.4, §5.2-§5.3): every
 * (key, nonce) pair this process encrypts under is recorded through @deut/crypto's nonce
 * observer (AEAD seals of handshakes, link datagrams and build records; every cell layer
 * sealed by a master, an endpoint or a relay) over several link rekeys and tunnel
 * generations, in both directions, and none repeats. A datagram sealed under a link key
 * that has since been rekeyed and retired is refused.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey, sumCounters } from '@deut/common';
import { cryptoReady, observeNonceUses, randomBytes, type NonceUse } from '@deut/crypto';
import { REJECT_AFTER_MS, REKEY_AFTER_MS, type LinkCounter } from '@deut/link';
import type { OwnedTunnel } from '@deut/tunnel';
import { CELL_PLAINTEXT_BYTES } from '@deut/wire';
import { createEngineMesh, type EngineMesh, type EngineMeshNode } from '@deut/testkit';

await cryptoReady();
const keepAlive = setInterval(() => undefined, 1000);
after(() => clearInterval(keepAlive));

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/** Records every (kind, key, nonce) and every repeat. */
function recordNonces(): { uses: Map<string, number>; repeats: string[]; byKind: Record<string, number>; stop: () => void } {
  const uses = new Map<string, number>();
  const repeats: string[] = [];
  const byKind: Record<string, number> = {};
  const previous = observeNonceUses((use: NonceUse) => {
    const id = `${use.kind} key ${hex(use.key)} nonce ${hex(use.nonce)}`;
    byKind[use.kind] = (byKind[use.kind] ?? 0) + 1;
    const seen = uses.get(id) ?? 0;
    if (seen > 0) repeats.push(id);
    uses.set(id, seen + 1);
  });
  return { uses, repeats, byKind, stop: () => void observeNonceUses(previous) };
}

const sum = (mesh: EngineMesh, counter: LinkCounter): number => mesh.nodes.reduce((n, node) => n + (node.link.stats().counters[counter] ?? 0), 0);

test('hardening nonces - no (key, nonce) pair is used twice across link rekeys and tunnel cells both ways, and retired link keys are refused', { timeout: 120_000 }, async (t: TestContext) => {
  const record = recordNonces();
  const mesh = await createEngineMesh({ nodes: ['M', 'R1', 'R2', 'R3'] });
  const [M, R1, R2, R3] = mesh.nodes as [EngineMeshNode, EngineMeshNode, EngineMeshNode, EngineMeshNode];
  try {
    // Two tunnels over the same links in different orders, so one link key carries both.
    const paths = [
      [R1, R2, R3],
      [R1, R3, R2],
    ];
    let tunnels: OwnedTunnel[] = [];
    const rebuild = async (): Promise<void> => {
      for (const tunnel of tunnels) M.engine.destroy(tunnel);
      tunnels = [];
      for (const path of paths) tunnels.push(await mesh.build(M, path));
    };
    const traffic = async (cells: number): Promise<void> => {
      for (let i = 0; i < cells; i++) {
        for (const [k, tunnel] of tunnels.entries()) {
          assert.ok(M.engine.send(tunnel, randomBytes(CELL_PLAINTEXT_BYTES)));
          const endpointNode = paths[k]!.at(-1)!;
          const endpoint = endpointNode.endpoints.at(-1)!;
          assert.ok(endpointNode.engine.sendFromEndpoint(endpoint, randomBytes(CELL_PLAINTEXT_BYTES)));
        }
      }
      await mesh.settle();
    };
    await rebuild();

    // Withhold two datagrams M→R1 sealed under the first link session.
    const withheld: Uint8Array[] = [];
    const stopTap = mesh.network.tap((event) => {
      if (event.fate === 'partitioned' && addressKey(event.to) === addressKey(R1.candidate.address)) withheld.push(event.data.slice());
    });
    mesh.network.partition(M.candidate.address.host, R1.candidate.address.host);
    assert.ok(M.engine.send(tunnels[0]!, randomBytes(CELL_PLAINTEXT_BYTES)));
    assert.ok(M.engine.send(tunnels[0]!, randomBytes(CELL_PLAINTEXT_BYTES)));
    await mesh.settle();
    mesh.network.heal();
    stopTap();
    assert.equal(withheld.length, 2, 'two datagrams withheld');
    // The first, delivered late but under a live key, is accepted: the refusal below is the key's.
    const relayed = R1.engine.stats().counters['cells-relayed'] ?? 0;
    M.socket.send(withheld[0]!, R1.candidate.address);
    await mesh.settle();
    assert.equal(R1.engine.stats().counters['cells-relayed'] ?? 0, relayed + 1, 'a late datagram under the live key is accepted');

    // Generations: traffic, then past the rekey time, so the next send rekeys every link;
    // tunnels are rebuilt every other generation (fresh hop keys, fresh random counters).
    const generations = 5;
    for (let g = 0; g < generations; g++) {
      await traffic(40);
      await mesh.advance(REKEY_AFTER_MS + 1_000);
      if (g % 2 === 1) await rebuild();
    }
    await traffic(40);
    const rekeys = sum(mesh, 'rekeys');
    t.diagnostic(`${rekeys} rekeys; uses by kind ${JSON.stringify(record.byKind)}; ${record.uses.size} distinct pairs`);
    assert.ok(rekeys >= 2 * generations, `links rekeyed every generation (${rekeys})`);
    assert.ok((record.byKind['cell-layer'] ?? 0) > 2000 && (record.byKind['chacha20-poly1305'] ?? 0) > 2000, 'the record saw the traffic');
    assert.deepEqual(record.repeats.slice(0, 3), [], 'no (key, nonce) pair repeats');

    // The second withheld datagram, sealed under a session rekeyed away long ago, is refused.
    assert.ok(generations * (REKEY_AFTER_MS + 1_000) > REJECT_AFTER_MS);
    const drops = (): number => sumCounters(R1.link.stats().counters, 'drop:');
    const dropsBefore = drops();
    // Keyed by string: the reason is found by scanning, not named.
    const countersBefore: Readonly<Record<string, number | undefined>> = { ...R1.link.stats().counters };
    const relayedBefore = R1.engine.stats().counters['cells-relayed'] ?? 0;
    M.socket.send(withheld[1]!, R1.candidate.address);
    await mesh.settle();
    assert.equal(R1.engine.stats().counters['cells-relayed'] ?? 0, relayedBefore, 'nothing under a retired key gets through');
    assert.equal(drops(), dropsBefore + 1, 'the link counts the refusal');
    const reason = Object.entries(R1.link.stats().counters).find(([k, v]) => k.startsWith('drop:') && v !== (countersBefore[k] ?? 0))?.[0];
    t.diagnostic(`the retired-key datagram was counted as ${reason}`);
  } finally {
    record.stop();
    await mesh.close();
  }
});

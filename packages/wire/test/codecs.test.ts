/**
 * Properties every codec must have: decode inverts encode over arbitrary valid values,
 * decoding arbitrary or mutated bytes throws nothing but ProtocolError, and whatever does
 * decode re-encodes to the very same bytes (one value, one encoding).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import * as wire from '../src/index.js';
import { CODECS, onlyProtocolErrors, toHex } from './helpers.js';
import type { AnyCodec } from './helpers.js';

/** Decodes `bytes`; on success, checks that encoding the result gives `bytes` back. */
function decodeIsCanonical(codec: AnyCodec, bytes: Uint8Array): void {
  onlyProtocolErrors(() => {
    const value = codec.decode(bytes);
    assert.equal(toHex(codec.encode(value)), toHex(bytes), `${codec.name}: a decoded value re-encodes differently`);
  });
}

/** Byte strings at, just around and far from the valid sizes. */
function sizedBytesArb(sizes: readonly number[]): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.constantFrom(...sizes).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
    fc.constantFrom(...sizes).chain((n) => fc.uint8Array({ minLength: Math.max(0, n - 3), maxLength: n + 3 })),
    fc.uint8Array({ maxLength: 64 }),
  );
}

type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly mask: number }
  | { readonly kind: 'set'; readonly at: number; readonly value: number }
  | { readonly kind: 'truncate'; readonly keep: number }
  | { readonly kind: 'extend'; readonly extra: Uint8Array };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
);

/** `bytes` changed by `mutations`; headers are the likeliest targets, so positions favour the start. */
function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let out = new Uint8Array(bytes);
  for (const m of mutations) {
    if (out.length === 0) break;
    switch (m.kind) {
      case 'flip':
      case 'set': {
        const at = m.at % 2 === 0 ? (m.at >> 1) % Math.min(out.length, 40) : (m.at >> 1) % out.length;
        out[at] = m.kind === 'flip' ? (out[at] ?? 0) ^ m.mask : m.value;
        break;
      }
      case 'truncate':
        out = out.slice(0, m.keep % out.length);
        break;
      case 'extend': {
        const longer = new Uint8Array(out.length + m.extra.length);
        longer.set(out);
        longer.set(m.extra, out.length);
        out = longer;
        break;
      }
    }
  }
  return out;
}

for (const codec of CODECS) {
  test(`${codec.name} - decode(encode(x)) equals x for arbitrary valid x`, () => {
    fc.assert(
      fc.property(codec.arb, (value) => {
        const bytes = codec.encode(value);
        assert.deepStrictEqual(codec.decode(bytes), value);
        assert.equal(toHex(codec.encode(codec.decode(bytes))), toHex(bytes));
      }),
      { numRuns: 200 },
    );
  });

  test(`${codec.name} - arbitrary bytes decode or throw ProtocolError only`, () => {
    fc.assert(
      fc.property(sizedBytesArb(codec.sizes), (bytes) => decodeIsCanonical(codec, bytes)),
      { numRuns: 3000 },
    );
  });

  test(`${codec.name} - mutated valid encodings decode or throw ProtocolError only`, () => {
    fc.assert(
      fc.property(codec.arb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (value, mutations) =>
        decodeIsCanonical(codec, mutate(codec.encode(value), mutations)),
      ),
      { numRuns: 3000 },
    );
  });
}

test('codecs - every decoder the package exports is fuzzed above (issue #8: fast-check over every decoder)', () => {
  const fuzzed = new Set<unknown>(CODECS.map((c) => c.decode));
  const decoders = Object.entries(wire).filter(([name, value]) => name.startsWith('decode') && typeof value === 'function');
  assert.ok(decoders.length >= 12, `found ${decoders.length} decoders`);
  for (const [name, decode] of decoders) assert.ok(fuzzed.has(decode), `${name} has a codec in CODECS, so it is fuzzed`);
});

/** Tests of the 19-byte address and IP text handling (PROTOCOL.md §6). */
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalHost, decodeAddress, encodeAddress, formatIp, parseIp } from '../src/index.js';
import { assertProtocolError, fromHex, ipv6BytesArb, toHex, urlIpv6Text } from './helpers.js';

test('address - 127.0.0.1:9 is family 4, IPv4-mapped, port 9', () => {
  assert.equal(toHex(encodeAddress({ host: '127.0.0.1', port: 9 })), '04' + '00000000000000000000ffff7f000001' + '0009');
});

test('address - IPv6 keeps its 16 bytes and family 6', () => {
  assert.equal(
    toHex(encodeAddress({ host: '2001:db8::1', port: 65535 })),
    '06' + '20010db8000000000000000000000001' + 'ffff',
  );
});

test('address - IPv6 text comes back in RFC 5952 form', () => {
  const cases: readonly (readonly [string, string])[] = [
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0001:0001:0001:0001:0001', '2001:db8:0:1:1:1:1:1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['fe80::1:2', 'fe80::1:2'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['::1.2.3.4', '::102:304'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ];
  for (const [input, canonical] of cases) {
    assert.equal(decodeAddress(encodeAddress({ host: input, port: 1 })).host, canonical, input);
    assert.equal(canonicalHost(input), canonical, input);
  }
});

test('address - IPv4-mapped IPv6 text encodes as IPv4', () => {
  const bytes = encodeAddress({ host: '::ffff:10.1.2.3', port: 80 });
  assert.equal(bytes[0], 4);
  assert.deepStrictEqual(decodeAddress(bytes), { host: '10.1.2.3', port: 80 });
  assert.equal(canonicalHost('::FFFF:a01:203'), '10.1.2.3');
});

test('address - formatIp agrees with the WHATWG URL serializer', () => {
  fc.assert(
    fc.property(ipv6BytesArb, (bytes) => {
      assert.equal(formatIp(bytes), urlIpv6Text(bytes));
    }),
    { numRuns: 2000 },
  );
});

/** IP-like texts: valid ones, and valid ones with a character deleted, doubled or replaced. */
const ipLikeArb = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc
    .tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.nat(), fc.constantFrom('', ':', '.', '0', 'f', 'g', '::', '00000'), fc.boolean())
    .map(([text, at, insert, replace]) => {
      const i = at % (text.length + 1);
      return text.slice(0, i) + insert + text.slice(replace ? i + 1 : i);
    }),
);

test('address - parseIp accepts exactly the IP literals node:net accepts', () => {
  fc.assert(
    fc.property(ipLikeArb, (text) => {
      let parsed: ReturnType<typeof parseIp> | undefined;
      try {
        parsed = parseIp(text);
      } catch {
        parsed = undefined;
      }
      assert.equal(parsed !== undefined, isIP(text) !== 0, text);
      if (parsed === undefined) return;
      const canonical = formatIp(parsed.bytes);
      assert.equal(isIP(canonical), parsed.family, text);
      assert.equal(canonicalHost(canonical), canonical);
      if (isIP(text) === 4) assert.equal(canonical, text);
    }),
    { numRuns: 3000 },
  );
});

test('address - not-IP hosts are refused on encode', () => {
  const bad = [
    'localhost',
    '',
    '1.2.3',
    '1.2.3.4.5',
    '1.2.3.256',
    '01.2.3.4',
    '1.2.3.4 ',
    ':',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7::8',
    ':1:2:3:4:5:6:7',
    '12345::1',
    'g::1',
    'fe80::1%eth0',
    '[::1]',
    '::1.2.3',
    '1.2.3.4::',
  ];
  for (const host of bad) assertProtocolError(() => encodeAddress({ host, port: 1 }), 'BAD_ADDRESS');
});

test('address - port 0 and ports out of range are refused on encode', () => {
  for (const port of [0, -1, 65536, 1.5, Number.NaN]) {
    assertProtocolError(() => encodeAddress({ host: '1.2.3.4', port }), 'BAD_ADDRESS');
  }
});

test('address - wrong length is refused', () => {
  const good = encodeAddress({ host: '1.2.3.4', port: 1 });
  assertProtocolError(() => decodeAddress(good.subarray(0, 18)), 'BAD_LENGTH');
  assertProtocolError(() => decodeAddress(new Uint8Array(20)), 'BAD_LENGTH');
  assertProtocolError(() => decodeAddress(new Uint8Array(0)), 'BAD_LENGTH');
});

test('address - unknown family, mismatched family and port 0 are refused', () => {
  const v4 = '00000000000000000000ffff01020304';
  assertProtocolError(() => decodeAddress(fromHex('05' + v4 + '0001')), 'BAD_ADDRESS');
  assertProtocolError(() => decodeAddress(fromHex('00' + v4 + '0001')), 'BAD_ADDRESS');
  // family 4 whose bytes are not IPv4-mapped
  assertProtocolError(() => decodeAddress(fromHex('04' + '20010db8000000000000000000000001' + '0001')), 'BAD_ADDRESS');
  assertProtocolError(() => decodeAddress(fromHex('04' + '00000000000000000000fffe01020304' + '0001')), 'BAD_ADDRESS');
  // family 6 carrying an IPv4-mapped address: IPv4 has one encoding only
  assertProtocolError(() => decodeAddress(fromHex('06' + v4 + '0001')), 'BAD_ADDRESS');
  assertProtocolError(() => decodeAddress(fromHex('04' + v4 + '0000')), 'BAD_ADDRESS');
});

// Tests for keys.ts: RFC 7748 section 6.1, refusal of low-order points, and the key file
// (mode 0600, permission refusal, mismatch refusal, load-or-create).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeutError } from '@deut/common';
import { fromHex, toHex } from '../src/bytes.js';
import {
  generateKeyPair,
  isValidPublicKey,
  keyPairFromPrivate,
  loadOrCreateKeyFile,
  readKeyFile,
  writeKeyFile,
  x25519,
} from '../src/keys.js';
import { cryptoReady } from '../src/sodium.js';

const ALICE_PRIVATE = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a';
const ALICE_PUBLIC = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const BOB_PRIVATE = '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb';
const BOB_PUBLIC = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const SHARED = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

/** Curve25519 points of small order (and the encodings libsodium blocklists). */
const LOW_ORDER_POINTS = [
  '0000000000000000000000000000000000000000000000000000000000000000', // 0, order 4
  '0100000000000000000000000000000000000000000000000000000000000000', // 1, order 1 (identity)
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', // order 8
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', // order 8
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // p - 1, order 2
];

const hasCode = (code: string, kind?: string) => (err: unknown) =>
  err instanceof DeutError && err.code === code && (kind === undefined || err.kind === kind);

let dir = '';

before(async () => {
  await cryptoReady();
  dir = await mkdtemp(join(tmpdir(), 'deut-keys-test-'));
});

after(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('X25519', () => {
  test('keys - RFC 7748 section 6.1 Alice and Bob', () => {
    const alice = keyPairFromPrivate(fromHex(ALICE_PRIVATE));
    const bob = keyPairFromPrivate(fromHex(BOB_PRIVATE));
    assert.equal(toHex(alice.publicKey), ALICE_PUBLIC);
    assert.equal(toHex(bob.publicKey), BOB_PUBLIC);
    assert.equal(toHex(x25519(alice.privateKey, bob.publicKey)), SHARED);
    assert.equal(toHex(x25519(bob.privateKey, alice.publicKey)), SHARED);
  });

  test('keys - keyPairFromPrivate copies the private key', () => {
    const priv = fromHex(ALICE_PRIVATE);
    const pair = keyPairFromPrivate(priv);
    pair.privateKey.fill(0);
    assert.equal(toHex(priv), ALICE_PRIVATE);
  });

  test('keys - generated key pairs are distinct and agree on a shared secret', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    assert.notEqual(toHex(a.privateKey), toHex(b.privateKey));
    assert.equal(toHex(keyPairFromPrivate(a.privateKey).publicKey), toHex(a.publicKey));
    assert.equal(toHex(x25519(a.privateKey, b.publicKey)), toHex(x25519(b.privateKey, a.publicKey)));
    assert.ok(isValidPublicKey(a.publicKey));
  });

  test('keys - low-order points are refused by x25519 and isValidPublicKey', () => {
    const me = generateKeyPair();
    for (const hex of LOW_ORDER_POINTS) {
      assert.equal(isValidPublicKey(fromHex(hex)), false, hex);
      assert.throws(() => x25519(me.privateKey, fromHex(hex)), hasCode('LOW_ORDER_KEY', 'crypto'), hex);
    }
    assert.ok(isValidPublicKey(fromHex(ALICE_PUBLIC)));
  });

  test('keys - wrong lengths are refused', () => {
    const me = generateKeyPair();
    assert.throws(() => x25519(me.privateKey, new Uint8Array(31)), hasCode('BAD_KEY_LENGTH', 'crypto'));
    assert.throws(() => x25519(new Uint8Array(33), me.publicKey), hasCode('BAD_KEY_LENGTH', 'crypto'));
    assert.throws(() => keyPairFromPrivate(new Uint8Array(16)), hasCode('BAD_KEY_LENGTH', 'crypto'));
    assert.equal(isValidPublicKey(new Uint8Array(31)), false);
  });
});

describe('key files', () => {
  const posix = process.platform !== 'win32';

  test('keys - write then read round trip, mode 0600, documented JSON in hex (as the CLI prints keys)', async () => {
    const path = join(dir, 'roundtrip.key');
    const pair = keyPairFromPrivate(fromHex(ALICE_PRIVATE));
    await writeKeyFile(path, pair);
    if (posix) assert.equal((await stat(path)).mode & 0o777, 0o600);
    const json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(json, {
      version: 1,
      type: 'deut-x25519',
      privateKey: ALICE_PRIVATE,
      publicKey: ALICE_PUBLIC,
    });
    const read = await readKeyFile(path);
    assert.equal(toHex(read.privateKey), ALICE_PRIVATE);
    assert.equal(toHex(read.publicKey), ALICE_PUBLIC);
    // No temporary files are left behind.
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
    // A file an earlier version wrote, in base64, still reads as the same key.
    const old = join(dir, 'base64.key');
    const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64');
    await writeFile(old, JSON.stringify({ version: 1, type: 'deut-x25519', privateKey: b64(ALICE_PRIVATE), publicKey: b64(ALICE_PUBLIC) }), { mode: 0o600 });
    assert.equal(toHex((await readKeyFile(old)).publicKey), ALICE_PUBLIC);
  });

  test('keys - overwrite replaces atomically, overwrite:false refuses an existing file', async () => {
    const path = join(dir, 'replace.key');
    await writeKeyFile(path, keyPairFromPrivate(fromHex(ALICE_PRIVATE)));
    await writeKeyFile(path, keyPairFromPrivate(fromHex(BOB_PRIVATE)));
    assert.equal(toHex((await readKeyFile(path)).publicKey), BOB_PUBLIC);
    await assert.rejects(
      writeKeyFile(path, keyPairFromPrivate(fromHex(ALICE_PRIVATE)), { overwrite: false }),
      hasCode('KEY_FILE_EXISTS', 'config'),
    );
    assert.equal(toHex((await readKeyFile(path)).publicKey), BOB_PUBLIC);
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
  });

  test('keys - a key file readable by group or others is refused', { skip: !posix }, async () => {
    const path = join(dir, 'loose.key');
    await writeKeyFile(path, generateKeyPair());
    await chmod(path, 0o644);
    await assert.rejects(readKeyFile(path), hasCode('KEY_FILE_PERMISSIONS', 'config'));
    await chmod(path, 0o640);
    await assert.rejects(readKeyFile(path), hasCode('KEY_FILE_PERMISSIONS', 'config'));
    await chmod(path, 0o600);
    await readKeyFile(path);
  });

  test('keys - a public key that does not match the private key is refused', async () => {
    const path = join(dir, 'mismatch.key');
    const body = JSON.stringify({
      version: 1,
      type: 'deut-x25519',
      privateKey: Buffer.from(ALICE_PRIVATE, 'hex').toString('base64'),
      publicKey: Buffer.from(BOB_PUBLIC, 'hex').toString('base64'),
    });
    await writeFile(path, body, { mode: 0o600 });
    await assert.rejects(readKeyFile(path), hasCode('KEY_FILE_MISMATCH', 'config'));
    await assert.rejects(
      writeKeyFile(join(dir, 'never.key'), { privateKey: fromHex(ALICE_PRIVATE), publicKey: fromHex(BOB_PUBLIC) }),
      hasCode('KEY_FILE_MISMATCH', 'config'),
    );
  });

  test('keys - malformed key files are refused as KEY_FILE_INVALID', async () => {
    const priv = Buffer.from(ALICE_PRIVATE, 'hex').toString('base64');
    const pub = Buffer.from(ALICE_PUBLIC, 'hex').toString('base64');
    const bodies = [
      'not json',
      '[]',
      JSON.stringify({ version: 2, type: 'deut-x25519', privateKey: priv, publicKey: pub }),
      JSON.stringify({ version: 1, type: 'other', privateKey: priv, publicKey: pub }),
      JSON.stringify({ version: 1, type: 'deut-x25519', privateKey: priv.slice(4), publicKey: pub }),
      JSON.stringify({ version: 1, type: 'deut-x25519', privateKey: priv, publicKey: 42 }),
    ];
    for (const [i, body] of bodies.entries()) {
      const path = join(dir, `bad-${i}.key`);
      await writeFile(path, body, { mode: 0o600 });
      await assert.rejects(readKeyFile(path), hasCode('KEY_FILE_INVALID', 'config'), body);
    }
    await assert.rejects(readKeyFile(join(dir, 'absent.key')), hasCode('KEY_FILE_NOT_FOUND', 'config'));
  });

  test('keys - loadOrCreateKeyFile creates once, then loads the same key', async () => {
    const path = join(dir, 'nested', 'node.key');
    const created = await loadOrCreateKeyFile(path);
    if (posix) assert.equal((await stat(path)).mode & 0o777, 0o600);
    const loaded = await loadOrCreateKeyFile(path);
    assert.equal(toHex(loaded.publicKey), toHex(created.publicKey));
    assert.equal(toHex(loaded.privateKey), toHex(created.privateKey));
  });

  test('keys - concurrent loadOrCreateKeyFile calls agree on one key', async () => {
    const path = join(dir, 'race.key');
    const pairs = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateKeyFile(path)));
    const onDisk = await readKeyFile(path);
    for (const pair of pairs) assert.equal(toHex(pair.publicKey), toHex(onDisk.publicKey));
  });
});

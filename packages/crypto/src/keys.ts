/**
 * X25519 key pairs (RFC 7748) and the on-disk key file.
 *
 * Diffie-Hellman refuses low-order public keys: their shared secret is all zeros whatever
 * our private key, so a peer sending one would make the "secret" known to everybody.
 *
 * The key file is JSON `{"version":1,"type":"deut-x25519","privateKey":"<hex>",
 * "publicKey":"<hex>"}` (hex, as the CLI prints keys; base64 from earlier versions is read too), created with mode 0600 by writing a temporary file in the same
 * directory and renaming it, so a crash never leaves a half-written key behind.
 */
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import { link, mkdir, open, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DeutError } from '@deut/common';
import { cryptoError, keyFileError } from './errors.js';
import { constantTimeEqual, parseKey32, randomBytes, toHex, zero } from './bytes.js';
import { sodium } from './sodium.js';

/** Length of X25519 public keys, private keys and shared secrets, in bytes. */
export const X25519_KEY_BYTES = 32;

/** An X25519 key pair. The private key is secret; zero it when done with it. */
export interface KeyPair {
  /** 32-byte Montgomery u-coordinate. */
  publicKey: Uint8Array;
  /** 32-byte scalar (clamped by X25519 itself on use). */
  privateKey: Uint8Array;
}

function checkLength(key: Uint8Array, what: string): void {
  if (key.length !== X25519_KEY_BYTES) {
    throw cryptoError('BAD_KEY_LENGTH', `${what} must be ${X25519_KEY_BYTES} bytes, got ${key.length}`);
  }
}

/** A fresh random key pair from libsodium's CSPRNG. */
export function generateKeyPair(): KeyPair {
  return keyPairFromPrivate(randomBytes(X25519_KEY_BYTES));
}

/**
 * The key pair for an existing private key. The private key is copied, so zeroing the
 * returned pair leaves the caller's array alone.
 * @throws DeutError `BAD_KEY_LENGTH` (kind `crypto`) unless `privateKey` is 32 bytes
 */
export function keyPairFromPrivate(privateKey: Uint8Array): KeyPair {
  checkLength(privateKey, 'X25519 private key');
  return {
    publicKey: sodium().crypto_scalarmult_base(privateKey),
    privateKey: privateKey.slice(),
  };
}

/**
 * X25519 Diffie-Hellman.
 * @throws DeutError `BAD_KEY_LENGTH` (kind `crypto`) unless both keys are 32 bytes
 * @throws DeutError `LOW_ORDER_KEY` (kind `crypto`) if the shared secret would be all zeros
 */
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  checkLength(privateKey, 'X25519 private key');
  checkLength(publicKey, 'X25519 public key');
  const s = sodium();
  let shared: Uint8Array;
  try {
    shared = s.crypto_scalarmult(privateKey, publicKey);
  } catch {
    // libsodium refuses small-order points (and non-canonical encodings of them) by throwing.
    throw cryptoError('LOW_ORDER_KEY', 'X25519 public key has low order');
  }
  if (s.is_zero(shared)) {
    throw cryptoError('LOW_ORDER_KEY', 'X25519 shared secret is all zeros');
  }
  return shared;
}

let probeScalar: Uint8Array | undefined;

/**
 * Whether `publicKey` is usable for Diffie-Hellman: 32 bytes and not of low order (its
 * X25519 product with a fixed random scalar is not all zeros). This does not prove the
 * key belongs to anybody.
 */
export function isValidPublicKey(publicKey: Uint8Array): boolean {
  if (publicKey.length !== X25519_KEY_BYTES) return false;
  probeScalar ??= randomBytes(X25519_KEY_BYTES);
  try {
    x25519(probeScalar, publicKey);
    return true;
  } catch {
    return false;
  }
}

/** Version written to and required in key files. */
export const KEY_FILE_VERSION = 1;

/** The `type` field of key files. */
export const KEY_FILE_TYPE = 'deut-x25519';

/** Permission bits a key file must not have: anything for group or others. */
const FORBIDDEN_MODE_BITS = 0o077;

/** Key files are tiny; refuse to slurp anything bigger. */
const MAX_KEY_FILE_BYTES = 4096;


function hasCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && err.code === code;
}

/** Options for {@link writeKeyFile}. */
export interface WriteKeyFileOptions {
  /**
   * Replace an existing file. When false the write fails with `KEY_FILE_EXISTS` if `path`
   * exists, atomically (a hard link, which never clobbers).
   * @default true
   */
  overwrite?: boolean | undefined;
}

/**
 * Writes `keyPair` to `path` with mode 0600, atomically: the bytes go to a temporary file
 * in the same directory, are flushed, and the file is then renamed (or linked) into place.
 * Missing parent directories are created with mode 0700 (`deut keygen --key-file
 * /var/lib/deut/node.key` on a fresh host).
 * @throws DeutError `KEY_FILE_EXISTS` (kind `config`) if `overwrite` is false and `path` exists
 * @throws DeutError `KEY_FILE_MISMATCH` (kind `config`) if the public key does not match the private one
 */
export async function writeKeyFile(path: string, keyPair: KeyPair, options: WriteKeyFileOptions = {}): Promise<void> {
  const expected = keyPairFromPrivate(keyPair.privateKey);
  if (!constantTimeEqual(expected.publicKey, keyPair.publicKey)) {
    throw keyFileError('KEY_FILE_MISMATCH', path, 'public key does not match the private key');
  }
  const body = `${JSON.stringify({
    version: KEY_FILE_VERSION,
    type: KEY_FILE_TYPE,
    privateKey: toHex(keyPair.privateKey),
    publicKey: toHex(keyPair.publicKey),
  })}\n`;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  // Same directory as the target, so rename/link stays within one filesystem.
  const temp = join(dirname(path), `.${basename(path)}.${nodeRandomBytes(8).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  let placed = false;
  try {
    try {
      await handle.writeFile(body, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.overwrite === false) {
      try {
        await link(temp, path);
      } catch (err) {
        if (hasCode(err, 'EEXIST')) throw keyFileError('KEY_FILE_EXISTS', path, 'already exists', err);
        throw err;
      }
    } else {
      await rename(temp, path);
      placed = true;
    }
  } finally {
    if (!placed) await unlink(temp).catch(() => undefined);
  }
}

/**
 * Reads and validates a key file written by {@link writeKeyFile}.
 *
 * On POSIX systems a file with any permission for group or others is refused: a private
 * key someone else can read is already compromised, and silently using it would hide that.
 * @throws DeutError (kind `config`): `KEY_FILE_NOT_FOUND`, `KEY_FILE_PERMISSIONS`,
 *   `KEY_FILE_INVALID` (not a regular file, unparsable, wrong version/type/lengths),
 *   `KEY_FILE_MISMATCH` (public key does not belong to the private key)
 */
export async function readKeyFile(path: string): Promise<KeyPair> {
  let text: string;
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (hasCode(err, 'ENOENT')) throw keyFileError('KEY_FILE_NOT_FOUND', path, 'does not exist', err);
    throw keyFileError('KEY_FILE_UNREADABLE', path, 'cannot be opened', err);
  }
  try {
    // fstat the open handle, not the path, so the file checked is the file read.
    const stat = await handle.stat();
    if (!stat.isFile()) throw keyFileError('KEY_FILE_INVALID', path, 'is not a regular file');
    if (process.platform !== 'win32' && (stat.mode & FORBIDDEN_MODE_BITS) !== 0) {
      throw keyFileError(
        'KEY_FILE_PERMISSIONS',
        path,
        `mode ${(stat.mode & 0o777).toString(8)} gives group or others access; run chmod 600`,
      );
    }
    if (stat.size > MAX_KEY_FILE_BYTES) throw keyFileError('KEY_FILE_INVALID', path, 'is too large');
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw keyFileError('KEY_FILE_INVALID', path, 'is not valid JSON', err);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw keyFileError('KEY_FILE_INVALID', path, 'is not a JSON object');
  }
  const fields = parsed as Record<string, unknown>;
  if (fields['version'] !== KEY_FILE_VERSION) {
    throw keyFileError('KEY_FILE_INVALID', path, `unsupported version ${JSON.stringify(fields['version'])}`);
  }
  if (fields['type'] !== KEY_FILE_TYPE) {
    throw keyFileError('KEY_FILE_INVALID', path, `unsupported type ${JSON.stringify(fields['type'])}`);
  }
  const privateText = fields['privateKey'];
  const publicText = fields['publicKey'];
  const privateKey = typeof privateText === 'string' ? parseKey32(privateText) : undefined;
  if (privateKey === undefined) {
    throw keyFileError('KEY_FILE_INVALID', path, 'privateKey is not 32 bytes of hex (or base64)');
  }
  const publicKey = typeof publicText === 'string' ? parseKey32(publicText) : undefined;
  if (publicKey === undefined) {
    zero(privateKey);
    throw keyFileError('KEY_FILE_INVALID', path, 'publicKey is not 32 bytes of hex (or base64)');
  }
  const keyPair = keyPairFromPrivate(privateKey);
  zero(privateKey);
  if (!constantTimeEqual(keyPair.publicKey, publicKey)) {
    zero(keyPair.privateKey);
    throw keyFileError('KEY_FILE_MISMATCH', path, 'public key does not match the private key');
  }
  return keyPair;
}

/**
 * Reads the key file at `path`, or creates one with a fresh key pair if there is none
 * (creating missing parent directories with mode 0700). If another process creates the
 * file at the same moment, its key wins and is returned.
 */
export async function loadOrCreateKeyFile(path: string): Promise<KeyPair> {
  try {
    return await readKeyFile(path);
  } catch (err) {
    if (!(err instanceof DeutError) || err.code !== 'KEY_FILE_NOT_FOUND') throw err;
  }
  const keyPair = generateKeyPair();
  try {
    await writeKeyFile(path, keyPair, { overwrite: false });
  } catch (err) {
    if (err instanceof DeutError && err.code === 'KEY_FILE_EXISTS') {
      zero(keyPair.privateKey);
      return readKeyFile(path);
    }
    throw err;
  }
  return keyPair;
}

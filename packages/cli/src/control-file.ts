/**
 * The control file: where a running daemon's control API listens and its secret cookie
 * (Tor's CookieAuthentication; README.md). The daemon writes it atomically, mode 0600, once
 * its control server listens; CLI commands read it to find and authenticate to the daemon.
 * Only the user who runs the daemon can read it, so holding the cookie proves being them.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DeutError, configError, parseAddress } from '@deut/common';

/** Where a running daemon's control API is, and its secret: written by the daemon, read by CLI commands. */
export interface ControlFile {
  /** Format version of this file. */
  readonly version: 1;
  /** `127.0.0.1:PORT` or `[::1]:PORT` (the `addressKey` form). */
  readonly address: string;
  /** 64 lowercase hex characters: 32 random bytes. */
  readonly cookie: string;
  /** The daemon's process id (informational; also used to refuse clobbering a live daemon's file). */
  readonly pid: number;
}

/** Length of the cookie in bytes (it is written as twice as many hex characters). */
export const CONTROL_COOKIE_BYTES = 32;
const COOKIE_PATTERN = /^[0-9a-f]{64}$/;

/**
 * The control file path: `$DEUT_CONTROL_FILE` if set and non-empty, else `~/.deut/control.json`.
 * Read at call time so a test or wrapper can set the variable after import.
 */
export function defaultControlFile(): string {
  const fromEnv = process.env['DEUT_CONTROL_FILE'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : join(homedir(), '.deut', 'control.json');
}

/**
 * The default control file path as it was when this module was loaded; prefer
 * `defaultControlFile()`, which honours later changes to `DEUT_CONTROL_FILE`.
 */
export const DEFAULT_CONTROL_FILE: string = defaultControlFile();

/** True while process `pid` exists, also when it belongs to another user. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Parses and validates control file text; throws CONTROL_FILE_BAD. */
function parseControlFile(text: string, path: string): ControlFile {
  const bad = (why: string): DeutError => configError('CONTROL_FILE_BAD', `control file ${path} is malformed (${why}); restart the daemon to rewrite it`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('not an object');
  const o = raw as Record<string, unknown>;
  if (o['version'] !== 1) throw bad('unknown version');
  const { address, cookie, pid } = o;
  if (typeof address !== 'string') throw bad('no address');
  try {
    parseAddress(address);
  } catch {
    throw bad('address is not IP:port');
  }
  if (typeof cookie !== 'string' || !COOKIE_PATTERN.test(cookie)) throw bad('cookie is not 64 hex characters');
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) throw bad('bad pid');
  return { version: 1, address, cookie, pid };
}

/**
 * Reads a control file.
 * @throws DeutError `CONTROL_FILE_UNREADABLE` or `CONTROL_FILE_BAD` (config)
 */
export async function readControlFile(path: string): Promise<ControlFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new DeutError(
      'config',
      'CONTROL_FILE_UNREADABLE',
      `cannot read control file ${path} (${reason}): the daemon may not be running, or you lack permission to read it`,
      { cause: error },
    );
  }
  return parseControlFile(text, path);
}

/**
 * Refuses a control file whose pid is another live process: another daemon would lose its
 * file. A missing, unreadable, malformed or stale file is free to overwrite.
 * @throws DeutError `CONTROL_FILE_IN_USE` (config)
 */
export async function refuseLiveControlFile(path: string): Promise<void> {
  const existing = await readControlFile(path).catch(() => undefined);
  if (existing !== undefined && existing.pid !== process.pid && isProcessAlive(existing.pid)) {
    throw configError(
      'CONTROL_FILE_IN_USE',
      `control file ${path} belongs to process ${existing.pid}, which is running: another daemon? Stop it, or give this one its own --control-file and --control port (two daemons on one host need both), or remove the file if it is stale`,
    );
  }
}

/** Writes `text` to `path` atomically (temp file + rename), mode exactly 0600. */
async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.chmod(0o600); // the umask may have removed bits; never added any
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

/**
 * Writes the control file atomically with mode 0600, creating missing parent directories
 * 0700, so no reader ever sees half a file or a moment of wider permissions.
 * @throws DeutError `CONTROL_FILE_UNWRITABLE` (config)
 */
export async function writeControlFile(path: string, content: ControlFile): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 }); // 0700 applies only to directories it creates
    await writeFileAtomic(path, `${JSON.stringify(content, null, 2)}\n`);
  } catch (error) {
    throw new DeutError('config', 'CONTROL_FILE_UNWRITABLE', `cannot write control file ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Removes the control file if it still holds `cookie`: a newer daemon may have replaced it. */
export async function removeControlFile(path: string, cookie: string): Promise<void> {
  const current = await readControlFile(path).catch(() => undefined);
  if (current?.cookie === cookie) await unlink(path).catch(() => undefined);
}

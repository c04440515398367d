/**
 * Running the built `deut` command from a test file: its processes, temporary folders and
 * the ports it holds are tracked, and killed, removed and released when the file's tests
 * end, also after a failed assertion.
 * Call {@link cliScope} once at the top of a test file.
 */
import { after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The compiled `deut` entry point. */
export const BIN = fileURLToPath(new URL('../../packages/cli/dist/src/bin.js', import.meta.url));

/** How a `deut` command ended. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link CliScope.deut}. */
export interface CliRunOptions {
  /** Added to this process's environment. */
  readonly env?: NodeJS.ProcessEnv;
  /** Killed after this long (it then fails on its exit code). @default 60,000 */
  readonly ms?: number;
  /** Close our end of its stdout at once, as `| head -0` would: every write meets EPIPE. */
  readonly closeStdout?: boolean;
}

/** A running `deut run` daemon (see {@link CliScope.daemon}). */
export interface Daemon {
  readonly name: string;
  readonly child: ChildProcess;
  readonly controlFile: string;
  /** Everything it wrote so far. */
  readonly output: { stdout: string; stderr: string };
  readonly exited: Promise<number | null>;
}

/** The processes and folders of one test file. */
export interface CliScope {
  /** A fresh temporary folder, removed at the end. */
  readonly tempDir: () => string;
  /** Runs `deut ...args` to completion. */
  readonly deut: (args: readonly string[], options?: CliRunOptions) => Promise<CliResult>;
  /** Tracks a process started otherwise (a daemon), so it is killed at the end if still running. */
  readonly track: (child: ChildProcess) => ChildProcess;
  /** A UDP port on 127.0.0.1 that this process holds until the end of the file. */
  readonly heldUdpPort: () => Promise<number>;
  /** A TCP port on 127.0.0.1 that this process listens on until the end of the file. */
  readonly heldTcpPort: () => Promise<number>;
  /**
   * Starts `deut run` with a control API on a free loopback port, its control file `name`.json
   * in `dir`, and private exits and same-subnet paths allowed (every test mesh is on loopback).
   */
  readonly daemon: (name: string, dir: string, args: readonly string[]) => Daemon;
}

/** Tracks what the calling test file starts; `prefix` names its temporary folders. */
export function cliScope(prefix: string): CliScope {
  const children = new Set<ChildProcess>();
  const dirs: string[] = [];
  const holders: Array<() => void> = [];
  after(() => {
    for (const child of children) child.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    for (const release of holders) release();
  });
  const track = (child: ChildProcess): ChildProcess => {
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  };
  const daemon = (name: string, dir: string, args: readonly string[]): Daemon => {
    const controlFile = join(dir, `${name}.json`);
    const child = spawn(process.execPath, [BIN, 'run', '--control', '127.0.0.1:0', '--control-file', controlFile, '--allow-private-exits', '--allow-same-subnet', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    const output = { stdout: '', stderr: '' };
    child.stdout.on('data', (c: Buffer) => (output.stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output.stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { name, child, controlFile, output, exited };
  };
  return {
    daemon,
    tempDir: () => {
      const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
      dirs.push(dir);
      return dir;
    },
    track,
    heldUdpPort: async () => {
      const socket = dgram.createSocket('udp4');
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, '127.0.0.1', () => resolve());
      });
      holders.push(() => socket.close());
      return socket.address().port;
    },
    heldTcpPort: async () => {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      holders.push(() => server.close());
      return (server.address() as AddressInfo).port;
    },
    deut: (args, options = {}) =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
        track(child);
        let stdout = '';
        let stderr = '';
        if (options.closeStdout === true) child.stdout.destroy();
        else child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
        const killer = setTimeout(() => child.kill('SIGKILL'), options.ms ?? 60_000);
        child.on('close', (code) => {
          clearTimeout(killer);
          resolve({ code, stdout, stderr });
        });
      }),
  };
}

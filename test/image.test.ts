/**
 * The runtime Docker image holds the product and nothing of its tests, checked without a
 * Docker engine (none runs on our build machines). The Dockerfile's build stage is replayed
 * on a temp copy of this very build: its `npm ci` and `npm run build` are stood in for by
 * this worktree's node_modules and dist (the same lock file, the same compiler output), and
 * every other command runs as written, offline. The runtime stage's COPY lines are then
 * applied to an empty root, and what lands there is checked: no test code, no dev-only
 * package, every symlink resolved, and the entrypoint runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Workspaces only tests may use. npm has no dev-only workspaces (every workspace is linked
 * into node_modules as if it were a production dependency), so the Dockerfile has to leave
 * them out by name and this test has to know them by name.
 */
const DEV_ONLY_WORKSPACES = ['@deut/testkit'];

/** Paths (relative to the image's working directory) that would be test code in the image. */
const TEST_CODE = [/testkit/, /(^|\/)test(\/|$)/, /dist\/test/, /\.test\./, /impair/, /netns/, /(^|\/)scripts(\/|$)/, /\.c$/, /(?<!\.d)\.ts$/];

interface Instruction {
  readonly op: string;
  readonly args: string;
}

interface Stage {
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** The stages of a Dockerfile: continuation lines joined, comment lines dropped. */
function parseDockerfile(text: string): Stage[] {
  const lines = text.split('\n').filter((line) => !/^\s*#/.test(line));
  const joined = lines.join('\n').replace(/\\\n/g, ' ');
  const stages: Stage[] = [];
  for (const line of joined.split('\n')) {
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (match === null) continue;
    const op = match[1]!.toUpperCase();
    const args = match[2]!.trim();
    if (op === 'FROM') stages.push({ name: /\bAS\s+(\S+)/i.exec(args)?.[1], instructions: [] });
    else stages.at(-1)?.instructions.push({ op, args });
  }
  return stages;
}

/** `--flag=value` options and the remaining words of a COPY. */
function copyArgs(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
  const rest = words.filter((w) => !w.startsWith('--'));
  assert.ok(rest.length >= 2, `COPY ${args}: needs a source and a destination`);
  return { from, sources: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** A filter for .dockerignore patterns (the subset the repo uses: paths and `**` prefixes). */
function dockerignore(): (path: string) => boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.ok(patterns.every((p) => !p.startsWith('!')), '.dockerignore exceptions are beyond this test');
  const regexes = patterns.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*\//g, '(.*/)?').replace(/\*/g, '[^/]*')}(/|$)`));
  return (path) => regexes.some((r) => r.test(path));
}

/** A root directory standing for a container's `/`. */
class Root {
  workdir = '/';
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  /** The host path of a container path (relative ones against the working directory). */
  host(path: string): string {
    return join(this.dir, posix.resolve(this.workdir, path));
  }
}

/** COPY as Docker does it: a directory's contents into the destination, symlinks as they are. */
function copyInto(source: string, dest: string, destIsDir: boolean, filter?: (src: string) => boolean): void {
  assert.ok(existsSync(source), `COPY source ${source} does not exist`);
  const target = statSync(source).isDirectory() || !destIsDir ? dest : join(dest, basename(source));
  mkdirSync(dirname(target), { recursive: true });
  cpSync(source, target, { recursive: true, verbatimSymlinks: true, force: true, ...(filter ? { filter } : {}) });
}

function applyCopy(root: Root, args: string, sourceOf: (from: string | undefined, path: string) => string, filter?: (src: string) => boolean): void {
  const { from, sources, dest } = copyArgs(args);
  for (const source of sources) {
    assert.ok(!/[*?[]/.test(source), `COPY ${args}: wildcards are beyond this test`);
    copyInto(sourceOf(from, source), root.host(dest), dest.endsWith('/') || sources.length > 1, from === undefined ? filter : undefined);
  }
}

/** The dist directories `npm run build` writes: one per project tsconfig.json references. */
function buildOutputs(): string[] {
  const config = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { references: Array<{ path: string }> };
  return config.references.map((r) => join(r.path, 'dist'));
}

/**
 * Replays the Dockerfile; returns the runtime stage's root and its working directory.
 * Throws (failing the test) on anything it cannot replay faithfully.
 */
function replay(temp: string): { root: Root; entrypoint: string[]; healthcheck: Healthcheck | undefined; user: string | undefined } {
  const stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  assert.ok(stages.length >= 2, 'the Dockerfile has a build stage and a runtime stage');
  const ignored = dockerignore();
  const fromContext = (src: string): boolean => !ignored(relative(ROOT, src).split('\\').join('/'));
  const roots = new Map<string, Root>();
  let entrypoint: string[] = [];
  let healthcheck: Healthcheck | undefined;
  let user: string | undefined;
  let root = new Root(join(temp, 'stage-0'));
  for (const [index, stage] of stages.entries()) {
    root = new Root(join(temp, `stage-${index}`));
    if (stage.name !== undefined) roots.set(stage.name, root);
    const current = root;
    const sourceOf = (from: string | undefined, path: string): string => {
      if (from === undefined) return join(ROOT, path);
      const other = roots.get(from);
      assert.ok(other !== undefined, `COPY --from=${from}: no such earlier stage`);
      return join(other.dir, posix.resolve('/', path));
    };
    const last = index === stages.length - 1;
    for (const { op, args } of stage.instructions) {
      if (op === 'WORKDIR') {
        current.workdir = posix.resolve(current.workdir, args);
        mkdirSync(current.host('.'), { recursive: true });
      } else if (op === 'COPY') {
        applyCopy(current, args, sourceOf, fromContext);
      } else if (op === 'RUN' && last) {
        // The runtime stage's RUN lines set up users and directories; one that installed or
        // built anything would put files into the image that this test does not see.
        assert.ok(!/\b(npm|node|npx|cp|mv|curl|wget|git)\b/.test(args), `runtime stage RUN ${args}: beyond this test`);
      } else if (op === 'RUN') {
        runBuildCommand(current, args);
      } else if (op === 'ENTRYPOINT' && last) {
        entrypoint = JSON.parse(args) as string[];
      } else if (op === 'HEALTHCHECK' && last) {
        healthcheck = parseHealthcheck(args);
      } else if (op === 'USER' && last) {
        user = args;
      } else {
        assert.ok(['USER', 'EXPOSE', 'CMD', 'ENV', 'LABEL', 'ENTRYPOINT'].includes(op), `${op} ${args}: beyond this test`);
      }
    }
  }
  return { root, entrypoint, healthcheck, user };
}

/** A HEALTHCHECK: its options and its command, as `sh -c` runs it (shell form) or as argv (exec form). */
interface Healthcheck {
  readonly options: Record<string, string>;
  readonly shell: string | undefined;
  readonly argv: string[] | undefined;
}

function parseHealthcheck(args: string): Healthcheck {
  const match = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(.*)$/s.exec(args);
  assert.ok(match !== null, `HEALTHCHECK ${args}: expected [options] CMD command (NONE turns the check off)`);
  const options = Object.fromEntries([...match[1]!.matchAll(/--([a-z-]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  const command = match[2]!.trim();
  return command.startsWith('[') ? { options, shell: undefined, argv: JSON.parse(command) as string[] } : { options, shell: command, argv: undefined };
}

/** Runs a build-stage RUN on the copy; `npm ci` and `npm run build` become this build's output. */
function runBuildCommand(root: Root, command: string): void {
  // Absolute paths would reach outside the copy, into this machine.
  assert.ok(!/(^|[\s=;:'"(])\/[A-Za-z]/.test(command), `RUN ${command}: absolute paths are beyond this test; use paths relative to WORKDIR`);
  const cwd = root.host('.');
  let script = command;
  if (/\bnpm ci\b/.test(script)) {
    // Hard links: a real copy of node_modules takes seconds, and npm replaces files rather
    // than writing into them, so the worktree's copy is never touched.
    const linked = spawnSync('cp', ['-al', join(ROOT, 'node_modules'), join(cwd, 'node_modules')]);
    if (linked.status !== 0) copyInto(join(ROOT, 'node_modules'), join(cwd, 'node_modules'), false);
    script = script.replace(/\bnpm ci\b[^&;|]*/g, 'true ');
  }
  if (/\bnpm run build\b/.test(script)) {
    for (const out of buildOutputs()) copyInto(join(ROOT, out), join(cwd, out), false);
    script = script.replace(/\bnpm run build\b[^&;|]*/g, 'true ');
  }
  const result = spawnSync('sh', ['-ec', script], { cwd, encoding: 'utf8', env: { ...process.env, npm_config_offline: 'true', npm_config_update_notifier: 'false' } });
  assert.equal(result.status, 0, `RUN ${command}\n${result.stdout}\n${result.stderr}`);
}

/** Every path below `dir` (relative), not following symlinks. */
function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    out.push(path);
    if (entry.isDirectory()) out.push(...walk(dir, path));
  }
  return out;
}

/** Whether a path is inside a third-party package (whose own tests are not ours to remove). */
function thirdParty(path: string): boolean {
  return /(^|\/)node_modules\/(?!@deut(\/|$))/.test(path);
}

interface PackageJson {
  readonly name: string;
  readonly dependencies?: Record<string, string>;
}

test('image - the runtime stage holds product code only: no test kit, no tests, no dev dependencies', { timeout: 120_000 }, () => {
  const temp = mkdtempSync(join(tmpdir(), 'deut-image-'));
  try {
    const { root, entrypoint } = replay(temp);
    const app = root.host('.');
    const paths = walk(app);
    assert.ok(paths.length > 0, 'the runtime stage copies something');

    // 1. No test code at any path of ours.
    const offending = paths.filter((p) => !thirdParty(p) && TEST_CODE.some((r) => r.test(p)));
    assert.deepEqual(offending.slice(0, 20), [], `test code in the image (${offending.length} paths)`);

    // 2. Every symlink resolves inside the image: no dangling workspace link.
    for (const path of paths.filter((p) => lstatSync(join(app, p)).isSymbolicLink())) {
      const target = existsSync(join(app, path)) ? realpathSync(join(app, path)) : undefined;
      assert.ok(target !== undefined && !relative(root.dir, target).startsWith('..'), `${path} points nowhere in the image`);
    }

    // 3. The product packages are exactly the entrypoint's package and its @deut dependencies.
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; link?: boolean }> };
    const shipped = new Map<string, PackageJson>();
    for (const path of paths.filter((p) => /^packages\/[^/]+\/package\.json$/.test(p))) {
      const pkg = JSON.parse(readFileSync(join(app, path), 'utf8')) as PackageJson;
      shipped.set(pkg.name, pkg);
    }
    for (const pkg of shipped.values()) {
      for (const dep of Object.keys(pkg.dependencies ?? {})) {
        assert.ok(!DEV_ONLY_WORKSPACES.includes(dep), `${pkg.name} depends on the dev-only ${dep}`);
        assert.ok(lock.packages[`node_modules/${dep}`]?.dev !== true, `${pkg.name} depends on ${dep}, which the lock file has as a dev dependency`);
        if (dep.startsWith('@deut/')) assert.ok(shipped.has(dep), `${pkg.name} depends on ${dep}, which the image lacks`);
        assert.ok(existsSync(join(app, 'node_modules', dep)), `${pkg.name} depends on ${dep}, which the image's node_modules lacks`);
      }
    }
    for (const name of DEV_ONLY_WORKSPACES) assert.ok(!shipped.has(name), `${name} is in the image`);

    // 4. No dev dependency (or dev-only workspace link) in node_modules, nested ones included.
    const dev = Object.entries(lock.packages).filter(([key, entry]) => key.startsWith('node_modules/') && entry.dev === true).map(([key]) => key);
    assert.ok(dev.length > 0, 'the lock file marks dev dependencies');
    const present = [...dev, ...DEV_ONLY_WORKSPACES.map((name) => `node_modules/${name}`)].filter((key) => {
      try {
        lstatSync(join(app, key));
        return true;
      } catch {
        return false;
      }
    });
    assert.deepEqual(present, [], 'dev dependencies in the image');

    // 5. And what is left runs: the entrypoint loads every module of the CLI (its imports are static).
    assert.equal(entrypoint[0], 'node', 'the entrypoint is node <script>');
    const script = join(root.dir, entrypoint[1]!);
    const help = spawnSync(process.execPath, [script, '--help'], { cwd: app, encoding: 'utf8' });
    assert.equal(help.status, 0, `deut --help in the image: ${help.stderr}`);
    assert.match(help.stdout, /deut/);
    // docker-compose.yml runs the CLI by path too.
    for (const [path] of readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8').matchAll(/\/app\/[^\s"',\]]+\.js/g)) {
      assert.ok(existsSync(join(root.dir, path)), `docker-compose.yml runs ${path}, which the image lacks`);
    }
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
});

/** Runs a container's HEALTHCHECK on the replayed image: /app/ paths point into `root`. */
function runHealthcheck(root: Root, healthcheck: Healthcheck, env: NodeJS.ProcessEnv): { status: number | null; output: string } {
  const inImage = (text: string): string => text.replaceAll('/app/', `${root.dir}/app/`);
  const [file, ...args] = healthcheck.shell !== undefined ? ['sh', '-c', inImage(healthcheck.shell)] : healthcheck.argv!.map(inImage);
  const result = spawnSync(file!, args, { cwd: root.host('.'), env, encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test('image - its HEALTHCHECK asks deut itself, as the deut user, without curl, and tells a running daemon from none', { timeout: 180_000 }, async () => {
  const temp = mkdtempSync(join(tmpdir(), 'deut-image-health-'));
  let daemon: ChildProcess | undefined;
  try {
    const { root, entrypoint, healthcheck, user } = replay(temp);
    assert.ok(healthcheck !== undefined, 'the runtime stage has a HEALTHCHECK');
    const command = healthcheck.shell ?? healthcheck.argv!.join(' ');
    assert.doesNotMatch(command, /\b(curl|wget|nc)\b/, 'the healthcheck needs no tool the image lacks');
    assert.ok(command.includes(entrypoint[1]!), `the healthcheck runs the product (${entrypoint[1]}): ${command}`);
    // Docker runs the healthcheck as the image's user, whose home holds the control file.
    assert.equal(user, 'deut', 'the image runs (and checks its health) as deut');
    assert.match(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'), /useradd\b[^\n]*--create-home --home-dir \/home\/deut deut/);

    // A home like deut's, and no DEUT_CONTROL_FILE: the daemon and the check meet at the default path.
    const home = join(temp, 'home', 'deut');
    mkdirSync(home, { recursive: true });
    const env: NodeJS.ProcessEnv = { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: home };

    const before = runHealthcheck(root, healthcheck, env);
    assert.notEqual(before.status, 0, `no daemon: unhealthy\n${before.output}`);

    const app = root.host('.');
    const started = spawn(process.execPath, [join(root.dir, entrypoint[1]!), 'run', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--log-format', 'json'], {
      cwd: app,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    daemon = started;
    let output = '';
    started.stderr.on('data', (c: Buffer) => (output += c.toString()));
    await new Promise<void>((resolve, reject) => {
      started.stdout.on('data', (c: Buffer) => {
        output += c.toString();
        if (/; control 127\.0\.0\.1:\d+/.test(output)) resolve();
      });
      started.once('exit', (code) => reject(new Error(`deut run exited (${code}) before it started:\n${output}`)));
    });
    assert.ok(existsSync(join(home, '.deut', 'control.json')), 'deut run wrote its control file in the home');

    const during = runHealthcheck(root, healthcheck, env);
    assert.equal(during.status, 0, `a running daemon: healthy\n${during.output}`);
    assert.equal(during.output.trim(), '', 'the healthcheck keeps its output (status lists peers) to itself');

    const exited = new Promise((resolve) => started.once('exit', resolve));
    started.kill('SIGTERM');
    await exited;
    daemon = undefined;
    const afterwards = runHealthcheck(root, healthcheck, env);
    assert.notEqual(afterwards.status, 0, `a stopped daemon: unhealthy\n${afterwards.output}`);
  } finally {
    daemon?.kill('SIGKILL');
    rmSync(temp, { recursive: true, force: true });
  }
});

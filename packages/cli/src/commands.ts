/**
 * The `deut` command line (yargs): every command, its flags and its help text. Commands
 * that read a running node go through the control API ({@link callControl}); `run` is the
 * daemon; `doctor` checks its configuration without starting it; `mesh` a self-contained
 * local network; `keygen` writes a key file; `completion` prints yargs' shell script.
 */
import { existsSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { DeutError, addressKey, configError, parseAddress } from '@deut/common';
import { cryptoReady, generateKeyPair, readKeyFile, toHex, writeKeyFile } from '@deut/crypto';
import { KnownPeers } from '@deut/link';
import { CONFIG_FIELDS, envName, flagName, resolveRunConfig, type RunConfig } from './config.js';
import { callControl } from './control-client.js';
import { defaultControlFile } from './control-file.js';
import { EXIT, runDaemon } from './daemon.js';
import { formatDoctorReport, runDoctor } from './doctor.js';
import { formatAge, formatPath, printTable } from './format.js';
import { runMesh } from './mesh.js';
import { DEUT_VERSION, progressLine, type ProgressJson } from './routes.js';
import { runDhtPairScenario } from './scenario.js';

/** Help text of each `run` flag, with its default and environment variable. */
const RUN_FLAGS: Readonly<Record<keyof RunConfig, { describe: string; type: 'string' | 'boolean' | 'array' }>> = {
  listen: { describe: 'UDP address of the node port (default 0.0.0.0:7500)', type: 'string' },
  bootstrap: { describe: 'HOST:PORT of a relayer to learn peers from; repeatable', type: 'array' },
  master: { describe: 'keep a pool of tunnels (implied by --tunnels and --dht)', type: 'boolean' },
  tunnels: { describe: 'tunnels in the pool, 1..256 (default 8)', type: 'string' },
  hops: { describe: 'hops per tunnel, endpoint included, 1..7 (default 3)', type: 'string' },
  fanout: { describe: 'tunnels each message goes through, 1..8 (default 2)', type: 'string' },
  pathSelection: { describe: 'who picks the hops: master (default) or relayer (the original DEUT; weaker)', type: 'string' },
  relay: { describe: 'carry others\u2019 tunnels and serve as endpoint (default true; --no-relay to stop)', type: 'boolean' },
  dht: { describe: 'join the DHT through the tunnels (implies --master)', type: 'boolean' },
  dhtBootstrap: { describe: 'DHT contact <public key hex>@HOST:PORT to join through; repeatable', type: 'array' },
  dhtListen: { describe: 'also run a public DHT node over plain UDP at HOST:PORT (a stable bootstrap contact; not anonymous)', type: 'string' },
  dhtKeyFile: { describe: 'key file of the public DHT node (created 0600 on first start), so its contact stays the same', type: 'string' },
  dhtContactFile: { describe: 'write the public DHT node\u2019s contact string to this file (for others\u2019 --dht-bootstrap)', type: 'string' },
  keyFile: { describe: 'node key file (created 0600 on first start); absent: a fresh key each run', type: 'string' },
  knownPeers: { describe: 'known_hosts-style file of pinned peer keys (TOFU)', type: 'string' },
  allowPrivateExits: { describe: 'let endpoints send to loopback and private addresses (test meshes only)', type: 'boolean' },
  allowSameSubnet: { describe: 'allow two hops of a path in one /16 (test meshes on one host only)', type: 'boolean' },
  control: { describe: 'control API address, loopback only (default 127.0.0.1:7501)', type: 'string' },
  controlFile: { describe: 'where the control address and cookie are written, 0600 (default ~/.deut/control.json)', type: 'string' },
  metrics: { describe: 'serve Prometheus metrics at http://HOST:PORT/metrics', type: 'string' },
  logLevel: { describe: 'error, warn, info (default) or debug', type: 'string' },
  logFormat: { describe: 'pretty (default on a terminal) or json (default otherwise)', type: 'string' },
  unsafeLogs: { describe: 'show addresses, keys, tunnel ids and payloads in logs (debugging only)', type: 'boolean' },
};

interface ClientArgs {
  readonly controlFile?: string;
  readonly control?: string;
  readonly json?: boolean;
}

function clientOptions(argv: ClientArgs): { file: string; address?: string } {
  return { file: argv.controlFile ?? defaultControlFile(), ...(argv.control !== undefined ? { address: argv.control } : {}) };
}

function withClientFlags<T>(y: Argv<T>): Argv<T & ClientArgs> {
  return y
    .option('control-file', { type: 'string', describe: 'control file of the node to ask (default $DEUT_CONTROL_FILE or ~/.deut/control.json)' })
    .option('control', { type: 'string', describe: 'control API address, overriding the one in the control file' })
    .option('json', { type: 'boolean', describe: 'print JSON for scripts instead of tables' }) as Argv<T & ClientArgs>;
}

function print(json: boolean | undefined, value: unknown, human: () => void): void {
  if (json === true) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else human();
}

/** Adds `--config` and every node flag (shared by `run`, `doctor` and `scenario`, so doctor checks exactly what run would start). */
function withRunFlags<T>(y: Argv<T>): Argv<T & { config: string | undefined }> {
  let out = y.option('config', { type: 'string', describe: 'JSON file of settings (keys as below, camelCase); flags and DEUT_* variables override it' });
  for (const field of CONFIG_FIELDS) {
    const spec = RUN_FLAGS[field];
    out = out.option(flagName(field), { type: spec.type, describe: `${spec.describe} [env ${envName(field)}]`, ...(spec.type === 'array' ? { string: true } : {}) });
  }
  // The node flags are read by name in configFrom, so they need no static types here.
  return out.epilogue('Precedence: config file < environment (DEUT_*) < flags. Every bad value is reported, then the command exits 2.');
}

/** The node configuration from parsed flags, environment and file; undefined after printing every mistake. */
function configFrom(command: string, parsed: { config?: string | undefined }): RunConfig | undefined {
  const args = parsed as Readonly<Record<string, unknown>>;
  const flags: Record<string, unknown> = {};
  for (const field of CONFIG_FIELDS) if (args[field] !== undefined) flags[field] = args[field];
  const resolved = resolveRunConfig({ flags, env: process.env, configFile: parsed.config });
  if (resolved.ok) return resolved.config;
  for (const error of resolved.errors) process.stderr.write(`deut ${command}: ${error}\n`);
  return undefined;
}

/** The known-peers file named by --known-peers or $DEUT_KNOWN_PEERS (a missing file is an empty store). */
function loadPins(flag: string | undefined): KnownPeers {
  const file = flag ?? process.env.DEUT_KNOWN_PEERS;
  if (file === undefined || file === '') throw configError('NO_KNOWN_PEERS', 'name the known-peers file: --known-peers FILE (or DEUT_KNOWN_PEERS)');
  return KnownPeers.load(file);
}

/** A mistake in the command line itself (unknown flag, missing argument). */
class UsageError extends Error {}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let exitCode: number = EXIT.ok;
  const fail = (error: unknown): void => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`deut: ${message}\n`);
    exitCode = error instanceof DeutError && error.kind === 'config' ? EXIT.usage : EXIT.failure;
  };
  const cli = yargs([...argv])
    .scriptName('deut')
    .usage('$0 <command> [options]\n\nDynamic Encrypted UDP Tunnels: an anonymizing overlay of cheap multi-hop UDP tunnels.')
    .command(
      'run',
      'run a node: relays and serves as endpoint; with --master keeps tunnels; with --dht joins the DHT',
      (y) => withRunFlags(y),
      async (args) => {
        const config = configFrom('run', args);
        if (config === undefined) exitCode = EXIT.usage;
        else exitCode = await runDaemon(config);
      },
    )
    .command(
      'doctor',
      'check, without starting a node, what would stop or weaken `deut run` with the same flags, DEUT_* variables and --config',
      (y) => withRunFlags(y).option('json', { type: 'boolean', describe: 'print JSON for scripts instead of lines' }),
      async (args) => {
        const config = configFrom('doctor', args);
        if (config === undefined) {
          exitCode = EXIT.usage;
          return;
        }
        const report = await runDoctor(config);
        print(args.json, report, () => process.stdout.write(formatDoctorReport(report)));
        exitCode = report.checks.some((c) => c.level === 'fail') ? EXIT.failure : EXIT.ok;
      },
    )
    .command(
      'scenario dht-pair',
      'run a master that proves the mesh to a peer master through the DHT (used by the docker and netns meshes)',
      (y) =>
        withRunFlags(y)
          .option('name', { type: 'string', demandOption: true, describe: 'this master\u2019s name in the scenario keys' })
          .option('peer', { type: 'string', demandOption: true, describe: 'the other master\u2019s name' })
          .option('echo', { type: 'string', describe: 'also send a datagram to this UDP echo server HOST:PORT and wait for it' })
          .option('timeout-seconds', { type: 'number', default: 180, describe: 'give up after this long' }),
      async (args) => {
        const config = configFrom('scenario', args);
        let echo;
        try {
          echo = args.echo === undefined ? undefined : parseAddress(args.echo);
        } catch {
          throw configError('BAD_ECHO', `--echo: expected HOST:PORT (got ${JSON.stringify(args.echo)})`);
        }
        if (config === undefined) exitCode = EXIT.usage;
        else exitCode = await runDhtPairScenario(config, { name: args.name, peer: args.peer, echo, timeoutMs: args.timeoutSeconds * 1000 });
      },
    )
    .command(
      'status',
      'show a running node: roles, tunnels, peers, link sessions (with session ids)',
      (y) => withClientFlags(y),
      async (args) => {
        const status = (await callControl(clientOptions(args), 'GET', '/v1/status')) as Record<string, unknown>;
        print(args.json, status, () => {
          const tunnels = status.tunnels as Record<string, number>;
          const roles = status.roles as Record<string, boolean>;
          process.stdout.write(
            `deut ${String(status.version)} at udp ${String(status.address)}, up ${String(status.uptimeSeconds)} s\n` +
              `roles: ${Object.entries(roles).filter(([, on]) => on).map(([r]) => r).join(', ') || 'none'}\n` +
              `public key: ${String(status.publicKey)}\n` +
              `tunnels: ${tunnels.owned} owned (${tunnels.usable} usable, ${tunnels.building} building), ${tunnels.transit} transit, ${tunnels.endpointPorts} endpoint ports\n` +
              `peers known: ${String(status.peers)}\n` +
              `${progressLine(status.progress as ProgressJson | undefined)}\n`,
          );
          const dht = status.dht as Record<string, unknown> | null;
          if (dht !== null) process.stdout.write(`dht: id ${String(dht.id)}, ${String(dht.contacts)} contacts, ${String(dht.storedKeys)} keys stored\n`);
          process.stdout.write(
            '\nlink sessions (* marks the one this node sends on; to rule out a man in the middle, check that the peer lists the same session id):\n',
          );
          const sessions = (status.sessions as Array<Record<string, unknown>>).map((s) => ({ ...s, current: s.current === true ? '*' : '' }));
          printTable(sessions, ['current', 'peer', 'sessionId', 'initiator', 'confirmed', 'establishedAt']);
        });
      },
    )
    .command(
      'tunnels',
      'list the tunnels of a running master',
      (y) => withClientFlags(y),
      async (args) => {
        const result = (await callControl(clientOptions(args), 'GET', '/v1/tunnels')) as { owned: Array<Record<string, unknown>>; transit: number };
        print(args.json, result, () => {
          const rows = result.owned.map((t) => ({ ...t, path: formatPath(t.path as Array<{ address: string | null }>), age: formatAge(Number(t.ageMs)) }));
          printTable(rows, ['id', 'path', 'age', 'endpoint', 'rttMs', 'draining']);
          process.stdout.write(`\n${result.owned.length} owned tunnels; ${result.transit} transit tunnels through this node\n`);
        });
      },
    )
    .command(
      'peers',
      'list the relayers a running node knows',
      (y) => withClientFlags(y),
      async (args) => {
        const peers = (await callControl(clientOptions(args), 'GET', '/v1/peers')) as Array<Record<string, unknown>>;
        print(args.json, peers, () => printTable(peers, ['address', 'publicKey', 'verified', 'failures', 'avoidedUntil']));
      },
    )
    .command(
      'send <to> <data>',
      'send a datagram to HOST:PORT through a running master\u2019s tunnels',
      (y) =>
        withClientFlags(y)
          .positional('to', { type: 'string', demandOption: true, describe: 'destination HOST:PORT (an IP address)' })
          .positional('data', { type: 'string', demandOption: true, describe: 'payload, as text' })
          .option('wait-reply', { type: 'boolean', describe: 'wait for the first datagram back from the destination and print it' })
          .option('timeout', { type: 'number', default: 5000, describe: 'how long to wait, in ms' }),
      async (args) => {
        const result = (await callControl(clientOptions(args), 'POST', '/v1/send', { to: args.to, data: args.data, waitReply: args.waitReply === true, timeoutMs: args.timeout })) as {
          sent: number;
          reply?: { text: string | null; hex: string };
        };
        print(args.json, result, () => {
          process.stdout.write(`sent ${result.sent} bytes\n`);
          if (result.reply !== undefined) process.stdout.write(`reply: ${result.reply.text ?? `(hex) ${result.reply.hex}`}\n`);
        });
      },
    )
    .command('dht', 'store and find values in the DHT through a running node\u2019s tunnels', (y) =>
      withClientFlags(y)
        .command(
          'put <key> <value>',
          'store VALUE under KEY at the 20 closest nodes',
          (z) => z.positional('key', { type: 'string', demandOption: true }).positional('value', { type: 'string', demandOption: true }),
          async (args) => {
            const result = (await callControl(clientOptions(args), 'POST', '/v1/dht/put', { key: args.key, value: args.value })) as { stored: number; asked: number };
            print(args.json, result, () => process.stdout.write(`stored at ${result.stored} of ${result.asked} nodes\n`));
            if (result.stored === 0) {
              process.stderr.write(`deut dht put: stored nowhere${result.asked === 0 ? ': the node knows no DHT node (was it started with --dht-bootstrap?)' : ''}\n`);
              exitCode = EXIT.failure;
            }
          },
        )
        .command(
          'get <key>',
          'find the values stored under KEY',
          (z) => z.positional('key', { type: 'string', demandOption: true }),
          async (args) => {
            const result = (await callControl(clientOptions(args), 'POST', '/v1/dht/get', { key: args.key })) as { values: Array<{ text: string | null; hex: string }> };
            print(args.json, result, () => {
              if (result.values.length === 0) process.stdout.write('no value found\n');
              for (const v of result.values) process.stdout.write(`${v.text ?? `(hex) ${v.hex}`}\n`);
            });
            if (result.values.length === 0) exitCode = EXIT.failure;
          },
        )
        .command(
          'find-node <id>',
          'find the 20 nodes closest to a 64-hex-digit id',
          (z) => z.positional('id', { type: 'string', demandOption: true }),
          async (args) => {
            const contacts = (await callControl(clientOptions(args), 'POST', '/v1/dht/find-node', { id: args.id })) as Array<Record<string, unknown>>;
            print(args.json, contacts, () => printTable(contacts, ['id', 'address']));
          },
        )
        .demandCommand(1, 'name a dht command: put, get or find-node'),
    )
    .command(
      'mesh',
      'run a self-contained local mesh on loopback: tunnels, DHT put/get through them, and what each party saw',
      (y) =>
        y
          .option('relays', { type: 'number', default: 8, describe: 'relayer nodes' })
          .option('masters', { type: 'number', default: 3, describe: 'master nodes running the DHT' })
          .option('processes', { type: 'boolean', default: false, describe: 'run each node as its own `deut run` process' }),
      async (args) => {
        exitCode = await runMesh({ relays: args.relays, masters: args.masters, processes: args.processes });
      },
    )
    .command('pins', 'list or remove pinned peer keys in a known-peers file (like ssh-keygen -R)', (y) =>
      y
        .option('known-peers', { type: 'string', describe: 'the known-peers file (default $DEUT_KNOWN_PEERS)' })
        .option('json', { type: 'boolean', describe: 'print JSON for scripts instead of a table' })
        .command(
          'list',
          'list every pin: address, public key (hex), line in the file',
          (z) => z,
          (args) => {
            const store = loadPins(args.knownPeers);
            const pins = store.entries().map(([address, key]) => ({ address, publicKey: toHex(key), at: store.location(address) ?? '' }));
            print(args.json, pins, () => {
              if (pins.length === 0) process.stdout.write(`no pins in ${store.file ?? ''}\n`);
              else printTable(pins, ['address', 'publicKey', 'at']);
            });
          },
        )
        .command(
          'remove <address>',
          'forget the pin of HOST:PORT, after its key changed on purpose (stop the daemon first: a running one keeps its pins and writes them back)',
          (z) => z.positional('address', { type: 'string', demandOption: true, describe: 'HOST:PORT as the file lists it' }),
          (args) => {
            const store = loadPins(args.knownPeers);
            let key: string;
            try {
              key = addressKey(parseAddress(args.address));
            } catch {
              throw configError('BAD_ADDRESS', `expected HOST:PORT with an IP address (got ${JSON.stringify(args.address)})`);
            }
            if (!store.forget(key)) throw configError('NO_SUCH_PIN', `${store.file ?? ''} has no pin for ${key}`);
            process.stdout.write(`removed the pin of ${key} from ${store.file ?? ''}\n`);
          },
        )
        .demandCommand(1, 'name a pins command: list or remove'),
    )
    .command('key', 'show a node key file', (y) =>
      y
        .command(
          'show',
          'print the public key (hex) of an existing key file, as peers and --dht-bootstrap contacts name it',
          (z) => z.option('key-file', { type: 'string', demandOption: true, describe: 'the key file' }),
          async (args) => {
            await cryptoReady();
            const keyPair = await readKeyFile(args.keyFile);
            process.stdout.write(`${toHex(keyPair.publicKey)}\n`);
          },
        )
        .demandCommand(1, 'name a key command: show'),
    )
    .command(
      'keygen',
      'write a new node key file (0600) and print its public key',
      (y) => y.option('key-file', { type: 'string', demandOption: true, describe: 'where to write it' }).option('force', { type: 'boolean', describe: 'overwrite an existing file' }),
      async (args) => {
        await cryptoReady();
        if (existsSync(args.keyFile) && args.force !== true) throw new DeutError('config', 'KEY_FILE_EXISTS', `${args.keyFile} exists; use --force to replace it`);
        const keyPair = generateKeyPair();
        await writeKeyFile(args.keyFile, keyPair, { overwrite: args.force === true });
        process.stdout.write(`${toHex(keyPair.publicKey)}\n`);
      },
    )
    // yargs' own script: it asks `deut --get-yargs-completions` at each TAB, so it follows every command and flag.
    .completion('completion', 'print a bash/zsh completion script: deut completion >> ~/.bashrc (or ~/.zshrc)')
    .demandCommand(1, 'name a command (deut --help lists them)')
    .strict()
    .help()
    .alias('help', 'h')
    .version(DEUT_VERSION)
    .wrap(process.stdout.isTTY ? Math.min(100, process.stdout.columns) : null)
    .fail((message, error) => {
      // Throwing stops yargs: returning would let it run the command anyway.
      throw error ?? new UsageError(message);
    });
  try {
    await cli.parseAsync();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`deut: ${error.message}\nRun "deut --help" or "deut <command> --help" for usage.\n`);
      return EXIT.usage;
    }
    fail(error);
  }
  return exitCode;
}

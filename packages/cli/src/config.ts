/**
 * Configuration of `deut run` (README.md): a JSON file < environment (`DEUT_*`) < flags.
 * Every field is parsed from whichever source gave it last and checked on its own, so a
 * user sees one clear line per mistake, naming the source ("--tunnels", "DEUT_TUNNELS",
 * "config file field tunnels"), and the command exits 2 without a stack trace.
 *
 * Why not yargs' `.env()` and `.config()`: they merge the three sources before validation, so
 * a bad value no longer says where it came from, and yargs stops at the first one; here every
 * source goes through the same per-field parser, and a user fixes all mistakes in one go.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseAddress, type UdpAddress } from '@deut/common';
import { parseDhtContact } from '@deut/dht';
import { isLoopbackIp } from './control.js';
import { defaultControlFile } from './control-file.js';
import type { LogFormat, LogLevel } from './logging.js';

/** Everything `deut run` needs, validated. */
export interface RunConfig {
  readonly listen: UdpAddress;
  readonly bootstrap: readonly UdpAddress[];
  readonly master: boolean;
  readonly tunnels: number;
  readonly hops: number;
  readonly fanout: number;
  readonly pathSelection: 'master' | 'relayer';
  readonly relay: boolean;
  readonly dht: boolean;
  readonly dhtBootstrap: readonly string[];
  readonly dhtListen: UdpAddress | undefined;
  readonly dhtKeyFile: string | undefined;
  readonly dhtContactFile: string | undefined;
  readonly keyFile: string | undefined;
  readonly knownPeers: string | undefined;
  readonly allowPrivateExits: boolean;
  readonly allowSameSubnet: boolean;
  readonly control: UdpAddress;
  readonly controlFile: string;
  readonly metrics: UdpAddress | undefined;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat | undefined;
  readonly unsafeLogs: boolean;
}

/** The default port of the node (UDP) and of the control API (TCP, loopback). */
export const DEFAULT_NODE_PORT = 7500;
export const DEFAULT_CONTROL_PORT = 7501;


type Kind = 'address' | 'addresses' | 'int' | 'bool' | 'string' | 'enum' | 'loopback' | 'contacts';

interface FieldSpec {
  readonly kind: Kind;
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
}

/** Every field of RunConfig: its type and range. Flags are the kebab-case of the names. */
const FIELDS: Readonly<Record<Exclude<keyof RunConfig, never>, FieldSpec>> = {
  listen: { kind: 'address' },
  bootstrap: { kind: 'addresses' },
  master: { kind: 'bool' },
  tunnels: { kind: 'int', min: 1, max: 256 },
  hops: { kind: 'int', min: 1, max: 7 },
  fanout: { kind: 'int', min: 1, max: 8 },
  pathSelection: { kind: 'enum', values: ['master', 'relayer'] },
  relay: { kind: 'bool' },
  dht: { kind: 'bool' },
  dhtBootstrap: { kind: 'contacts' },
  dhtListen: { kind: 'address' },
  dhtKeyFile: { kind: 'string' },
  dhtContactFile: { kind: 'string' },
  keyFile: { kind: 'string' },
  knownPeers: { kind: 'string' },
  allowPrivateExits: { kind: 'bool' },
  allowSameSubnet: { kind: 'bool' },
  control: { kind: 'loopback' },
  controlFile: { kind: 'string' },
  metrics: { kind: 'address' },
  logLevel: { kind: 'enum', values: ['error', 'warn', 'info', 'debug'] },
  logFormat: { kind: 'enum', values: ['pretty', 'json'] },
  unsafeLogs: { kind: 'bool' },
};

/** The names of the config fields, which are also the config file's keys. */
export const CONFIG_FIELDS = Object.keys(FIELDS) as Array<keyof RunConfig>;

/** kebab-case flag name of a field: pathSelection → path-selection. */
export function flagName(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Environment variable of a field: pathSelection → DEUT_PATH_SELECTION. */
export function envName(field: string): string {
  return `DEUT_${flagName(field).replace(/-/g, '_').toUpperCase()}`;
}

/** A value and where it came from, for error messages. */
interface Sourced {
  readonly value: unknown;
  readonly source: string;
}

/** The outcome of {@link resolveRunConfig}: a config, or one message per bad field. */
export type ConfigResult = { readonly ok: true; readonly config: RunConfig } | { readonly ok: false; readonly errors: readonly string[] };

/** Inputs of {@link resolveRunConfig}. */
export interface ConfigSources {
  /** Flags as parsed (only those given); keys are camelCase field names. */
  readonly flags: Readonly<Record<string, unknown>>;
  readonly env: NodeJS.ProcessEnv;
  /** Path of a JSON config file, if any (`--config` or `DEUT_CONFIG`). */
  readonly configFile?: string | undefined;
}

/**
 * Merges file < environment < flags and validates every field. Never throws for user
 * mistakes: they come back as messages.
 */
export function resolveRunConfig(sources: ConfigSources): ConfigResult {
  const errors: string[] = [];
  const given = new Map<keyof RunConfig, Sourced>();

  const filePath = sources.configFile ?? sources.env.DEUT_CONFIG;
  if (filePath !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(filePath, 'utf8'));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      errors.push(`config file ${filePath}: ${code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'not readable (permissions)' : `not valid JSON (${(error as Error).message})`}`);
    }
    if (parsed !== undefined) {
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        errors.push(`config file ${filePath}: must be a JSON object of settings`);
      } else {
        for (const [key, value] of Object.entries(parsed)) {
          if (!Object.hasOwn(FIELDS, key)) {
            errors.push(`config file ${filePath}: unknown field "${key}" (known: ${CONFIG_FIELDS.join(', ')})`);
            continue;
          }
          given.set(key as keyof RunConfig, { value, source: `config file field ${key}` });
        }
      }
    }
  }
  for (const field of CONFIG_FIELDS) {
    const name = envName(field);
    const value = sources.env[name];
    if (value !== undefined && value !== '') given.set(field, { value, source: name });
  }
  for (const field of CONFIG_FIELDS) {
    if (sources.flags[field] !== undefined) given.set(field, { value: sources.flags[field], source: `--${flagName(field)}` });
  }

  const values: Partial<Record<keyof RunConfig, unknown>> = {};
  for (const [field, sourced] of given) {
    const parsed = parseField(FIELDS[field], sourced.value);
    if (parsed.ok) values[field] = parsed.value;
    else errors.push(`${sourced.source}: ${parsed.error} (got ${JSON.stringify(sourced.value)})`);
  }
  const master = (values.master as boolean | undefined) ?? (values.tunnels !== undefined || values.dht === true);
  if (values.dht === true && values.master === false) errors.push('--dht needs the master role: the DHT runs through tunnels (drop --no-master)');
  if (values.relay === false && !master) errors.push('--no-relay leaves this node no role: add --master (or --tunnels N, or --dht) to keep tunnels, or drop --no-relay to relay');
  if (errors.length > 0) return { ok: false, errors };

  const config: RunConfig = {
    listen: (values.listen as UdpAddress | undefined) ?? { host: '0.0.0.0', port: DEFAULT_NODE_PORT },
    bootstrap: (values.bootstrap as UdpAddress[] | undefined) ?? [],
    master,
    tunnels: (values.tunnels as number | undefined) ?? 8,
    hops: (values.hops as number | undefined) ?? 3,
    fanout: (values.fanout as number | undefined) ?? 2,
    pathSelection: (values.pathSelection as 'master' | 'relayer' | undefined) ?? 'master',
    relay: (values.relay as boolean | undefined) ?? true,
    dht: (values.dht as boolean | undefined) ?? false,
    dhtBootstrap: (values.dhtBootstrap as string[] | undefined) ?? [],
    dhtListen: values.dhtListen as UdpAddress | undefined,
    dhtKeyFile: values.dhtKeyFile as string | undefined,
    dhtContactFile: values.dhtContactFile as string | undefined,
    keyFile: values.keyFile as string | undefined,
    knownPeers: values.knownPeers as string | undefined,
    allowPrivateExits: (values.allowPrivateExits as boolean | undefined) ?? false,
    allowSameSubnet: (values.allowSameSubnet as boolean | undefined) ?? false,
    control: (values.control as UdpAddress | undefined) ?? { host: '127.0.0.1', port: DEFAULT_CONTROL_PORT },
    controlFile: (values.controlFile as string | undefined) ?? defaultControlFile(),
    metrics: values.metrics as UdpAddress | undefined,
    logLevel: (values.logLevel as LogLevel | undefined) ?? 'info',
    logFormat: values.logFormat as LogFormat | undefined,
    unsafeLogs: (values.unsafeLogs as boolean | undefined) ?? false,
  };
  return { ok: true, config };
}

/**
 * The host of `HOST:PORT` when it is a name rather than an IP literal (`localhost:7500`,
 * `relay.example:7500`), else undefined.
 *
 * Every address flag takes IP literals only, and says so, rather than resolving names:
 * - a name resolved through the system resolver tells the resolver (and whoever watches
 *   the network) which nodes this one talks to, a leak an anonymizing overlay must not
 *   make on its own; `--bootstrap` and `--dht-bootstrap` are exactly those nodes;
 * - `localhost` resolves to 127.0.0.1 or to ::1 depending on the resolver's order, so a
 *   `--listen localhost:7500` and a peer's `--bootstrap localhost:7500` could disagree;
 * - a name resolved once at start goes stale silently when its address changes.
 */
function hostnameIn(text: string): string | undefined {
  const match = /^([^[\]:@\s]+):\d+$/.exec(text);
  const host = match?.[1];
  return host !== undefined && /[A-Za-z_-]/.test(host) && isIP(host) === 0 ? host : undefined;
}

function hostnameError(host: string): string {
  return `"${host}" is a host name, and deut takes IP addresses only (it resolves no names): write an IP literal such as 127.0.0.1:7500 or [::1]:7500`;
}

type Parsed = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };
const ok = (value: unknown): Parsed => ({ ok: true, value });
const bad = (error: string): Parsed => ({ ok: false, error });

/** Parses one value of a field. */
function parseField(spec: FieldSpec, raw: unknown): Parsed {
  // One comma-separated form everywhere: `--bootstrap a,b` as a flag means what DEUT_BOOTSTRAP=a,b does.
  const split = (item: unknown): unknown[] => (typeof item === 'string' ? item.split(',').map((s) => s.trim()).filter((s) => s !== '') : [item]);
  const list = (): unknown[] => (Array.isArray(raw) ? raw.flatMap(split) : split(raw));
  switch (spec.kind) {
    case 'address':
    case 'loopback': {
      if (typeof raw !== 'string') return bad('expected HOST:PORT');
      const name = hostnameIn(raw);
      if (name !== undefined) return bad(hostnameError(name));
      let address: UdpAddress;
      try {
        // Port 0 asks the system for a free port (tests, meshes); parseAddress wants 1..65535.
        const any = /:0$/.test(raw);
        address = parseAddress(any ? `${raw.slice(0, -1)}1` : raw);
        if (any) address = { host: address.host, port: 0 };
      } catch {
        return bad('expected HOST:PORT with an IP address (IPv6 in brackets) and a port 0..65535');
      }
      if (spec.kind === 'loopback' && !isLoopbackIp(address.host)) return bad('must be a loopback address (127.0.0.0/8 or [::1]): the control API is never exposed');
      return ok(address);
    }
    case 'addresses': {
      const out: UdpAddress[] = [];
      for (const item of list()) {
        const one = parseField({ kind: 'address' }, item);
        if (!one.ok) return bad(`${String(item)}: ${one.error}`);
        out.push(one.value as UdpAddress);
      }
      return ok(out);
    }
    case 'contacts': {
      const out: string[] = [];
      for (const item of list()) {
        if (typeof item !== 'string') return bad('expected <public key hex>@HOST:PORT');
        const name = hostnameIn(item.slice(item.indexOf('@') + 1));
        if (item.includes('@') && name !== undefined) return bad(`${item}: ${hostnameError(name)}`);
        try {
          parseDhtContact(item);
        } catch (error) {
          return bad((error as Error).message);
        }
        out.push(item);
      }
      return ok(out);
    }
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isInteger(n) || n < (spec.min ?? -Infinity) || n > (spec.max ?? Infinity)) return bad(`expected an integer ${spec.min}..${spec.max}`);
      return ok(n);
    }
    case 'bool': {
      if (typeof raw === 'boolean') return ok(raw);
      if (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw)) return ok(true);
      if (typeof raw === 'string' && /^(0|false|no|off)$/i.test(raw)) return ok(false);
      return bad('expected true or false');
    }
    case 'string':
      return typeof raw === 'string' && raw !== '' ? ok(raw) : bad('expected a non-empty string');
    case 'enum':
      return typeof raw === 'string' && (spec.values ?? []).includes(raw) ? ok(raw) : bad(`expected one of ${(spec.values ?? []).join(', ')}`);
  }
}

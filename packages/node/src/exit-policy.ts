/**
 * The endpoint's exit policy (PROTOCOL.md §5.5, SECURITY.md §3.10): which
 * destinations a master may reach through an endpoint, and how much it may send. An
 * endpoint is not an open UDP proxy (RFC 9298 §7): without this, any master could use it to
 * reach the endpoint's own network, itself, or to amplify traffic at a victim.
 */
import { Counters, KeyedRateLimiter, addressKey, systemClock } from '@deut/common';
import type { CounterSnapshot } from '@deut/common';
import type { Clock, RateLimit, UdpAddress } from '@deut/common';
import { ADDRESS_FAMILY_V4, formatIp, parseIp } from '@deut/wire';
import { configError } from './errors.js';

/** Every kind of IP an address literal can be; anything but `public` is refused by default. */
export const ADDRESS_CLASSES = ['public', 'loopback', 'private', 'link-local', 'multicast', 'broadcast', 'unspecified', 'reserved', 'invalid'] as const;

/** One of {@link ADDRESS_CLASSES}. */
export type AddressClass = (typeof ADDRESS_CLASSES)[number];

/** Every reason `checkDestination` refuses an address for: metrics list them all at 0. */
export const EXIT_REFUSALS = [...ADDRESS_CLASSES.filter((c): c is Exclude<AddressClass, 'public'> => c !== 'public'), 'own-address', 'port-zero'] as const;

/** Why `checkDestination` refused an address. */
export type ExitRefusal = (typeof EXIT_REFUSALS)[number];

/** Why `admitPacket` or `reservePort` refused. */
export type ExitLimitRefusal = 'tunnel-packets' | 'tunnel-bytes' | 'master-packets' | 'master-bytes' | 'port-cap';

/** Packet and byte rates of one token-bucket pair. */
export interface TrafficLimit {
  /** Datagrams per second and burst. */
  readonly packets: RateLimit;
  /** Datagram payload bytes per second and burst; the burst should hold a 65,507-byte datagram. */
  readonly bytes: RateLimit;
}

/** Default per-tunnel limit: 200 datagrams/s (burst 400), 256 KiB/s (burst 512 KiB). */
export const DEFAULT_TUNNEL_LIMIT: TrafficLimit = {
  packets: { perSecond: 200, burst: 400 },
  bytes: { perSecond: 256 * 1024, burst: 512 * 1024 },
};

/** Default per-master limit: 1000 datagrams/s (burst 2000), 1 MiB/s (burst 2 MiB). */
export const DEFAULT_MASTER_LIMIT: TrafficLimit = {
  packets: { perSecond: 1000, burst: 2000 },
  bytes: { perSecond: 1024 * 1024, burst: 2 * 1024 * 1024 },
};

/** Default cap on endpoint ports held at once. */
export const DEFAULT_MAX_EXIT_PORTS = 1024;

/** Options of an ExitPolicy. */
export interface ExitPolicyOptions {
  /**
   * Allow loopback, private and link-local destinations, for test meshes on 127.0.0.0/8 or
   * a LAN. Multicast, broadcast, unspecified, reserved and own addresses stay refused.
   * @default false
   */
  readonly allowPrivateExits?: boolean;
  /**
   * The node's own addresses, refused even with `allowPrivateExits`: `host` refuses every
   * port of that IP, `host:port` or `[v6]:port` only that port (so that nodes of a test
   * mesh sharing 127.0.0.1 can still reach each other). Give concrete IPs: a wildcard bind
   * (0.0.0.0, ::) should be expanded by the caller to the interfaces' addresses.
   * Endpoint ports bound later are added with `addOwnAddress`.
   * @default []
   */
  readonly ownAddresses?: readonly string[];
  /**
   * Rate of datagrams sent for one tunnel.
   * @default DEFAULT_TUNNEL_LIMIT (200/s burst 400; 256 KiB/s burst 512 KiB)
   */
  readonly perTunnel?: TrafficLimit;
  /**
   * Rate of datagrams sent for one master over all its tunnels.
   * @default DEFAULT_MASTER_LIMIT (1000/s burst 2000; 1 MiB/s burst 2 MiB)
   */
  readonly perMaster?: TrafficLimit;
  /**
   * Endpoint ports held at once.
   * @default DEFAULT_MAX_EXIT_PORTS (1024)
   */
  readonly maxPorts?: number;
  /**
   * Time source of the rate limits.
   * @default systemClock
   */
  readonly clock?: Clock;
}

/** Counter names of {@link ExitPolicy.stats}: one per refusal, and releases of a port never reserved. */
export type ExitPolicyCounter = ExitRefusal | ExitLimitRefusal | 'port-release-unheld';

/** Refusal counters and occupancy of an ExitPolicy. */
export interface ExitPolicyStats {
  /** Endpoint ports held. */
  readonly portsHeld: number;
  /** One counter per ExitRefusal or ExitLimitRefusal seen. */
  readonly counters: CounterSnapshot<ExitPolicyCounter>;
}

/** An IP literal as parsed by @deut/wire: family and 16 bytes, IPv4 as IPv4-mapped. */
interface ParsedIp {
  readonly family: number;
  readonly bytes: Uint8Array;
}

function parse(host: string): ParsedIp | undefined {
  if (typeof host !== 'string') return undefined;
  try {
    return parseIp(host);
  } catch {
    return undefined;
  }
}

/** true when the top `length` bits of the u32 `ip` equal those of `prefix`. */
function inV4(ip: number, prefix: number, length: number): boolean {
  return ip >>> (32 - length) === prefix >>> (32 - length);
}

/** a.b.c.d as a u32. */
function v4(a: number, b: number, c: number, d: number): number {
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** The u32 in `bytes[offset..offset+4)`. */
function readV4(bytes: Uint8Array, offset: number): number {
  return v4(bytes[offset] ?? 0, bytes[offset + 1] ?? 0, bytes[offset + 2] ?? 0, bytes[offset + 3] ?? 0);
}

/** IPv4 special-purpose ranges (RFC 6890 and successors) other than loopback..broadcast. */
const V4_RESERVED: readonly [number, number][] = [
  [v4(0, 0, 0, 0), 8], // "this network"
  [v4(240, 0, 0, 0), 4], // future use
  [v4(192, 0, 0, 0), 24], // IETF protocol assignments
  [v4(192, 0, 2, 0), 24], // TEST-NET-1
  [v4(198, 18, 0, 0), 15], // benchmarking
  [v4(198, 51, 100, 0), 24], // TEST-NET-2
  [v4(203, 0, 113, 0), 24], // TEST-NET-3
];

function classifyV4(ip: number): AddressClass {
  if (ip === 0) return 'unspecified';
  if (ip === 0xffffffff) return 'broadcast';
  if (inV4(ip, v4(127, 0, 0, 0), 8)) return 'loopback';
  if (
    inV4(ip, v4(10, 0, 0, 0), 8) ||
    inV4(ip, v4(172, 16, 0, 0), 12) ||
    inV4(ip, v4(192, 168, 0, 0), 16) ||
    inV4(ip, v4(100, 64, 0, 0), 10)
  ) {
    return 'private';
  }
  if (inV4(ip, v4(169, 254, 0, 0), 16)) return 'link-local';
  if (inV4(ip, v4(224, 0, 0, 0), 4)) return 'multicast';
  if (V4_RESERVED.some(([prefix, length]) => inV4(ip, prefix, length))) return 'reserved';
  return 'public';
}

/** true when the first `length` bits of the 16 bytes equal those of `prefix` (given in bytes). */
function inV6(ip: Uint8Array, prefix: readonly number[], length: number): boolean {
  for (let bit = 0; bit < length; bit += 8) {
    const mask = length - bit >= 8 ? 0xff : (0xff << (8 - (length - bit))) & 0xff;
    if (((ip[bit / 8] ?? 0) & mask) !== ((prefix[bit / 8] ?? 0) & mask)) return false;
  }
  return true;
}

function classifyV6(ip: Uint8Array): AddressClass {
  if (ip.every((b) => b === 0)) return 'unspecified';
  if (ip.subarray(0, 15).every((b) => b === 0) && ip[15] === 1) return 'loopback';
  // NAT64 well-known prefix (RFC 6052): a NAT64 gateway on the endpoint's network would
  // carry 64:ff9b::127.0.0.1 to its own loopback, so the embedded IPv4 address decides.
  if (inV6(ip, [0, 0x64, 0xff, 0x9b], 96)) return classifyV4(readV4(ip, 12));
  // Local-use NAT64 (RFC 8215): translated by the local network only.
  if (inV6(ip, [0, 0x64, 0xff, 0x9b, 0, 1], 48)) return 'private';
  if (inV6(ip, [0xfe, 0x80], 10)) return 'link-local';
  if (inV6(ip, [0xfc], 7)) return 'private';
  if (inV6(ip, [0xff], 8)) return 'multicast';
  if (
    inV6(ip, [0x20, 0x01, 0x0d, 0xb8], 32) || // documentation
    inV6(ip, [0x3f, 0xff], 20) || // documentation (RFC 9637)
    inV6(ip, [0x20, 0x01, 0, 0x02, 0, 0], 48) // benchmarking
  ) {
    return 'reserved';
  }
  // 6to4 (RFC 3056): the relay sends it on, over IPv4, to the embedded address.
  if (inV6(ip, [0x20, 0x02], 16)) return classifyV4(readV4(ip, 2));
  // Outside global unicast 2000::/3 nothing else is assigned for the public Internet
  // (IPv4-compatible ::/96, discard-only 100::/64, deprecated site-local fec0::/10, ...).
  if (!inV6(ip, [0x20], 3)) return 'reserved';
  return 'public';
}

function classifyParsed(ip: ParsedIp): AddressClass {
  return ip.family === ADDRESS_FAMILY_V4 ? classifyV4(readV4(ip.bytes, 12)) : classifyV6(ip.bytes);
}

/**
 * Classifies an IP literal: IPv4 dotted decimal, or IPv6 text in any RFC 4291 form without a
 * zone. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is its IPv4 address, and so are the
 * IPv4 addresses embedded in NAT64 (64:ff9b::/96) and 6to4 (2002::/16) when not public.
 * Host names, zones, leading zeros and anything else that is not an IP literal are `invalid`.
 */
export function classifyAddress(host: string): AddressClass {
  const ip = parse(host);
  return ip === undefined ? 'invalid' : classifyParsed(ip);
}

/** Classes `allowPrivateExits` lets through. */
const PRIVATE_CLASSES: ReadonlySet<AddressClass> = new Set<AddressClass>(['loopback', 'private', 'link-local']);

/**
 * Decides which destinations an endpoint sends to and how much, per tunnel and per master,
 * and caps the ports it holds (§5.5). Pure bookkeeping: the caller binds and sends.
 */
export class ExitPolicy {
  readonly #allowPrivate: boolean;
  /** Canonical hosts refused on every port. */
  readonly #ownHosts = new Set<string>();
  /** addressKey of canonical host:port pairs refused. */
  readonly #ownEndpoints = new Set<string>();
  readonly #tunnelPackets: KeyedRateLimiter;
  readonly #tunnelBytes: KeyedRateLimiter;
  readonly #masterPackets: KeyedRateLimiter;
  readonly #masterBytes: KeyedRateLimiter;
  readonly #maxPorts: number;
  readonly #counters = new Counters<ExitPolicyCounter>();
  #portsHeld = 0;

  /** @throws DeutError (kind `config`) `BAD_OPTION` for a limit or own address that does not parse */
  constructor(options: ExitPolicyOptions = {}) {
    this.#allowPrivate = options.allowPrivateExits ?? false;
    for (const entry of options.ownAddresses ?? []) this.addOwnAddress(entry);
    this.#maxPorts = options.maxPorts ?? DEFAULT_MAX_EXIT_PORTS;
    if (!Number.isInteger(this.#maxPorts) || this.#maxPorts < 0) throw configError('BAD_OPTION', 'maxPorts must be a non-negative integer');
    const tunnel = checkLimit('perTunnel', options.perTunnel ?? DEFAULT_TUNNEL_LIMIT);
    const master = checkLimit('perMaster', options.perMaster ?? DEFAULT_MASTER_LIMIT);
    const clock = options.clock ?? systemClock;
    const now = (): number => clock.now();
    // Each tunnel holds a port, so live tunnels (and their masters) number at most maxPorts;
    // the slack keeps buckets of recently closed tunnels, which could otherwise be
    // reopened with a full burst.
    const maxKeys = Math.max(4096, 4 * this.#maxPorts);
    this.#tunnelPackets = new KeyedRateLimiter(tunnel.packets, now, maxKeys);
    this.#tunnelBytes = new KeyedRateLimiter(tunnel.bytes, now, maxKeys);
    this.#masterPackets = new KeyedRateLimiter(master.packets, now, maxKeys);
    this.#masterBytes = new KeyedRateLimiter(master.bytes, now, maxKeys);
  }

  /**
   * Adds an own address: `host` (every port) or `host:port` / `[v6]:port`, or a UdpAddress
   * (that port only), e.g. when an endpoint binds a port for a new tunnel.
   * @throws DeutError (kind `config`) `BAD_OPTION` if it is not an IP literal with an optional port
   */
  addOwnAddress(entry: string | UdpAddress): void {
    const own = parseOwn(entry);
    if (own.port === undefined) this.#ownHosts.add(own.host);
    else this.#ownEndpoints.add(addressKey({ host: own.host, port: own.port }));
  }

  /**
   * Removes an own address added in the same form, e.g. when the endpoint frees its port.
   * @throws DeutError (kind `config`) `BAD_OPTION` as `addOwnAddress`
   */
  deleteOwnAddress(entry: string | UdpAddress): void {
    const own = parseOwn(entry);
    if (own.port === undefined) this.#ownHosts.delete(own.host);
    else this.#ownEndpoints.delete(addressKey({ host: own.host, port: own.port }));
  }

  /**
   * Whether the endpoint may send to `address`; every refusal is counted under its reason.
   * Multicast, broadcast, unspecified, reserved and invalid addresses, own addresses and
   * port 0 are refused whatever the options.
   */
  checkDestination(address: UdpAddress): 'ok' | ExitRefusal {
    const verdict = this.#verdict(address);
    if (verdict !== 'ok') this.#counters.add(verdict);
    return verdict;
  }

  /**
   * Takes `bytes` and one datagram from the tunnel's and then the master's budgets; false
   * (counted) when either is spent. The master's budget is untouched when the tunnel's
   * refuses, so one spent tunnel cannot drain its master's other tunnels.
   * @param tunnelKey - the tunnel the datagram came down
   * @param masterKey - whatever identifies the tunnel's master to this endpoint
   * @param bytes - the datagram's payload length
   * @throws RangeError if `bytes` is not a non-negative integer (a NaN would poison a bucket open)
   */
  admitPacket(tunnelKey: string, masterKey: string, bytes: number): boolean {
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`admitPacket: ${bytes} is not a byte count`);
    // A later bucket refusing leaves the earlier one charged for a datagram not sent:
    // KeyedRateLimiter cannot refund, and erring towards refusal is the safe side.
    let refusal: ExitLimitRefusal | undefined;
    if (!this.#tunnelPackets.take(tunnelKey)) refusal = 'tunnel-packets';
    else if (!this.#tunnelBytes.take(tunnelKey, bytes)) refusal = 'tunnel-bytes';
    else if (!this.#masterPackets.take(masterKey)) refusal = 'master-packets';
    else if (!this.#masterBytes.take(masterKey, bytes)) refusal = 'master-bytes';
    if (refusal === undefined) return true;
    this.#counters.add(refusal);
    return false;
  }

  /**
   * Forgets a tunnel's buckets once the tunnel is gone. Tunnels come and go all day; without
   * this their buckets would sit in the maps until maxKeys forced a sweep (found by the
   * soak test: +548 buckets in 15 simulated minutes).
   */
  forgetTunnel(tunnelKey: string): void {
    this.#tunnelPackets.forget(tunnelKey);
    this.#tunnelBytes.forget(tunnelKey);
  }

  /** Claims one endpoint port before binding it; false (counted) when `maxPorts` are held. */
  reservePort(): boolean {
    if (this.#portsHeld >= this.#maxPorts) {
      this.#counters.add('port-cap');
      return false;
    }
    this.#portsHeld++;
    return true;
  }

  /**
   * Returns a port claimed by `reservePort`. A release with none held is a caller bug; it is
   * counted (`port-release-unheld`) rather than thrown, since it comes from teardown paths.
   */
  releasePort(): void {
    if (this.#portsHeld === 0) {
      this.#counters.add('port-release-unheld');
      return;
    }
    this.#portsHeld--;
  }

  /** Endpoint ports held now. */
  get portsHeld(): number {
    return this.#portsHeld;
  }

  /** Refusals by reason and ports held, for tests and metrics. */
  stats(): ExitPolicyStats {
    return { portsHeld: this.#portsHeld, counters: this.#counters.snapshot() };
  }

  #verdict(address: UdpAddress): 'ok' | ExitRefusal {
    const { port } = address;
    if (!Number.isInteger(port) || port < 0 || port > 65535) return 'invalid';
    const ip = parse(address.host);
    if (ip === undefined) return 'invalid';
    if (port === 0) return 'port-zero';
    const kind = classifyParsed(ip);
    if (kind !== 'public' && !(this.#allowPrivate && PRIVATE_CLASSES.has(kind))) return kind;
    const host = formatIp(ip.bytes);
    if (this.#ownHosts.has(host) || this.#ownEndpoints.has(addressKey({ host, port }))) return 'own-address';
    return 'ok';
  }
}

/** Parses an own-address entry into a canonical host and optional port. */
function parseOwn(entry: string | UdpAddress): { host: string; port: number | undefined } {
  let host: string;
  let port: number | undefined;
  if (typeof entry === 'string') {
    const match = /^\[([^\]]+)\]:(\d{1,5})$/.exec(entry) ?? /^([^:]+):(\d{1,5})$/.exec(entry);
    host = match?.[1] ?? entry;
    port = match === null ? undefined : Number(match[2]);
  } else {
    host = entry.host;
    port = entry.port;
  }
  const ip = parse(host);
  if (ip === undefined) throw configError('BAD_OPTION', `own address ${JSON.stringify(entry)} is not an IP literal`);
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw configError('BAD_OPTION', `own address ${JSON.stringify(entry)} has a port outside 1..65535`);
  }
  return { host: formatIp(ip.bytes), port };
}

function checkLimit(name: string, limit: TrafficLimit): TrafficLimit {
  for (const rate of [limit.packets, limit.bytes]) {
    if (!(rate.perSecond > 0 && Number.isFinite(rate.perSecond) && rate.burst > 0 && Number.isFinite(rate.burst))) {
      throw configError('BAD_OPTION', `${name}: perSecond and burst must be positive numbers`);
    }
  }
  return limit;
}

/**
 * What the control API of a running node answers (GET /v1/status, /v1/tunnels, /v1/peers;
 * POST /v1/send, /v1/dht/put, /v1/dht/get, /v1/dht/find-node). It is loopback-only and
 * cookie-authenticated, so it shows addresses and keys as they are: the operator asking is
 * the owner of the node.
 *
 * Times in the JSON have one form so that scripts need not guess: an instant is an ISO 8601
 * UTC string in a field named `...At` or `...Until`, and a duration is a number whose field
 * name ends in its unit (`uptimeSeconds`, `ageMs`, `rttMs`).
 */
import { readFileSync } from 'node:fs';
import { DeutError, addressKey, configError, parseAddress, timeoutError, type UdpAddress } from '@deut/common';
import { fromHex, toHex } from '@deut/crypto';
import { idFromHex } from '@deut/dht';
import { classifyAddress, exitRefusedReasonName, type DeutNode, type ProgressSnapshot, type TunnelInfo } from '@deut/node';
import type { ControlRoute } from './control-server.js';

/** The version of `deut` (its package.json, which the image keeps), for `deut --version` and `deut status`. */
export const DEUT_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

interface RouteContext {
  readonly node: DeutNode;
  /** The public DHT node of `--dht-listen`, if any. */
  readonly publicDht?: { readonly contact: string; readonly dht: { stats(): { contacts: number; store: { keys: number } } } } | undefined;
  readonly startedAt: number;
  readonly roles: { readonly relay: boolean; readonly master: boolean; readonly dht: boolean };
}

function field(body: unknown, name: string): unknown {
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[name] : undefined;
}

function stringField(body: unknown, name: string): string {
  const value = field(body, name);
  if (typeof value !== 'string' || value === '') throw configError('BAD_REQUEST', `"${name}" must be a non-empty string`);
  return value;
}

/** `value` as bytes: `valueHex` if given, else the UTF-8 of `value`. */
function bytesField(body: unknown, name: string): Uint8Array {
  const hex = field(body, `${name}Hex`);
  if (typeof hex === 'string') return fromHex(hex);
  return new TextEncoder().encode(stringField(body, name));
}

function timeoutField(body: unknown, fallback: number): number {
  const value = field(body, 'timeoutMs');
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 300_000) throw configError('BAD_REQUEST', '"timeoutMs" must be 1..300000');
  return value;
}

/** Bytes as shown to the operator: text when it is printable UTF-8, and always hex. */
function shown(bytes: Uint8Array): { text: string | null; hex: string } {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  // eslint-disable-next-line no-control-regex
  const printable = !text.includes('\uFFFD') && !/[\u0000-\u0008\u000e-\u001f]/.test(text);
  return { text: printable ? text : null, hex: toHex(bytes) };
}

/** Waits for the first datagram from `from` at our endpoints; rejects `NO_REPLY` after `timeoutMs`. */
export function nextDatagramFrom(node: DeutNode, from: UdpAddress, timeoutMs: number): Promise<{ data: Uint8Array; endpoint: string }> {
  const key = addressKey(from);
  return new Promise((resolve, reject) => {
    const onDatagram = (data: Uint8Array, source: UdpAddress, info: { endpoint: UdpAddress }): void => {
      if (addressKey(source) !== key) return;
      clearTimeout(timer);
      node.off('datagram', onDatagram);
      resolve({ data, endpoint: addressKey(info.endpoint) });
    };
    const timer = setTimeout(() => {
      node.off('datagram', onDatagram);
      reject(timeoutError('NO_REPLY', `no reply from ${key} within ${timeoutMs} ms`));
    }, timeoutMs);
    node.on('datagram', onDatagram);
  });
}

/**
 * How long `send` waits for the endpoint's verdict before it says "sent": a refusal comes
 * back through the tunnel within one round trip, and a datagram that left has no receipt.
 */
export const EXIT_VERDICT_MS = 1_000;

/** Resolves with the reason code of the first EXIT_REFUSED the node hears within `ms`, else undefined. */
function exitRefusalWithin(node: DeutNode, ms: number): { readonly refused: Promise<number | undefined>; readonly cancel: () => void } {
  let cancel = (): void => undefined;
  const refused = new Promise<number | undefined>((resolve) => {
    const onRefused = (info: { reason: number }): void => done(info.reason);
    const timer = setTimeout(() => done(undefined), ms);
    const done = (reason: number | undefined): void => {
      clearTimeout(timer);
      node.off('exit-refused', onRefused);
      resolve(reason);
    };
    cancel = () => done(undefined);
    node.on('exit-refused', onRefused);
  });
  return { refused, cancel };
}

/** What an EXIT_REFUSED means for a datagram to `to`, as the operator needs to read it. */
export function describeExitRefusal(reason: number, to: UdpAddress): string {
  switch (exitRefusedReasonName(reason)) {
    case 'policy': {
      const kind = classifyAddress(to.host);
      const why = kind !== 'public' ? kind : to.port === 0 ? 'port 0' : 'an address of the endpoint itself';
      return `exit policy (${why})${kind === 'public' ? '' : '; endpoints send to public addresses only, unless started with --allow-private-exits'}`;
    }
    case 'rate':
      return 'rate limit (this master or tunnel sent more than the endpoint allows; send slower)';
    case 'send-failed':
      return 'the endpoint could not send it (its operating system refused the datagram)';
    case undefined:
      return `reason ${reason}, which this version does not know`;
  }
}

/** An instant (epoch ms, the node's clock) as the control API's JSON shows every instant. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** Start-up progress as `GET /v1/status` shows it: each milestone passed with its time after the start. */
export interface ProgressJson {
  readonly percent: number;
  readonly phase: string;
  readonly summary: string;
  readonly done: boolean;
  readonly passed: ReadonlyArray<{ readonly percent: number; readonly phase: string; readonly summary: string; readonly afterStartMs: number }>;
  readonly next: ReadonlyArray<{ readonly percent: number; readonly phase: string; readonly summary: string }>;
}

/** {@link ProgressJson} of a node's progress. */
export function progressJson(progress: ProgressSnapshot): ProgressJson {
  return {
    percent: progress.percent,
    phase: progress.phase,
    summary: progress.summary,
    done: progress.done,
    passed: progress.passed.map((m) => ({ percent: m.percent, phase: m.phase, summary: m.summary, afterStartMs: m.atMs })),
    next: progress.next.map((m) => ({ percent: m.percent, phase: m.phase, summary: m.summary })),
  };
}

/** `deut status`'s progress line: where the node is, and what it waits for while not done. */
export function progressLine(progress: ProgressJson | undefined): string {
  // A daemon started from an older build answers without it until restarted.
  if (progress === undefined) return 'progress: not reported by this daemon (restart it with this deut)';
  const next = progress.next[0];
  return `progress: bootstrapped ${progress.percent}% (${progress.phase}): ${progress.summary}${next === undefined ? '' : `; waiting for ${next.percent}% (${next.phase}): ${next.summary}`}`;
}

/** A hop of a tunnel's path in the JSON: `known` false (and nulls) for a hop the master was never told. */
export interface TunnelHopJson {
  readonly known: boolean;
  readonly address: string | null;
  readonly publicKey: string | null;
}

/** An owned tunnel as `GET /v1/tunnels` shows it. */
export function tunnelJson(t: TunnelInfo): Record<string, unknown> {
  const path: TunnelHopJson[] = t.path.map((hop) =>
    hop === undefined ? { known: false, address: null, publicKey: null } : { known: true, address: addressKey(hop.address), publicKey: hop.publicKey === undefined ? null : toHex(hop.publicKey) },
  );
  return {
    id: t.id,
    mode: t.mode,
    hops: t.hops,
    path,
    endpoint: addressKey(t.endpoint),
    createdAt: isoTime(t.createdAt),
    ageMs: t.ageMs,
    expiresAt: isoTime(t.expiresAt),
    rttMs: t.rttMs ?? null,
    draining: t.draining,
  };
}

/** The control routes of `node`. */
export function controlRoutes(context: RouteContext): Record<string, ControlRoute> {
  const { node } = context;
  return {
    'GET /v1/status': () => {
      const stats = node.stats();
      const dht = context.roles.dht ? node.dht.stats() : undefined;
      return {
        version: DEUT_VERSION,
        address: addressKey(node.address),
        publicKey: toHex(node.publicKey),
        roles: context.roles,
        startedAt: isoTime(context.startedAt),
        uptimeSeconds: Math.round((Date.now() - context.startedAt) / 1000),
        peers: stats.peers,
        sessions: node.link.sessions().map((s) => ({
          peer: addressKey(s.address),
          publicKey: toHex(s.publicKey),
          sessionId: s.sessionId,
          current: s.current,
          initiator: s.initiator,
          confirmed: s.confirmed,
          establishedAt: isoTime(s.establishedAt),
        })),
        tunnels: {
          owned: stats.pool?.tunnels ?? 0,
          usable: stats.pool?.usable ?? 0,
          building: stats.pool?.building ?? 0,
          transit: stats.tunnels.transit,
          endpointPorts: stats.exits.ports,
        },
        progress: progressJson(node.progress()),
        dht: dht === undefined ? null : { id: toHex(node.dht.id), publicKey: toHex(node.dht.publicKey), contacts: dht.contacts, storedKeys: dht.store.keys },
        publicDht:
          context.publicDht === undefined
            ? null
            : { contact: context.publicDht.contact, contacts: context.publicDht.dht.stats().contacts, storedKeys: context.publicDht.dht.stats().store.keys },
      };
    },
    'GET /v1/tunnels': () => ({
      owned: node.tunnels.list().map(tunnelJson),
      transit: node.stats().tunnels.transit,
    }),
    'GET /v1/peers': () =>
      node.peers().map((p) => ({
        address: addressKey(p.address),
        publicKey: toHex(p.publicKey),
        // False for a relayer a neighbour named that no handshake has proven yet: paths leave it out.
        verified: p.verified,
        failures: p.failures,
        avoidedUntil: p.avoidUntil > Date.now() ? isoTime(p.avoidUntil) : null,
      })),
    'POST /v1/send': async (body) => {
      let to: UdpAddress;
      try {
        to = parseAddress(stringField(body, 'to'));
      } catch {
        throw configError('BAD_REQUEST', '"to" must be HOST:PORT with an IP address');
      }
      const data = bytesField(body, 'data');
      const waitReply = field(body, 'waitReply') === true;
      const timeoutMs = timeoutField(body, 5_000);
      const reply = waitReply ? nextDatagramFrom(node, to, timeoutMs) : undefined;
      reply?.catch(() => undefined);
      // Heard from the moment of sending: the endpoint's verdict may beat send()'s return.
      const verdict = exitRefusalWithin(node, waitReply ? timeoutMs : Math.min(timeoutMs, EXIT_VERDICT_MS));
      try {
        await node.send(to, data, { signal: AbortSignal.timeout(timeoutMs) });
        const refusal = await (reply === undefined ? verdict.refused : Promise.race([verdict.refused, reply.then(() => undefined)]));
        if (refusal !== undefined) throw new DeutError('transport', 'EXIT_REFUSED', `endpoint refused: ${describeExitRefusal(refusal, to)}`);
        if (reply === undefined) return { sent: data.length };
        const got = await reply;
        return { sent: data.length, reply: shown(got.data), receivedAt: got.endpoint };
      } finally {
        verdict.cancel();
      }
    },
    'POST /v1/dht/put': async (body) => {
      const result = await node.dht.put(stringField(body, 'key'), bytesField(body, 'value'), { timeoutMs: timeoutField(body, 30_000) });
      return result;
    },
    'POST /v1/dht/get': async (body) => {
      const result = await node.dht.get(stringField(body, 'key'), { timeoutMs: timeoutField(body, 30_000) });
      return { values: result.values.map(shown), asked: result.asked };
    },
    'POST /v1/dht/find-node': async (body) => {
      let id: Uint8Array;
      try {
        id = idFromHex(stringField(body, 'id'));
      } catch {
        throw configError('BAD_REQUEST', '"id" must be 64 hex digits');
      }
      const contacts = await node.dht.findNode(id, { timeoutMs: timeoutField(body, 30_000) });
      return contacts.map((c) => ({ id: toHex(c.id), address: addressKey(c.address), publicKey: toHex(c.publicKey) }));
    },
  };
}

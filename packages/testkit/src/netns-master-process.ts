/**
 * A master for the fault scenarios of the namespace mesh, run as its own process inside a
 * namespace: `node netns-master-process.js '<json options>'`. It serves requests (answering
 * `re:<payload>`), and takes commands on stdin, one JSON object per line, answering each on
 * stdout with the same `id`: status, DHT put/get/find-node, and steady request traffic to
 * another master's endpoints. It exits when stdin closes, so it never outlives its test.
 * {@link NetnsMaster} (netns-master.ts) is the test's side.
 */
import { createInterface } from 'node:readline';
import { addressKey, parseAddress, silentLogger, type UdpAddress, type CounterSnapshot } from '@deut/common';
import { DeutNode, type PoolCounter } from '@deut/node';
import type { DhtNodeCounter } from '@deut/dht';

/** Options of the process, passed as JSON in argv[2]. */
export interface NetnsMasterOptions {
  readonly listen: string;
  readonly bootstrap: string;
  readonly dhtBootstrap: string;
  readonly tunnels: number;
  readonly hops: number;
  /** Mean time between probes of one tunnel. @default the node's */
  readonly probeIntervalMs?: number;
}

/** One command on stdin. */
export type NetnsMasterCommand =
  | { id: number; op: 'status' }
  | { id: number; op: 'put'; key: string; value: string }
  | { id: number; op: 'get'; key: string }
  | { id: number; op: 'find-node'; dhtId: string }
  | { id: number; op: 'traffic-start'; to: string[]; perTick: number; tickMs: number; timeoutMs: number }
  | { id: number; op: 'traffic-stop' };

/** The answer to `status`. */
export interface NetnsMasterStatus {
  readonly usable: number;
  readonly owned: number;
  readonly building: number;
  readonly endpoints: string[];
  readonly dhtId: string;
  readonly dhtContacts: number;
  /** The DHT's view, for a failing test to print: its contacts and its counters. */
  readonly dht: { readonly table: Array<{ id: string; address: string; failures: number }>; readonly counters: CounterSnapshot<DhtNodeCounter>; readonly rpc: Record<string, unknown> };
  readonly pool: CounterSnapshot<PoolCounter>;
  readonly served: number;
}

/** The answer to `traffic-stop`, once every request it issued has settled. */
export interface NetnsTrafficResult {
  readonly issued: number;
  readonly completed: number;
  readonly failed: string[];
  readonly wrong: string[];
  readonly retries: number;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as NetnsMasterOptions;
  const node = await DeutNode.start({
    listen: parseAddress(options.listen),
    bootstrap: [parseAddress(options.bootstrap)],
    master: true,
    relay: false,
    tunnels: options.tunnels,
    hops: options.hops,
    allowPrivateExits: true,
    allowSameSubnet: true,
    ...(options.probeIntervalMs !== undefined ? { probeIntervalMs: options.probeIntervalMs } : {}),
    dht: { bootstrap: [options.dhtBootstrap] },
    logger: silentLogger,
  });
  let served = 0;
  node.handle((payload) => {
    served++;
    return encode(`re:${decode(payload)}`);
  });
  const write = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);

  let traffic: { timer: ReturnType<typeof setInterval>; pending: Array<Promise<void>>; result: { issued: number; completed: number; failed: string[]; wrong: string[] } } | undefined;
  const startTraffic = (to: UdpAddress[], perTick: number, tickMs: number, timeoutMs: number): void => {
    const result = { issued: 0, completed: 0, failed: [] as string[], wrong: [] as string[] };
    const pending: Array<Promise<void>> = [];
    const issue = (): void => {
      const i = result.issued++;
      const payload = `q${i}`;
      // Every request names all of the server's endpoints: a retry may go to another.
      pending.push(
        node.request(to, encode(payload), { timeoutMs }).then(
          (reply) => {
            if (decode(reply) === `re:${payload}`) result.completed++;
            else result.wrong.push(`${payload}: ${decode(reply)}`);
          },
          (error: unknown) => void result.failed.push(`${payload}: ${String(error)}`),
        ),
      );
    };
    traffic = { timer: setInterval(() => Array.from({ length: perTick }, issue), tickMs), pending, result };
  };

  const run = async (command: NetnsMasterCommand): Promise<unknown> => {
    switch (command.op) {
      case 'status': {
        const stats = node.stats();
        return {
          usable: stats.pool?.usable ?? 0,
          owned: stats.pool?.tunnels ?? 0,
          building: stats.pool?.building ?? 0,
          endpoints: node.tunnels.list().filter((t) => !t.draining).map((t) => addressKey(t.endpoint)),
          dhtId: hex(node.dht.id),
          dhtContacts: node.dht.stats().contacts,
          dht: {
            table: node.dht.table.contacts().map((c) => ({ id: hex(c.id).slice(0, 12), address: addressKey(c.address), failures: c.failures })),
            counters: node.dht.stats().counters,
            rpc: node.dht.stats().rpc,
          },
          pool: stats.pool?.counters ?? {},
          served,
        } satisfies NetnsMasterStatus;
      }
      case 'put':
        return node.dht.put(command.key, encode(command.value), { timeoutMs: 20_000 });
      case 'get':
        return (await node.dht.get(command.key, { timeoutMs: 20_000 })).values.map(decode);
      case 'find-node':
        return (await node.dht.findNode(Buffer.from(command.dhtId, 'hex'), { timeoutMs: 20_000 })).map((c) => ({ id: hex(c.id), address: addressKey(c.address) }));
      case 'traffic-start':
        startTraffic(command.to.map(parseAddress), command.perTick, command.tickMs, command.timeoutMs);
        return true;
      case 'traffic-stop': {
        if (traffic === undefined) throw new Error('no traffic running');
        clearInterval(traffic.timer);
        await Promise.all(traffic.pending);
        const result: NetnsTrafficResult = { ...traffic.result, retries: node.stats().messages?.counters.retries ?? 0 };
        traffic = undefined;
        return result;
      }
    }
  };

  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let command: NetnsMasterCommand;
    try {
      command = JSON.parse(line) as NetnsMasterCommand;
    } catch {
      return write({ id: -1, ok: false, error: 'not JSON' });
    }
    run(command).then(
      (result) => write({ id: command.id, ok: true, result }),
      (error: unknown) => write({ id: command.id, ok: false, error: String(error) }),
    );
  });
  lines.once('close', () => {
    if (traffic !== undefined) clearInterval(traffic.timer);
    void node.close().then(() => process.exit(0));
  });
  write({ id: 0, ok: true, result: 'started' });
}

await main();

/**
 * Simulated time for whole meshes on the in-memory network: a ManualClock that moves only
 * when nothing is in flight. Every datagram of the in-memory network and every handler it
 * wakes run at one simulated instant; when the network has drained, the clock jumps by a
 * step and fires what fell due (retries, probes, expiries, rotations). A busy or starved
 * process therefore only runs slower: no timeout can fire because the CPU was shared, and a
 * test that waits out a lifetime or a liveness period waits simulated time, not real time.
 */
import { ManualClock } from '@deut/common';
import type { MemoryNetwork } from '@deut/transport';
import { createTestnet, type Testnet, type TestnetOptions } from '@deut/testkit';

/** A ManualClock driven forward while a test runs. */
export interface ClockPump {
  readonly clock: ManualClock;
  /** Attaches the network to watch (createTestnet builds it after the clock exists). */
  watch(network: MemoryNetwork): void;
  /** Resolves once simulated time has moved `ms` on (the pump does the moving). */
  sleep(ms: number): Promise<void>;
  /** Resolves when `predicate` holds, polling every simulated `stepMs`; rejects after `ms` of simulated time. */
  until(predicate: () => boolean, ms: number, what: string): Promise<void>;
  /** Stops the pump (idempotent); the clock keeps its time. */
  stop(): Promise<void>;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Starts pumping a new ManualClock (starting at the real time, so logged times look sane):
 * while the network (once watched) is idle for two event-loop turns, time moves `stepMs`.
 * Stop it in a `finally`.
 */
export function startClockPump(options: { stepMs?: number; network?: MemoryNetwork } = {}): ClockPump {
  const stepMs = options.stepMs ?? 10;
  const clock = new ManualClock(Date.now());
  let network = options.network;
  let running = true;
  const loop = (async () => {
    while (running) {
      if (network !== undefined) await network.idle();
      await turn();
      if (network !== undefined) await network.idle();
      await turn();
      if (running) clock.advance(stepMs);
    }
  })();
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => void clock.setTimeout(resolve, ms));
  return {
    clock,
    watch: (n) => void (network = n),
    sleep,
    async until(predicate, ms, what) {
      const deadline = clock.now() + ms;
      while (!predicate()) {
        if (clock.now() > deadline) throw new Error(`timed out after ${ms} simulated ms waiting for ${what}`);
        await sleep(stepMs);
      }
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** A testnet on the in-memory network and simulated time, with its pump. */
export interface SimulatedTestnet {
  readonly net: Testnet;
  readonly pump: ClockPump;
  /** Closes the testnet, then stops the pump. */
  close(): Promise<void>;
}

/** createTestnet on a pumped ManualClock; the caller closes it in a `finally`. */
export async function simulatedTestnet(options: Omit<TestnetOptions, 'clock' | 'transport'>, stepMs?: number): Promise<SimulatedTestnet> {
  const pump = startClockPump(stepMs === undefined ? {} : { stepMs });
  let net: Testnet;
  try {
    net = await createTestnet({ ...options, clock: pump.clock });
  } catch (error) {
    await pump.stop();
    throw error;
  }
  pump.watch(net.network!);
  return {
    net,
    pump,
    async close() {
      try {
        await net.close();
      } finally {
        await pump.stop();
      }
    },
  };
}

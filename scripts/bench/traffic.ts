/**
 * The traffic of the benchmark, written once and used by both sides of every comparison, so
 * that deut and its baseline differ only in what carries the datagrams: a blast of ready
 * datagrams in bursts, sequential request/response round trips, and windowed bulk transfer.
 */
import { performance } from 'node:perf_hooks';
import type { UdpAddress } from '@deut/common';
import type { DatagramSocket } from '@deut/transport';

/** Something that carries datagrams to one destination and hands back what comes from it. */
export interface Carrier {
  send(data: Uint8Array): void;
  onData(listener: (data: Uint8Array) => void): void;
}

/** How long a request waits for its answer before it counts as lost. */
const RTT_TIMEOUT_MS = 1_000;
/** How long a bulk message waits for its ack before it counts as lost. */
const BULK_TIMEOUT_MS = 500;

/**
 * Sends every datagram of `items`, `burst` at a time with one event-loop turn (setImmediate)
 * between bursts: the pacing of both sides of the relay comparison.
 */
export function blast(socket: DatagramSocket, items: ReadonlyArray<{ data: Uint8Array; to: UdpAddress }>, burst: number): Promise<number> {
  return new Promise((resolve) => {
    let i = 0;
    const step = (): void => {
      const end = Math.min(items.length, i + burst);
      for (; i < end; i++) socket.send(items[i]!.data, items[i]!.to);
      if (i < items.length) setImmediate(step);
      else resolve(i);
    };
    step();
  });
}

/**
 * `count` requests of `size` bytes, one at a time, each waiting for its answer: the round
 * trip times in milliseconds of those answered, and how many were lost.
 */
export async function rtt(carrier: Carrier, count: number, size: number): Promise<{ ms: number[]; lost: number }> {
  const payload = new Uint8Array(size);
  const view = new DataView(payload.buffer);
  let waiting: { seq: number; resolve: (ok: boolean) => void } | undefined;
  carrier.onData((data) => {
    if (waiting === undefined || data.length < 4) return;
    if (new DataView(data.buffer, data.byteOffset, 4).getUint32(0) !== waiting.seq) return;
    waiting.resolve(true);
  });
  const ms: number[] = [];
  let lost = 0;
  for (let seq = 1; seq <= count; seq++) {
    view.setUint32(0, seq);
    const started = performance.now();
    const answered = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), RTT_TIMEOUT_MS);
      waiting = {
        seq,
        resolve: (ok) => {
          clearTimeout(timer);
          resolve(ok);
        },
      };
      carrier.send(payload);
    });
    waiting = undefined;
    if (answered) ms.push(performance.now() - started);
    else lost++;
  }
  return { ms, lost };
}

/**
 * Sends `count` messages of `size` bytes with at most `window` unanswered at a time (the
 * far end acks each with its first 8 bytes); a message unanswered for 500 ms counts as
 * lost and frees its place. Returns the acked payload bytes, the time, and the loss.
 */
export function bulk(carrier: Carrier, count: number, size: number, window: number): Promise<{ bytes: number; ms: number; lost: number }> {
  return new Promise((resolve) => {
    const inFlight = new Map<number, number>();
    let sent = 0;
    let acked = 0;
    let lost = 0;
    const started = performance.now();
    const payload = new Uint8Array(size);
    const view = new DataView(payload.buffer);
    const finish = (): void => {
      clearInterval(timer);
      resolve({ bytes: acked * size, ms: performance.now() - started, lost });
    };
    const pump = (): void => {
      while (inFlight.size < window && sent < count) {
        sent++;
        view.setUint32(0, sent);
        inFlight.set(sent, performance.now());
        carrier.send(payload);
      }
      if (acked + lost === count) finish();
    };
    const timer = setInterval(() => {
      const oldest = performance.now() - BULK_TIMEOUT_MS;
      for (const [seq, at] of inFlight) {
        if (at > oldest) continue;
        inFlight.delete(seq);
        lost++;
      }
      pump();
    }, 20);
    carrier.onData((data) => {
      if (data.length < 4) return;
      const seq = new DataView(data.buffer, data.byteOffset, 4).getUint32(0);
      if (!inFlight.delete(seq)) return;
      acked++;
      pump();
    });
    pump();
  });
}

/**
 * Small helpers shared by the transport tests: bounded waiting (never open-ended sleeps),
 * numbered packets, and a matcher for DeutError codes.
 */
import assert from 'node:assert/strict';
import { DeutError } from '@deut/common';

/** Yields one event-loop turn, letting pending I/O and setImmediate callbacks run. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` until it holds; rejects after `timeoutMs` naming `what`. */
export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (let turns = 0; !predicate(); turns++) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    // Spin on event-loop turns first (fast for in-memory delivery), then back off to 1 ms.
    await (turns < 100 ? nextTurn() : sleep(1));
  }
}

/**
 * Waits until `done()` holds or `progress()` has not changed for `quietMs`; returns
 * whether `done()` held. Used where the kernel may legitimately drop datagrams.
 */
export async function waitUntilDoneOrQuiet(done: () => boolean, progress: () => number, quietMs: number): Promise<boolean> {
  let last = progress();
  let lastChange = performance.now();
  while (!done()) {
    await sleep(1);
    const now = progress();
    if (now !== last) {
      last = now;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > quietMs) {
      return false;
    }
  }
  return true;
}

/** Rejects with a clear message if `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A packet of `size` bytes (at least 4) carrying `seq` big-endian in its first four bytes. */
export function packet(seq: number, size = 16): Uint8Array {
  const data = new Uint8Array(Math.max(4, size));
  new DataView(data.buffer).setUint32(0, seq);
  return data;
}

/** The sequence number written by packet(). */
export function seqOf(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0);
}

/** Asserts that `error` is a DeutError of kind `transport` (unless told otherwise) with `code`. */
export function isDeutError(code: string, kind = 'transport'): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(error instanceof DeutError, `expected a DeutError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.kind, kind);
    return true;
  };
}

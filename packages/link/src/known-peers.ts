/**
 * Trust-on-first-use pins of peer keys by address (PROTOCOL.md §3.7), like SSH's
 * known_hosts: one `host:port hexkey` per line (base64 keys, which earlier versions wrote, are
 * read too). A changed key for a pinned address is
 * refused by the link layer; this store only remembers and persists. It holds at most
 * MAX_PINS pins (a full store pins no more: those peers are still bound for the life of
 * their sessions), and writes the file in batches through `flush()`, which the link calls
 * at most once per PIN_FLUSH_MS and at close: a relayer meeting a thousand peers at start
 * writes a few times, not a thousand growing files with an fsync each.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { parseAddress } from '@deut/common';
import { parseKey32, toHex } from '@deut/crypto';
import { PUBLIC_KEY_BYTES } from '@deut/wire';
import { knownPeersError } from './errors.js';

/** Most pins a store holds. */
export const MAX_PINS = 65_536;

/** Pinned keys by canonical address string (`addressKey()`). */
export class KnownPeers {
  readonly #pins = new Map<string, Uint8Array>();
  /** The line of each pin in the file as last read or written. */
  readonly #lines = new Map<string, number>();
  /** Pins made since the file was last read or written: a reload must keep them. */
  readonly #unwritten = new Set<string>();
  #dirty = false;

  /** `path` undefined keeps pins in memory only. */
  private constructor(private readonly path: string | undefined) {}

  /** An in-memory store (tests, and masters that keep nothing across restarts). */
  static inMemory(): KnownPeers {
    return new KnownPeers(undefined);
  }

  /**
   * Loads `path` (a missing file is an empty store). A malformed line is a config error
   * naming the line, never silently skipped: a damaged pin file must not weaken pinning.
   */
  static load(path: string): KnownPeers {
    const store = new KnownPeers(path);
    store.#read();
    return store;
  }

  /**
   * Reads the file again (the daemon does on SIGHUP): pins an operator removed with
   * `deut pins remove` are forgotten here too, and pins made since the last write are kept.
   * Returns the number of pins. A malformed file throws and leaves the pins as they were.
   */
  reload(): number {
    if (this.path === undefined) return this.#pins.size;
    const kept = [...this.#unwritten].flatMap((address) => {
      const key = this.#pins.get(address);
      return key === undefined ? [] : [[address, key] as const];
    });
    const fresh = KnownPeers.load(this.path);
    this.#pins.clear();
    this.#lines.clear();
    for (const [address, key] of fresh.#pins) this.#pins.set(address, key);
    for (const [address, line] of fresh.#lines) this.#lines.set(address, line);
    for (const [address, key] of kept) this.#pins.set(address, key);
    return this.#pins.size;
  }

  #read(): void {
    const path = this.path!;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw knownPeersError('KNOWN_PEERS_UNREADABLE', `cannot read known peers file ${path}: ${(error as Error).message}`);
    }
    text.split('\n').forEach((raw, index) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const [address, key, extra] = line.split(/\s+/);
      const bytes = key === undefined ? undefined : parseKey32(key);
      let canonical: string | undefined;
      try {
        if (address !== undefined) {
          const parsed = parseAddress(address);
          canonical = address.startsWith('[') ? `[${parsed.host}]:${parsed.port}` : `${parsed.host}:${parsed.port}`;
        }
      } catch {
        canonical = undefined;
      }
      if (canonical === undefined || bytes?.length !== PUBLIC_KEY_BYTES || extra !== undefined) {
        throw knownPeersError('KNOWN_PEERS_MALFORMED', `${path}:${index + 1}: expected "host:port hex-key"`);
      }
      this.#pins.set(canonical, new Uint8Array(bytes));
      this.#lines.set(canonical, index + 1);
    });
  }

  /** The pinned key for `address`, if any. */
  get(address: string): Uint8Array | undefined {
    return this.#pins.get(address);
  }

  /** Number of pins. */
  get size(): number {
    return this.#pins.size;
  }

  /**
   * Pins `key` for `address`; the file follows at the next `flush()`. false if the store is
   * full (MAX_PINS) and `address` was not pinned already.
   */
  pin(address: string, key: Uint8Array): boolean {
    if (key.length !== PUBLIC_KEY_BYTES) throw knownPeersError('BAD_KEY_LENGTH', `a pinned key has ${PUBLIC_KEY_BYTES} bytes`);
    if (!this.#pins.has(address) && this.#pins.size >= MAX_PINS) return false;
    this.#pins.set(address, key.slice());
    this.#unwritten.add(address);
    this.#dirty = true;
    return true;
  }

  /** Forgets the pin for `address` (an operator's decision after a legitimate key change); the file follows at once. */
  forget(address: string): boolean {
    if (!this.#pins.delete(address)) return false;
    this.#dirty = true;
    this.flush();
    return true;
  }

  /**
   * Where the pin for `address` is, for a message an operator acts on: `FILE:LINE`, the file
   * alone for a pin not written yet, or undefined for a store kept in memory.
   */
  location(address: string): string | undefined {
    if (this.path === undefined) return undefined;
    const line = this.#lines.get(address);
    return line === undefined ? this.path : `${this.path}:${line}`;
  }

  /** The file behind this store, if any. */
  get file(): string | undefined {
    return this.path;
  }

  /** Every pin, in the order they were made. */
  entries(): Array<[address: string, key: Uint8Array]> {
    return [...this.#pins].map(([address, key]) => [address, key.slice()]);
  }

  /** Writes the file if a pin changed since the last write (atomically: temp file, fsync, rename). */
  flush(): void {
    if (!this.#dirty || this.path === undefined) return;
    this.#dirty = false;
    const lines = ['# deut known peers: host:port hex(X25519 public key)'];
    this.#lines.clear();
    this.#unwritten.clear();
    for (const [address, key] of this.#pins) {
      lines.push(`${address} ${toHex(key)}`);
      this.#lines.set(address, lines.length);
    }
    const temp = `${this.path}.${process.pid}.tmp`;
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, lines.join('\n') + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, this.path);
  }
}

// The part of bittorrent-dht 11 (which ships no types) that test/tunnel-socket.test.ts uses.
declare module 'bittorrent-dht' {
  import { EventEmitter } from 'node:events';

  /** A peer found by a lookup, or a node of the routing table. */
  export interface DhtPeer {
    readonly host: string;
    readonly port: number;
  }

  /** A BEP 44 value as `get` returns it. */
  export interface DhtValue {
    readonly v: Buffer;
    readonly id: Buffer;
    readonly k?: Buffer;
    readonly sig?: Buffer;
    readonly seq?: number;
    readonly salt?: Buffer;
  }

  /** What DHT.toJSON returns. */
  export interface DhtState {
    readonly nodes: ReadonlyArray<DhtPeer & { readonly distance?: number }>;
    readonly values: Readonly<Record<string, { readonly v: string; readonly id: string; readonly seq?: number; readonly sig?: string; readonly k?: string }>>;
  }

  export interface DhtOptions {
    /** A dgram-shaped socket; k-rpc-socket creates a udp4 socket without one. */
    readonly socket?: unknown;
    /** `host:port` strings, `{ host, port }` objects, or false for none. */
    readonly bootstrap?: ReadonlyArray<string | DhtPeer> | false;
    readonly nodeId?: Buffer | string;
    readonly host?: string | false;
    readonly concurrency?: number;
    readonly timeBucketOutdated?: number;
    readonly maxAge?: number;
  }

  interface DhtEvents {
    ready: [];
    listening: [];
    warning: [error: Error];
    error: [error: Error];
    peer: [peer: DhtPeer, infoHash: Buffer, from: DhtPeer];
    node: [node: DhtPeer & { readonly id: Buffer }];
    announce: [peer: DhtPeer, infoHash: Buffer];
  }

  export default class DHT extends EventEmitter<DhtEvents> {
    constructor(options?: DhtOptions);
    readonly nodeId: Buffer;
    readonly ready: boolean;
    listening: boolean;
    listen(port?: number | (() => void), host?: string | (() => void), onlistening?: () => void): void;
    address(): { address: string; family: string; port: number };
    put(options: { readonly v: Buffer | string; readonly k?: Buffer; readonly seq?: number; readonly salt?: Buffer; readonly sign?: (buf: Buffer) => Buffer }, callback?: (error: Error | null, hash: Buffer, n: number) => void): Buffer;
    get(key: Buffer | string, options: { readonly cache?: boolean; readonly verify?: unknown; readonly salt?: Buffer }, callback: (error: Error | null, value: DhtValue | null) => void): void;
    get(key: Buffer | string, callback: (error: Error | null, value: DhtValue | null) => void): void;
    announce(infoHash: Buffer | string, port: number, callback?: (error: Error | null) => void): void;
    lookup(infoHash: Buffer | string, callback?: (error: Error | null, closest: number) => void): () => void;
    toJSON(): DhtState;
    addNode(node: DhtPeer & { readonly id?: Buffer }): void;
    destroy(callback?: () => void): void;
  }
}

/**
 * Transit entries by (neighbour, link tunnel id) (PROTOCOL.md §4.1: an id is chosen per
 * link by its upstream end): one small map of numeric ids per neighbour, so a cell finds its
 * entry without building a key string, and an entry costs no key string of its own.
 */
export class PeerIdMap<T> {
  readonly #byPeer = new Map<string, Map<number, T>>();
  #size = 0;

  /** Entries in all. */
  get size(): number {
    return this.#size;
  }

  /** Entries of one neighbour. */
  sizeOf(peerKey: string): number {
    return this.#byPeer.get(peerKey)?.size ?? 0;
  }

  get(peerKey: string, id: number): T | undefined {
    return this.#byPeer.get(peerKey)?.get(id);
  }

  has(peerKey: string, id: number): boolean {
    return this.#byPeer.get(peerKey)?.has(id) ?? false;
  }

  set(peerKey: string, id: number, value: T): void {
    let ids = this.#byPeer.get(peerKey);
    if (ids === undefined) {
      ids = new Map();
      this.#byPeer.set(peerKey, ids);
    }
    if (!ids.has(id)) this.#size++;
    ids.set(id, value);
  }

  /** Removes the entry; a neighbour's map goes with its last entry. */
  delete(peerKey: string, id: number): boolean {
    const ids = this.#byPeer.get(peerKey);
    if (ids === undefined || !ids.delete(id)) return false;
    this.#size--;
    if (ids.size === 0) this.#byPeer.delete(peerKey);
    return true;
  }

  /** Every entry (a snapshot is the caller's business if it removes while iterating). */
  *values(): IterableIterator<T> {
    for (const ids of this.#byPeer.values()) yield* ids.values();
  }
}

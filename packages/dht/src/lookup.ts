/**
 * Kademlia's iterative node lookup (Maymounkov & Mazières 2002, §2.3), with `alpha` calls
 * in flight. It keeps a shortlist ordered by distance to the target and always asks the
 * closest node not yet asked; it ends when the k closest nodes that have not failed have
 * all answered, or, for a value lookup, as soon as one answers with values. A node that
 * fails is dropped from the shortlist and the next one moves up, so a dead or departed
 * contact costs one timeout, never the lookup.
 *
 * A node is known by id, but its address can change (over deut tunnels it is an endpoint,
 * which rotates): when other nodes report a node at an address other than the one it
 * failed at, it is asked once more there ({@link MAX_OTHER_ADDRESSES} at most), on the side:
 * the lookup does not wait for those calls. Without them, a node whose own table held a
 * dead address for a peer could never find that peer again, however many others knew
 * where it had moved.
 *
 * The lookup is transport-free: `ask` performs one call. That keeps the algorithm testable
 * against a simulated network with a global view.
 */
import { toHex } from '@deut/crypto';
import { abortedError, timeoutError } from './errors.js';
import { compareDistance } from './id.js';

/**
 * Other addresses one node may be asked at after it failed at the first, in one lookup. A
 * forged answer can name any address for a node anyway (only the key holder can answer a
 * call), so this bounds what lying costs us: at most this many extra calls per node.
 */
export const MAX_OTHER_ADDRESSES = 2;

/** A node the lookup may ask. */
export interface LookupCandidate {
  readonly id: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly address: { readonly host: string; readonly port: number };
}

/** What asking one node produced. */
export type AskResult =
  | { readonly kind: 'nodes'; readonly contacts: readonly LookupCandidate[] }
  | { readonly kind: 'values'; readonly values: readonly Uint8Array[] };

/** Options of {@link iterativeLookup}. */
export interface LookupOptions {
  readonly target: Uint8Array;
  /** Nodes to start from: the routing table's closest, or bootstrap nodes. */
  readonly seeds: readonly LookupCandidate[];
  /** Asks one node; rejects if it does not answer. */
  readonly ask: (node: LookupCandidate) => Promise<AskResult>;
  /** Size of the result and of the set that must answer. @default 20 */
  readonly k?: number;
  /** Calls in flight. @default 3 */
  readonly alpha?: number;
  /** Stop at the first values (FIND_VALUE) rather than converging (FIND_NODE). */
  readonly wantValues?: boolean;
  /** Our own id: never a candidate. */
  readonly self?: Uint8Array;
  readonly signal?: AbortSignal | undefined;
  /** Candidates remembered at most: the far end of a long shortlist is never asked. @default 5 × k */
  readonly maxCandidates?: number;
  /**
   * After this long without an answer a call stops holding one of the `alpha` slots (it may
   * still answer): a departed node then costs the lookup this much, not the call's whole
   * retry budget (libtorrent's "short timeout"). @default no stall: a call holds its slot
   */
  readonly stallAfterMs?: number;
}

/** The outcome of a lookup. */
export interface LookupResult {
  /** The closest nodes that answered, closest first, at most k. */
  readonly closest: LookupCandidate[];
  /** Values found (value lookups only), distinct, in the order they arrived. */
  readonly values: Uint8Array[];
  /** Calls made, answered or not. */
  readonly asked: number;
  /** Calls that failed. */
  readonly failed: number;
}

type State = 'new' | 'asking' | 'answered' | 'failed';

interface Entry {
  readonly node: LookupCandidate;
  state: State;
  /** Addresses others reported for this node, not yet asked (at most MAX_OTHER_ADDRESSES in all). */
  readonly otherAddresses: LookupCandidate[];
  /** How many other addresses it has been given; bounds retries however often it fails. */
  othersTaken: number;
}

const sameAddress = (a: LookupCandidate, b: LookupCandidate): boolean => a.address.host === b.address.host && a.address.port === b.address.port;

/**
 * Runs one lookup to its end.
 * @throws DeutError `ABORTED` when the signal fires (a timeout signal gives `LOOKUP_TIMEOUT`)
 */
export function iterativeLookup(options: LookupOptions): Promise<LookupResult> {
  const { target, ask, signal } = options;
  const k = options.k ?? 20;
  const alpha = options.alpha ?? 3;
  const maxCandidates = options.maxCandidates ?? 5 * k;
  const selfHex = options.self === undefined ? undefined : toHex(options.self);
  const entries = new Map<string, Entry>();
  /** INVARIANT: sorted by distance to target, closest first; failed entries removed. */
  let shortlist: Entry[] = [];
  const values: Uint8Array[] = [];
  const seenValues = new Set<string>();
  let asked = 0;
  let failed = 0;
  let inFlight = 0;

  const consider = (node: LookupCandidate): void => {
    const hex = toHex(node.id);
    if (hex === selfHex) return;
    const known = entries.get(hex);
    if (known === undefined) {
      const entry: Entry = { node, state: 'new', otherAddresses: [], othersTaken: 0 };
      entries.set(hex, entry);
      shortlist.push(entry);
      return;
    }
    if (known.state === 'answered' || known.othersTaken >= MAX_OTHER_ADDRESSES || sameAddress(known.node, node) || known.otherAddresses.some((o) => sameAddress(o, node))) return;
    known.othersTaken++;
    known.otherAddresses.push(node);
    if (known.state === 'failed') askElsewhere(known);
  };
  /** Set once the lookup runs: asks a failed node at the next address others reported for it. */
  let askElsewhere: (failedEntry: Entry) => void = () => undefined;
  const sortAndTrim = (): void => {
    shortlist.sort((a, b) => compareDistance(target, a.node.id, b.node.id));
    // Entries beyond the cap are forgotten for good (kept in `entries`), so the shortlist
    // stays bounded however many contacts malicious answers pile on.
    if (shortlist.length > maxCandidates) shortlist = shortlist.slice(0, maxCandidates);
  };
  for (const seed of options.seeds) consider(seed);
  sortAndTrim();

  return new Promise<LookupResult>((resolve, reject) => {
    let done = false;
    const finish = (error?: Error): void => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      if (error !== undefined) return reject(error);
      const closest = shortlist.filter((e) => e.state === 'answered').slice(0, k).map((e) => e.node);
      resolve({ closest, values, asked, failed });
    };
    const onAbort = (): void => {
      const reason: unknown = signal?.reason;
      const timedOut = reason instanceof DOMException && reason.name === 'TimeoutError';
      finish(timedOut ? timeoutError('LOOKUP_TIMEOUT', 'lookup timed out') : abortedError('ABORTED', 'lookup aborted'));
    };
    if (signal?.aborted === true) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });

    /** Takes in what an answering node said: its values, or the contacts it named. */
    const absorb = (result: AskResult): void => {
      if (result.kind === 'values') {
        for (const value of result.values) {
          const hex = toHex(value);
          if (!seenValues.has(hex)) {
            seenValues.add(hex);
            values.push(value);
          }
        }
      } else {
        for (const contact of result.contacts) consider(contact);
        sortAndTrim();
      }
    };
    // On the side: not in an alpha slot, and the lookup does not wait for it. A node that
    // left (the usual reason a call fails) must not cost one timeout per address it ever
    // had; a node that moved answers, joins the result if the lookup still runs, and the
    // caller's routing table learns its address from the answer either way.
    askElsewhere = (failedEntry) => {
      if (done) return;
      const next = failedEntry.otherAddresses.shift();
      if (next === undefined) return;
      const entry: Entry = { node: next, state: 'asking', otherAddresses: failedEntry.otherAddresses, othersTaken: failedEntry.othersTaken };
      entries.set(toHex(next.id), entry);
      asked++;
      ask(next).then(
        (result) => {
          if (done) return;
          entry.state = 'answered';
          shortlist.push(entry);
          absorb(result);
          sortAndTrim();
          step();
        },
        () => {
          failed++;
          entry.state = 'failed';
          askElsewhere(entry);
        },
      );
    };
    const step = (): void => {
      if (done) return;
      if (options.wantValues === true && values.length > 0) return finish();
      // Done when the k closest live candidates have all answered.
      const top = shortlist.slice(0, k);
      if (top.every((e) => e.state === 'answered')) return finish();
      for (const entry of top) {
        if (inFlight >= alpha) break;
        if (entry.state !== 'new') continue;
        entry.state = 'asking';
        inFlight++;
        asked++;
        let holdsSlot = true;
        const release = (): void => {
          if (!holdsSlot) return;
          holdsSlot = false;
          inFlight--;
        };
        const stall =
          options.stallAfterMs === undefined
            ? undefined
            : setTimeout(() => {
                release();
                step();
              }, options.stallAfterMs).unref();
        const settle = (): void => {
          if (stall !== undefined) clearTimeout(stall);
          release();
        };
        ask(entry.node).then(
          (result) => {
            settle();
            if (done) return;
            entry.state = 'answered';
            absorb(result);
            step();
          },
          () => {
            settle();
            failed++;
            if (done) return;
            entry.state = 'failed';
            shortlist = shortlist.filter((e) => e !== entry);
            askElsewhere(entry);
            step();
          },
        );
      }
      if (inFlight === 0 && !shortlist.slice(0, k).some((e) => e.state === 'asking')) finish();
    };
    step();
  });
}

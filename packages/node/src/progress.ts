/**
 * How far a starting node has come, as Tor's "Bootstrapped N% (phase): ..." lines tell an
 * operator, and the heartbeat a running node reports every few minutes. The node decides
 * when a milestone holds; this file keeps the plan, the order and the times, and turns a
 * heartbeat into its one log line.
 */
import type { Clock } from '@deut/common';

/** The milestones of a starting node, in the order they are passed (README "Operator guide"). */
export const PROGRESS_PHASES = ['bound', 'peers-known', 'peers-verified', 'first-tunnel', 'pool-full', 'dht-joined', 'done'] as const;

/** One of {@link PROGRESS_PHASES}. */
export type ProgressPhase = (typeof PROGRESS_PHASES)[number];

/** A milestone of a node's plan: its phase, percentage and the words an operator reads. */
export interface ProgressStep {
  readonly phase: ProgressPhase;
  readonly percent: number;
  readonly summary: string;
}

/** A milestone passed, and when (ms after the node started, on its clock). */
export interface ProgressMilestone extends ProgressStep {
  readonly atMs: number;
}

/** What `DeutNode.progress()` returns. */
export interface ProgressSnapshot {
  /** The percentage of the latest milestone passed. */
  readonly percent: number;
  /** The latest milestone passed. */
  readonly phase: ProgressPhase;
  readonly summary: string;
  /** Whether the node reached 100 %. */
  readonly done: boolean;
  /** Every milestone passed so far, in order. */
  readonly passed: readonly ProgressMilestone[];
  /** What is left, in order. */
  readonly next: readonly ProgressStep[];
}

/** The roles that decide a node's plan. */
export interface ProgressRoles {
  readonly master: boolean;
  readonly dht: boolean;
  /** Whether any bootstrap relayer was named: a relayer with none is the first of its network and has nobody to hear from. */
  readonly bootstrap: boolean;
}

/**
 * The milestones a node with `roles` goes through. Percentages are fixed per phase so that
 * one number means the same thing on every master; a relayer's plan is shorter.
 */
export function progressPlan(roles: ProgressRoles): ProgressStep[] {
  if (!roles.master) {
    return [
      { phase: 'bound', percent: 10, summary: 'node port bound' },
      ...(roles.bootstrap ? [{ phase: 'peers-known' as const, percent: 50, summary: 'a relayer answered' }] : []),
      { phase: 'done', percent: 100, summary: 'done: relaying' },
    ];
  }
  return [
    { phase: 'bound', percent: 5, summary: 'node port bound' },
    { phase: 'peers-known', percent: 20, summary: 'a relayer answered' },
    { phase: 'peers-verified', percent: 40, summary: 'enough verified relayers for a path' },
    { phase: 'first-tunnel', percent: 60, summary: 'first tunnel up' },
    { phase: 'pool-full', percent: 80, summary: 'tunnel pool full' },
    ...(roles.dht ? [{ phase: 'dht-joined' as const, percent: 90, summary: 'DHT joined' }] : []),
    { phase: 'done', percent: 100, summary: 'done' },
  ];
}

/**
 * The milestones of one node. Each is passed once and in plan order: a milestone found to hold
 * before an earlier one (a pool filled before the check saw its first tunnel) passes the
 * earlier ones at the same instant, so the log never skips a line. Once passed, a milestone
 * stays passed (Tor's bootstrap is one-shot too): later losses are the heartbeat's to tell.
 */
export class Progress {
  readonly #plan: readonly ProgressStep[];
  readonly #clock: Clock;
  readonly #startedAt: number;
  readonly #passed: ProgressMilestone[] = [];
  readonly #onPassed: (milestone: ProgressMilestone) => void;

  /** Times count from now on `clock`; `onPassed` hears each milestone as it is passed. */
  constructor(plan: readonly ProgressStep[], clock: Clock, onPassed: (milestone: ProgressMilestone) => void) {
    this.#plan = plan;
    this.#clock = clock;
    this.#startedAt = clock.now();
    this.#onPassed = onPassed;
  }

  /** Whether every milestone of the plan, 100 % included, has been passed. */
  get done(): boolean {
    return this.#passed.length === this.#plan.length;
  }

  /**
   * Passes the furthest milestone for which `holds` is true, and every one before it. `holds`
   * is asked only about milestones not yet passed, and never about 'done' (it holds once
   * every other one has passed).
   */
  update(holds: (phase: ProgressPhase) => boolean): void {
    let reach = -1;
    for (let i = this.#passed.length; i < this.#plan.length; i++) {
      const phase = this.#plan[i]!.phase;
      if (phase === 'done' ? reach === i - 1 || i === this.#passed.length : holds(phase)) reach = i;
    }
    const atMs = this.#clock.now() - this.#startedAt;
    while (this.#passed.length <= reach) {
      const milestone = { ...this.#plan[this.#passed.length]!, atMs };
      this.#passed.push(milestone);
      this.#onPassed(milestone);
    }
  }

  /** Where the node is now, for `DeutNode.progress()`. */
  snapshot(): ProgressSnapshot {
    const last = this.#passed.at(-1);
    return {
      percent: last?.percent ?? 0,
      phase: last?.phase ?? 'bound',
      summary: last?.summary ?? 'starting',
      done: this.done,
      passed: [...this.#passed],
      next: this.#plan.slice(this.#passed.length),
    };
  }
}

/** The log line of a milestone, Tor's shape: `bootstrapped 60% (first-tunnel): first tunnel up`. */
export function formatMilestone(milestone: ProgressStep): string {
  return `bootstrapped ${milestone.percent}% (${milestone.phase}): ${milestone.summary}`;
}

/** What a node reports every heartbeat period (`DeutNode` event 'heartbeat'): counts only, no address or key. */
export interface Heartbeat {
  /** Since the node started, on its clock. */
  readonly uptimeMs: number;
  /** Since the previous heartbeat (or the start): the window of the "since" counts. */
  readonly sinceMs: number;
  readonly tunnels: {
    /** Our own tunnels (a master's), built and not yet gone. */
    readonly owned: number;
    /** Of those, the ones carrying traffic now. */
    readonly usable: number;
    /** Others' tunnels we carry as a relay hop. */
    readonly transit: number;
    /** Others' tunnels we are the endpoint of. */
    readonly endpoints: number;
  };
  /** Cells we relayed for others since the previous heartbeat. */
  readonly cellsRelayed: number;
  readonly drops: {
    /** Input dropped since the previous heartbeat, every layer. */
    readonly total: number;
    /** The commonest reasons, most first, as `layer:reason`. */
    readonly top: ReadonlyArray<{ readonly reason: string; readonly count: number }>;
  };
  readonly peers: { readonly known: number; readonly verified: number };
}

/** How many drop reasons a heartbeat names. */
export const HEARTBEAT_TOP_DROPS = 3;

/** Whole units an operator reads at a glance: `3d 4h`, `2h 5m`, `7m 12s`. */
function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const [d, h, m] = [Math.floor(s / 86_400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

/** The heartbeat's one log line. */
export function formatHeartbeat(beat: Heartbeat): string {
  const since = formatDuration(beat.sinceMs);
  const top = beat.drops.top.map((d) => `${d.reason} ${d.count}`).join(', ');
  return (
    `heartbeat: up ${formatDuration(beat.uptimeMs)}; tunnels ${beat.tunnels.usable}/${beat.tunnels.owned} usable/owned, ${beat.tunnels.transit} transit, ${beat.tunnels.endpoints} endpoints; ` +
    `${beat.cellsRelayed} cells relayed and ${beat.drops.total} drops${top === '' ? '' : ` (${top})`} in the last ${since}; ` +
    `${beat.peers.verified}/${beat.peers.known} peers verified/known`
  );
}

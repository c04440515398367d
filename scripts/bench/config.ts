/** What every row of the benchmark is told: how long to run, and where to report progress. */
export interface BenchConfig {
  /** A smoke run: smaller sizes and fewer samples, under 2 minutes in all. */
  readonly quick: boolean;
  /** Alternating runs per figure (at least 5 for a real run). */
  readonly runs: number;
  /** Progress lines (stderr), not results. */
  readonly log: (line: string) => void;
}

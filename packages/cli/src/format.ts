/**
 * Plain-text tables for the human output of `deut status`, `tunnels`, `peers`: aligned
 * columns and nothing else, in a few lines. A table library (cli-table3 and the like) adds
 * borders, colours and dependencies an operator's terminal and `grep` do not need; scripts
 * read `--json`.
 */

/** Prints `rows` as an aligned table of `columns` (missing values shown as "-"). */
export function printTable(rows: ReadonlyArray<Record<string, unknown>>, columns: readonly string[], out: NodeJS.WritableStream = process.stdout): void {
  if (rows.length === 0) {
    out.write('(none)\n');
    return;
  }
  const cell = (value: unknown): string => {
    if (value === undefined || value === null) return '-';
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
    return JSON.stringify(value);
  };
  const cells = rows.map((row) => columns.map((c) => cell(row[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: readonly string[]): string => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  out.write(`${line(columns)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const r of cells) out.write(`${line(r)}\n`);
}

/** A tunnel's path as `deut tunnels` prints it, first hop to endpoint: `127.0.0.1:7000 → ? → ?` when only the first hop is known. */
export function formatPath(path: ReadonlyArray<{ readonly address: string | null }>): string {
  return path.map((hop) => hop.address ?? '?').join(' \u2192 ');
}

/** A duration as an operator reads it at a glance: `42s`, `3m07s`, `2h05m`. */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const two = (n: number): string => String(n).padStart(2, '0');
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${two(seconds % 60)}s`;
  return `${Math.floor(seconds / 3600)}h${two(Math.floor(seconds / 60) % 60)}m`;
}

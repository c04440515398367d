/** Plain-text tables for the human output of `deut status`, `tunnels`, `peers`. */

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

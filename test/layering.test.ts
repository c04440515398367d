/**
 * The package graph drawn in docs/ARCHITECTURE.md ("The package graph") is the law, and the
 * compiler enforces it: each package's tsconfig references only packages the drawing lets it
 * import, and `paths` resolves every `@deut/*` import to sources, so importing an unreferenced
 * package is error TS6307 in `tsc -b`. This test reads the drawn edges from the document,
 * checks every tsconfig against them, and compiles one probe import per ordered pair of
 * packages with the real tsconfig files (virtual probe files; nothing is written to the tree).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../', import.meta.url));
const packages = readdirSync(join(root, 'packages')).filter((name) => !name.startsWith('.')).sort();

type Graph = ReadonlyMap<string, readonly string[]>;

/**
 * The direct edges of the drawing: the fenced block after the heading "The package graph",
 * one `package -> a, b` line per package (an empty right side for a package that imports none).
 */
function drawnGraph(): Graph {
  const doc = readFileSync(join(root, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const section = /## The package graph[\s\S]*?```text\n([\s\S]*?)```/.exec(doc);
  assert.ok(section, 'docs/ARCHITECTURE.md has a "## The package graph" section with a ```text block of edges');
  const graph = new Map<string, string[]>();
  for (const line of section[1]!.split('\n')) {
    const edge = /^\s*([a-z]+)\s*->\s*(.*)$/.exec(line);
    if (edge === null) continue;
    const targets = edge[2]!.split(',').map((t) => t.trim()).filter((t) => t !== '');
    graph.set(edge[1]!, targets);
  }
  return graph;
}

/** Every package `pkg` may import under `graph`: its edges, and theirs, transitively. */
function reachable(graph: Graph, pkg: string): Set<string> {
  const seen = new Set<string>();
  const visit = (name: string): void => {
    for (const dep of graph.get(name) ?? []) {
      if (seen.has(dep)) continue;
      seen.add(dep);
      visit(dep);
    }
  };
  visit(pkg);
  return seen;
}

/** The graph the tsconfig files declare: each package's project references. */
function referencedGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const pkg of packages) {
    const config = JSON.parse(readFileSync(join(root, 'packages', pkg, 'tsconfig.json'), 'utf8')) as { references?: Array<{ path: string }> };
    graph.set(pkg, (config.references ?? []).map((r) => r.path.replace('../', '')));
  }
  return graph;
}

/**
 * The ways `declared` departs from `drawn`: a package missing from either, a cycle in the
 * drawing, or a reference to a package the drawing does not let it import.
 */
function violations(drawn: Graph, declared: Graph): string[] {
  const found: string[] = [];
  for (const pkg of new Set([...drawn.keys(), ...declared.keys()])) {
    if (!drawn.has(pkg)) found.push(`${pkg} is not in the drawing`);
    if (!declared.has(pkg)) found.push(`${pkg} is drawn but has no package`);
    if (reachable(drawn, pkg).has(pkg)) found.push(`${pkg} is on a cycle of the drawing`);
    const allowed = reachable(drawn, pkg);
    for (const dep of declared.get(pkg) ?? []) if (!allowed.has(dep)) found.push(`${pkg} -> ${dep}`);
  }
  return found;
}

/**
 * Compiles `pkg` once per other package with one extra virtual source file importing it;
 * returns the error codes per target. The probe must be the program's only file outside the
 * package: a file pulled in by one probe reports TS6307 only once, at the first import of it.
 * Each program reuses the previous one's unchanged source files.
 */
function compileProbes(pkg: string, targets: readonly string[]): Map<string, number[]> {
  const configPath = join(root, 'packages', pkg, 'tsconfig.json');
  const parsed = ts.getParsedCommandLineOfConfigFile(configPath, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  assert.ok(parsed, `cannot parse ${configPath}`);
  const probe = join(root, 'packages', pkg, 'src', '__layering_probe__.ts');
  let probeText = '';
  const host = ts.createCompilerHost(parsed.options);
  const getSourceFile = host.getSourceFile.bind(host);
  const own = new Set(parsed.fileNames);
  // Parsed once for all probes of this package (lib and @types/node above all).
  const parsedFiles = new Map<string, ts.SourceFile>();
  const packagesDir = join(root, 'packages');
  host.getSourceFile = (fileName, languageVersion, ...rest) => {
    if (fileName === probe) return ts.createSourceFile(fileName, probeText, languageVersion);
    // Another package's source (never a referenced package's declarations): TS6307 depends
    // only on its name being outside this project, so an empty stub spares parsing that
    // package and everything it imports.
    if (fileName.startsWith(packagesDir) && fileName.endsWith('.ts') && !fileName.endsWith('.d.ts') && !own.has(fileName)) {
      return ts.createSourceFile(fileName, 'export {};\n', languageVersion);
    }
    let file = parsedFiles.get(fileName);
    if (file === undefined) {
      file = getSourceFile(fileName, languageVersion, ...rest);
      if (file !== undefined) parsedFiles.set(fileName, file);
    }
    return file;
  };
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (fileName) => fileName === probe || fileExists(fileName);
  const codes = new Map<string, number[]>();
  let oldProgram: ts.Program | undefined;
  for (const target of targets) {
    probeText = `import * as target from '@deut/${target}';\nexport const probe = target;\n`;
    const program: ts.Program = ts.createProgram({
      rootNames: [...parsed.fileNames, probe],
      options: { ...parsed.options, noEmit: true },
      ...(parsed.projectReferences ? { projectReferences: parsed.projectReferences } : {}),
      host,
      ...(oldProgram ? { oldProgram } : {}),
    });
    oldProgram = program;
    const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(), ...program.getSemanticDiagnostics(program.getSourceFile(probe))];
    codes.set(target, diagnostics.map((d) => d.code));
  }
  return codes;
}

const UNLISTED_FILE = 6307;

test('layering - every tsconfig references only what the drawn graph allows, and the drawing has no cycle', () => {
  assert.deepEqual(violations(drawnGraph(), referencedGraph()), []);
});

test('layering - a reference the drawing forbids is caught, also where a total order of packages would allow it', () => {
  // Both edges point down a total order (dht above link; crypto beside wire), so a check of
  // "references only packages earlier in a list" passed them; the drawing forbids both.
  for (const [from, to] of [
    ['dht', 'link'],
    ['crypto', 'wire'],
    ['wire', 'crypto'],
    ['tunnel', 'dht'],
    ['cli', 'testkit'],
  ] as const) {
    const declared = referencedGraph();
    const before = violations(drawnGraph(), declared);
    declared.set(from, [...(declared.get(from) ?? []), to]);
    const added = violations(drawnGraph(), declared).filter((v) => !before.includes(v));
    assert.deepEqual(added, [`${from} -> ${to}`], `${from} -> ${to} must be refused`);
  }
  const cyclic = new Map(drawnGraph());
  cyclic.set('common', ['node']);
  assert.ok(violations(cyclic, referencedGraph()).includes('common is on a cycle of the drawing'));
});

for (const pkg of packages) {
  test(`layering - ${pkg}: what the drawing allows imports cleanly, any other import fails the build`, { timeout: 120_000 }, () => {
    const allowed = reachable(drawnGraph(), pkg);
    const codes = compileProbes(
      pkg,
      packages.filter((target) => target !== pkg),
    );
    for (const [target, errors] of codes) {
      if (allowed.has(target)) {
        assert.ok(!errors.includes(UNLISTED_FILE), `${pkg} -> ${target} should compile, got TS${errors.join(', TS')}`);
      } else {
        assert.ok(errors.includes(UNLISTED_FILE), `${pkg} -> ${target} must fail with TS6307, got [${errors.join(', ')}]`);
      }
    }
  });
}

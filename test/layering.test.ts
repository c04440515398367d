/**
 * The package layering of docs/ARCHITECTURE.md is enforced by the compiler: each package's
 * tsconfig references only the packages below it, and `paths` resolves every `@deut/*`
 * import to sources, so importing an unreferenced package is error TS6307 in `tsc -b`.
 * This test proves it for every ordered pair of packages, with the real tsconfig files and a
 * virtual probe file (nothing is written to the tree).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../', import.meta.url));
const packages = readdirSync(join(root, 'packages')).filter((name) => !name.startsWith('.')).sort();

/** Everything `pkg` may import: the packages it references, and theirs, transitively. */
function below(pkg: string): Set<string> {
  const seen = new Set<string>();
  const visit = (name: string): void => {
    for (const dep of references(name)) {
      if (!seen.has(dep)) {
        seen.add(dep);
        visit(dep);
      }
    }
  };
  visit(pkg);
  return seen;
}

function references(pkg: string): string[] {
  const config = JSON.parse(readFileSync(join(root, 'packages', pkg, 'tsconfig.json'), 'utf8')) as { references?: Array<{ path: string }> };
  return (config.references ?? []).map((r) => r.path.replace('../', ''));
}

/** Compiles `pkg` with one extra source file importing `@deut/<target>`; returns the error codes. */
function compileProbe(pkg: string, target: string): number[] {
  const configPath = join(root, 'packages', pkg, 'tsconfig.json');
  const parsed = ts.getParsedCommandLineOfConfigFile(configPath, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  assert.ok(parsed, `cannot parse ${configPath}`);
  const probe = join(root, 'packages', pkg, 'src', '__layering_probe__.ts');
  const probeText = `import * as target from '@deut/${target}';\nexport const probe = target;\n`;
  const host = ts.createCompilerHost(parsed.options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, ...rest) =>
    fileName === probe ? ts.createSourceFile(fileName, probeText, languageVersion) : getSourceFile(fileName, languageVersion, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (fileName) => fileName === probe || fileExists(fileName);
  const program = ts.createProgram({
    rootNames: [...parsed.fileNames, probe],
    options: { ...parsed.options, noEmit: true },
    ...(parsed.projectReferences ? { projectReferences: parsed.projectReferences } : {}),
    host,
  });
  const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(), ...program.getSemanticDiagnostics(program.getSourceFile(probe))];
  return diagnostics.map((d) => d.code);
}

const UNLISTED_FILE = 6307;

test('layering - every package references only packages below it (no cycles)', () => {
  const order = ['common', 'wire', 'crypto', 'transport', 'link', 'dht', 'tunnel', 'node', 'testkit', 'cli'];
  assert.deepEqual([...packages].sort(), [...order].sort(), 'update this test when adding a package');
  for (const pkg of packages) {
    for (const dep of references(pkg)) {
      assert.ok(order.indexOf(dep) < order.indexOf(pkg), `${pkg} references ${dep}, which is not below it`);
    }
  }
});

for (const pkg of packages) {
  test(`layering - ${pkg}: packages below it import cleanly, any other import fails the build`, { timeout: 120_000 }, () => {
    const allowed = below(pkg);
    for (const target of packages) {
      if (target === pkg) continue;
      const codes = compileProbe(pkg, target);
      if (allowed.has(target)) {
        assert.ok(!codes.includes(UNLISTED_FILE), `${pkg} -> ${target} should compile, got TS${codes.join(', TS')}`);
      } else {
        assert.ok(codes.includes(UNLISTED_FILE), `${pkg} -> ${target} must fail with TS6307, got [${codes.join(', ')}]`);
      }
    }
  });
}

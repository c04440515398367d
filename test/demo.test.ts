/**
 * `npm start` must keep working: run the mesh demo as its own process and check that it
 * exits 0 having made every check it prints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const demo = fileURLToPath(new URL('../../scripts/dist/start.js', import.meta.url));

test('demo - npm start (the deut mesh) exits 0 after all its checks', { timeout: 90_000 }, async () => {
  const child = spawn(process.execPath, [demo], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 80_000);
  try {
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, output);
    for (const line of [
      'ok: the echo came back through the tunnel',
      'ok: all 6 gets found their value',
      "ok: the echo server saw only alice's endpoints, never alice",
      'ok: no DHT node ever heard from a master\u2019s own address, only from endpoints',
      'ok: no DHT routing table holds a master address',
      'ok: every relayer freed its tunnels and endpoint ports after the masters left',
      'mesh complete: every check held',
    ]) {
      assert.ok(output.includes(line), `missing "${line}" in:\n${output}`);
    }
  } finally {
    clearTimeout(killer);
    child.kill('SIGKILL');
  }
});

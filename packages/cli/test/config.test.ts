/** Tests of `deut run`'s configuration: the same list means the same from a flag, the environment or the file. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveRunConfig } from '../src/config.js';

const BOTH = [
  { host: '127.0.0.1', port: 7500 },
  { host: '127.0.0.2', port: 7500 },
];

test('config - a comma-separated --bootstrap names several relayers, as DEUT_BOOTSTRAP does', () => {
  for (const sources of [
    { flags: { bootstrap: ['127.0.0.1:7500,127.0.0.2:7500'] }, env: {} },
    { flags: { bootstrap: ['127.0.0.1:7500', '127.0.0.2:7500'] }, env: {} },
    { flags: {}, env: { DEUT_BOOTSTRAP: '127.0.0.1:7500, 127.0.0.2:7500' } },
  ]) {
    const resolved = resolveRunConfig({ ...sources, configFile: undefined });
    assert.ok(resolved.ok, JSON.stringify(resolved));
    assert.deepEqual(resolved.config.bootstrap, BOTH, JSON.stringify(sources));
  }
});

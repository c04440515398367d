#!/usr/bin/env node
// The `deut` command as npm links it. This file is checked in, not built: npm makes the
// `deut` link at install time only if its target exists then, and `npm ci` runs before the
// first build. It loads the compiled command, or says plainly that there is none yet.
import process from 'node:process';
import { URL } from 'node:url';

const entry = new URL('../dist/src/bin.js', import.meta.url);
try {
  await import(entry.href);
} catch (error) {
  const { code, message } = error ?? {};
  if (code === 'ERR_MODULE_NOT_FOUND' && String(message).includes(entry.pathname)) {
    process.stderr.write('deut: not built yet; run `npm run build` in the repository first\n');
    process.exit(1);
  }
  throw error;
}

#!/usr/bin/env node
/** The `deut` executable. */
import { main } from './commands.js';

// A reader that goes away early (`deut status | head -5`) ends the output, not the command
// with a stack trace: stop writing and exit with the code the command had so far.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
// Everything is closed by now; should a library still hold a handle, exit anyway.
setTimeout(() => process.exit(code), 2_000).unref();

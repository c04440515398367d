#!/usr/bin/env node
/** The `deut` executable. */
import { main } from './commands.js';

const code = await main(process.argv.slice(2));
process.exitCode = code;
// Everything is closed by now; should a library still hold a handle, exit anyway.
setTimeout(() => process.exit(code), 2_000).unref();

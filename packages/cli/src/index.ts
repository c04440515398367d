/** @deut/cli: the `deut` command (README.md); the only package that touches `process`. */
export { main } from './commands.js';
export { runMesh, type MeshOptions } from './mesh.js';
export { CONFIG_FIELDS, envName, flagName, resolveRunConfig, type RunConfig } from './config.js';
export { createCliLogger, type CliLogger, type CliLoggerOptions, type LogFormat, type LogLevel } from './logging.js';
export { createNodeMetrics, type NodeMetrics } from './metrics.js';

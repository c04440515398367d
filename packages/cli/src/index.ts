/**
 * @deut/cli: the `deut` command (README.md), the product's entry point and the only package
 * that touches `process`. It depends on the product packages only, never on the dev-only
 * `@deut/testkit` (test/image.test.ts keeps it that way): `deut mesh` runs the testnet of
 * `@deut/node`. Exports: {@link main} (the command line), {@link runMesh} (`deut mesh`), the
 * run configuration (flags, environment, config file: {@link resolveRunConfig}), the logger
 * ({@link createCliLogger}), the Prometheus metrics ({@link createNodeMetrics}) and the checks
 * of `deut doctor` ({@link runDoctor}, each check on its own for tests and wrappers).
 */
export { main } from './commands.js';
export { runMesh, type MeshOptions } from './mesh.js';
export { CONFIG_FIELDS, envName, flagName, resolveRunConfig, type RunConfig } from './config.js';
export { createCliLogger, type CliLogger, type CliLoggerOptions, type LogFormat, type LogLevel } from './logging.js';
export { createNodeMetrics, type NodeMetrics } from './metrics.js';
export {
  checkBootstrap,
  checkClock,
  checkKeyFile,
  checkKnownPeers,
  checkMetricsExposure,
  checkTestFlags,
  formatDoctorReport,
  portCheck,
  runDoctor,
  type DoctorCheck,
  type DoctorCheckId,
  type DoctorLevel,
  type DoctorReport,
} from './doctor.js';

/**
 * The one door to libsodium. libsodium-wrappers loads a WebAssembly module asynchronously,
 * so the rest of the package must not touch it before `cryptoReady()` has resolved; every
 * other module calls `sodium()`, which fails loudly (a bug error) instead of letting an
 * unloaded module produce wrong bytes.
 */
import libsodium from 'libsodium-wrappers-sumo';
import { cryptoBug } from './errors.js';

/** The libsodium API object, as typed by libsodium-wrappers-sumo. */
export type Sodium = typeof libsodium;

let loaded: Sodium | undefined;
let loading: Promise<void> | undefined;

/**
 * Waits until libsodium is initialised. Safe to call any number of times, concurrently or
 * not; every call after the first returns the same promise.
 */
export function cryptoReady(): Promise<void> {
  loading ??= libsodium.ready.then(() => {
    loaded = libsodium;
  });
  return loading;
}

/**
 * The ready libsodium instance.
 * @throws DeutError (kind `bug`, code `SODIUM_NOT_READY`) if `cryptoReady()` has not resolved yet.
 */
export function sodium(): Sodium {
  if (loaded === undefined) {
    throw cryptoBug('SODIUM_NOT_READY', 'libsodium used before cryptoReady() resolved');
  }
  return loaded;
}

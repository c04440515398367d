/**
 * Safe logging (Tor's SafeLogging): addresses, keys, tunnel ids and payloads are replaced
 * by a placeholder unless the operator explicitly asked for unsafe logs. A relay log that
 * links inbound and outbound tunnel ids de-anonymizes users, so the default is to hide.
 */

/** Decides how sensitive values appear in logs. */
export interface Redactor {
  /** true when sensitive values are shown as they are (the `--unsafe-logs` flag). */
  readonly unsafe: boolean;
  /** An IP address, host:port or hostname. */
  address(value: string): string;
  /** A public key, session id or tunnel id. */
  id(value: Uint8Array | string | number): string;
}

const HIDDEN = '[scrubbed]';

/** Builds a redactor; `unsafe: true` shows values, anything else hides them. */
export function createRedactor(options: { unsafe?: boolean } = {}): Redactor {
  const unsafe = options.unsafe === true;
  return {
    unsafe,
    address: (value) => (unsafe ? value : HIDDEN),
    id: (value) => {
      if (!unsafe) return HIDDEN;
      if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
      return String(value);
    },
  };
}

/** The default redactor: hides everything sensitive. */
export const safeRedactor: Redactor = createRedactor();

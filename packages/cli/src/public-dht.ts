/**
 * A public DHT node: the same Kademlia code over a plain UDP socket at a fixed address, with
 * a key that persists in a file. It is not anonymous, and is not meant to be: its job is to
 * be a stable bootstrap contact (`<public key hex>@HOST:PORT`) for masters whose own DHT
 * contacts are endpoints that change every time their tunnels rotate.
 */
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { addressKey, type Logger, type UdpAddress } from '@deut/common';
import { cryptoReady, generateKeyPair, readKeyFile, writeKeyFile, type KeyPair } from '@deut/crypto';
import { DhtNode, channelFromSocket, formatDhtContact, parseDhtContact } from '@deut/dht';

/** A running public DHT node. */
export interface PublicDht {
  readonly dht: DhtNode;
  /** Its contact string, for others' `--dht-bootstrap`. */
  readonly contact: string;
  close(): Promise<void>;
}

/** Reads `path`, or creates it (0600) with a new key; a fresh key when no path is given. */
export async function loadOrCreateKey(path: string | undefined, logger: Logger, what: string): Promise<KeyPair> {
  await cryptoReady();
  if (path === undefined) return generateKeyPair();
  if (existsSync(path)) return readKeyFile(path);
  const keyPair = generateKeyPair();
  await writeKeyFile(path, keyPair, { overwrite: false });
  logger.info(`created a new ${what} key file`, { path });
  return keyPair;
}

/** Binds `listen` and starts a DHT node there, joining through `bootstrap` contacts if any. */
export async function startPublicDht(listen: UdpAddress, keyFile: string | undefined, bootstrap: readonly string[], logger: Logger): Promise<PublicDht> {
  const identity = await loadOrCreateKey(keyFile, logger, 'DHT');
  const socket = dgram.createSocket(listen.host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(listen.port, listen.host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  // Later socket errors (ICMP unreachable on send, say) are losses, not crashes.
  socket.on('error', (error) => logger.debug('public dht: socket error', { error: error.message }));
  const bound = socket.address();
  const address = { host: bound.address, port: bound.port };
  const dht = new DhtNode({
    identity,
    channel: channelFromSocket(socket, (error) => logger.debug('public dht: send failed', { error: error.message })),
    bootstrap: bootstrap.map(parseDhtContact),
    logger,
  });
  if (bootstrap.length > 0) dht.join().catch((error: unknown) => logger.warn('public dht: join failed; retrying at the next upkeep', { error: String(error) }));
  logger.info('public dht node started', { address: addressKey(address) });
  return {
    dht,
    contact: formatDhtContact({ publicKey: identity.publicKey, address }),
    close: async () => {
      dht.close();
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
}

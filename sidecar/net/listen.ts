/**
 * Listening on `host:port` or `unix:/path` addresses: shared by the proxies and the admin
 * endpoint, so neither has to reach into the other for it.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { connect as netConnect, type Server } from 'node:net';
import { errnoCode } from '../../common/errors.js';
import type { Address } from '../config/schema.js';

/** Listens on `address`; resolves with the address it is bound to (port 0 resolved). */
export async function listen(server: Server, address: Address): Promise<string> {
  await listenOn(server, address);
  return boundAddress(server, address);
}

/** The address a listening server actually has (port 0 resolved), as config spells it. */
export function boundAddress(server: Server, configured: Address): string {
  if (configured.kind === 'unix') return configured.text;
  const a = server.address();
  if (a && typeof a === 'object') return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  return configured.text;
}

/**
 * Listens; a unix socket left behind by a crashed sidecar is removed first (but not one
 * someone still answers on), and the socket is made 0600 so that on a shared host only
 * this user can call out under the service's identity.
 */
export async function listenOn(server: Server, address: Address): Promise<void> {
  if (address.kind === 'unix') await removeStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (address.kind === 'unix') {
      // 0600 from the bind on (the bind is synchronous inside listen): chmod alone would
      // leave a moment in which another local user could connect.
      const previous = process.umask(0o177);
      try {
        server.listen({ path: address.path }, done);
      } finally {
        process.umask(previous);
      }
    } else server.listen({ host: address.host, port: address.port }, done);
  });
  if (address.kind === 'unix') chmodSync(address.path, 0o600);
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    if (!lstatSync(path).isSocket()) return; // not ours to delete: listen reports EADDRINUSE
  } catch {
    return;
  }
  const alive = await new Promise<boolean>((resolve) => {
    const s = netConnect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (!alive) {
    try {
      unlinkSync(path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}

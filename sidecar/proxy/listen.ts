/**
 * Listening on and dialing `host:port` or `unix:/path` addresses.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { connect as netConnect, type Server, type Socket } from 'node:net';
import { errnoCode } from '../../common/errors.js';
import type { Address } from '../config/schema.js';

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

/**
 * Nagle's algorithm off, on every socket the sidecar accepts or opens: a proxy's small
 * writes (a request head, the first response bytes) otherwise wait for the peer's delayed
 * ACK, about 40 ms on every new connection with the CPU idle, twice on the mesh path.
 * Node turns it off only for the sockets of its own http.Server.
 */
export const NO_DELAY = { noDelay: true } as const;

/** Dials a forward/connect address (plain TCP or unix). */
export function dial(address: Address): Socket {
  return address.kind === 'unix' ? netConnect({ path: address.path, allowHalfOpen: true }) : netConnect({ host: address.host, port: address.port, allowHalfOpen: true, ...NO_DELAY });
}

/** `ip:port` of a socket's remote end, or `unix` for a unix-socket client. */
export function remoteOf(socket: Socket): string {
  if (!socket.remoteAddress) return 'unix';
  return socket.remoteFamily === 'IPv6' ? `[${socket.remoteAddress}]:${socket.remotePort}` : `${socket.remoteAddress}:${socket.remotePort}`;
}

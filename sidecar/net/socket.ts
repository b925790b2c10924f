/**
 * The proxies' sockets: Nagle off, dialing a forward/connect address, naming a peer's
 * address for log lines.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Address } from '../config/schema.js';

/**
 * Nagle's algorithm off, on every socket the sidecar accepts or opens: a proxy's small
 * writes (a request head, the first response bytes) otherwise wait for the peer's delayed
 * ACK, about 40 ms on every new connection with the CPU idle, twice on the mesh path.
 * Node turns it off only for the sockets of its own http.Server.
 */
export const NO_DELAY = { noDelay: true } as const;

/** Dials a forward/connect address (plain TCP or unix). */
export function dial(address: Address): Socket {
  return address.kind === 'unix'
    ? netConnect({ path: address.path, allowHalfOpen: true })
    : netConnect({ host: address.host, port: address.port, allowHalfOpen: true, ...NO_DELAY });
}

/** `ip:port` of a socket's remote end, or `unix` for a unix-socket client. */
export function remoteOf(socket: Socket): string {
  if (!socket.remoteAddress) return 'unix';
  return socket.remoteFamily === 'IPv6' ? `[${socket.remoteAddress}]:${socket.remotePort}` : `${socket.remoteAddress}:${socket.remotePort}`;
}

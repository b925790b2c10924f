/**
 * Reads from the local service into one buffer that every such socket shares, for the
 * direction that ends in a caller's TLS socket (inbound tcp mode, where downloads flow).
 *
 * Node gives each read of a plain socket a new 64 KiB allocation. Those die young, but
 * under a stream of large responses enough of them are still queued when a scavenge runs
 * to be promoted, and V8 collects old-generation buffers only after about 64 MB of them
 * have piled up: measured here, 4 parallel 1 MiB downloads raised a sidecar's RSS (and the
 * plain-Node floor's) from 60 to 105–120 MB, 35 MB of it dead buffers waiting for a GC.
 *
 * A TLS socket's write copies the cleartext into OpenSSL (SSL_write encrypts it, or Node
 * copies what it could not write yet) before it returns, so the shared buffer may be
 * handed to it directly — but only when nothing is queued ahead of it: a write made while
 * another is in flight is queued in JavaScript by reference, and the buffer would be
 * overwritten by the next read. That case (a slow caller) gets a copy, as before.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Address } from '../config/schema.js';
import { NO_DELAY } from './socket.js';

/** One read's worth, as Node's own default; a single thread reads into it, one socket at a time. */
const SHARED = Buffer.allocUnsafe(64 * 1024);

const sinks = new WeakMap<Socket, { dest: TLSSocket | undefined }>();

/**
 * Dials `address` (as dial() does) with its reads going to the shared buffer. Reading
 * starts when pipeSharedRead() names the TLS socket the bytes go to.
 */
export function dialSharedRead(address: Address): Socket {
  const sink: { dest: TLSSocket | undefined } = { dest: undefined };
  const onread = {
    buffer: SHARED,
    callback: (n: number, buf: Buffer): boolean => {
      const dest = sink.dest!;
      const chunk = buf.subarray(0, n);
      const direct = dest.writableLength === 0 && dest.writableCorked === 0 && !dest.connecting;
      if (dest.write(direct ? chunk : Buffer.from(chunk))) return true;
      // Back-pressure: stop reading until the caller has taken what is queued.
      dest.once('drain', () => socket.resume());
      return false;
    },
  };
  const socket =
    address.kind === 'unix'
      ? netConnect({ path: address.path, allowHalfOpen: true, onread })
      : netConnect({ host: address.host, port: address.port, allowHalfOpen: true, ...NO_DELAY, onread });
  // No read (and so no callback) before the destination is known.
  socket.pause();
  sinks.set(socket, sink);
  return socket;
}

/** Whether `s` was made by dialSharedRead (its bytes cannot be read with pipe()). */
export function isSharedRead(s: object): s is Socket {
  return sinks.has(s as Socket);
}

/** Starts `source` (from dialSharedRead) flowing into `dest`, ending dest's write half at its end, as pipe() does. */
export function pipeSharedRead(source: Socket, dest: TLSSocket): void {
  sinks.get(source)!.dest = dest;
  source.once('end', () => dest.end());
  source.resume();
}

/**
 * Joins two sockets both ways with half-close: when one side finishes sending, the other
 * side's write half is ended and the reverse direction keeps flowing until it finishes
 * too (a request body followed by a long response must not be cut — ghostunnel PR#794).
 * An error on either side, or no byte moving either way for the idle timeout, tears both
 * down (net/idle-sweep.ts keeps that timeout for every pipe at once).
 */
import type { Socket } from 'node:net';
import { watchIdle } from '../net/idle-sweep.js';

export interface PipeOptions {
  readonly idleTimeoutMs: number;
  /** Called once, when both sockets are closed. `received` is what `peer` sent us. */
  readonly onClose: (stats: { received: number; sent: number; reason: 'done' | 'idle' | 'error' | 'closed'; error?: Error }) => void;
}

export interface PipeHandle {
  /** Ends both sides at once (revocation, shutdown). */
  destroy(): void;
}

/** `peer` is the remote side of the listener (TLS caller, or local client for outbound). */
export function pipeBoth(peer: Socket, upstream: Socket, opts: PipeOptions): PipeHandle {
  let closed = 0;
  let reason: 'done' | 'idle' | 'error' | 'closed' = 'done';
  let firstError: Error | undefined;
  let reported = false;
  const teardown = (why: 'idle' | 'error' | 'closed', err?: Error) => {
    if (reason === 'done') reason = why;
    if (err && !firstError) firstError = err;
    peer.destroy();
    upstream.destroy();
  };
  const onClose = () => {
    closed++;
    if (closed === 1) {
      // If one side closed without a clean end (reset), the other cannot finish either.
      const other = peer.destroyed && !peer.readableEnded ? upstream : upstream.destroyed && !upstream.readableEnded ? peer : undefined;
      if (other && !other.destroyed) other.destroy();
    }
    if (closed === 2 && !reported) {
      reported = true;
      unwatch();
      opts.onClose({ received: peer.bytesRead, sent: peer.bytesWritten, reason, ...(firstError ? { error: firstError } : {}) });
    }
  };
  const unwatch = watchIdle(opts.idleTimeoutMs, {
    activity: () => peer.bytesRead + peer.bytesWritten + upstream.bytesRead + upstream.bytesWritten,
    onIdle: () => teardown('idle'),
  });
  for (const s of [peer, upstream]) {
    s.on('error', (err) => teardown('error', err));
    s.on('close', onClose);
  }
  peer.pipe(upstream);
  upstream.pipe(peer);
  return { destroy: () => teardown('closed') };
}

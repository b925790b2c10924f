/**
 * Joins two sockets both ways with half-close: when one side finishes sending, the other
 * side's write half is ended and the reverse direction keeps flowing until it finishes
 * too (a request body followed by a long response must not be cut — ghostunnel PR#794).
 * An error on either side, or no byte moving either way for the idle timeout, tears both
 * down (net/idle-sweep.ts keeps that timeout for every pipe at once).
 *
 * Either end may be an HTTP/2 stream of a tunnel (tunnel-protocol.ts): there a clean end
 * is END_STREAM, and a reset is RST_STREAM with an error code, which Node reports as a
 * readable that ended (not as an error) — so a stream's reset is read from its rstCode,
 * and a stream is torn down with RST_STREAM(CANCEL), never with destroy() (which resets
 * with NO_ERROR and reads as a clean end on the other side).
 */
import type { Socket } from 'node:net';
import type { Http2Stream } from 'node:http2';
import { constants as h2 } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { watchIdle } from '../net/idle-sweep.js';
import { isSharedRead, pipeSharedRead } from '../net/shared-read.js';

export type PipeEnd = Socket | Http2Stream;

export interface PipeOptions {
  readonly idleTimeoutMs: number;
  /** Called once, when both sockets are closed. `received` is what `peer` sent us. */
  readonly onClose: (stats: {
    received: number;
    sent: number;
    reason: 'done' | 'idle' | 'error' | 'closed' | 'reset';
    error?: Error;
  }) => void;
}

export interface PipeHandle {
  /** Ends both sides at once (revocation, shutdown). */
  destroy(): void;
}

export function isH2Stream(s: PipeEnd | object): s is Http2Stream {
  return 'rstCode' in s;
}

/** Tears `s` down as a reset: RST_STREAM(CANCEL) for a stream, destroy for a socket. */
export function abortEnd(s: PipeEnd): void {
  if (isH2Stream(s)) {
    if (!s.closed && !s.destroyed) s.close(h2.NGHTTP2_CANCEL);
  } else s.destroy();
}

/** Whether `s` closed without a clean end of what it was sending us (a reset). */
function wasReset(s: PipeEnd): boolean {
  if (isH2Stream(s)) return s.rstCode !== undefined && s.rstCode !== h2.NGHTTP2_NO_ERROR ? true : s.destroyed && !s.readableEnded;
  return s.destroyed && !s.readableEnded;
}

/** `peer` is the remote side of the listener (TLS caller, or local client for outbound). */
export function pipeBoth(peer: PipeEnd, upstream: PipeEnd, opts: PipeOptions): PipeHandle {
  let closed = 0;
  let reason: 'done' | 'idle' | 'error' | 'closed' | 'reset' = 'done';
  let firstError: Error | undefined;
  let reported = false;
  const teardown = (why: 'idle' | 'error' | 'closed', err?: Error) => {
    if (reason === 'done') reason = why;
    if (err && !firstError) firstError = err;
    abortEnd(peer);
    abortEnd(upstream);
  };
  const onClose = () => {
    closed++;
    if (closed === 1) {
      // If one side closed without a clean end (reset), the other cannot finish either.
      const other = wasReset(peer) ? upstream : wasReset(upstream) ? peer : undefined;
      if (other && !other.destroyed) {
        if (reason === 'done' && (isH2Stream(peer) || isH2Stream(upstream))) reason = 'reset';
        // (Not resetAndDestroy() for a TCP app socket: on Node 20 a socket reset that way
        // here never emitted 'close', and its peer saw nothing.)
        abortEnd(other);
      }
    }
    if (closed === 2 && !reported) {
      reported = true;
      unwatch();
      const received = isH2Stream(peer) ? (isH2Stream(upstream) ? 0 : upstream.bytesWritten) : peer.bytesRead;
      const sent = isH2Stream(peer) ? (isH2Stream(upstream) ? 0 : upstream.bytesRead) : peer.bytesWritten;
      opts.onClose({ received, sent, reason, ...(firstError ? { error: firstError } : {}) });
    }
  };
  // A stream has no byte counters of its own; what crosses it crosses the socket end too.
  const sockets = [peer, upstream].filter((s): s is Socket => !isH2Stream(s));
  const unwatch = sockets.length
    ? watchIdle(opts.idleTimeoutMs, {
        activity: () => sockets.reduce((n, s) => n + s.bytesRead + s.bytesWritten, 0),
        onIdle: () => teardown('idle'),
      })
    : stopOnIdle([peer, upstream], opts.idleTimeoutMs, () => teardown('idle'));
  for (const s of [peer, upstream]) {
    s.on('error', (err: Error) => teardown('error', err));
    s.on('close', onClose);
  }
  peer.pipe(upstream);
  // The local service's side of an inbound tcp connection reads into a shared buffer (net/shared-read.ts).
  if (isSharedRead(upstream) && !isH2Stream(peer)) pipeSharedRead(upstream, peer as TLSSocket);
  else upstream.pipe(peer);
  return { destroy: () => teardown('closed') };
}

/** Two streams and no socket (not made today): each stream's own timer, as before the sweep. */
function stopOnIdle(ends: readonly PipeEnd[], idleTimeoutMs: number, onIdle: () => void): () => void {
  for (const s of ends) s.setTimeout(idleTimeoutMs, onIdle);
  return () => undefined;
}

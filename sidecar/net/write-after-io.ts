/**
 * Writes to the local service held back until the event loop has handled every read that
 * was ready, then sent together: a corked socket is uncorked in the loop's check phase
 * (setImmediate), which comes right after the poll phase that ran the read callbacks.
 *
 * Why: the service usually shares the sidecar's CPU (the same pod or VM, often the same
 * core). Woken by each request the moment it is written, it preempts the sidecar, answers
 * one request and sleeps; the sidecar resumes, writes the next request, and is preempted
 * again. Measured in http mode with both pinned to one core (32 keep-alive callers): the
 * sidecar was preempted 0.66 times per request and the service woke 0.64 times. With the
 * writes held to the end of the batch: 0.43 and 0.42, and the sidecar's CPU per request
 * fell by about an eighth (bench/README.md, "Requests to the service, written after the
 * reads"). An idle sidecar loses nothing: with one read ready, the check phase follows it
 * at once.
 */
import type { Socket } from 'node:net';

let held: Socket[] = [];

function release(): void {
  const sockets = held;
  held = [];
  for (const socket of sockets) socket.uncork();
}

/** Writes `data` to `socket` once this loop iteration's reads have all been handled. */
export function writeAfterIo(socket: Socket, data: string, encoding: BufferEncoding): void {
  socket.cork();
  socket.write(data, encoding);
  if (held.push(socket) === 1) setImmediate(release);
}

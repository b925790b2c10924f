/**
 * Idle timeouts for proxied connections, kept by one timer per limit instead of one per
 * socket. Node's socket.setTimeout re-arms its timer on every read and every write: on a
 * keep-alive connection that was 12 % of tcp mode's instructions per request (199 K
 * against the plain-Node floor's 178 K, counted by bench/instructions.ts; 179 K without
 * it). Here a sweep looks at each connection's byte counters a few times per idle period
 * and ends the ones that have not moved for the whole period.
 *
 * A connection is therefore closed between idleTimeout and idleTimeout + one tick (a
 * quarter of the limit, at most 5 s: an hour's limit closes within an hour and 5 s).
 */

export interface Watched {
  /** Anything that changes whenever a byte moves (the sockets' bytesRead + bytesWritten). */
  activity(): number;
  /** Called once, when nothing moved for the whole limit. */
  onIdle(): void;
}

interface Entry {
  readonly watched: Watched;
  last: number;
  since: number;
}

const MAX_TICK_MS = 5_000;
const MIN_TICK_MS = 50;

class IdleSweep {
  readonly #entries = new Set<Entry>();
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly limitMs: number) {}

  add(watched: Watched): () => void {
    const entry: Entry = { watched, last: watched.activity(), since: Date.now() };
    this.#entries.add(entry);
    if (!this.#timer) {
      const tick = Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.floor(this.limitMs / 4)));
      this.#timer = setInterval(() => this.sweep(), tick);
      this.#timer.unref();
    }
    return () => this.remove(entry);
  }

  private remove(entry: Entry): void {
    this.#entries.delete(entry);
    if (this.#entries.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const entry of this.#entries) {
      const seen = entry.watched.activity();
      if (seen !== entry.last) {
        entry.last = seen;
        entry.since = now;
      } else if (now - entry.since >= this.limitMs) {
        this.remove(entry);
        entry.watched.onIdle();
      }
    }
  }
}

const sweeps = new Map<number, IdleSweep>();

/**
 * Calls `watched.onIdle()` once nothing has moved for `limitMs`; returns the function that
 * stops watching (call it when the connection closes). A limit of 0 or less watches nothing.
 */
export function watchIdle(limitMs: number, watched: Watched): () => void {
  if (!(limitMs > 0)) return () => undefined;
  let sweep = sweeps.get(limitMs);
  if (!sweep) {
    sweep = new IdleSweep(limitMs);
    sweeps.set(limitMs, sweep);
  }
  return sweep.add(watched);
}

/**
 * Requests per caller (a service's SPIFFE ID, or an address for unauthenticated calls),
 * as token buckets: `burst` at once, refilled at `perMinute`. A leaked key can then renew
 * a few times, not hammer the CA. Idle buckets are forgotten so the map stays small.
 */
export interface RateLimit {
  readonly perMinute: number;
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  #lastSweep = 0;

  constructor(private readonly limit: RateLimit) {}

  /** Takes one request for `key`; returns 0 when allowed, else the seconds to wait. */
  take(key: string, now = Date.now()): number {
    this.sweep(now);
    const ratePerMs = this.limit.perMinute / 60_000;
    const b = this.#buckets.get(key) ?? { tokens: this.limit.burst, at: now };
    b.tokens = Math.min(this.limit.burst, b.tokens + (now - b.at) * ratePerMs);
    b.at = now;
    this.#buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / ratePerMs / 1000));
  }

  private sweep(now: number): void {
    if (now - this.#lastSweep < 60_000) return;
    this.#lastSweep = now;
    const fullAfterMs = (this.limit.burst / this.limit.perMinute) * 60_000;
    for (const [key, b] of this.#buckets) if (now - b.at > fullAfterMs) this.#buckets.delete(key);
  }
}

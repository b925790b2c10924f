/**
 * The connections a proxy has let through, re-judged whenever the snapshot source says
 * something changed (a new CRL or policy: every connection) or time passed (only those
 * whose peer reached notAfter since). The proxy says how a connection is judged again and
 * what to do with a refused one (log it, close it); the re-check itself knows no socket.
 */
import type { CertInfo } from '../../common/x509.js';
import type { Snapshot, SnapshotSource } from '../snapshot.js';
import { stillValid, type RefusalReason } from './verify-peer.js';

/** What the re-check needs of an open connection: the peer's leaf, judged at accept, and
 *  the notAfter of this sidecar's own certificate it was made with — no connection
 *  outlives either certificate. */
export interface OpenConnection {
  readonly leaf: CertInfo;
  readonly ownNotAfter: Date;
}

export interface Rejudged {
  readonly reason: RefusalReason;
  readonly detail: string;
}

export interface OpenConnectionsOptions<C extends OpenConnection> {
  readonly snapshots: SnapshotSource;
  /** Why `c` may no longer stay open under `snap` beyond its certificate (revocation and
   *  expiry are checked first, for every connection); undefined when it may. */
  readonly rejudge?: (c: C, snap: Snapshot) => Rejudged | undefined;
  /** Logs and closes a connection refused now; `detail` already says it is being closed. */
  readonly onRefused: (c: C, refusal: Rejudged) => void;
  readonly now: () => Date;
}

export class OpenConnections<C extends OpenConnection> implements Iterable<C> {
  readonly #live = new Set<C>();
  readonly #opts: OpenConnectionsOptions<C>;

  constructor(opts: OpenConnectionsOptions<C>) {
    this.#opts = opts;
    opts.snapshots.onSwap((next) => this.recheck(next));
    opts.snapshots.onTick((snap) => this.recheckExpired(snap));
  }

  add(c: C): void {
    this.#live.add(c);
  }

  delete(c: C): void {
    this.#live.delete(c);
  }

  get size(): number {
    return this.#live.size;
  }

  [Symbol.iterator](): Iterator<C> {
    return this.#live.values();
  }

  /** Re-judges every open connection against `snap`: revoked, expired, or refused by `rejudge`. */
  recheck(snap: Snapshot): void {
    const now = this.#opts.now();
    for (const c of this.#live) {
      const still = stillValid(c.leaf, snap, now);
      const refusal = still.ok ? (ownExpired(c, now) ?? this.#opts.rejudge?.(c, snap)) : still;
      if (refusal) this.refuse(c, refusal);
    }
  }

  /** Closes the open connections whose peer's certificate, or our own, reached notAfter. */
  recheckExpired(snap: Snapshot): void {
    const now = this.#opts.now();
    for (const c of this.#live) {
      if (now <= c.leaf.notAfter && now <= c.ownNotAfter) continue;
      const still = stillValid(c.leaf, snap, now);
      const refusal = still.ok ? ownExpired(c, now) : still;
      if (refusal) this.refuse(c, refusal);
    }
  }

  private refuse(c: C, refusal: Rejudged): void {
    this.#opts.onRefused(c, { reason: refusal.reason, detail: `${refusal.detail}; closing the open connection` });
  }
}

function ownExpired(c: OpenConnection, now: Date): Rejudged | undefined {
  if (now <= c.ownNotAfter) return undefined;
  return {
    reason: 'own-certificate-invalid',
    detail: `this sidecar's own certificate the connection was made with expired at ${c.ownNotAfter.toISOString()}`,
  };
}

/**
 * Holds the current Snapshot and replaces it: load, validate, swap one pointer. A failed
 * reload keeps the last good snapshot and says why. The proxy never sees a half-applied
 * change; it reads `current` once per connection. Listeners (the inbound server's secure
 * context, the live-connection re-check, the outbound session cache) are told after a swap.
 *
 * Change detection is a cheap stat of each file (through the resolved `..data` link, so
 * a Kubernetes secret swap is seen) every `reloadIntervalMs`; SIGHUP forces a full reload.
 * The next issue adds file-system events on top of the same `reload()`.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { crlRollbackProblem, crlSetExpired, crlSetNextUpdate } from '../../common/crl.js';
import { errorLine } from '../../common/errors.js';
import { resolveSetFolder } from '../../common/credential-set.js';
import type { Metrics } from '../admin/metrics.js';
import type { SidecarConfig } from '../config/schema.js';
import { buildSnapshot, snapshotChanged, type Snapshot } from './snapshot.js';

export type ReloadTrigger = 'start' | 'signal' | 'poll' | 'api';

export interface ReloadOutcome {
  readonly changed: boolean;
  readonly error?: string;
}

export type SwapListener = (next: Snapshot, previous: Snapshot) => void;

export class SnapshotStore {
  #current: Snapshot;
  #stamp: string;
  #timer: NodeJS.Timeout | undefined;
  readonly #listeners: SwapListener[] = [];
  readonly #tickListeners: ((snap: Snapshot) => void)[] = [];

  private constructor(
    private readonly config: SidecarConfig,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    first: Snapshot,
  ) {
    this.#current = first;
    this.#stamp = this.fileStamp();
    this.publish(first);
  }

  /** Loads the first snapshot; throws (one line) when identity, CRL or policy is unusable. */
  static open(config: SidecarConfig, logger: Logger, metrics: Metrics): SnapshotStore {
    return new SnapshotStore(config, logger, metrics, buildSnapshot(config));
  }

  get current(): Snapshot {
    return this.#current;
  }

  onSwap(listener: SwapListener): void {
    this.#listeners.push(listener);
  }

  /** Called every poll interval with the current snapshot: open connections whose peer
   *  reached notAfter since are found here, without any file change. */
  onTick(listener: (snap: Snapshot) => void): void {
    this.#tickListeners.push(listener);
  }

  /**
   * Re-reads identity, CRL and policy; applies them if all are valid and something
   * changed. A CRL whose number is lower than the one in force is refused (a replayed
   * old file would un-revoke).
   */
  reload(trigger: ReloadTrigger): ReloadOutcome {
    const previous = this.#current;
    this.#stamp = this.fileStamp();
    let next: Snapshot;
    try {
      next = buildSnapshot(this.config, previous);
      if (next.crl && previous.crl && next.crl !== previous.crl) {
        const rollback = crlRollbackProblem(previous.crl.set, next.crl.set);
        if (rollback) throw new Error(`identity.crl: ${next.crl.path}: ${rollback}; keeping the newer CRLs`);
      }
    } catch (err) {
      const line = errorLine(err);
      this.metrics.reloads.inc({ result: 'failure' });
      this.logger.error({ event: 'reload', trigger, result: 'failure', reason: line }, 'reload refused; keeping the last good state');
      return { changed: false, error: line };
    }
    if (!snapshotChanged(previous, next)) {
      if (trigger !== 'poll') this.logger.info({ event: 'reload', trigger, result: 'unchanged' }, 'nothing changed');
      return { changed: false };
    }
    this.#current = next;
    this.metrics.reloads.inc({ result: 'success' });
    this.logger.info(
      {
        event: 'reload',
        trigger,
        result: 'success',
        identityChanged: next.identity !== previous.identity,
        crlChanged: next.crl !== previous.crl,
        policyChanged: next.policy !== previous.policy,
        generation: next.generation,
      },
      'reloaded',
    );
    this.publish(next);
    for (const listener of this.#listeners) {
      try {
        listener(next, previous);
      } catch (err) {
        this.logger.error({ event: 'reload', reason: errorLine(err) }, 'a reload listener failed');
      }
    }
    return { changed: true };
  }

  /** Starts the periodic check; a changed stamp triggers reload('poll'). */
  startPolling(intervalMs: number): void {
    this.stopPolling();
    this.#timer = setInterval(() => {
      this.refreshCrlExpiry();
      if (this.fileStamp() !== this.#stamp) this.reload('poll');
      for (const listener of this.#tickListeners) listener(this.#current);
    }, intervalMs);
    this.#timer.unref();
  }

  stopPolling(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** A CRL may pass its nextUpdate while nothing changes on disk. */
  private refreshCrlExpiry(): void {
    const crl = this.#current.crl;
    const expired = crl ? crlSetExpired(crl.set) : false;
    const was = this.metrics.crlExpiredNow();
    this.metrics.crlExpired.set(expired ? 1 : 0);
    if (expired && !was) this.logCrlExpired(this.#current);
  }

  private publish(snap: Snapshot): void {
    this.metrics.certExpiry.set(snap.identity.leaf.notAfter.getTime() / 1000);
    const crl = snap.crl;
    const expired = crl ? crlSetExpired(crl.set) : false;
    this.metrics.crlExpired.set(expired ? 1 : 0);
    const next = crl ? crlSetNextUpdate(crl.set) : undefined;
    if (next) this.metrics.crlNextUpdate.set(next.getTime() / 1000);
    if (expired) this.logCrlExpired(snap);
  }

  private logCrlExpired(snap: Snapshot): void {
    const crl = snap.crl!;
    const stale = crl.set.crls.filter((c) => c.nextUpdate && c.nextUpdate.getTime() < Date.now()).map((c) => `${c.issuerSubject} (nextUpdate ${c.nextUpdate!.toISOString()})`);
    // Still enforced: refusing everyone over a late CRL is the HAProxy/easy-rsa lock-out.
    this.logger.error({ event: 'crl-expired', crl: crl.path, stale }, 'a CRL is past its nextUpdate; its revocations are still enforced; publish a fresh one with `svcca crl`');
  }

  /** A cheap summary of the files' identity on disk: path, inode, size, mtime. */
  private fileStamp(): string {
    const parts: string[] = [];
    const stamp = (p: string) => {
      try {
        const st = statSync(p);
        parts.push(`${p}:${st.ino}:${st.size}:${st.mtimeMs}`);
      } catch {
        parts.push(`${p}:missing`);
      }
    };
    let folder: string;
    try {
      folder = resolveSetFolder(this.config.identity.dir);
    } catch {
      folder = this.config.identity.dir;
    }
    for (const name of ['tls.crt', 'tls.key', 'ca.crt']) stamp(join(folder, name));
    if (this.config.identity.crl) stamp(this.config.identity.crl);
    if (this.config.policy) stamp(this.config.policy);
    return parts.join('|');
  }
}

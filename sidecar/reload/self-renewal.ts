/**
 * identity.renew: the sidecar renews its own credential set through `svcca serve` with
 * the same client code as `svcca renew` (common/ca-client.ts): a new key made here, mTLS
 * with the current certificate, the `..data` swap, then a reload so new handshakes use
 * it at once (open connections go on). Attempts are scheduled at the due time plus
 * jitter (so a fleet does not renew in one second); a failure is retried with
 * exponential back-off and jitter. One log line per attempt outcome; metrics for
 * failures and the last success. /readyz stays ready while the current certificate is.
 */
import type { Logger } from 'pino';
import { errorLine } from '../../common/errors.js';
import { CaRequestError, renewalDueAt, renewCredentialSet } from '../../common/ca-client.js';
import type { RenewConfig } from '../config/schema.js';
import type { Metrics } from '../metrics.js';
import type { CertInfo } from '../../common/x509.js';
import type { SnapshotStore } from './store.js';

const MIN_DELAY_MS = 1_000;
const MAX_BACKOFF_MS = 5 * 60_000;
const MAX_JITTER_MS = 30_000;

export interface SelfRenewalDeps {
  readonly dir: string;
  readonly renew: RenewConfig;
  readonly store: SnapshotStore;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export class SelfRenewal {
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;

  constructor(private readonly deps: SelfRenewalDeps) {}

  start(): void {
    this.schedule(this.untilDue(this.deps.store.current.identity.leaf));
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  /** Time until `leaf` is due, plus up to 2 % of its lifetime (at most 30 s) of jitter. */
  private untilDue(leaf: CertInfo): number {
    const lifetime = leaf.notAfter.getTime() - leaf.notBefore.getTime();
    const jitter = Math.random() * Math.min(MAX_JITTER_MS, lifetime * 0.02);
    return Math.max(0, renewalDueAt(leaf, this.deps.renew.before) - Date.now()) + jitter;
  }

  private schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.attempt(), Math.max(MIN_DELAY_MS, ms));
    this.#timer.unref();
  }

  private async attempt(): Promise<void> {
    const { logger, metrics, renew, dir, store } = this.deps;
    try {
      const outcome = await renewCredentialSet({ ca: renew.ca, dir, threshold: renew.before });
      if (outcome.kind === 'renewed') {
        this.#failures = 0;
        metrics.renewals.inc({ result: 'renewed' });
        metrics.renewalLastSuccess.set(Date.now() / 1000);
        logger.info(
          {
            event: 'renew',
            result: 'success',
            previousSerial: outcome.previousSerial,
            serial: outcome.serial,
            certificateExpiry: outcome.notAfter.toISOString(),
            clamped: outcome.clamped,
          },
          'renewed the certificate through svcca serve',
        );
        store.reload('renew');
      } else logger.debug({ event: 'renew', result: 'not-due', dueAt: outcome.dueAt.toISOString() }, 'not due yet');
      this.schedule(this.untilDue(store.current.identity.leaf));
    } catch (err) {
      this.#failures++;
      metrics.renewals.inc({ result: 'failed' });
      const backoff = Math.min(MAX_BACKOFF_MS, MIN_DELAY_MS * 2 ** (this.#failures - 1)) * (0.5 + Math.random());
      logger.error(
        {
          event: 'renew',
          result: 'failure',
          attempt: this.#failures,
          refusal: err instanceof CaRequestError ? err.reason : undefined,
          reason: errorLine(err),
          retryInMs: Math.round(backoff),
        },
        'renewal failed; retrying with back-off',
      );
      this.schedule(backoff);
    }
  }
}

/**
 * The loop that keeps a replica's crl.pem on the ledger's CRLs (cli/ca/crl-follow.ts):
 * a cheap query every CRL_FOLLOW_MS, the file rewritten only when another host published.
 * While the ledger is unreachable the replica keeps serving the crl.pem it has; the
 * outage and the recovery are logged once each, not at every tick.
 */
import type { Logger } from 'pino';
import { errorLine } from '../../common/errors.js';
import { CrlFollower, type CrlFollowCa } from '../ca/crl-follow.js';
import type { ServeMetrics } from './serve-metrics.js';

/** How often a replica asks the ledger whether a newer CRL was published (ms). */
export const CRL_FOLLOW_MS = 2_000;

export class CrlFollowLoop {
  readonly #follower: CrlFollower;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #failing = false;

  constructor(
    ca: () => CrlFollowCa,
    private readonly logger: Logger,
    private readonly metrics: ServeMetrics,
  ) {
    this.#follower = new CrlFollower(ca);
  }

  start(intervalMs = CRL_FOLLOW_MS): void {
    this.#timer = setInterval(() => void this.tick(), intervalMs);
  }

  /** One poll (upkeep calls it before deciding whether crl.pem is due); never throws. */
  tick(): Promise<void> {
    this.#running ??= this.poll().finally(() => (this.#running = undefined));
    return this.#running;
  }

  private async poll(): Promise<void> {
    try {
      const polled = await this.#follower.poll();
      if (this.#failing) this.logger.info({ event: 'crl', result: 'following' }, 'the ledger is reachable again: following its CRLs');
      this.#failing = false;
      if (polled?.written) {
        this.metrics.crlRefreshes.inc({ result: 'followed' });
        this.logger.info(
          { event: 'crl', result: 'followed', crls: polled.written.map((c) => c.number) },
          'crl.pem now holds the CRLs another host published in the ledger',
        );
      } else if (polled) {
        // Once per publication: crl.pem was written by its publisher (on this host) already.
        this.logger.info(
          { event: 'crl', result: 'current', crls: polled.numbers.map((n) => n.split('#')[1]!) },
          "crl.pem holds the ledger's newest CRLs",
        );
      }
    } catch (err) {
      if (!this.#failing)
        this.logger.error(
          { event: 'crl', result: 'failure', reason: errorLine(err) },
          "cannot follow the ledger's CRLs; serving crl.pem as it is",
        );
      this.#failing = true;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}

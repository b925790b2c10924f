/**
 * An https:// identity.crl: the CA's /v1/crl.pem fetched every `identity.crlInterval`
 * with If-None-Match. The fetcher only holds the last body; the snapshot store verifies
 * it exactly like a file (signatures chain to ca.crt, an older CRL number is refused)
 * and keeps the last good CRLs when it is refused. A failed fetch changes nothing: it is
 * logged and counted, and the CRLs in force stay.
 */
import type { Logger } from 'pino';
import { ConfigError, errorLine } from '../../common/errors.js';
import { fetchPublished, type CaTls } from '../../common/ca-client.js';
import type { Metrics } from '../metrics.js';

/** How long start-up waits for a first CRL (the CA may be starting too). */
const FIRST_FETCH_DEADLINE_MS = 15_000;

export class CrlFetcher {
  #text: string | undefined;
  #etag: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  constructor(
    private readonly url: URL,
    private readonly tls: () => CaTls,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly intervalMs: number,
  ) {}

  /** The last body fetched (what the store reads instead of a file). */
  readonly read = (): string => {
    if (this.#text === undefined)
      throw new ConfigError(`identity.crl: nothing fetched yet from ${this.url.href}`, 'check that svcca serve runs there');
    return this.#text;
  };

  /** One fetch; true when a new body arrived. Never throws. */
  async fetch(): Promise<boolean> {
    try {
      const got = await fetchPublished(this.url, this.tls(), this.#etag);
      this.metrics.crlLastFetch.set(Date.now() / 1000);
      if (got.notModified || got.body === this.#text) {
        this.metrics.crlFetches.inc({ result: 'unchanged' });
        this.logger.debug({ event: 'crl-fetch', url: this.url.href, result: 'unchanged' }, 'CRL unchanged');
        return false;
      }
      this.#text = got.body;
      this.#etag = got.etag;
      this.metrics.crlFetches.inc({ result: 'changed' });
      this.logger.info({ event: 'crl-fetch', url: this.url.href, result: 'changed', bytes: got.body.length }, 'fetched a new CRL');
      return true;
    } catch (err) {
      this.metrics.crlFetches.inc({ result: 'failed' });
      this.logger.error(
        { event: 'crl-fetch', url: this.url.href, result: 'failure', reason: errorLine(err) },
        'cannot fetch the CRL; the CRLs in force stay',
      );
      return false;
    }
  }

  /** The first CRL, retried with back-off for a while; a sidecar does not start without one. */
  async first(): Promise<void> {
    const deadline = Date.now() + FIRST_FETCH_DEADLINE_MS;
    for (let wait = 250; ; wait = Math.min(wait * 2, 4_000)) {
      if ((await this.fetch()) || this.#text !== undefined) return;
      if (Date.now() + wait > deadline)
        throw new ConfigError(
          `identity.crl: cannot fetch ${this.url.href}`,
          'check that svcca serve runs there and that ca.crt is its trust bundle (the log says why)',
        );
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** Fetches every interval; `onChange` runs after a new body arrived. */
  start(onChange: () => void): void {
    this.stop();
    this.#timer = setInterval(() => {
      if (this.#running) return;
      this.#running = true;
      void this.fetch()
        .then((changed) => changed && onChange())
        .finally(() => (this.#running = false));
    }, this.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * `svcca serve`'s Prometheus metrics, on a registry of its own, created once at start and
 * handed to the parts that record.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../../common/process-metrics.js';

export interface ServeMetrics {
  readonly registry: Registry;
  /** route: renew | bootstrap | crl | ca | other; outcome: ok, not-modified or an error code. */
  readonly requests: Counter<'route' | 'outcome'>;
  readonly requestSeconds: Histogram<'route'>;
  /** The server's own certificate notAfter, Unix seconds. */
  readonly certExpiry: Gauge;
  /** CRL republishing by the server: result published | failed. */
  readonly crlRefreshes: Counter<'result'>;
}

export function createServeMetrics(): ServeMetrics {
  const registry = new Registry();
  const registers = [registry];
  registerProcessMetrics(registers, 'svcca_serve_');
  return {
    registry,
    requests: new Counter({
      name: 'svcca_serve_requests_total',
      help: 'Requests by route and outcome (ok, not-modified, or the error code sent)',
      labelNames: ['route', 'outcome'],
      registers,
    }),
    requestSeconds: new Histogram({
      name: 'svcca_serve_request_seconds',
      help: 'Time from request to response, by route',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    certExpiry: new Gauge({
      name: 'svcca_serve_certificate_expiry_timestamp_seconds',
      help: "The server's own certificate notAfter, Unix seconds",
      registers,
    }),
    crlRefreshes: new Counter({
      name: 'svcca_serve_crl_refreshes_total',
      help: 'crl.pem republished by the server when due, by result',
      labelNames: ['result'],
      registers,
    }),
  };
}

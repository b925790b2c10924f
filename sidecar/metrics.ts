/**
 * The sidecar's Prometheus metrics, on a registry of its own (never prom-client's global
 * one), created once at start and handed to whoever records: no module-level singletons.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from '../common/process-metrics.js';

export type Direction = 'inbound' | 'outbound';

export interface Metrics {
  readonly registry: Registry;
  /** result: allowed | refused | error. */
  readonly connections: Counter<'direction' | 'result'>;
  readonly refusals: Counter<'direction' | 'reason'>;
  readonly active: Gauge<'direction'>;
  readonly handshakeSeconds: Histogram<'direction'>;
  /** flow: received (from the peer side of the listener) | sent. */
  readonly bytes: Counter<'direction' | 'flow'>;
  readonly certExpiry: Gauge;
  readonly crlExpired: Gauge;
  readonly crlNextUpdate: Gauge;
  /** kind: identity | crl | policy; result: applied | refused | unchanged (one per kind
   *  per check; a bad file seen again by an event or timer is not counted twice). */
  readonly reloads: Counter<'kind' | 'result'>;
  /** The current value of crlExpired, without going through the async collector. */
  crlExpiredNow(): boolean;
  /** http mode: one per request; status is the code sent, result allowed | denied | bad-request. */
  readonly httpRequests: Counter<'status' | 'result'>;
  /** identity.renew attempts: result renewed | failed. */
  readonly renewals: Counter<'result'>;
  readonly renewalLastSuccess: Gauge;
  /** An https identity.crl: result changed | unchanged | failed. */
  readonly crlFetches: Counter<'result'>;
  readonly crlLastFetch: Gauge;
  /** Inbound allow-list decisions (per tcp connection, per http request): allowed | denied | would-deny (audit mode). */
  readonly policyDecisions: Counter<'result'>;
  /** svcca-tunnel/1 connections open, by direction. */
  readonly tunnels: Gauge<'direction'>;
  /** App connections carried as streams on a tunnel right now, by direction. */
  readonly tunnelStreams: Gauge<'direction'>;
  /** Tunnel streams by how they ended: result done | reset | refused | cut | error. */
  readonly tunnelStreamsTotal: Counter<'direction' | 'result'>;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (opts.defaultMetrics !== false) registerProcessMetrics(registers, 'svcca_sidecar_');
  let crlExpiredValue = 0;
  const crlExpired = new Gauge({
    name: 'svcca_sidecar_crl_expired',
    help: '1 when a CRL in force is past its nextUpdate (its entries are still enforced)',
    registers,
  });
  const originalSet = crlExpired.set.bind(crlExpired);
  crlExpired.set = ((value: number) => {
    crlExpiredValue = value;
    originalSet(value);
  }) as typeof crlExpired.set;
  return {
    registry,
    connections: new Counter({
      name: 'svcca_sidecar_connections_total',
      help: 'Connections by direction and result',
      labelNames: ['direction', 'result'],
      registers,
    }),
    refusals: new Counter({
      name: 'svcca_sidecar_refusals_total',
      help: 'Refused connections by direction and reason',
      labelNames: ['direction', 'reason'],
      registers,
    }),
    active: new Gauge({ name: 'svcca_sidecar_active_connections', help: 'Open proxied connections', labelNames: ['direction'], registers }),
    handshakeSeconds: new Histogram({
      name: 'svcca_sidecar_handshake_seconds',
      help: 'TLS handshake time, accept to verified',
      labelNames: ['direction'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    bytes: new Counter({
      name: 'svcca_sidecar_bytes_total',
      help: 'Bytes proxied, by direction and flow (received from / sent to the peer)',
      labelNames: ['direction', 'flow'],
      registers,
    }),
    certExpiry: new Gauge({
      name: 'svcca_sidecar_certificate_expiry_timestamp_seconds',
      help: "The sidecar's certificate notAfter, Unix seconds",
      registers,
    }),
    crlExpired,
    crlNextUpdate: new Gauge({
      name: 'svcca_sidecar_crl_next_update_timestamp_seconds',
      help: 'The earliest nextUpdate of the CRLs in force, Unix seconds',
      registers,
    }),
    reloads: new Counter({
      name: 'svcca_sidecar_reloads_total',
      help: 'Reload checks of identity, CRL and policy, by kind and result (applied, refused, unchanged)',
      labelNames: ['kind', 'result'],
      registers,
    }),
    crlExpiredNow: () => crlExpiredValue === 1,
    renewals: new Counter({
      name: 'svcca_sidecar_renewals_total',
      help: 'identity.renew attempts through svcca serve, by result (renewed, failed)',
      labelNames: ['result'],
      registers,
    }),
    renewalLastSuccess: new Gauge({
      name: 'svcca_sidecar_renewal_last_success_timestamp_seconds',
      help: 'When identity.renew last renewed the certificate, Unix seconds',
      registers,
    }),
    crlFetches: new Counter({
      name: 'svcca_sidecar_crl_fetches_total',
      help: 'Fetches of an https identity.crl, by result (changed, unchanged, failed)',
      labelNames: ['result'],
      registers,
    }),
    crlLastFetch: new Gauge({
      name: 'svcca_sidecar_crl_last_fetch_success_timestamp_seconds',
      help: 'When an https identity.crl was last fetched successfully, Unix seconds',
      registers,
    }),
    httpRequests: new Counter({
      name: 'svcca_sidecar_http_requests_total',
      help: 'http mode: requests by status sent and policy result (allowed, denied, bad-request)',
      labelNames: ['status', 'result'],
      registers,
    }),
    policyDecisions: new Counter({
      name: 'svcca_sidecar_policy_decisions_total',
      help: 'Inbound allow-list decisions, per tcp connection or http request: allowed, denied, or would-deny (audit mode: let through)',
      labelNames: ['result'],
      registers,
    }),
    tunnels: new Gauge({
      name: 'svcca_sidecar_tunnels_open',
      help: 'svcca-tunnel/1 connections open, by direction',
      labelNames: ['direction'],
      registers,
    }),
    tunnelStreams: new Gauge({
      name: 'svcca_sidecar_tunnel_streams_open',
      help: 'App connections carried as streams on a tunnel, by direction',
      labelNames: ['direction'],
      registers,
    }),
    tunnelStreamsTotal: new Counter({
      name: 'svcca_sidecar_tunnel_streams_total',
      help: 'Tunnel streams by direction and result (done, reset, refused, cut, error)',
      labelNames: ['direction', 'result'],
      registers,
    }),
  };
}

/**
 * The sidecar's Prometheus metrics, on a registry of its own (never prom-client's global
 * one), created once at start and handed to whoever records: no module-level singletons.
 */
import { readdirSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

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
  if (opts.defaultMetrics !== false) processMetrics(registers);
  let crlExpiredValue = 0;
  const crlExpired = new Gauge({ name: 'svcca_sidecar_crl_expired', help: '1 when a CRL in force is past its nextUpdate (its entries are still enforced)', registers });
  const originalSet = crlExpired.set.bind(crlExpired);
  crlExpired.set = ((value: number) => {
    crlExpiredValue = value;
    originalSet(value);
  }) as typeof crlExpired.set;
  return {
    registry,
    connections: new Counter({ name: 'svcca_sidecar_connections_total', help: 'Connections by direction and result', labelNames: ['direction', 'result'], registers }),
    refusals: new Counter({ name: 'svcca_sidecar_refusals_total', help: 'Refused connections by direction and reason', labelNames: ['direction', 'reason'], registers }),
    active: new Gauge({ name: 'svcca_sidecar_active_connections', help: 'Open proxied connections', labelNames: ['direction'], registers }),
    handshakeSeconds: new Histogram({
      name: 'svcca_sidecar_handshake_seconds',
      help: 'TLS handshake time, accept to verified',
      labelNames: ['direction'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    bytes: new Counter({ name: 'svcca_sidecar_bytes_total', help: 'Bytes proxied, by direction and flow (received from / sent to the peer)', labelNames: ['direction', 'flow'], registers }),
    certExpiry: new Gauge({ name: 'svcca_sidecar_certificate_expiry_timestamp_seconds', help: "The sidecar's certificate notAfter, Unix seconds", registers }),
    crlExpired,
    crlNextUpdate: new Gauge({ name: 'svcca_sidecar_crl_next_update_timestamp_seconds', help: 'The earliest nextUpdate of the CRLs in force, Unix seconds', registers }),
    reloads: new Counter({ name: 'svcca_sidecar_reloads_total', help: 'Reload checks of identity, CRL and policy, by kind and result (applied, refused, unchanged)', labelNames: ['kind', 'result'], registers }),
    crlExpiredNow: () => crlExpiredValue === 1,
    httpRequests: new Counter({ name: 'svcca_sidecar_http_requests_total', help: 'http mode: requests by status sent and policy result (allowed, denied, bad-request)', labelNames: ['status', 'result'], registers }),
    policyDecisions: new Counter({
      name: 'svcca_sidecar_policy_decisions_total',
      help: 'Inbound allow-list decisions, per tcp connection or http request: allowed, denied, or would-deny (audit mode: let through)',
      labelNames: ['result'],
      registers,
    }),
    tunnels: new Gauge({ name: 'svcca_sidecar_tunnels_open', help: 'svcca-tunnel/1 connections open, by direction', labelNames: ['direction'], registers }),
    tunnelStreams: new Gauge({ name: 'svcca_sidecar_tunnel_streams_open', help: 'App connections carried as streams on a tunnel, by direction', labelNames: ['direction'], registers }),
    tunnelStreamsTotal: new Counter({ name: 'svcca_sidecar_tunnel_streams_total', help: 'Tunnel streams by direction and result (done, reset, refused, cut, error)', labelNames: ['direction', 'result'], registers }),
  };
}

/**
 * The process's own figures, read when /metrics is scraped and at no other time.
 * prom-client's collectDefaultMetrics would do it too, but it also starts an event-loop
 * delay monitor that wakes the process 100 times a second: about 1 % of a core and 1,000
 * context switches every 10 s in an idle sidecar, beside every service.
 */
function processMetrics(registers: Registry[]): void {
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name: `svcca_sidecar_${name}`,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes', () => process.memoryUsage.rss());
  for (const mode of ['user', 'system'] as const) {
    new Counter({
      name: `svcca_sidecar_process_cpu_${mode}_seconds_total`,
      help: `${mode === 'user' ? 'User' : 'System'} CPU time spent, in seconds`,
      registers,
      collect() {
        this.reset();
        this.inc(process.cpuUsage()[mode] / 1e6);
      },
    });
  }
  gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch, in seconds', () => startSeconds);
  gauge('process_open_fds', 'Open file descriptors', () => {
    try {
      return readdirSync('/proc/self/fd').length;
    } catch {
      return -1;
    }
  });
  gauge('nodejs_heap_size_used_bytes', 'V8 heap in use, in bytes', () => process.memoryUsage().heapUsed);
  gauge('nodejs_external_memory_bytes', 'Memory of C++ objects bound to JavaScript objects (buffers among them), in bytes', () => process.memoryUsage().external);
}

/**
 * The admin listener: `/healthz` (the process answers), `/readyz` (it can serve: its
 * certificate is present and within its validity; an expired CRL is noted in the body
 * but does not fail readiness — its revocations are still enforced), `/metrics`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { crlSetExpired } from '../../common/crl.js';
import type { Address } from '../config/schema.js';
import { listen } from '../net/listen.js';
import { validityProblem, type SnapshotSource } from '../snapshot.js';
import type { Metrics } from '../metrics.js';

export interface AdminDeps {
  readonly listen: Address;
  readonly snapshots: SnapshotSource;
  readonly metrics: Metrics;
  /** False while draining: a load balancer should stop sending. */
  readonly accepting: () => boolean;
}

export interface Readiness {
  readonly ready: boolean;
  readonly lines: readonly string[];
}

export function readiness(snapshots: SnapshotSource, accepting: boolean, now: Date = new Date()): Readiness {
  const snap = snapshots.current;
  const lines: string[] = [];
  let ready = accepting;
  if (!accepting) lines.push('shutting down');
  const own = validityProblem(snap.identity.leaf, now);
  if (own) {
    ready = false;
    lines.push(`certificate: ${own}`);
  } else if (snap.crl?.set.revoked.has(snap.identity.leaf.serialHex)) {
    // Every peer that has the same CRL refuses it: not ready until a new one arrives.
    ready = false;
    lines.push(
      `certificate: ${snap.identity.id.uri} is revoked (serial ${snap.identity.leaf.serialHex} is on the CRL); issue it again with \`svcca issue ${snap.identity.id.service}\``,
    );
  } else lines.push(`certificate: ${snap.identity.id.uri} valid until ${snap.identity.leaf.notAfter.toISOString()}`);
  if (snap.crl) {
    if (crlSetExpired(snap.crl.set, now))
      lines.push(`crl: EXPIRED (still enforced; publish a fresh one with \`svcca crl\`): ${snap.crl.path}`);
    else lines.push(`crl: ${snap.crl.set.revoked.size} revoked serials from ${snap.crl.path}`);
  }
  return { ready, lines };
}

export class AdminServer {
  readonly #server: Server;

  constructor(private readonly deps: AdminDeps) {
    this.#server = createServer((req, res) => void this.handle(req, res));
    this.#server.keepAliveTimeout = 5_000;
  }

  start(): Promise<string> {
    return listen(this.#server, this.deps.listen);
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const r = readiness(this.deps.snapshots, this.deps.accepting());
      res
        .writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(`${r.ready ? 'ready' : 'not ready'}\n${r.lines.join('\n')}\n`);
    } else if (path === '/metrics') {
      try {
        const body = await this.deps.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType }).end(body);
      } catch {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      }
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz or /metrics\n');
    }
  }
}

/**
 * The admin listener of `svcca serve` (plain HTTP, keep it on localhost or a pod-internal
 * port): `/healthz` (the process answers), `/readyz` (it can issue: not draining, its own
 * certificate and the intermediate within their validity, the ledger answering),
 * `/metrics` (Prometheus).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

export interface Readiness {
  readonly ready: boolean;
  readonly lines: readonly string[];
}

export interface AdminDeps {
  readonly registry: Registry;
  readonly readiness: () => Promise<Readiness>;
}

export class ServeAdmin {
  readonly server: Server;

  constructor(private readonly deps: AdminDeps) {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 5_000;
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 10_000;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    try {
      if (path === '/healthz') res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      else if (path === '/readyz') {
        const r = await this.deps.readiness();
        res
          .writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' })
          .end(`${r.ready ? 'ready' : 'not ready'}\n${r.lines.join('\n')}\n`);
      } else if (path === '/metrics') {
        const body = await this.deps.registry.metrics();
        res.writeHead(200, { 'content-type': this.deps.registry.contentType }).end(body);
      } else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz or /metrics\n');
    } catch {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end('unavailable\n');
    }
  }
}

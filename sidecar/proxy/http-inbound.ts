/**
 * Inbound, http mode: HTTP/1.1 inside a caller connection that already passed the
 * X509-SVID checks, each request judged on its own — the caller still valid under the
 * current snapshot, the target in origin form and normalized, the headers sane, the policy
 * allowing this method and path — then forwarded to the local service over a keep-alive
 * pool with bodies streamed both ways. WebSocket (any Upgrade) requests are judged the
 * same way and become a byte tunnel after the service's 101.
 *
 * Node's parser (llhttp, strict) does the framing and refuses the classic smuggling shapes
 * (Content-Length with Transfer-Encoding, duplicate Content-Length, bad chunking) through
 * `clientError`, answered 400 here. The http.Server never listens: the TLS listener hands
 * it each accepted socket, so one TLS server and one verification path serve both modes.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { normalizeRequestTarget } from '../../common/http-path.js';
import type { CertInfo } from '../../common/x509.js';
import type { Metrics } from '../metrics.js';
import type { InboundConfig } from '../config/schema.js';
import type { Snapshot, SnapshotSource } from '../snapshot.js';
import { clientResponseHeaders, upstreamRequestHeaders } from './http-headers.js';
import { pipeBoth, type PipeEnd } from './pipe.js';
import { clipForLog } from '../log-fields.js';
import { UpstreamPool } from './upstream-pool.js';
import { Http1UpstreamPool, type Http1Exchange } from './http1-upstream.js';
import { writeResponsePiece } from './response-body-write.js';
import { unreachable, upstreamFailure } from './upstream-failure.js';
import type { PolicyDecisions } from './policy-decisions.js';
import { headerLimitRefusal, judgeRequest, logHttpRefusal, type Gate } from './request-judge.js';
import { policyDecision } from './verdict.js';

/** The `result` label of svcca_sidecar_http_requests_total. */
export type HttpResult = 'allowed' | 'denied' | 'bad-request';

/** Refusal codes of http mode (the `reason` of the log line and refusal metric). */
export type HttpRefusalReason =
  | 'policy-denied'
  | 'revoked'
  | 'expired'
  | 'bad-target'
  | 'bad-request'
  | 'too-many-headers'
  | 'sidecar-header-nominated'
  | 'unsupported-method'
  | 'request-head-timeout';

/** Who is on a caller connection: worked out once, at the handshake, for all its requests. */
export interface HttpCaller {
  /** SPIFFE ID. */
  readonly peer: string;
  readonly service: string;
  /** `ip:port`, as logged. */
  readonly address: string;
  /** For x-forwarded-for; undefined on a unix listener. */
  readonly ip: string | undefined;
  readonly leaf: CertInfo;
  /** The x-forwarded-client-cert value for every request of this connection. */
  readonly xfcc: string;
}

interface Exchange {
  readonly method: string;
  readonly path: string;
  /** The exchange with the local service carrying it, once there is one. */
  upstream?: { destroy(): void } | undefined;
}

/** One caller connection: who, and the requests (or tunnel) open on it right now. */
export class HttpConnection {
  readonly exchanges = new Set<Exchange>();
  /** Responses Node has been handed and not yet finished, in request order. */
  unanswered = 0;
  /** A response that ends the connection has been queued: nothing more is written. */
  closing = false;
  /** A parse error seen while earlier requests were still being answered: sent after them. */
  deferredError: string | undefined;
  constructor(
    readonly caller: HttpCaller,
    /** A verified TLS socket, or a stream of a verified tunnel (tunnel-inbound.ts). */
    readonly socket: PipeEnd,
  ) {}
}

export interface HttpInboundDeps {
  readonly config: InboundConfig;
  readonly snapshots: SnapshotSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Counts each request's policy decision and logs would-deny ones. */
  readonly decisions: PolicyDecisions;
  readonly now?: () => Date;
}

export class HttpInbound {
  readonly #deps: HttpInboundDeps;
  readonly #server: Server;
  /** WebSocket upgrades: node:http's client, one connection each. */
  readonly #pool: UpstreamPool;
  readonly #http1: Http1UpstreamPool;
  readonly #conns = new WeakMap<object, HttpConnection>();
  readonly #open = new Set<HttpConnection>();
  #draining = false;

  constructor(deps: HttpInboundDeps) {
    this.#deps = deps;
    this.#pool = new UpstreamPool(deps.config.forward);
    this.#http1 = new Http1UpstreamPool(deps.config.forward);
    // Node's own Host and Expect refusals would go unlogged: both are judged here instead.
    // A request head must complete within the handshake timeout of its first byte
    // (slowloris). Node enforces headersTimeout only once its connection tracking runs,
    // which starts on 'listening'; this server never listens (it is handed verified
    // sockets), so the event is emitted below by hand.
    const headersTimeout = deps.config.handshakeTimeoutMs;
    this.#server = createServer({
      requireHostHeader: false,
      joinDuplicateHeaders: false,
      headersTimeout,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 4))),
    });
    // A caller's keep-alive connection lives as long as a tcp-mode one would.
    this.#server.keepAliveTimeout = deps.config.idleTimeoutMs;
    this.#server.timeout = deps.config.idleTimeoutMs;
    // A long upload is bounded by the idle timeout, not by its total length.
    this.#server.requestTimeout = 0;
    // A caller that sends its request and then half-closes still gets its answer.
    (this.#server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    this.#server.on('request', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, false));
    // Answering 100 only after the policy allowed the request keeps a refused caller
    // from sending its body at all.
    this.#server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, true));
    this.#server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => this.onUnmetExpectation(req, res));
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.#server.on('connect', (req: IncomingMessage, socket: Duplex) => this.onConnect(req, socket));
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
    this.#server.emit('listening');
  }

  /** Serves HTTP on a verified caller connection: a TLS socket or a tunnel stream. */
  accept(socket: PipeEnd, caller: HttpCaller): HttpConnection {
    const conn = new HttpConnection(caller, socket);
    this.#conns.set(socket, conn);
    this.#open.add(conn);
    socket.once('close', () => this.#open.delete(conn));
    this.#server.emit('connection', socket);
    return conn;
  }

  /**
   * The policy reason an open request or tunnel on `conn` is no longer allowed under
   * `snap`, or undefined. An idle keep-alive connection has nothing to re-judge: its next
   * request is judged when it comes.
   */
  recheckOpen(conn: HttpConnection, snap: Snapshot): string | undefined {
    for (const ex of conn.exchanges) {
      const d = policyDecision(snap, conn.caller.service, { method: ex.method, path: ex.path });
      if (!d.allow) return `${d.reason} (open request ${ex.method} ${ex.path})`;
    }
    return undefined;
  }

  /** Shutdown: idle connections are closed now, busy ones after their current response. */
  drain(): void {
    this.#draining = true;
    for (const c of this.#open) if (c.exchanges.size === 0) c.socket.end();
  }

  /** Closes the pool's idle connections to the local service. */
  close(): void {
    this.#pool.destroy();
    this.#http1.destroy();
  }

  private now(): Date {
    return this.#deps.now ? this.#deps.now() : new Date();
  }

  private gate(conn: HttpConnection, req: IncomingMessage, upgrade?: string): Gate {
    const caller = conn.caller;
    return judgeRequest({
      snap: this.#deps.snapshots.current,
      caller,
      now: this.now(),
      method: req.method ?? '',
      target: req.url ?? '',
      headerCount: req.rawHeaders.length / 2,
      maxHeaders: this.#deps.config.maxRequestHeaders,
      // Node's parser takes HTTP/0.9 and HTTP/2.0 request lines; neither is HTTP/1.x framing.
      protocolProblem:
        req.httpVersionMajor !== 1
          ? `HTTP/${req.httpVersion} is not served here: HTTP/1.1 or HTTP/1.0 only`
          : // An h2c-only service (gRPC) cannot take HTTP/1.1; HTTP/2 callers are served by http2-inbound.ts.
            this.#deps.config.upstream === 'h2c'
            ? 'the local service speaks HTTP/2 only (inbound.upstream: h2c): make this request over HTTP/2'
            : undefined,
      upstreamHeaders: () =>
        upstreamRequestHeaders({
          rawHeaders: req.rawHeaders,
          xfcc: caller.xfcc,
          clientIp: caller.ip,
          fallbackHost: this.#pool.fallbackHost,
          hostRequired: req.httpVersion !== '1.0',
          upgrade,
        }),
      decisions: this.#deps.decisions,
    });
  }

  private logRefusal(
    conn: HttpConnection | undefined,
    req: IncomingMessage | undefined,
    g: { status: number; result: HttpResult; reason: string; detail: string; path?: string },
  ): void {
    logHttpRefusal(this.#deps, conn?.caller, { method: req?.method, target: req?.url }, g);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const conn = this.#conns.get(req.socket);
    if (!conn) {
      req.socket.destroy(); // not a socket we verified: fail closed
      return;
    }
    // A response that ends the connection is already queued: requests pipelined behind it
    // are neither judged nor forwarded (the caller reads the end of the connection).
    if (conn.closing) {
      req.resume();
      return;
    }
    conn.unanswered++;
    const g = this.gate(conn, req);
    if (!g.ok) {
      res.once('close', () => this.answered(conn));
      this.logRefusal(conn, req, g);
      res.statusCode = g.status;
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.setHeader('content-length', Buffer.byteLength(g.body));
      // A body we did not ask for (no 100 sent) would be read as the next request; a bad
      // request or a no-longer-valid caller gets no further requests on this connection.
      if (expectContinue || g.status !== 403 || g.reason !== 'policy-denied' || this.#draining) {
        res.setHeader('connection', 'close');
        conn.closing = true;
      }
      res.end(g.body);
      return;
    }
    if (expectContinue) res.writeContinue();
    const method = req.method!;
    const ex: Exchange = { method, path: g.path, upstream: undefined };
    conn.exchanges.add(ex);
    // One listener for all the request's bookkeeping: each `once` costs a wrapper per request.
    res.once('close', () => {
      this.answered(conn);
      conn.exchanges.delete(ex);
      // The caller went away: stop the upstream exchange too (a finished one is left alone).
      if (!res.writableFinished) ex.upstream?.destroy();
      this.#deps.metrics.httpRequests.inc({ status: res.headersSent ? String(res.statusCode) : 'none', result: 'allowed' });
      // A would-deny request was logged by the decision recorder instead.
      if (!g.wouldDeny && this.#deps.logger.isLevelEnabled('debug')) {
        this.#deps.logger.debug(
          {
            event: 'allowed',
            direction: 'inbound',
            mode: 'http',
            peer: conn.caller.peer,
            address: conn.caller.address,
            method,
            path: g.path,
            rule: g.rule,
            status: res.statusCode,
          },
          'request allowed',
        );
      }
    });
    this.forward(conn, req, res, g, ex, false);
  }

  private forward(
    conn: HttpConnection,
    req: IncomingMessage,
    res: ServerResponse,
    g: Extract<Gate, { ok: true }>,
    ex: Exchange,
    retried: boolean,
  ): void {
    const { config } = this.#deps;
    const hasBody = g.hasBody;
    // The caller's TLS socket, to which body bytes may go straight from the shared read
    // buffer (response-body-write.ts); a tunnel stream queues what it is given: copies.
    const tls = conn.socket instanceof TLSSocket ? conn.socket : undefined;
    let direct = false;
    let up: Http1Exchange;
    try {
      up = this.#http1.request(
        {
          method: req.method!,
          path: g.forwardPath,
          headers: g.headers,
          body: hasBody && !retried ? { stream: req, chunked: g.chunked } : undefined,
          headTimeoutMs: config.upstreamTimeoutMs,
          idleTimeoutMs: config.idleTimeoutMs,
        },
        {
          head: (head) => {
            const headers = clientResponseHeaders(head.rawHeaders);
            if (this.#draining) {
              headers.push('connection', 'close');
              conn.closing = true;
            }
            // Throws on a header Node will not write: the exchange then fails with a 502.
            res.writeHead(head.status, head.reason, headers);
            // With a Content-Length, Node writes the body as given; chunked, it frames each
            // piece in writes of its own.
            direct = tls !== undefined && head.framing.kind === 'length';
          },
          data: (chunk, shared) => {
            const ok = writeResponsePiece(res, direct ? tls : undefined, chunk, shared);
            if (ok) return true;
            res.once('drain', () => up.resume());
            return false;
          },
          end: (last) => {
            if (last) writeResponsePiece(res, direct ? tls : undefined, last.chunk, last.shared, true);
            else res.end();
          },
          error: (err) => {
            if (res.headersSent || res.destroyed) {
              // Cut mid-body: the caller must see a cut, not a short body that looks complete.
              res.destroy();
              return;
            }
            // A kept connection the service closed just as we wrote to it: safe to send
            // again only when nothing of the body has been consumed, i.e. there is none.
            if (
              !err.timedOut &&
              !retried &&
              !hasBody &&
              err.reused &&
              err.beforeResponse &&
              (err.code === 'ECONNRESET' || err.code === 'EPIPE')
            ) {
              this.forward(conn, req, res, g, ex, true);
              return;
            }
            if (err.code === 'EPROTO') {
              this.upstreamFailed(conn, req, res, g.path, 502, 'upstream-unavailable', err.message, hasBody);
              return;
            }
            const f = upstreamFailure(config, err.timedOut, unreachable(err));
            this.upstreamFailed(conn, req, res, g.path, f.status, f.reason, f.detail, hasBody);
          },
        },
      );
    } catch (err) {
      this.upstreamFailed(
        conn,
        req,
        res,
        g.path,
        502,
        'upstream-unavailable',
        `cannot build the request to the local service (${(err as Error).message})`,
        hasBody,
      );
      return;
    }
    ex.upstream = up;
    if (!hasBody) req.resume();
  }

  private upstreamFailed(
    conn: HttpConnection,
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    status: 502 | 504,
    reason: string,
    detail: string,
    hasBody: boolean,
  ): void {
    this.#deps.logger.warn(
      {
        event: 'upstream-error',
        direction: 'inbound',
        mode: 'http',
        peer: conn.caller.peer,
        address: conn.caller.address,
        method: req.method,
        path,
        status,
        reason,
        detail,
      },
      'the local service failed the request',
    );
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const body =
      status === 504 ? 'gateway timeout: the local service did not answer in time\n' : 'bad gateway: the local service is unreachable\n';
    // The caller's body may be partly unread: the connection cannot carry another request.
    if (hasBody) conn.closing = true;
    res.writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      ...(hasBody ? { connection: 'close' } : {}),
    });
    res.end(body);
  }

  private onUpgrade(req: IncomingMessage, duplex: Duplex, head: Buffer): void {
    const socket = duplex as PipeEnd;
    const conn = this.#conns.get(socket);
    if (!conn) {
      socket.destroy();
      return;
    }
    const { config, logger, metrics } = this.#deps;
    const tooMany = headerLimitRefusal(req.rawHeaders.length / 2, config.maxRequestHeaders);
    if (tooMany) {
      this.logRefusal(conn, req, tooMany);
      endWith(socket, rawResponse(431, tooMany.body));
      return;
    }
    const protocol = String(req.headers.upgrade ?? '');
    if (!/^\s*websocket\s*$/i.test(protocol)) {
      // After a switch the sidecar sees only a tunnel: h2c would carry requests nobody
      // judged. WebSocket is one conversation, judged by its opening request.
      const detail = `only WebSocket upgrades pass the sidecar, not ${JSON.stringify(protocol.slice(0, 40))}`;
      this.logRefusal(conn, req, { status: 400, result: 'bad-request', reason: 'bad-upgrade', detail });
      endWith(socket, rawResponse(400, `bad request: ${detail}\n`));
      return;
    }
    const g = this.gate(conn, req, protocol);
    if (!g.ok) {
      this.logRefusal(conn, req, g);
      endWith(socket, rawResponse(g.status, g.body));
      return;
    }
    const method = req.method!;
    const ex: Exchange = { method, path: g.path, upstream: undefined };
    conn.exchanges.add(ex);
    socket.once('close', () => conn.exchanges.delete(ex));
    // A tunnel leaves the pool for good, so it gets a connection of its own.
    const up = this.#pool.request({ method, path: g.forwardPath, headers: g.headers, pooled: false });
    let settled = false;
    let timedOut = false;
    up.setTimeout(config.upstreamTimeoutMs, () => {
      timedOut = true;
      up.destroy();
    });
    socket.once('close', () => {
      if (!settled) up.destroy();
    });
    up.once('upgrade', (upRes, upSocket: Socket, upHead: Buffer) => {
      settled = true;
      upSocket.setTimeout(0);
      if (socket.destroyed) {
        upSocket.destroy();
        return;
      }
      metrics.httpRequests.inc({ status: String(upRes.statusCode), result: 'allowed' });
      logger.debug(
        {
          event: 'allowed',
          direction: 'inbound',
          mode: 'http',
          peer: conn.caller.peer,
          address: conn.caller.address,
          method,
          path: g.path,
          rule: g.rule,
          upgrade: req.headers.upgrade,
        },
        'upgrade allowed',
      );
      socket.write(rawHead(upRes.statusCode ?? 101, upRes.statusMessage, clientResponseHeaders(upRes.rawHeaders, { upgrade: true })));
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      pipeBoth(socket, upSocket, { idleTimeoutMs: config.idleTimeoutMs, onClose: () => conn.exchanges.delete(ex) });
    });
    up.once('response', (upRes) => {
      // The service declined to switch protocols: pass its answer on, then close.
      settled = true;
      up.setTimeout(config.idleTimeoutMs);
      metrics.httpRequests.inc({ status: String(upRes.statusCode), result: 'allowed' });
      socket.write(
        rawHead(upRes.statusCode ?? 502, upRes.statusMessage, [...clientResponseHeaders(upRes.rawHeaders), 'Connection', 'close']),
      );
      upRes.on('error', () => socket.destroy());
      upRes.pipe(socket);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) {
        socket.destroy();
        return;
      }
      settled = true;
      const { status, reason, detail } = upstreamFailure(config, timedOut, unreachable(err));
      logger.warn(
        {
          event: 'upstream-error',
          direction: 'inbound',
          mode: 'http',
          peer: conn.caller.peer,
          address: conn.caller.address,
          method,
          path: g.path,
          status,
          reason,
          detail,
        },
        'the local service failed the request',
      );
      metrics.httpRequests.inc({ status: String(status), result: 'allowed' });
      endWith(
        socket,
        rawResponse(
          status,
          status === 504
            ? 'gateway timeout: the local service did not answer in time\n'
            : 'bad gateway: the local service is unreachable\n',
        ),
      );
    });
    up.end();
  }

  private onUnmetExpectation(req: IncomingMessage, res: ServerResponse): void {
    const conn = this.#conns.get(req.socket);
    const detail = `Expect: ${clipForLog(String(req.headers.expect ?? ''), 60)} is not supported (only 100-continue)`;
    this.logRefusal(conn, req, { status: 417, result: 'bad-request', reason: 'bad-request', detail });
    const body = `expectation failed: ${detail}\n`;
    res.writeHead(417, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  }

  private onConnect(req: IncomingMessage, duplex: Duplex): void {
    const conn = this.#conns.get(duplex);
    const target = normalizeRequestTarget(req.url ?? '');
    const detail = target.ok ? 'CONNECT is not supported: the sidecar is not a forward proxy' : target.reason;
    this.logRefusal(conn, req, { status: 400, result: 'bad-request', reason: 'unsupported-method', detail });
    endWith(duplex, rawResponse(400, `bad request: ${detail}\n`));
  }

  private onClientError(err: NodeJS.ErrnoException, duplex: Duplex): void {
    // A caller that went away mid-request is not refused, just gone.
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !duplex.writable) {
      duplex.destroy();
      return;
    }
    const conn = this.#conns.get(duplex);
    // The request that broke the parser was already answered with a response that closes
    // the connection (say a 400 for its Transfer-Encoding): one answer is enough.
    if (conn && (conn.closing || conn.deferredError !== undefined)) return;
    const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : timedOut ? 408 : 400;
    const detail = timedOut
      ? `the request head did not complete within ${this.#deps.config.handshakeTimeoutMs / 1000}s`
      : `${err.code ?? 'parse error'}: ${String(err.message).replace(/^Parse Error: /, '')}`;
    this.logRefusal(conn, undefined, { status, result: 'bad-request', reason: timedOut ? 'request-head-timeout' : 'bad-request', detail });
    const answer = rawResponse(status, `bad request: ${detail}\n`);
    if (conn && conn.unanswered > 0) {
      // Pipelined requests before this one are still being answered: their responses go
      // first, in order, then this one, then the connection ends.
      conn.deferredError = answer;
      duplex.pause();
      return;
    }
    endWith(duplex, answer);
  }

  /** A response on `conn` is done; a parse error waiting behind it goes out once all are. */
  private answered(conn: HttpConnection): void {
    conn.unanswered--;
    if (conn.unanswered === 0 && conn.deferredError !== undefined && !conn.closing) endWith(conn.socket, conn.deferredError);
    else if (conn.unanswered === 0 && conn.deferredError !== undefined) conn.socket.end();
  }
}

function rawHead(status: number, message: string | undefined, headers: readonly string[]): string {
  let s = `HTTP/1.1 ${status} ${message || STATUS_CODES[status] || ''}\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${s}\r\n`;
}

function rawResponse(status: number, body: string): string {
  return (
    rawHead(status, undefined, [
      'Content-Type',
      'text/plain; charset=utf-8',
      'Content-Length',
      String(Buffer.byteLength(body)),
      'Connection',
      'close',
    ]) + body
  );
}

/** Writes a last response on a socket the HTTP server no longer manages, then lets it go. */
function endWith(socket: Duplex, text: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(text);
  // The caller normally closes once it read the answer; do not wait on one that does not.
  setTimeout(() => socket.destroy(), 2000).unref();
}

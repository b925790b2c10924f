/**
 * Inbound, http mode, HTTP/2 (ALPN `h2`): each stream of a caller connection that passed
 * the X509-SVID checks is judged exactly like an HTTP/1.1 request (judgeRequest: the
 * caller still valid, `:method` and the normalized `:path` against the policy, headers
 * sanitized, XFCC set), then forwarded to the local service — over HTTP/1.1 (the pool
 * HTTP/1.1 callers use, translated) or, with `inbound.upstream: h2c`, over cleartext
 * HTTP/2 — with bodies streamed both ways under HTTP/2 flow control, trailers and 1xx
 * responses passed on.
 *
 * A refused gRPC call (`content-type: application/grpc…`) is answered the way gRPC
 * clients understand: HTTP 200 with `grpc-status` 7 (PERMISSION_DENIED; 16
 * UNAUTHENTICATED for a caller no longer valid) and a `grpc-message` naming the caller;
 * any other refused stream gets the status HTTP/1.1 would (403, 400, 431).
 *
 * Abuse is bounded per connection, so only the offender is cut: nghttp2 (Node 20.20's)
 * answers a rapid-reset storm (CVE-2023-44487) and a CONTINUATION flood with GOAWAY, and
 * a peer that never reads its PING/SETTINGS acknowledgements is dropped; the limits here
 * cap concurrent streams (extra ones are refused with RST_STREAM), the header list's size
 * and field count, and the session's memory; a stream (or connection) with no progress
 * either way — a zero flow-control window held open included — is closed after
 * `inbound.idleTimeout`.
 */
import {
  constants,
  createServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { InboundConfig } from '../config/schema.js';
import type { Metrics } from '../metrics.js';
import type { SnapshotSource } from '../snapshot.js';
import { clientResponseHeaders } from './http-headers.js';
import { HttpConnection, type HttpCaller } from './http-inbound.js';
import {
  GRPC_STATUS,
  grpcErrorHeaders,
  h2cRequestHeaders,
  http2ResponseHeaders,
  http2UpstreamHeaders,
  isGrpc,
  regularHeaderCount,
  regularHeaders,
} from './http2-headers.js';
import { H2cUpstream } from './h2c-upstream.js';
import type { PolicyDecisions } from './policy-decisions.js';
import { judgeRequest, logHttpRefusal, type Gate, type GateRefusal } from './request-judge.js';
import { UpstreamPool } from './upstream-pool.js';
import { unreachable, upstreamFailure } from './upstream-failure.js';

/** Streams open at once on one caller connection; more are refused (RST_STREAM REFUSED_STREAM). */
export const MAX_CONCURRENT_STREAMS = 100;
/** The largest header list (HPACK-decoded, as SETTINGS_MAX_HEADER_LIST_SIZE counts it) a stream may carry. */
export const MAX_HEADER_LIST_BYTES = 64 * 1024;
/**
 * Streams a connection may see reset (by the caller, mostly) in a burst, and per second
 * after it: a rapid-reset storm (CVE-2023-44487) costs the server a request's work per
 * reset. nghttp2 notices one too, but Node 20 leaves the socket open after nghttp2's
 * GOAWAY, so the sidecar counts and cuts the connection itself. gRPC cancellations and
 * abandoned downloads stay far below this.
 */
const RESET_BURST = 200;
const RESETS_PER_SECOND = 50;
/** nghttp2's memory for one session, in MB (buffers, HPACK tables, queued frames). */
const MAX_SESSION_MEMORY_MB = 16;

export interface Http2InboundDeps {
  readonly config: InboundConfig;
  readonly snapshots: SnapshotSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly decisions: PolicyDecisions;
  readonly now?: () => Date;
}

type Allowed = Extract<Gate, { ok: true }>;

export class Http2Inbound {
  readonly #deps: Http2InboundDeps;
  readonly #server: Http2Server;
  readonly #pool: UpstreamPool | undefined;
  readonly #h2c: H2cUpstream | undefined;
  readonly #conns = new WeakMap<Http2Session, HttpConnection>();
  readonly #open = new Set<{ conn: HttpConnection; session: ServerHttp2Session }>();
  /** Per connection: a token bucket of stream resets (RESET_BURST, RESETS_PER_SECOND). */
  readonly #resets = new WeakMap<Http2Session, { tokens: number; at: number }>();
  #draining = false;

  constructor(deps: Http2InboundDeps) {
    this.#deps = deps;
    const { config } = deps;
    if (config.upstream === 'h2c') this.#h2c = new H2cUpstream(config.forward);
    else this.#pool = new UpstreamPool(config.forward);
    this.#server = createServer({
      settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS, maxHeaderListSize: MAX_HEADER_LIST_BYTES, enablePush: false },
      // Room above the policy's field limit, so that judgeRequest (not nghttp2) answers 431.
      maxHeaderListPairs: config.maxRequestHeaders + 16,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      maxOutstandingPings: 10,
      maxSettings: 32,
      // Abrupt cut at the limit rather than queueing without bound.
      maxSessionRejectedStreams: 100,
      maxSessionInvalidFrames: 100,
    });
    this.#server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) =>
      this.onStream(stream, headers, flags, rawHeaders),
    );
    this.#server.on('sessionError', () => undefined);
    // With no 'timeout' listener Node would not close an idle session.
    this.#server.setTimeout(config.idleTimeoutMs, (session?: ServerHttp2Session) => session?.close());
  }

  /** Serves HTTP/2 on a verified caller connection whose ALPN selected h2. */
  accept(socket: TLSSocket, caller: HttpCaller): HttpConnection {
    const conn = new HttpConnection(caller, socket);
    // Node makes the session synchronously inside emit('connection'); session.socket is a
    // proxy object, not the socket, so the session is recognised by that timing.
    const onSession = (session: ServerHttp2Session) => {
      this.#server.off('session', onSession);
      this.#conns.set(session, conn);
      const entry = { conn, session };
      this.#open.add(entry);
      this.#resets.set(session, { tokens: RESET_BURST, at: Date.now() });
      // nghttp2's own refusals (a flood, a protocol error) end the session: logged like every
      // refusal, with who and why.
      session.on('error', (err: NodeJS.ErrnoException) => {
        this.logSessionCut(conn, `${err.code ?? 'ERR_HTTP2_ERROR'}: ${err.message}`);
        socket.destroy();
      });
      session.on('goaway', () => undefined);
      session.on('frameError', (type: number, code: number, id: number) => {
        if (id === 0) this.logSessionCut(conn, `frame type ${type} could not be sent (code ${code})`);
      });
      session.setTimeout(this.#deps.config.idleTimeoutMs, () => session.close());
      session.once('close', () => {
        this.#open.delete(entry);
        socket.destroy();
      });
      // Draining already: this connection gets GOAWAY at once, its requests none.
      if (this.#draining) session.close();
    };
    this.#server.on('session', onSession);
    this.#server.emit('connection', socket);
    if (this.#server.listeners('session').includes(onSession)) {
      this.#server.off('session', onSession);
      socket.destroy(); // no session was made: fail closed
    }
    return conn;
  }

  /** Shutdown: GOAWAY on every connection; open streams finish. */
  drain(): void {
    this.#draining = true;
    for (const { session } of this.#open) session.close();
  }

  /** Closes the connections to the local service. */
  close(): void {
    this.#pool?.destroy();
    this.#h2c?.destroy();
  }

  private now(): Date {
    return this.#deps.now ? this.#deps.now() : new Date();
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]): void {
    stream.on('error', () => stream.destroy());
    const session = stream.session!;
    const conn = this.#conns.get(session);
    if (!conn) {
      session.destroy(); // not a connection we verified: fail closed
      return;
    }
    stream.once('close', () => {
      if (stream.rstCode !== undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR) this.countReset(conn, session);
    });
    const method = String(headers[':method'] ?? '');
    const target = String(headers[':path'] ?? '');
    const grpc = isGrpc(headers['content-type']);
    const caller = conn.caller;
    if (method === 'CONNECT') {
      // The sidecar is not a forward proxy (and extended CONNECT is not offered).
      this.refuse(
        conn,
        stream,
        { method, target },
        {
          ok: false,
          status: 400,
          result: 'bad-request',
          reason: 'unsupported-method',
          detail: 'CONNECT is not supported: the sidecar is not a forward proxy',
          body: 'bad request: CONNECT is not supported\n',
        },
        grpc,
      );
      return;
    }
    const hasBody = (flags & constants.NGHTTP2_FLAG_END_STREAM) === 0;
    const listBytes = headerListBytes(rawHeaders);
    if (listBytes > MAX_HEADER_LIST_BYTES) {
      // SETTINGS_MAX_HEADER_LIST_SIZE is advisory: Node accepts a larger list, so it is refused here.
      const detail = `the header list is ${listBytes} bytes; the limit is ${MAX_HEADER_LIST_BYTES}`;
      this.refuse(
        conn,
        stream,
        { method, target },
        {
          ok: false,
          status: 431,
          result: 'bad-request',
          reason: 'too-many-headers',
          detail,
          body: `request header fields too large: ${detail}\n`,
        },
        grpc,
      );
      return;
    }
    const g = judgeRequest({
      snap: this.#deps.snapshots.current,
      caller,
      now: this.now(),
      method,
      target,
      headerCount: regularHeaderCount(rawHeaders),
      maxHeaders: this.#deps.config.maxRequestHeaders,
      upstreamHeaders: () =>
        http2UpstreamHeaders({ rawHeaders, xfcc: caller.xfcc, clientIp: caller.ip, fallbackHost: this.fallbackHost(), hasBody }),
      decisions: this.#deps.decisions,
    });
    if (!g.ok) {
      this.refuse(conn, stream, { method, target }, g, grpc);
      return;
    }
    const ex = { method, path: g.path };
    conn.exchanges.add(ex);
    stream.setTimeout(this.#deps.config.idleTimeoutMs, () => stream.close(constants.NGHTTP2_CANCEL));
    stream.once('close', () => {
      conn.exchanges.delete(ex);
      this.#deps.metrics.httpRequests.inc({
        status: stream.headersSent ? String(stream.sentHeaders[':status'] ?? 'none') : 'none',
        result: 'allowed',
      });
      if (!g.wouldDeny && this.#deps.logger.isLevelEnabled('debug')) {
        this.#deps.logger.debug(
          {
            event: 'allowed',
            direction: 'inbound',
            mode: 'http',
            protocol: 'h2',
            peer: caller.peer,
            address: caller.address,
            method,
            path: g.path,
            rule: g.rule,
            status: stream.sentHeaders?.[':status'],
          },
          'request allowed',
        );
      }
    });
    if (this.#h2c) this.forwardH2c(conn, stream, headers, method, g, hasBody);
    else this.forwardHttp1(conn, stream, method, g, hasBody);
  }

  private fallbackHost(): string {
    const a = this.#deps.config.forward;
    return a.kind === 'unix' ? 'localhost' : a.text;
  }

  private refuse(
    conn: HttpConnection,
    stream: ServerHttp2Stream,
    request: { method: string; target: string },
    g: GateRefusal,
    grpc: boolean,
  ): void {
    logHttpRefusal(this.#deps, conn.caller, { ...request, protocol: 'h2' }, g);
    // The body, if any, is not wanted: the stream is answered and closed.
    if (stream.destroyed || stream.closed) return;
    if (grpc && g.status === 403) {
      const code = g.reason === 'policy-denied' ? GRPC_STATUS.permissionDenied : GRPC_STATUS.unauthenticated;
      stream.respond(grpcErrorHeaders(code, g.body.trim()), { endStream: true });
    } else {
      stream.respond({ ':status': g.status, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(g.body) });
      stream.end(g.body);
    }
    // A caller that is no longer valid gets no further streams on this connection.
    if (g.reason === 'revoked' || g.reason === 'expired') stream.session?.close();
  }

  /** HTTP/2 in, HTTP/1.1 to the service: chunked for a body of unknown length and for trailers. */
  private forwardHttp1(conn: HttpConnection, stream: ServerHttp2Stream, method: string, g: Allowed, hasBody: boolean): void {
    const { config } = this.#deps;
    const up = this.#pool!.request({ method, path: g.forwardPath, headers: g.headers, pooled: true });
    let timedOut = false;
    up.setTimeout(config.upstreamTimeoutMs, () => {
      timedOut = true;
      up.destroy();
    });
    // The caller went away (or reset the stream): stop the upstream exchange too.
    stream.once('close', () => {
      if (!stream.writableFinished) up.destroy();
    });
    up.on('information', (info: { statusCode: number; rawHeaders: string[] }) => {
      // 101 never comes (no Upgrade is forwarded); 100 is answered by the sidecar itself.
      if (info.statusCode === 100 || info.statusCode === 101 || stream.headersSent || stream.closed) return;
      stream.additionalHeaders({ ':status': info.statusCode, ...http2ResponseHeaders(clientResponseHeaders(info.rawHeaders)) });
    });
    up.once('response', (upRes: IncomingMessage) => {
      up.setTimeout(config.idleTimeoutMs);
      if (stream.closed || stream.destroyed) {
        upRes.destroy();
        return;
      }
      const status = upRes.statusCode ?? 502;
      const noBody = method === 'HEAD' || status === 204 || status === 304;
      const headers: OutgoingHttpHeaders = { ':status': status, ...http2ResponseHeaders(clientResponseHeaders(upRes.rawHeaders)) };
      try {
        stream.respond(headers, { endStream: noBody, waitForTrailers: !noBody });
      } catch (err) {
        upRes.destroy();
        this.upstreamFailed(
          conn,
          stream,
          method,
          g.path,
          502,
          'upstream-unavailable',
          `the local service sent a response that cannot be passed on (${(err as Error).message})`,
        );
        return;
      }
      if (noBody) {
        upRes.resume();
        return;
      }
      stream.once('wantTrailers', () => {
        const trailers = http2ResponseHeaders(upRes.rawTrailers);
        stream.sendTrailers(trailers);
      });
      upRes.on('error', () => stream.close(constants.NGHTTP2_INTERNAL_ERROR));
      upRes.once('close', () => {
        // Cut mid-body: the caller must see a reset, not a short body that looks complete.
        if (!upRes.complete) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
      });
      upRes.pipe(stream);
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (stream.headersSent || stream.closed) {
        stream.close(constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      const f = upstreamFailure(config, timedOut, unreachable(err));
      this.upstreamFailed(conn, stream, method, g.path, f.status, f.reason, f.detail);
    });
    if (hasBody) {
      const chunked = g.headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'transfer-encoding');
      stream.on('trailers', (trailers: IncomingHttpHeaders) => {
        // Chunked framing (set for every body of unknown length) carries them; a body
        // with a Content-Length has no place for them in HTTP/1.1, so they are dropped.
        const fields = regularHeaders(trailers);
        if (chunked && Object.keys(fields).length > 0) up.addTrailers(fields as Record<string, string>);
      });
      stream.pipe(up);
    } else {
      up.end();
    }
  }

  /** HTTP/2 in, HTTP/2 (h2c) to the service: streams, trailers and resets passed both ways. */
  private forwardH2c(
    conn: HttpConnection,
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    method: string,
    g: Allowed,
    hasBody: boolean,
  ): void {
    const { config } = this.#deps;
    let up: ReturnType<H2cUpstream['request']>;
    try {
      up = this.#h2c!.request(h2cRequestHeaders(method, g.forwardPath, g.headers, headers.te as string | undefined), {
        endStream: !hasBody,
        waitForTrailers: hasBody,
      });
    } catch (err) {
      const f = upstreamFailure(config, false, unreachable(err as Error));
      this.upstreamFailed(conn, stream, method, g.path, f.status, f.reason, f.detail);
      return;
    }
    let responded = false;
    let timedOut = false;
    up.setTimeout(config.upstreamTimeoutMs, () => {
      if (responded) {
        up.close(constants.NGHTTP2_CANCEL);
        return;
      }
      timedOut = true;
      up.close(constants.NGHTTP2_CANCEL);
    });
    let requestTrailers: OutgoingHttpHeaders = {};
    if (hasBody) {
      stream.on('trailers', (t: IncomingHttpHeaders) => (requestTrailers = regularHeaders(t)));
      up.once('wantTrailers', () => up.sendTrailers(requestTrailers));
      stream.pipe(up);
    }
    // The caller cancelled (gRPC deadline, client gone): cancel upstream too, and back.
    stream.once('close', () => {
      if (!up.closed) up.close(stream.rstCode && stream.rstCode !== constants.NGHTTP2_NO_ERROR ? stream.rstCode : constants.NGHTTP2_CANCEL);
    });
    up.on('headers', (info: IncomingHttpHeaders) => {
      const status = Number(info[':status']);
      if (status >= 100 && status < 200 && status !== 101 && !stream.headersSent && !stream.closed)
        stream.additionalHeaders({ ':status': status, ...regularHeaders(info) });
    });
    let responseTrailers: OutgoingHttpHeaders = {};
    up.on('trailers', (t: IncomingHttpHeaders) => (responseTrailers = regularHeaders(t)));
    up.once('response', (resHeaders: IncomingHttpHeaders, flags: number) => {
      responded = true;
      up.setTimeout(config.idleTimeoutMs);
      if (stream.closed || stream.destroyed) return;
      const endStream = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      try {
        stream.respond(
          { ':status': Number(resHeaders[':status'] ?? 502), ...regularHeaders(resHeaders) },
          { endStream, waitForTrailers: !endStream },
        );
      } catch (err) {
        up.close(constants.NGHTTP2_CANCEL);
        this.upstreamFailed(
          conn,
          stream,
          method,
          g.path,
          502,
          'upstream-unavailable',
          `the local service sent a response that cannot be passed on (${(err as Error).message})`,
        );
        return;
      }
      if (endStream) return;
      stream.once('wantTrailers', () => stream.sendTrailers(responseTrailers));
      up.pipe(stream);
    });
    up.once('close', () => {
      // A reset from the service, or a stream that ended without a response.
      if (stream.closed || stream.destroyed) return;
      if (!responded) {
        const f = upstreamFailure(config, timedOut, `closed the stream without answering (code ${up.rstCode ?? 'none'})`);
        this.upstreamFailed(conn, stream, method, g.path, f.status, f.reason, f.detail);
      } else if (up.rstCode !== undefined && up.rstCode !== constants.NGHTTP2_NO_ERROR) {
        stream.close(up.rstCode);
      }
    });
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (responded || stream.closed) return;
      responded = true;
      const f = upstreamFailure(config, false, unreachable(err));
      this.upstreamFailed(conn, stream, method, g.path, f.status, f.reason, f.detail);
    });
  }

  /** One more reset stream on `session`; past the budget, the connection is cut. */
  private countReset(conn: HttpConnection, session: Http2Session): void {
    const bucket = this.#resets.get(session);
    if (!bucket || session.destroyed) return;
    const now = Date.now();
    bucket.tokens = Math.min(RESET_BURST, bucket.tokens + ((now - bucket.at) / 1000) * RESETS_PER_SECOND);
    bucket.at = now;
    bucket.tokens -= 1;
    if (bucket.tokens >= 0) return;
    this.logSessionCut(
      conn,
      `more than ${RESET_BURST} streams reset in a burst (then ${RESETS_PER_SECOND}/s): a rapid-reset flood (CVE-2023-44487)`,
      'http2-rapid-reset',
    );
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
  }

  private logSessionCut(
    conn: HttpConnection,
    detail: string,
    reason: 'http2-protocol-error' | 'http2-rapid-reset' = 'http2-protocol-error',
  ): void {
    const { logger, metrics } = this.#deps;
    metrics.refusals.inc({ direction: 'inbound', reason });
    logger.warn(
      {
        event: 'refused',
        direction: 'inbound',
        mode: 'http',
        protocol: 'h2',
        peer: conn.caller.peer,
        address: conn.caller.address,
        reason,
        detail,
      },
      'HTTP/2 connection cut',
    );
  }

  private upstreamFailed(
    conn: HttpConnection,
    stream: ServerHttp2Stream,
    method: string,
    path: string,
    status: 502 | 504,
    reason: string,
    detail: string,
  ): void {
    this.#deps.logger.warn(
      {
        event: 'upstream-error',
        direction: 'inbound',
        mode: 'http',
        protocol: 'h2',
        peer: conn.caller.peer,
        address: conn.caller.address,
        method,
        path,
        status,
        reason,
        detail,
      },
      'the local service failed the request',
    );
    if (stream.headersSent || stream.closed || stream.destroyed) {
      if (!stream.closed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const body =
      status === 504 ? 'gateway timeout: the local service did not answer in time\n' : 'bad gateway: the local service is unreachable\n';
    stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    stream.end(body);
  }
}

/** The header list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it: name + value + 32 per field. */
function headerListBytes(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) n += rawHeaders[i]!.length + rawHeaders[i + 1]!.length + 32;
  return n;
}

/**
 * The HTTPS endpoint of `svcca serve`. Handlers only decode and check the request, then
 * hand typed values to cli/ca/online-issuance.ts, which holds every issuing rule:
 *
 *   POST /v1/renew       mTLS with the current certificate, body {"csr": PEM}
 *   POST /v1/bootstrap   body {"token": "svcca1.…", "csr": PEM}, no client certificate
 *   GET  /v1/crl.pem     the CA's crl.pem (ETag / If-None-Match)
 *   GET  /v1/ca.crt      the trust bundle (ETag / If-None-Match)
 *
 * TLS 1.3 only; a client certificate is requested but not required by OpenSSL (so that a
 * refusal can be answered and logged with a reason); it must have verified against the
 * root for /v1/renew. Header size, body size, header and request time are bounded; every
 * request is logged as one JSON line with caller, address and outcome, and counted.
 */
import { constants as cryptoConstants } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { errorLine, SvccaError } from '../../common/errors.js';
import { FILE_CAPS } from '../../common/capped-file.js';
import { parseCertificate, type CertInfo } from '../../common/x509.js';
import { parseBootstrapToken } from '../../common/bootstrap-token.js';
import { CA_FILES } from '../store/ca-dir.js';
import { LedgerUnavailableError } from '../store/ledger.js';
import {
  bootstrapWithToken,
  Refusal,
  renewForCaller,
  type Issued,
  type OnlineCa,
  type RefusalCode,
  type ServerCredential,
} from '../ca/online-issuance.js';
import { HttpError, readJsonBody, requireString, sendError, sendJson } from './http-io.js';
import { PublishedFile } from './published-file.js';
import { RateLimiter, type RateLimit } from './rate-limiter.js';
import type { ServeMetrics } from './serve-metrics.js';
import { peerLeafDer } from '../../common/tls-peer.js';

const REFUSAL_STATUS: Record<RefusalCode, number> = {
  'no-client-certificate': 401,
  'untrusted-certificate': 403,
  'not-svid': 403,
  'unknown-certificate': 403,
  revoked: 403,
  superseded: 403,
  expired: 403,
  'bad-csr': 400,
  'same-key': 400,
  'key-blocked': 403,
  'token-invalid': 403,
  'ca-unavailable': 503,
};

export interface CaServerDeps {
  /** The CA as it is now (the authority may be reloaded after an intermediate roll). */
  readonly ca: () => OnlineCa;
  readonly credential: ServerCredential;
  readonly logger: Logger;
  readonly metrics: ServeMetrics;
  readonly rateLimit: RateLimit;
}

/** Limits on what a client may send or how long it may take. */
export const SERVE_LIMITS = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 20_000,
  keepAliveTimeoutMs: 5_000,
  handshakeTimeoutMs: 10_000,
  maxConnections: 4096,
} as const;

type Route = 'renew' | 'bootstrap' | 'crl' | 'ca' | 'other';

interface RequestLog {
  route: Route;
  caller?: string;
  serial?: string;
  issued?: string;
}

export class CaServer {
  readonly server: Server;
  readonly #crl: PublishedFile;
  readonly #bundle: PublishedFile;
  readonly #limiter: RateLimiter;
  readonly #callers = new WeakMap<TLSSocket, CertInfo>();
  #inFlight = 0;
  #idle: (() => void) | undefined;

  constructor(private readonly deps: CaServerDeps) {
    const dir = deps.ca().dir;
    this.#crl = new PublishedFile(dir.file(CA_FILES.crl), FILE_CAPS.crl, 'application/x-pem-file');
    this.#bundle = new PublishedFile(dir.file(CA_FILES.trustBundle), FILE_CAPS.pemBundle, 'application/x-pem-file');
    this.#limiter = new RateLimiter(deps.rateLimit);
    this.server = createServer(
      {
        ...this.tlsOptions(deps.credential),
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
        handshakeTimeout: SERVE_LIMITS.handshakeTimeoutMs,
        maxHeaderSize: SERVE_LIMITS.maxHeaderBytes,
        headersTimeout: SERVE_LIMITS.headersTimeoutMs,
        requestTimeout: SERVE_LIMITS.requestTimeoutMs,
        keepAliveTimeout: SERVE_LIMITS.keepAliveTimeoutMs,
        connectionsCheckingInterval: 1_000,
      },
      (req, res) => void this.handle(req, res),
    );
    // With a checkContinue listener Node no longer answers `Expect: 100-continue` itself:
    // readJsonBody sends 100 Continue only for a body it will read, so a client announcing
    // a body over the limit (or refused before its body matters) gets its answer without
    // sending it first.
    this.server.on('checkContinue', (req, res) => void this.handle(req, res));
    this.server.maxConnections = SERVE_LIMITS.maxConnections;
    // With a listener present Node no longer destroys a socket that failed its handshake
    // or timed out in it: do it here, so a silent client cannot hold a connection.
    this.server.on('tlsClientError', (err, socket) => {
      deps.logger.debug({ event: 'tls', address: socket.remoteAddress, reason: err.message }, 'handshake failed');
      socket.destroy();
    });
    this.server.on('secureConnection', (s: TLSSocket) => s.setNoDelay(true));
  }

  private tlsOptions(c: ServerCredential): { key: string; cert: string; ca: string; secureOptions: number } {
    return {
      key: c.key.export({ type: 'pkcs8', format: 'pem' }).toString(),
      cert: c.chainPem,
      ca: c.caPem,
      // No session tickets: a renewal must present the certificate it renews, so nothing
      // here is ever resumed, and building each stateless TLS 1.3 ticket (two per
      // connection) re-decodes the caller's certificate inside OpenSSL, 8 % of the
      // server's CPU per renewal in a perf profile. With this option OpenSSL sends only
      // session IDs, which nothing stores, so an offered one gets a full handshake.
      secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
    };
  }

  /** Switches to a renewed server certificate for new handshakes; open connections go on. */
  useCredential(c: ServerCredential): void {
    this.server.setSecureContext({ ...this.tlsOptions(c), minVersion: 'TLSv1.3' });
  }

  /** Resolves once no request is being handled. */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.#idle = resolve));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const path = (req.url ?? '/').split('?')[0]!;
    const log: RequestLog = { route: 'other' };
    let outcome = 'ok';
    this.#inFlight++;
    try {
      outcome = await this.route(req, res, path, log);
    } catch (err) {
      const httpErr = this.toHttpError(err, log);
      outcome = httpErr.code;
      if (!res.headersSent) sendError(res, httpErr);
      // No close on a 413 here: readJsonBody drops the rest of a refused upload (bounded)
      // so the client reads the answer; closing with its body unread made the kernel send
      // a reset that could take the 413 with it (curl: "Send failure: Broken pipe").
    } finally {
      this.#inFlight--;
      if (this.#inFlight === 0 && this.#idle) {
        this.#idle();
        this.#idle = undefined;
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.deps.metrics.requests.inc({ route: log.route, outcome });
    this.deps.metrics.requestSeconds.observe({ route: log.route }, seconds);
    const line = {
      event: 'request',
      method: req.method,
      path: path.slice(0, 200),
      status: res.statusCode,
      outcome,
      caller: log.caller ?? null,
      address: req.socket.remoteAddress,
      ...(log.serial ? { serial: log.serial } : {}),
      ...(log.issued ? { issued: log.issued } : {}),
      ms: Math.round(seconds * 10_000) / 10,
    };
    if (res.statusCode >= 500) this.deps.logger.error(line, 'request failed');
    else if (res.statusCode >= 400) this.deps.logger.warn(line, 'request refused');
    else this.deps.logger.info(line, 'request');
  }

  private toHttpError(err: unknown, log: RequestLog): HttpError {
    if (err instanceof HttpError) return err;
    if (err instanceof Refusal) return new HttpError(REFUSAL_STATUS[err.code], err.code, err.message);
    if (err instanceof SvccaError && err.code === 'E_USAGE') return new HttpError(400, 'bad-request', err.line);
    // The ledger is down (or a race aborted the transaction): nothing was issued, and a
    // client that retries later gets its certificate. crl.pem and ca.crt still answer.
    if (err instanceof LedgerUnavailableError) {
      this.deps.logger.error({ event: 'error', route: log.route, reason: errorLine(err) }, 'ledger unavailable');
      return new HttpError(
        503,
        'ledger-unavailable',
        'the CA cannot reach its ledger now; nothing was issued; try again in a few seconds',
        { 'retry-after': '5' },
      );
    }
    this.deps.logger.error({ event: 'error', route: log.route, reason: errorLine(err) }, 'internal error');
    return new HttpError(500, 'internal', 'the CA failed to handle the request; see its log');
  }

  /** Returns the outcome label for a request answered without error. */
  private async route(req: IncomingMessage, res: ServerResponse, path: string, log: RequestLog): Promise<string> {
    const get = req.method === 'GET' || req.method === 'HEAD';
    switch (path) {
      case '/v1/crl.pem':
      case '/v1/ca.crt': {
        log.route = path === '/v1/crl.pem' ? 'crl' : 'ca';
        if (!get) throw new HttpError(405, 'method-not-allowed', `use GET ${path}`, { allow: 'GET, HEAD' });
        const file = path === '/v1/crl.pem' ? this.#crl : this.#bundle;
        try {
          file.serve(req, res);
        } catch (err) {
          this.deps.logger.error({ event: 'error', route: log.route, reason: errorLine(err) }, 'cannot read the published file');
          throw new HttpError(503, 'unavailable', `the CA cannot read ${path.slice(4)} now; try again later`);
        }
        return res.statusCode === 304 ? 'not-modified' : 'ok';
      }
      case '/v1/renew':
        log.route = 'renew';
        if (req.method !== 'POST') throw new HttpError(405, 'method-not-allowed', 'use POST /v1/renew', { allow: 'POST' });
        return this.renew(req, res, log);
      case '/v1/bootstrap':
        log.route = 'bootstrap';
        if (req.method !== 'POST') throw new HttpError(405, 'method-not-allowed', 'use POST /v1/bootstrap', { allow: 'POST' });
        return this.bootstrap(req, res, log);
      default:
        throw new HttpError(
          404,
          'not-found',
          'no such endpoint: use POST /v1/renew, POST /v1/bootstrap, GET /v1/crl.pem or GET /v1/ca.crt',
        );
    }
  }

  /** The verified client certificate of the connection; refused before anything is parsed otherwise. */
  private caller(socket: TLSSocket): CertInfo {
    const cached = this.#callers.get(socket);
    if (cached) return cached;
    if (!socket.authorized) {
      const presented = socket.getPeerCertificate();
      if (!presented || Object.keys(presented).length === 0) {
        throw new Refusal(
          'no-client-certificate',
          'renewal needs the current certificate as the TLS client certificate (curl --cert tls.crt --key tls.key)',
        );
      }
      throw new Refusal(
        'untrusted-certificate',
        `the client certificate does not verify against this CA (${String(socket.authorizationError)}); renew with a set this CA issued`,
      );
    }
    const raw = peerLeafDer(socket);
    if (!raw) throw new Refusal('no-client-certificate', 'renewal needs the current certificate as the TLS client certificate');
    const info = parseCertificate(raw, 'the client certificate');
    this.#callers.set(socket, info);
    return info;
  }

  private limit(key: string): void {
    const wait = this.#limiter.take(key);
    if (wait > 0)
      throw new HttpError(429, 'rate-limited', `too many requests for ${key}; retry in ${wait} s`, { 'retry-after': String(wait) });
  }

  private async renew(req: IncomingMessage, res: ServerResponse, log: RequestLog): Promise<string> {
    const caller = this.caller(req.socket as TLSSocket);
    log.caller = caller.uris[0] ?? caller.subject;
    log.serial = caller.serialHex;
    this.limit(log.caller);
    const body = await readJsonBody(req, res);
    const csr = requireString(body, 'csr', 'a PEM certificate signing request for a new key');
    const issued = await renewForCaller(this.deps.ca(), caller, csr, req.socket.remoteAddress ?? 'unknown');
    log.issued = issued.record.serial;
    this.answerIssued(res, issued);
    return 'ok';
  }

  private async bootstrap(req: IncomingMessage, res: ServerResponse, log: RequestLog): Promise<string> {
    // Unauthenticated: limited by address (a guessed token costs the guesser, not the CA).
    this.limit(`bootstrap from ${req.socket.remoteAddress ?? 'unknown'}`);
    const body = await readJsonBody(req, res);
    const claims = parseBootstrapToken(requireString(body, 'token', 'the line `svcca token SERVICE` printed'), 'the token');
    const csr = requireString(body, 'csr', 'a PEM certificate signing request');
    const issued = await bootstrapWithToken(this.deps.ca(), claims, csr, req.socket.remoteAddress ?? 'unknown');
    log.caller = issued.record.spiffeId;
    log.issued = issued.record.serial;
    this.answerIssued(res, issued);
    return 'ok';
  }

  private answerIssued(res: ServerResponse, issued: Issued): void {
    const r = issued.record;
    sendJson(res, 200, {
      spiffeId: r.spiffeId,
      serial: r.serial,
      notBefore: new Date(r.notBefore).toISOString(),
      notAfter: new Date(r.notAfter).toISOString(),
      clamped: issued.clamped,
      certificate: issued.chainPem,
      ca: issued.caPem,
    });
  }
}

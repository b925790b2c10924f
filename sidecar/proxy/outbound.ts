/**
 * Outbound: plaintext in from the local service, mTLS out under this service's identity.
 * The server is judged as an X509-SVID (chain, validity, CRL) and must present exactly
 * `serverId` — no host-name matching: the SPIFFE ID is the identity — before one byte of
 * the client's is sent (the client socket stays paused until then).
 *
 * A resumed client session carries no peer certificate and skips checkServerIdentity, so
 * a session is cached only after its server passed the check, together with the leaf it
 * showed, keyed by target, serverId and the snapshot's trust key; the cache is dropped
 * on every swap. A resumed connection is re-judged from that leaf (validity, CRL).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { CertInfo } from '../../common/x509.js';
import type { Metrics } from '../metrics.js';
import type { OutboundConfig } from '../config/schema.js';
import { CIPHERS } from '../net/ciphers.js';
import type { Snapshot, SnapshotSource } from '../snapshot.js';
import { listen } from '../net/listen.js';
import { NO_DELAY, remoteOf } from '../net/socket.js';
import { OpenConnections } from './open-connections.js';
import { pipeBoth, type PipeHandle } from './pipe.js';
import { ownCertificateRefusal } from './verdict.js';
import { CertCache, peerLeafDer, stillValid, verifyPeer, type RefusalReason } from './verify-peer.js';

export interface OutboundDeps {
  readonly config: OutboundConfig;
  readonly snapshots: SnapshotSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly certs: CertCache;
  readonly now?: () => Date;
}

interface CachedSession {
  readonly session: Buffer;
  readonly leaf: CertInfo;
}

interface LiveOutbound {
  readonly leaf: CertInfo;
  readonly client: string;
  pipe: PipeHandle | undefined;
  readonly tls: TLSSocket;
}

/** Sessions kept per target; a handful is plenty for reuse, and bounds memory. */
const MAX_SESSIONS_PER_KEY = 1;

export class OutboundProxy {
  readonly #deps: OutboundDeps;
  readonly #server: Server;
  readonly #sessions = new Map<string, CachedSession>();
  readonly #live: OpenConnections<LiveOutbound>;
  readonly #clients = new Set<Socket>();

  constructor(deps: OutboundDeps) {
    this.#deps = deps;
    this.#server = createServer({ allowHalfOpen: true, pauseOnConnect: true, ...NO_DELAY }, (client) => this.onClient(client));
    this.#server.maxConnections = deps.config.maxConnections;
    this.#server.on('drop', () => {
      this.logRefusal('unix', deps.config.serverId, 'too-many-connections', `the limit of ${deps.config.maxConnections} connections is reached`);
    });
    deps.snapshots.onSwap(() => this.#sessions.clear());
    // Made after the session-cache listener: a swap drops the cached sessions first, then
    // re-judges the open connections (revoked since, or past notAfter).
    this.#live = new OpenConnections<LiveOutbound>({
      snapshots: deps.snapshots,
      onRefused: (c, r) => {
        this.logRefusal(c.client, this.#deps.config.serverId, r.reason, r.detail);
        c.pipe?.destroy() ?? c.tls.destroy();
      },
      now: () => this.now(),
    });
  }

  start(): Promise<string> {
    return listen(this.#server, this.#deps.config.listen);
  }

  get activeConnections(): number {
    return this.#live.size;
  }

  stopAccepting(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  destroyAll(): void {
    for (const c of this.#live) c.pipe?.destroy() ?? c.tls.destroy();
    for (const c of this.#clients) c.destroy();
  }

  private now(): Date {
    return this.#deps.now ? this.#deps.now() : new Date();
  }

  private sessionKey(snap: Snapshot): string {
    const { connect, serverId } = this.#deps.config;
    return `${connect.text}|${serverId}|${snap.trustKey}`;
  }

  private onClient(client: Socket): void {
    const { config, metrics, logger } = this.#deps;
    const clientAddr = remoteOf(client);
    this.#clients.add(client);
    client.once('close', () => this.#clients.delete(client));
    client.on('error', () => client.destroy());
    const snap = this.#deps.snapshots.current;
    const now = this.now();
    const own = ownCertificateRefusal(snap, now);
    if (own) {
      this.logRefusal(clientAddr, config.serverId, own.reason, own.detail);
      client.destroy();
      return;
    }
    const key = this.sessionKey(snap);
    const cached = this.#sessions.get(key);
    const started = process.hrtime.bigint();
    const host = config.connect.host;
    // allowHalfOpen is honoured by tls.connect though @types/node does not list it.
    const tls = tlsConnect({
      host,
      port: config.connect.port,
      ...(isIP(host) ? {} : { servername: host }),
      secureContext: snap.clientContext,
      minVersion: 'TLSv1.2',
      ciphers: CIPHERS,
      rejectUnauthorized: false,
      // The SPIFFE ID is checked in verifyPeer; host names mean nothing here.
      checkServerIdentity: () => undefined,
      allowHalfOpen: true,
      ...NO_DELAY,
      // outbound[].alpn: an app speaking h2c here reaches an http-mode inbound as HTTP/2.
      ...(config.alpn ? { ALPNProtocols: [...config.alpn] } : {}),
      ...(cached ? { session: cached.session } : {}),
    } as ConnectionOptions);
    // tls.connect does not hand noDelay to the socket it makes: set it on the TLS socket.
    tls.setNoDelay(true);
    let verified: CertInfo | undefined;
    let pendingSession: Buffer | undefined;
    let settled = false;
    const remember = (session: Buffer) => {
      if (verified && this.#deps.snapshots.current.trustKey === snap.trustKey && MAX_SESSIONS_PER_KEY > 0) this.#sessions.set(key, { session, leaf: verified });
    };
    tls.on('session', (session: Buffer) => {
      if (verified) remember(session);
      else pendingSession = session;
    });
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      this.logRefusal(clientAddr, config.serverId, 'handshake-timeout', `no TLS handshake with ${config.connect.text} within ${config.handshakeTimeoutMs} ms`);
      tls.destroy();
      client.destroy();
    }, config.handshakeTimeoutMs);
    tls.once('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.logRefusal(clientAddr, config.serverId, 'connect-failed', connectFailure(config.connect.text, err));
      client.destroy();
    });
    client.once('close', () => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        tls.destroy();
      }
    });
    tls.once('secureConnect', () => {
      if (settled) {
        tls.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      tls.disableRenegotiation();
      const current = this.#deps.snapshots.current;
      const leafDer = peerLeafDer(tls);
      let refusal: { reason: RefusalReason; detail: string; peer: string } | undefined;
      let leaf: CertInfo | undefined;
      if (!leafDer && tls.isSessionReused() && cached) {
        // Resumed: no certificate on the wire; the session was cached only after its
        // server proved serverId, so re-judge the leaf it showed then.
        const still = stillValid(cached.leaf, current, this.now());
        if (still.ok) leaf = cached.leaf;
        else refusal = { reason: still.reason, detail: still.detail, peer: config.serverId };
      } else {
        const verdict = verifyPeer({ leafDer, authorized: tls.authorized, authorizationError: tls.authorizationError?.toString(), role: 'server' }, current, this.now(), this.#deps.certs);
        if (!verdict.ok) refusal = { reason: verdict.reason, detail: verdict.detail, peer: verdict.peer };
        else if (verdict.id.uri !== config.serverId) refusal = { reason: 'wrong-server-id', detail: `the server presented ${verdict.id.uri}, not ${config.serverId}`, peer: verdict.id.uri };
        else leaf = verdict.leaf;
      }
      if (refusal || !leaf) {
        this.#sessions.delete(key);
        const r = refusal ?? { reason: 'untrusted-chain' as const, detail: 'no certificate to judge', peer: config.serverId };
        this.logRefusal(clientAddr, r.peer, r.reason, r.detail);
        tls.destroy();
        client.destroy();
        return;
      }
      verified = leaf;
      if (pendingSession) remember(pendingSession);
      metrics.handshakeSeconds.observe({ direction: 'outbound' }, Number(process.hrtime.bigint() - started) / 1e9);
      metrics.connections.inc({ direction: 'outbound', result: 'allowed' });
      logger.debug({ event: 'allowed', direction: 'outbound', peer: config.serverId, address: config.connect.text, client: clientAddr, resumed: tls.isSessionReused() }, 'outbound connection verified');
      const live: LiveOutbound = { leaf, client: clientAddr, pipe: undefined, tls };
      this.#live.add(live);
      metrics.active.inc({ direction: 'outbound' });
      // The server's sidecar judges us after our handshake is done (TLS 1.3) and refuses
      // by closing without a byte: say so here, or the app only sees an empty reply.
      const cut = watchForServerCut(tls);
      live.pipe = pipeBoth(client, tls, {
        idleTimeoutMs: config.idleTimeoutMs,
        onClose: (stats) => {
          const how = cut();
          if (how) {
            metrics.refusals.inc({ direction: 'outbound', reason: 'closed-by-server' });
            logger.warn(
              { event: 'refused', direction: 'outbound', peer: config.serverId, address: config.connect.text, client: clientAddr, reason: 'closed-by-server', detail: `the server ${how} before sending a byte: its sidecar most likely refused this service (policy-denied, revoked…); its log says why` },
              'outbound connection closed by the server',
            );
          }
          this.#live.delete(live);
          metrics.active.dec({ direction: 'outbound' });
          metrics.bytes.inc({ direction: 'outbound', flow: 'received' }, stats.received);
          metrics.bytes.inc({ direction: 'outbound', flow: 'sent' }, stats.sent);
        },
      });
      client.resume();
    });
  }

  private logRefusal(client: string, peer: string, reason: RefusalReason, detail: string): void {
    const { metrics, logger, config } = this.#deps;
    metrics.connections.inc({ direction: 'outbound', result: 'refused' });
    metrics.refusals.inc({ direction: 'outbound', reason });
    logger.warn({ event: 'refused', direction: 'outbound', peer, address: config.connect.text, client, reason, detail }, 'outbound connection refused');
  }
}

/**
 * Watches a verified outbound connection for the server cutting it before it sent any
 * data: a reset, or an end while our side was still open. Returns how, asked at close.
 */
function watchForServerCut(tls: TLSSocket): () => string | undefined {
  let received = false;
  let cut: string | undefined;
  // Off the data path after the first chunk: only "nothing at all" matters.
  const onData = () => {
    received = true;
    tls.off('data', onData);
  };
  tls.on('data', onData);
  tls.once('end', () => {
    if (!received && !tls.writableEnded) cut ??= 'closed the connection';
  });
  tls.on('error', (err: NodeJS.ErrnoException) => {
    if (!received) cut ??= `reset the connection (${err.code ?? err.message})`;
  });
  return () => cut;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ENOENT', 'EACCES']);

/** Why an outbound handshake never completed, worded for what the operator should check. */
function connectFailure(target: string, err: NodeJS.ErrnoException): string {
  const code = err.code ?? err.message;
  if (UNREACHABLE.has(code)) return `cannot reach ${target} (${code})`;
  if (/ALERT/.test(code)) return `${target} refused the handshake (${code}): it does not accept this sidecar's certificate (another CA, or revoked?)`;
  if (/WRONG_VERSION_NUMBER|PACKET_LENGTH|HTTP_REQUEST|RECORD_LAYER/.test(code) || code === 'EPROTO') {
    return `${target} answered, but not with TLS (${code}): is connect the service itself rather than its sidecar?`;
  }
  return `the TLS handshake with ${target} failed (${code})`;
}

/**
 * Outbound: plaintext in from the local service, mTLS out under this service's identity.
 * The server is judged (outbound-dial.ts) and must present exactly `serverId` before one
 * byte of the client's is sent (the client socket stays paused until then). With
 * `tunnel: auto` the app connection becomes a stream on a warm tunnel to the target
 * (tunnel-pool.ts) when the server speaks svcca-tunnel/1, else — and with `tunnel: off` —
 * it gets a TLS connection of its own.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { constants as h2, type ClientHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { CertInfo } from '../../common/x509.js';
import type { Metrics } from '../metrics.js';
import type { OutboundConfig } from '../config/schema.js';
import type { SnapshotSource } from '../snapshot.js';
import { listen } from '../net/listen.js';
import { NO_DELAY, remoteOf } from '../net/socket.js';
import { OpenConnections } from './open-connections.js';
import { ServerDialer, type DialResult } from './outbound-dial.js';
import { abortEnd, pipeBoth, type PipeHandle } from './pipe.js';
import { TunnelPool } from './tunnel-pool.js';
import type { CertCache, RefusalReason } from './verify-peer.js';

export interface OutboundDeps {
  readonly config: OutboundConfig;
  readonly snapshots: SnapshotSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly certs: CertCache;
  readonly now?: () => Date;
  /** How long tunnels made with a replaced certificate may finish their streams (shutdown.grace). */
  readonly drainGraceMs?: number;
}

interface LiveOutbound {
  readonly leaf: CertInfo;
  readonly ownNotAfter: Date;
  readonly client: string;
  pipe: PipeHandle | undefined;
  readonly tls: TLSSocket;
}

/** Tries for one app connection when the server's sidecar refuses streams unprocessed (a reload's GOAWAY race). */
const MAX_STREAM_ATTEMPTS = 3;

/** App bytes sent on a stream before its 200, kept for a replay (tunnel-pool.ts). */
const EARLY_DATA_MAX = 64 * 1024;

interface EarlyData {
  chunks: Buffer[];
  bytes: number;
  ended: boolean;
}

export class OutboundProxy {
  readonly #deps: OutboundDeps;
  readonly #server: Server;
  readonly #dialer: ServerDialer;
  readonly #pool: TunnelPool | undefined;
  readonly #live: OpenConnections<LiveOutbound>;
  readonly #clients = new Set<Socket>();

  constructor(deps: OutboundDeps) {
    this.#deps = deps;
    this.#server = createServer({ allowHalfOpen: true, pauseOnConnect: true, ...NO_DELAY }, (client) => this.onClient(client));
    this.#server.maxConnections = deps.config.maxConnections;
    this.#server.on('drop', () => {
      this.logRefusal(
        'unix',
        deps.config.serverId,
        'too-many-connections',
        `the limit of ${deps.config.maxConnections} connections is reached`,
      );
    });
    const now = () => this.now();
    // Made first: a swap drops the cached sessions, then re-judges the open connections
    // (revoked since, or past notAfter).
    this.#dialer = new ServerDialer({ config: deps.config, snapshots: deps.snapshots, certs: deps.certs, now });
    this.#live = new OpenConnections<LiveOutbound>({
      snapshots: deps.snapshots,
      onRefused: (c, r) => {
        this.logRefusal(c.client, this.#deps.config.serverId, r.reason, r.detail);
        c.pipe?.destroy() ?? c.tls.destroy();
      },
      now,
    });
    this.#pool =
      deps.config.tunnel === 'auto'
        ? new TunnelPool({
            config: deps.config,
            dialer: this.#dialer,
            snapshots: deps.snapshots,
            logger: deps.logger,
            metrics: deps.metrics,
            now,
            drainGraceMs: deps.drainGraceMs ?? 30_000,
            logRefusal: (client, peer, reason, detail, extra) => this.logRefusal(client, peer, reason, detail, extra),
          })
        : undefined;
  }

  start(): Promise<string> {
    return listen(this.#server, this.#deps.config.listen);
  }

  /** App connections open: direct ones and those carried on tunnels. */
  get activeConnections(): number {
    return this.#live.size + (this.#pool?.streamCount ?? 0);
  }

  stopAccepting(): Promise<void> {
    this.#pool?.close();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  destroyAll(): void {
    for (const c of this.#live) c.pipe?.destroy() ?? c.tls.destroy();
    this.#pool?.destroyAll();
    for (const c of this.#clients) c.destroy();
  }

  private now(): Date {
    return this.#deps.now ? this.#deps.now() : new Date();
  }

  private onClient(client: Socket): void {
    const clientAddr = remoteOf(client);
    this.#clients.add(client);
    client.once('close', () => this.#clients.delete(client));
    client.on('error', () => client.destroy());
    if (this.#pool) void this.viaTunnel(client, clientAddr, this.#pool);
    else this.direct(client, clientAddr);
  }

  /** tunnel: auto — a stream on a tunnel, or direct when the server has none. */
  private async viaTunnel(
    client: Socket,
    clientAddr: string,
    pool: TunnelPool,
    attempt = 1,
    early: EarlyData = { chunks: [], bytes: 0, ended: false },
  ): Promise<void> {
    const grant = await pool.request();
    if (grant.kind === 'refused') {
      this.logRefusal(clientAddr, grant.peer, grant.reason, grant.detail);
      client.destroy();
      return;
    }
    if (grant.kind === 'direct' && attempt === 1) {
      if (grant.dial) this.pipeVerified(client, clientAddr, grant.dial);
      else this.direct(client, clientAddr);
      return;
    }
    if (grant.kind === 'direct') {
      // Bytes already went out on a refused stream: they cannot be replayed on a plain connection.
      grant.dial?.tls.destroy();
      this.logRefusal(
        clientAddr,
        this.#deps.config.serverId,
        'closed-by-server',
        "the server's sidecar refused the tunnel stream and no tunnel is left to retry on",
      );
      client.destroy();
      return;
    }
    this.pipeStream(client, clientAddr, grant.stream, early, () => {
      // Refused unprocessed (REFUSED_STREAM, or the tunnel got GOAWAY first): the bytes sent
      // on it were dropped by the server, and are replayed on another.
      if (attempt < MAX_STREAM_ATTEMPTS && !client.destroyed) void this.viaTunnel(client, clientAddr, pool, attempt + 1, early);
      else {
        this.logRefusal(
          clientAddr,
          this.#deps.config.serverId,
          'closed-by-server',
          `the server's sidecar refused the tunnel stream ${attempt} times (REFUSED_STREAM): it is at a limit or going away; its log says why`,
        );
        client.destroy();
      }
    });
  }

  /**
   * One app connection as one stream, piped both ways with half-close and resets passed
   * on. The app's first bytes go out at once, without waiting for the server's 200 (no
   * extra round trip), and are kept until it comes — up to EARLY_DATA_MAX, beyond which the
   * app waits — so that a stream refused unprocessed can be replayed on another.
   */
  private pipeStream(client: Socket, clientAddr: string, stream: ClientHttp2Stream, early: EarlyData, retry: () => void): void {
    const { config, metrics, logger } = this.#deps;
    if (client.destroyed) {
      abortEnd(stream);
      return;
    }
    for (const chunk of early.chunks) stream.write(chunk);
    if (early.ended) stream.end();
    const onData = (chunk: Buffer) => {
      early.chunks.push(chunk);
      early.bytes += chunk.length;
      stream.write(chunk);
      if (early.bytes >= EARLY_DATA_MAX) client.pause();
    };
    const onEnd = () => {
      early.ended = true;
      stream.end();
    };
    // A client gone before the answer takes its stream with it.
    const onClientClose = () => abortEnd(stream);
    const stopEarly = () => {
      client.off('data', onData);
      client.off('end', onEnd);
      client.off('close', onClientClose);
    };
    if (!early.ended) {
      client.on('data', onData);
      client.once('end', onEnd);
      client.resume();
    }
    client.once('close', onClientClose);
    let answered = false;
    stream.once('close', () => {
      if (answered) return;
      stopEarly();
      if (stream.rstCode === h2.NGHTTP2_REFUSED_STREAM) {
        client.pause();
        retry();
        return;
      }
      this.logRefusal(
        clientAddr,
        config.serverId,
        'closed-by-server',
        `the server's sidecar reset the tunnel stream before answering (code ${stream.rstCode ?? 'none'}); its log says why`,
      );
      client.destroy();
    });
    stream.once('response', (headers) => {
      answered = true;
      stopEarly();
      early.chunks = [];
      if (headers[':status'] !== 200) {
        this.logRefusal(
          clientAddr,
          config.serverId,
          'closed-by-server',
          `the server's sidecar answered the tunnel stream with ${String(headers[':status'])}`,
        );
        abortEnd(stream);
        client.destroy();
        return;
      }
      metrics.connections.inc({ direction: 'outbound', result: 'allowed' });
      metrics.active.inc({ direction: 'outbound' });
      logger.debug(
        { event: 'allowed', direction: 'outbound', peer: config.serverId, address: config.connect.text, client: clientAddr, tunnel: true },
        'outbound connection on a tunnel',
      );
      // The rest flows through the pipe (an app that already ended has its end passed on already).
      pipeBoth(client, stream, {
        idleTimeoutMs: config.idleTimeoutMs,
        onClose: (stats) => {
          metrics.active.dec({ direction: 'outbound' });
          metrics.bytes.inc({ direction: 'outbound', flow: 'received' }, stats.received);
          metrics.bytes.inc({ direction: 'outbound', flow: 'sent' }, stats.sent);
        },
      });
    });
  }

  /** One TLS connection for this app connection (tunnel: off, or a server without tunnels). */
  private direct(client: Socket, clientAddr: string): void {
    // outbound[].alpn: an app speaking h2c here reaches an http-mode inbound as HTTP/2.
    const attempt = this.#dialer.dial(this.#deps.config.alpn);
    client.once('close', () => attempt.cancel());
    void attempt.result.then((r) => {
      if (!r.ok) {
        this.logRefusal(clientAddr, r.peer, r.reason, r.detail);
        client.destroy();
        return;
      }
      this.pipeVerified(client, clientAddr, r);
    });
  }

  private pipeVerified(client: Socket, clientAddr: string, r: Extract<DialResult, { ok: true }>): void {
    const { config, metrics, logger } = this.#deps;
    const { tls, leaf } = r;
    if (client.destroyed) {
      tls.destroy();
      return;
    }
    metrics.handshakeSeconds.observe({ direction: 'outbound' }, r.seconds);
    metrics.connections.inc({ direction: 'outbound', result: 'allowed' });
    logger.debug(
      {
        event: 'allowed',
        direction: 'outbound',
        peer: config.serverId,
        address: config.connect.text,
        client: clientAddr,
        resumed: r.resumed,
      },
      'outbound connection verified',
    );
    const live: LiveOutbound = { leaf, ownNotAfter: r.ownNotAfter, client: clientAddr, pipe: undefined, tls };
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
            {
              event: 'refused',
              direction: 'outbound',
              peer: config.serverId,
              address: config.connect.text,
              client: clientAddr,
              reason: 'closed-by-server',
              detail: `the server ${how} before sending a byte: its sidecar most likely refused this service (policy-denied, revoked…); its log says why`,
            },
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
  }

  private logRefusal(client: string, peer: string, reason: RefusalReason, detail: string, extra: Record<string, unknown> = {}): void {
    const { metrics, logger, config } = this.#deps;
    metrics.connections.inc({ direction: 'outbound', result: 'refused' });
    metrics.refusals.inc({ direction: 'outbound', reason });
    logger.warn(
      { event: 'refused', direction: 'outbound', peer, address: config.connect.text, client, reason, detail, ...extra },
      'outbound connection refused',
    );
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

/**
 * Inbound: mTLS in, the caller judged (X509-SVID, CRL) on every connection — a resumed
 * session included — before one byte is forwarded. tcp mode then applies the policy to
 * the connection and pipes it to the local service; http mode (http-inbound.ts) applies
 * it to each request. The certificate is parsed once per connection in both.
 *
 * OpenSSL is run with `rejectUnauthorized: false`: with `true` it destroys a refused
 * client inside the handshake and the server never learns who or why, and every refusal
 * must be logged with both. OpenSSL's chain verdict (`authorized`) is one of the checks
 * in verifyPeer, which runs the rest in JS.
 */
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { CertInfo } from '../../common/x509.js';
import type { Metrics } from '../metrics.js';
import type { InboundConfig } from '../config/schema.js';
import type { Snapshot, SnapshotSource } from '../snapshot.js';
import type { ServerHttp2Stream } from 'node:http2';
import { xfccValue } from './http-headers.js';
import { HttpInbound, type HttpCaller, type HttpConnection } from './http-inbound.js';
import { Http2Inbound } from './http2-inbound.js';
import { listen } from '../net/listen.js';
import { dial, NO_DELAY, remoteOf } from '../net/socket.js';
import { dialSharedRead } from '../net/shared-read.js';
import { OpenConnections, type Rejudged } from './open-connections.js';
import { abortEnd, isH2Stream, pipeBoth, type PipeEnd, type PipeHandle } from './pipe.js';
import { PolicyDecisions } from './policy-decisions.js';
import { TunnelInbound, type InboundTunnel } from './tunnel-inbound.js';
import { TUNNEL_ALPN, selectInboundAlpn } from './tunnel-protocol.js';
import { ownCertificateRefusal, policyDecision } from './verdict.js';
import { type CertCache, NO_CERTIFICATE, verifyPeer, type RefusalReason } from './verify-peer.js';
import { peerLeafDer } from '../../common/tls-peer.js';

export interface InboundDeps {
  readonly config: InboundConfig;
  readonly snapshots: SnapshotSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly certs: CertCache;
  readonly now?: () => Date;
  /** How long tunnels made with a replaced certificate may finish their streams (shutdown.grace). */
  readonly drainGraceMs?: number;
}

/** A caller that passed every check at its handshake: who, from where, judged by what. */
interface VerifiedCaller {
  readonly peer: string;
  readonly service: string;
  readonly address: string;
  readonly ip: string | undefined;
  readonly leaf: CertInfo;
  readonly leafDer: Buffer;
  readonly resumed: boolean;
  /** The notAfter of our certificate when the caller was accepted. */
  readonly ownNotAfter: Date;
}

/** What tcp mode needs of the policy decision for one connection (or one tunnel's streams). */
interface TcpDecision {
  readonly rule?: string | undefined;
  /** Set when the entry is in audit mode and the allow-list would have refused. */
  readonly wouldDeny?: string | undefined;
}

/** Who is on an http-mode connection, as both HTTP servers take it. */
function httpCallerOf(caller: VerifiedCaller, self: string): HttpCaller {
  return {
    peer: caller.peer,
    service: caller.service,
    address: caller.address,
    ip: caller.ip,
    leaf: caller.leaf,
    xfcc: xfccValue(self, caller.leafDer, caller.peer),
  };
}

interface LiveConnection {
  readonly peer: string;
  readonly service: string;
  readonly address: string;
  readonly leaf: CertInfo;
  readonly ownNotAfter: Date;
  pipe: PipeHandle | undefined;
  readonly socket: TLSSocket;
  /** http mode: the requests open on it, re-judged when the policy changes. */
  readonly http?: HttpConnection;
  /** A tunnel: its streams are app connections of this caller, cut with it. */
  readonly tunnel?: InboundTunnel;
  /** http mode, a tunnel: each stream's requests. */
  readonly streamsHttp?: Set<HttpConnection>;
}

export class InboundProxy {
  readonly #deps: InboundDeps;
  readonly #server: Server;
  readonly #live: OpenConnections<LiveConnection>;
  /** Raw sockets whose TLS handshake is not done yet. */
  readonly #pending = new Set<Socket>();
  /** Handshakes in progress per source address (the key is the IP, or 'unix'). */
  readonly #pendingBySource = new Map<string, number>();
  /** Raw sockets dropped at accept: their TLS layer's reset is not a second refusal. */
  readonly #dropped = new WeakSet<Socket>();
  readonly #acceptedAt = new WeakMap<Socket, bigint>();
  readonly #settleHandshake = new WeakMap<Socket, () => void>();
  readonly #http: HttpInbound | undefined;
  /** http mode's HTTP/2 half (ALPN h2). */
  readonly #http2: Http2Inbound | undefined;
  readonly #decisions: PolicyDecisions;
  readonly #tunnels: TunnelInbound;
  /** What each tunnel's streams are served as: its caller, judged at the handshake. */
  readonly #tunnelCallers = new WeakMap<
    InboundTunnel,
    { caller: VerifiedCaller; decision: TcpDecision; live: LiveConnection; self: string }
  >();
  #closing = false;

  constructor(deps: InboundDeps) {
    this.#deps = deps;
    this.#decisions = new PolicyDecisions(deps.logger, deps.metrics);
    const httpDeps = {
      config: deps.config,
      snapshots: deps.snapshots,
      logger: deps.logger,
      metrics: deps.metrics,
      decisions: this.#decisions,
      ...(deps.now ? { now: deps.now } : {}),
    };
    this.#http = deps.config.mode === 'http' ? new HttpInbound(httpDeps) : undefined;
    this.#http2 = deps.config.mode === 'http' ? new Http2Inbound(httpDeps) : undefined;
    const snap = deps.snapshots.current;
    this.#server = createServer({
      ...snap.serverOptions,
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: deps.config.handshakeTimeoutMs,
      allowHalfOpen: true,
      ...NO_DELAY,
      // A refused peer must not be able to resume its way past us later either: every
      // connection is judged anyway, but short tickets bound what a stolen one is worth.
      sessionTimeout: 300,
      // An svcca outbound offering svcca-tunnel/1 gets a tunnel (tunnel-inbound.ts); http
      // mode speaks HTTP/2 (h2) and HTTP/1.1; a client offering no ALPN gets HTTP/1.1.
      ALPNCallback: ({ protocols }) => selectInboundAlpn(protocols, { h2: deps.config.mode === 'http' }),
    });
    this.#tunnels = new TunnelInbound({
      config: deps.config,
      logger: deps.logger,
      metrics: deps.metrics,
      hasRoom: () => this.#live.size + this.#pending.size + this.#tunnels.streamCount < deps.config.maxConnections,
      serveStream: (stream, tunnel) => this.serveStream(stream, tunnel),
      refuse: (peer, address, reason, detail, extra) => this.logRefusal(peer, address, reason, detail, extra),
    });
    // A backstop only: the limits that matter are applied per socket in admit(), where
    // handshakes in progress have a budget of their own and cannot fill maxConnections.
    this.#server.maxConnections = deps.config.maxConnections + deps.config.maxHandshakes;
    this.#server.on('connection', (raw: Socket) => this.admit(raw));
    this.#server.on('secureConnection', (socket: TLSSocket) => this.onSecure(socket));
    // With this listener present Node no longer destroys a socket that hits
    // handshakeTimeout (a silent client would stay forever): destroy it here.
    this.#server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      const raw = rawOf(socket);
      if (raw && this.#dropped.has(raw)) {
        socket.destroy();
        return;
      }
      const timeout = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || /timeout/i.test(err.message);
      this.refuse(
        socket,
        timeout ? 'handshake-timeout' : 'handshake-failed',
        NO_CERTIFICATE,
        timeout ? `no TLS handshake within ${deps.config.handshakeTimeoutMs} ms` : err.message,
      );
      socket.destroy();
    });
    this.#server.on('drop', (data?: { remoteAddress?: string; remotePort?: number }) => {
      const address = data?.remoteAddress ? `${data.remoteAddress}:${data.remotePort}` : 'unix';
      this.logRefusal(NO_CERTIFICATE, address, 'too-many-connections', `the limit of ${deps.config.maxConnections} connections is reached`);
    });
    deps.snapshots.onSwap((next, previous) => {
      if (next.serverOptions !== previous.serverOptions) {
        // New handshakes get the new certificate; open streams go on. Keep the ticket keys
        // so that sessions issued before the swap can still resume (and then be judged).
        const keys = this.#server.getTicketKeys();
        this.#server.setSecureContext({ ...next.serverOptions });
        this.#server.setTicketKeys(keys);
      }
      // A new certificate: new tunnels are made with it; the old ones finish their streams.
      if (next.identity !== previous.identity) this.drainTunnelsOf(previous);
    });
    // Made after the secure-context listener: a swap switches the certificate first, then
    // re-judges the open connections (revoked, past notAfter, no longer allowed).
    this.#live = new OpenConnections<LiveConnection>({
      snapshots: deps.snapshots,
      rejudge: (c, snap) => this.rejudge(c, snap),
      onRefused: (c, r) => {
        if (c.tunnel) {
          this.logRefusal(c.peer, c.address, r.reason, `${r.detail} (a tunnel: ${c.tunnel.streams.size} streams cut with it)`, {
            open: true,
            tunnel: true,
            streams: c.tunnel.streams.size,
          });
          c.tunnel.cut();
          return;
        }
        this.logRefusal(c.peer, c.address, r.reason, r.detail, { open: true });
        c.pipe?.destroy() ?? c.socket.destroy();
      },
      now: () => this.now(),
    });
  }

  /** Starts listening; resolves with the bound address (port 0 resolved). */
  start(): Promise<string> {
    return listen(this.#server, this.#deps.config.listen);
  }

  /** Open connections: direct ones, tunnels, and the app connections on tunnels. */
  get activeConnections(): number {
    return this.#live.size + this.#tunnels.streamCount;
  }

  /** Stops accepting; open connections go on. Resolves when the server is closed. */
  stopAccepting(): Promise<void> {
    this.#closing = true;
    for (const raw of this.#pending) raw.destroy(); // handshakes not yet done
    // http mode: an idle keep-alive connection would otherwise hold the drain for the
    // whole grace period.
    this.#http?.drain();
    this.#http2?.drain();
    this.#tunnels.drainAll();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  /** Ends every open connection (the grace period is over). */
  destroyAll(): void {
    for (const c of this.#live) c.tunnel ? c.tunnel.cut() : (c.pipe?.destroy() ?? c.socket.destroy());
    this.#http?.close();
    this.#http2?.close();
  }

  /** Why an open connection whose caller is still valid is no longer allowed by the policy. */
  private rejudge(c: LiveConnection, snap: Snapshot): Rejudged | undefined {
    if (c.streamsHttp) {
      for (const h of c.streamsHttp) {
        const denied = this.#http!.recheckOpen(h, snap);
        if (denied) return { reason: 'policy-denied', detail: denied };
      }
      return undefined;
    }
    if (c.http) {
      // Per request: an idle connection is judged again by its next request.
      const denied = this.#http!.recheckOpen(c.http, snap);
      return denied ? { reason: 'policy-denied', detail: denied } : undefined;
    }
    const d = policyDecision(snap, c.service);
    return d.allow ? undefined : { reason: 'policy-denied', detail: d.reason };
  }

  private now(): Date {
    return this.#deps.now ? this.#deps.now() : new Date();
  }

  /**
   * A new TCP connection, before any TLS: counted against the handshake budgets (in all,
   * and per source address) and against maxConnections together with the established
   * ones; dropped and logged when any is full. A flood of silent sockets then uses up its
   * own budget, not the room of established callers or of valid new handshakes from
   * elsewhere; each such socket is gone at handshakeTimeout anyway.
   */
  private admit(raw: Socket): void {
    const { config } = this.#deps;
    const source = raw.remoteAddress ?? 'unix';
    const fromSource = this.#pendingBySource.get(source) ?? 0;
    let refusal: { reason: RefusalReason; detail: string } | undefined;
    if (this.#live.size + this.#pending.size + this.#tunnels.streamCount >= config.maxConnections) {
      refusal = { reason: 'too-many-connections', detail: `the limit of ${config.maxConnections} connections is reached` };
    } else if (this.#pending.size >= config.maxHandshakes) {
      refusal = { reason: 'too-many-handshakes', detail: `${config.maxHandshakes} TLS handshakes are in progress (inbound.maxHandshakes)` };
    } else if (fromSource >= config.maxHandshakesPerAddress) {
      refusal = {
        reason: 'too-many-handshakes',
        detail: `${fromSource} TLS handshakes from ${source} are in progress (inbound.maxHandshakesPerAddress)`,
      };
    }
    if (refusal) {
      this.#dropped.add(raw);
      this.logRefusal(NO_CERTIFICATE, remoteOf(raw), refusal.reason, refusal.detail);
      raw.destroy();
      return;
    }
    this.#acceptedAt.set(raw, process.hrtime.bigint());
    this.#pending.add(raw);
    this.#pendingBySource.set(source, fromSource + 1);
    let counted = true;
    const settle = () => {
      if (!counted) return;
      counted = false;
      this.#pending.delete(raw);
      const n = (this.#pendingBySource.get(source) ?? 1) - 1;
      if (n <= 0) this.#pendingBySource.delete(source);
      else this.#pendingBySource.set(source, n);
    };
    this.#settleHandshake.set(raw, settle);
    raw.once('close', settle);
  }

  private onSecure(socket: TLSSocket): void {
    const { snapshots } = this.#deps;
    const address = remoteOf(socket);
    const raw = rawOf(socket);
    if (raw) this.#settleHandshake.get(raw)?.(); // handshake done: shutdown now waits for it instead
    if (this.#closing) {
      socket.destroy();
      return;
    }
    // TLS 1.2 renegotiation would let a peer swap certificates after it was judged.
    socket.disableRenegotiation();
    socket.on('error', () => socket.destroy());
    const snap = snapshots.current;
    const now = this.now();
    const leafDer = peerLeafDer(socket);
    const own = ownCertificateRefusal(snap, now);
    if (own) {
      this.refuse(socket, own.reason, NO_CERTIFICATE, own.detail);
      return;
    }
    const verdict = verifyPeer(
      { leafDer, authorized: socket.authorized, authorizationError: socket.authorizationError?.toString(), role: 'client' },
      snap,
      now,
      this.#deps.certs,
    );
    if (!verdict.ok) {
      this.refuse(socket, verdict.reason, verdict.peer, verdict.detail, socket.isSessionReused());
      return;
    }
    const caller: VerifiedCaller = {
      peer: verdict.id.uri,
      service: verdict.id.service,
      address,
      ip: socket.remoteAddress,
      leaf: verdict.leaf,
      leafDer: leafDer!,
      resumed: socket.isSessionReused(),
      ownNotAfter: snap.identity.leaf.notAfter,
    };
    if (socket.alpnProtocol === TUNNEL_ALPN) {
      this.acceptTunnel(socket, caller, snap);
      return;
    }
    if (this.#http) {
      this.acceptHttp(socket, caller, snap.identity.id.uri);
      return;
    }
    const decision = policyDecision(snap, caller.service);
    this.#decisions.record(decision, { peer: caller.peer, address, mode: 'tcp' });
    if (!decision.allow) {
      this.refuse(socket, 'policy-denied', caller.peer, decision.reason, caller.resumed);
      return;
    }
    this.observeHandshake(socket);
    const live: LiveConnection = {
      peer: caller.peer,
      service: caller.service,
      address,
      leaf: caller.leaf,
      ownNotAfter: caller.ownNotAfter,
      pipe: undefined,
      socket,
    };
    this.#live.add(live);
    this.forwardTcp(socket, caller, decision, live);
  }

  /**
   * tcp mode: one caller connection — a TLS socket, or a stream of a tunnel — piped to
   * `forward`. `live` is the direct connection's entry in #live (a stream is cut with its
   * tunnel's instead).
   */
  private forwardTcp(conn: PipeEnd, caller: VerifiedCaller, decision: TcpDecision, live: LiveConnection | undefined): void {
    const { logger, metrics } = this.#deps;
    const { address } = caller;
    // A stream is counted active by the tunnel (tunnel-inbound.ts).
    if (live) metrics.active.inc({ direction: 'inbound' });
    // A caller's TLS socket takes the service's bytes straight from a shared read buffer; a tunnel's stream does not (net/shared-read.ts).
    const upstream = isH2Stream(conn) ? dial(this.#deps.config.forward) : dialSharedRead(this.#deps.config.forward);
    let connected = false;
    const onUpstreamError = (err: NodeJS.ErrnoException) => {
      if (connected) return;
      if (live) {
        this.#live.delete(live);
        metrics.active.dec({ direction: 'inbound' });
      }
      metrics.connections.inc({ direction: 'inbound', result: 'error' });
      metrics.refusals.inc({ direction: 'inbound', reason: 'forward-unavailable' });
      logger.warn(
        {
          event: 'refused',
          direction: 'inbound',
          peer: caller.peer,
          address,
          reason: 'forward-unavailable',
          detail: `the local service at ${this.#deps.config.forward.text} is unreachable (${err.code ?? err.message})`,
        },
        'caller allowed but the local service is down; connection closed',
      );
      upstream.destroy();
      abortEnd(conn);
    };
    upstream.once('error', onUpstreamError);
    upstream.once('connect', () => {
      connected = true;
      upstream.off('error', onUpstreamError);
      if (conn.destroyed) {
        upstream.destroy();
        return;
      }
      metrics.connections.inc({ direction: 'inbound', result: 'allowed' });
      // A would-deny connection (audit mode) was logged by the decision recorder instead.
      if (decision.wouldDeny === undefined)
        logger.debug(
          {
            event: 'allowed',
            direction: 'inbound',
            peer: caller.peer,
            address,
            rule: decision.rule,
            resumed: caller.resumed,
            ...(live ? {} : { tunnel: true }),
          },
          'connection allowed',
        );
      const pipe = pipeBoth(conn, upstream, {
        idleTimeoutMs: this.#deps.config.idleTimeoutMs,
        onClose: (stats) => {
          if (live) {
            this.#live.delete(live);
            metrics.active.dec({ direction: 'inbound' });
          }
          metrics.bytes.inc({ direction: 'inbound', flow: 'received' }, stats.received);
          metrics.bytes.inc({ direction: 'inbound', flow: 'sent' }, stats.sent);
          logger.debug(
            {
              event: 'closed',
              direction: 'inbound',
              peer: caller.peer,
              address,
              received: stats.received,
              sent: stats.sent,
              how: stats.reason,
            },
            'connection closed',
          );
        },
      });
      if (live) live.pipe = pipe;
    });
    // A caller that goes away while we dial: do not leave the upstream half-open.
    conn.once('close', () => {
      if (!connected) upstream.destroy();
    });
  }

  /** http mode: the policy is applied per request, so the connection itself is kept. */
  private acceptHttp(socket: TLSSocket, caller: VerifiedCaller, self: string): void {
    const { logger, metrics } = this.#deps;
    this.observeHandshake(socket);
    metrics.connections.inc({ direction: 'inbound', result: 'allowed' });
    metrics.active.inc({ direction: 'inbound' });
    logger.debug(
      { event: 'allowed', direction: 'inbound', mode: 'http', peer: caller.peer, address: caller.address, resumed: caller.resumed },
      'connection allowed',
    );
    // ALPN h2 (a direct connection only: a tunnel stream carries HTTP/1.1 or bytes).
    const http =
      socket.alpnProtocol === 'h2' ? this.#http2!.accept(socket, httpCallerOf(caller, self)) : this.serveHttp(socket, caller, self);
    const live: LiveConnection = {
      peer: caller.peer,
      service: caller.service,
      address: caller.address,
      leaf: caller.leaf,
      ownNotAfter: caller.ownNotAfter,
      pipe: undefined,
      socket,
      http,
    };
    this.#live.add(live);
    socket.once('close', () => {
      this.#live.delete(live);
      metrics.active.dec({ direction: 'inbound' });
      metrics.bytes.inc({ direction: 'inbound', flow: 'received' }, socket.bytesRead);
      metrics.bytes.inc({ direction: 'inbound', flow: 'sent' }, socket.bytesWritten);
    });
  }

  /** http mode: one caller connection (a TLS socket or a tunnel stream) to the HTTP server. */
  private serveHttp(conn: PipeEnd, caller: VerifiedCaller, self: string): HttpConnection {
    return this.#http!.accept(conn, httpCallerOf(caller, self));
  }

  /**
   * A caller that selected svcca-tunnel/1, judged like any other: the policy is applied
   * now in tcp mode (per request in http mode, as for a direct connection). Each stream
   * is then served by forwardTcp or serveHttp exactly as a direct connection.
   */
  private acceptTunnel(socket: TLSSocket, caller: VerifiedCaller, snap: Snapshot): void {
    let judged: TcpDecision = {};
    if (!this.#http) {
      const decision = policyDecision(snap, caller.service);
      // One decision for the tunnel, as for one direct connection: its streams share it.
      this.#decisions.record(decision, { peer: caller.peer, address: caller.address, mode: 'tcp' });
      if (!decision.allow) {
        this.refuse(socket, 'policy-denied', caller.peer, decision.reason, caller.resumed);
        return;
      }
      judged = decision;
    }
    const tunnel = this.#tunnels.accept(socket, { peer: caller.peer, address: caller.address });
    if (!tunnel) return;
    this.observeHandshake(socket);
    const live: LiveConnection = {
      peer: caller.peer,
      service: caller.service,
      address: caller.address,
      leaf: caller.leaf,
      ownNotAfter: caller.ownNotAfter,
      pipe: undefined,
      socket,
      tunnel,
      ...(this.#http ? { streamsHttp: new Set<HttpConnection>() } : {}),
    };
    this.#live.add(live);
    this.#tunnelCallers.set(tunnel, { caller, decision: judged, live, self: snap.identity.id.uri });
    tunnel.session.once('close', () => this.#live.delete(live));
  }

  /** One stream of a tunnel: served as a direct connection from the tunnel's caller. */
  private serveStream(stream: ServerHttp2Stream, tunnel: InboundTunnel): void {
    const t = this.#tunnelCallers.get(tunnel);
    if (!t) {
      abortEnd(stream);
      return;
    }
    if (!t.live.streamsHttp) {
      this.forwardTcp(stream, t.caller, t.decision, undefined);
      return;
    }
    const http = this.serveHttp(stream, t.caller, t.self);
    t.live.streamsHttp.add(http);
    stream.once('close', () => t.live.streamsHttp!.delete(http));
  }

  /** A certificate reload: tunnels made under `previous` get GOAWAY, and are cut at the grace's end. */
  private drainTunnelsOf(previous: Snapshot): void {
    const grace = this.#deps.drainGraceMs ?? 30_000;
    for (const c of this.#live) {
      if (!c.tunnel || c.ownNotAfter !== previous.identity.leaf.notAfter) continue;
      const tunnel = c.tunnel;
      tunnel.drain();
      setTimeout(() => tunnel.cut(), grace).unref();
    }
  }

  private observeHandshake(socket: TLSSocket): void {
    const raw = rawOf(socket);
    const started = raw ? this.#acceptedAt.get(raw) : undefined;
    if (started !== undefined)
      this.#deps.metrics.handshakeSeconds.observe({ direction: 'inbound' }, Number(process.hrtime.bigint() - started) / 1e9);
  }

  private refuse(socket: TLSSocket, reason: RefusalReason, peer: string, detail: string, resumed?: boolean): void {
    this.logRefusal(peer, remoteOf(socket), reason, detail, resumed ? { resumed: true } : {});
    socket.destroy();
  }

  private logRefusal(peer: string, address: string, reason: RefusalReason, detail: string, extra: Record<string, unknown> = {}): void {
    this.#deps.metrics.connections.inc({ direction: 'inbound', result: 'refused' });
    this.#deps.metrics.refusals.inc({ direction: 'inbound', reason });
    this.#deps.logger.warn({ event: 'refused', direction: 'inbound', peer, address, reason, detail, ...extra }, 'connection refused');
  }
}

/**
 * The TCP socket under a TLS socket the server accepted: what the 'connection' event saw,
 * and so the key of the per-socket bookkeeping made there. (Node keeps it as `_parent`.)
 */
function rawOf(socket: TLSSocket): Socket | undefined {
  return (socket as unknown as { _parent?: Socket })._parent;
}

/**
 * Outbound tunnels to one target: a few warm mTLS connections that selected ALPN
 * svcca-tunnel/1, each app connection one CONNECT stream on them (tunnel-protocol.ts).
 * Every tunnel is made by the same ServerDialer as a direct connection, so its server is
 * judged (X509-SVID, chain, CRL, validity, serverId) before any stream — any app byte —
 * goes out on it.
 *
 * Tunnels are opened lazily (the first app connection), up to `tunnelConnections`, a new
 * one when every open one already carries streams; streams go to the least loaded. A
 * failed dial is retried with exponential back-off and jitter; a tunnel idle for
 * `idleTimeout` is closed. A server that does not select the ALPN (an older sidecar,
 * ghostunnel, any TLS server) gets one mTLS connection per app connection, as with
 * `tunnel: off`, and is asked again after a while. A certificate reload (ours) or a
 * GOAWAY (theirs) drains a tunnel: no new streams, the open ones finish, then it closes.
 */
import { connect as h2Connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { CertInfo } from '../../common/x509.js';
import type { OutboundConfig } from '../config/schema.js';
import type { Metrics } from '../metrics.js';
import type { SnapshotSource } from '../snapshot.js';
import { OpenConnections } from './open-connections.js';
import type { DialResult, ServerDialer } from './outbound-dial.js';
import { CONNECTION_WINDOW, OUTBOUND_ALPN, OUTBOUND_MAX_STREAMS, TUNNEL_ALPN, tunnelSettings } from './tunnel-protocol.js';
import type { RefusalReason } from './verify-peer.js';

export type Grant =
  | { readonly kind: 'stream'; readonly stream: ClientHttp2Stream }
  /** No tunnel with this server: one connection per app connection (`dial`: one already made). */
  | { readonly kind: 'direct'; readonly dial?: Extract<DialResult, { ok: true }> }
  | { readonly kind: 'refused'; readonly reason: RefusalReason; readonly detail: string; readonly peer: string };

interface OutboundTunnel {
  readonly tls: TLSSocket;
  readonly session: ClientHttp2Session;
  readonly leaf: CertInfo;
  readonly ownNotAfter: Date;
  readonly streams: Set<ClientHttp2Stream>;
  draining: boolean;
  idleTimer: NodeJS.Timeout | undefined;
}

export interface TunnelPoolDeps {
  readonly config: OutboundConfig;
  readonly dialer: ServerDialer;
  readonly snapshots: SnapshotSource;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now: () => Date;
  readonly drainGraceMs: number;
  /** Logs a refusal the way outbound.ts does (no app connection: `client` is 'tunnel'). */
  readonly logRefusal: (client: string, peer: string, reason: RefusalReason, detail: string, extra?: Record<string, unknown>) => void;
}

/** After a server did not select the ALPN, how long to go direct before asking again. */
const NO_TUNNEL_RECHECK_MS = 60_000;
export const BACKOFF_BASE_MS = 100;
export const BACKOFF_MAX_MS = 5_000;

/**
 * The wait before the next tunnel dial after `failures` failed ones in a row: doubling
 * from BACKOFF_BASE_MS up to BACKOFF_MAX_MS, each drawn in [½, 1] of that ("equal
 * jitter"), so the callers of a sidecar that went down do not all come back at once.
 */
export function backoffMs(failures: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(Math.max(failures, 1) - 1, 16));
  return Math.round(ceiling * (0.5 + random() * 0.5));
}

export class TunnelPool {
  readonly #deps: TunnelPoolDeps;
  /** Open, not draining: new streams go here. */
  #ready: OutboundTunnel[] = [];
  readonly #live: OpenConnections<OutboundTunnel>;
  #dialing = 0;
  #waiters: ((g: Grant) => void)[] = [];
  #noTunnelUntil = 0;
  #failures = 0;
  #retryAt = 0;
  #lastFailure: Extract<Grant, { kind: 'refused' }> | undefined;
  #streamCount = 0;
  #closed = false;
  /** Bumped when our certificate changes: a tunnel dialed before that is not for new streams. */
  #identityGeneration = 0;

  constructor(deps: TunnelPoolDeps) {
    this.#deps = deps;
    deps.snapshots.onSwap((next, previous) => {
      // Our certificate changed: new tunnels are made with the new one.
      if (next.identity !== previous.identity) {
        this.#identityGeneration++;
        for (const t of [...this.#ready]) this.drain(t, true);
      }
      // Anything that changed may have changed the verdict on this server: ask again.
      this.#noTunnelUntil = 0;
      this.#retryAt = 0;
    });
    this.#live = new OpenConnections<OutboundTunnel>({
      snapshots: deps.snapshots,
      onRefused: (t, r) => {
        deps.logRefusal('tunnel', deps.config.serverId, r.reason, `${r.detail} (a tunnel: ${t.streams.size} streams cut with it)`, {
          tunnel: true,
          streams: t.streams.size,
        });
        this.cut(t);
      },
      now: deps.now,
    });
  }

  /** App connections carried on tunnels right now. */
  get streamCount(): number {
    return this.#streamCount;
  }

  /** A stream for one app connection, or why not, or "go direct". */
  request(): Promise<Grant> {
    if (this.#closed)
      return Promise.resolve({
        kind: 'refused',
        reason: 'connect-failed',
        detail: 'the sidecar is shutting down',
        peer: this.#deps.config.serverId,
      });
    if (Date.now() < this.#noTunnelUntil) return Promise.resolve({ kind: 'direct' });
    for (let pick = this.leastLoaded(); pick; pick = this.leastLoaded()) {
      // Spread: every open tunnel already busy and room for another — make one, lazily.
      if (pick.streams.size > 0 && this.#ready.length + this.#dialing < this.#deps.config.tunnelConnections) this.dialTunnel();
      const g = this.openStream(pick);
      if (g) return Promise.resolve(g);
    }
    if (this.#dialing === 0 && Date.now() < this.#retryAt && this.#lastFailure) {
      const f = this.#lastFailure;
      return Promise.resolve({ ...f, detail: `${f.detail} (next attempt in ${this.#retryAt - Date.now()} ms)` });
    }
    return new Promise<Grant>((resolve) => {
      this.#waiters.push(resolve);
      if (this.#dialing === 0) this.dialTunnel();
    });
  }

  /** Shutdown: no new streams; tunnels close as their streams finish. */
  close(): void {
    this.#closed = true;
    for (const t of [...this.#ready]) this.drain(t, false);
    for (const w of this.#waiters.splice(0))
      w({ kind: 'refused', reason: 'connect-failed', detail: 'the sidecar is shutting down', peer: this.#deps.config.serverId });
  }

  destroyAll(): void {
    for (const t of [...this.#live]) this.cut(t);
  }

  private leastLoaded(): OutboundTunnel | undefined {
    let best: OutboundTunnel | undefined;
    for (const t of this.#ready) if (!best || t.streams.size < best.streams.size) best = t;
    return best;
  }

  /** A stream on `t`; undefined when `t` turned out to be closing (it is taken out of the ready list). */
  private openStream(t: OutboundTunnel): Grant | undefined {
    let stream: ClientHttp2Stream;
    try {
      // The authority is for the other side's log; it forwards to its own `forward` whatever it says.
      stream = t.session.request({ ':method': 'CONNECT', ':authority': this.#deps.config.connect.text }, { endStream: false });
    } catch {
      // The session is going away (GOAWAY came in): no new streams on it.
      this.drain(t, false);
      return undefined;
    }
    const { metrics } = this.#deps;
    t.streams.add(stream);
    this.#streamCount++;
    metrics.tunnelStreams.inc({ direction: 'outbound' });
    if (t.idleTimer) clearTimeout(t.idleTimer);
    t.idleTimer = undefined;
    stream.on('error', () => undefined);
    stream.once('close', () => {
      t.streams.delete(stream);
      this.#streamCount--;
      metrics.tunnelStreams.dec({ direction: 'outbound' });
      const reset = stream.rstCode !== undefined && stream.rstCode !== h2.NGHTTP2_NO_ERROR;
      metrics.tunnelStreamsTotal.inc({ direction: 'outbound', result: reset ? 'reset' : 'done' });
      if (t.streams.size > 0) return;
      if (t.draining) t.session.close();
      else t.idleTimer = setTimeout(() => this.drain(t, false), this.#deps.config.idleTimeoutMs).unref();
    });
    return { kind: 'stream', stream };
  }

  /** No new streams on `t`; it closes once its streams are done (cut at the grace's end if `bounded`). */
  private drain(t: OutboundTunnel, bounded: boolean): void {
    t.draining = true;
    this.#ready = this.#ready.filter((x) => x !== t);
    if (t.idleTimer) clearTimeout(t.idleTimer);
    if (!t.session.closed) t.session.close();
    if (bounded) setTimeout(() => this.cut(t), this.#deps.drainGraceMs).unref();
  }

  /** Ends `t` and its streams now (each stream reset, so each app connection sees a cut). */
  private cut(t: OutboundTunnel): void {
    for (const s of t.streams) if (!s.closed) s.close(h2.NGHTTP2_CANCEL);
    t.session.destroy();
    t.tls.destroy();
  }

  private fail(g: Extract<Grant, { kind: 'refused' }>): void {
    this.#failures++;
    this.#retryAt = Date.now() + backoffMs(this.#failures);
    this.#lastFailure = g;
    for (const w of this.#waiters.splice(0)) w(g);
  }

  private dialTunnel(): void {
    const { config, logger } = this.#deps;
    this.#dialing++;
    const generation = this.#identityGeneration;
    const attempt = this.#deps.dialer.dial(OUTBOUND_ALPN);
    void attempt.result.then((r) => {
      if (!r.ok) {
        this.#dialing--;
        this.fail({ kind: 'refused', reason: r.reason, detail: r.detail, peer: r.peer });
        return;
      }
      if (r.tls.alpnProtocol !== TUNNEL_ALPN) {
        this.#dialing--;
        this.#noTunnelUntil = Date.now() + NO_TUNNEL_RECHECK_MS;
        logger.info(
          {
            event: 'tunnel-unsupported',
            direction: 'outbound',
            peer: config.serverId,
            address: config.connect.text,
            alpn: r.tls.alpnProtocol || 'none',
          },
          `${config.connect.text} does not speak ${TUNNEL_ALPN}: one mTLS connection per app connection`,
        );
        const [first, ...rest] = this.#waiters.splice(0);
        if (first) first({ kind: 'direct', dial: r });
        else r.tls.destroy();
        for (const w of rest) w({ kind: 'direct' });
        return;
      }
      this.startSession(r, generation);
    });
  }

  /** A verified TLS connection that selected the ALPN: up once the server's SETTINGS arrive. */
  private startSession(r: Extract<DialResult, { ok: true }>, generation: number): void {
    const { config, metrics, logger } = this.#deps;
    // Half-close belongs to the streams: the tunnel's own end is the end of all of them
    // (with allowHalfOpen, a server's FIN would leave the session waiting forever).
    r.tls.allowHalfOpen = false;
    const session = h2Connect(`http://${config.connect.text}`, {
      createConnection: () => r.tls,
      settings: tunnelSettings(OUTBOUND_MAX_STREAMS),
      maxSessionMemory: 32,
      maxHeaderListPairs: 32,
    });
    const t: OutboundTunnel = {
      tls: r.tls,
      session,
      leaf: r.leaf,
      ownNotAfter: r.ownNotAfter,
      streams: new Set(),
      draining: false,
      idleTimer: undefined,
    };
    let up = false;
    const timer = setTimeout(() => session.destroy(), config.handshakeTimeoutMs);
    session.on('error', () => undefined);
    session.once('remoteSettings', () => {
      clearTimeout(timer);
      this.#dialing--;
      up = true;
      this.#failures = 0;
      session.setLocalWindowSize(CONNECTION_WINDOW);
      metrics.tunnels.inc({ direction: 'outbound' });
      metrics.handshakeSeconds.observe({ direction: 'outbound' }, r.seconds);
      logger.debug(
        { event: 'tunnel-open', direction: 'outbound', peer: config.serverId, address: config.connect.text, resumed: r.resumed },
        'tunnel opened',
      );
      this.#live.add(t);
      if (this.#closed) {
        this.drain(t, false);
        return;
      }
      if (generation !== this.#identityGeneration) {
        // Dialed with the certificate a reload has since replaced: closed unused, and whoever
        // waits gets a tunnel made with the new one.
        this.drain(t, false);
        if (this.#waiters.length > 0 && this.#dialing === 0) this.dialTunnel();
        return;
      }
      this.#ready.push(t);
      for (const w of this.#waiters.splice(0))
        w(
          this.openStream(this.leastLoaded() ?? t) ?? {
            kind: 'refused',
            reason: 'closed-by-server',
            detail: 'the new tunnel was closed at once by the server',
            peer: config.serverId,
          },
        );
      if (t.streams.size === 0) t.idleTimer = setTimeout(() => this.drain(t, false), config.idleTimeoutMs).unref();
    });
    // The server's sidecar is going away or changed its certificate: finish here, open anew.
    session.on('goaway', () => {
      if (!t.draining) this.drain(t, false);
    });
    session.once('close', () => {
      clearTimeout(timer);
      if (t.idleTimer) clearTimeout(t.idleTimer);
      this.#ready = this.#ready.filter((x) => x !== t);
      this.#live.delete(t);
      r.tls.destroy();
      if (up) {
        metrics.tunnels.dec({ direction: 'outbound' });
        logger.debug(
          { event: 'tunnel-closed', direction: 'outbound', peer: config.serverId, address: config.connect.text },
          'tunnel closed',
        );
        return;
      }
      this.#dialing--;
      // Closed before its SETTINGS: the server's sidecar judged us after the handshake
      // (TLS 1.3) and refused — its log says why.
      this.fail({
        kind: 'refused',
        reason: 'closed-by-server',
        detail:
          'the server closed the tunnel before sending a byte: its sidecar most likely refused this service (policy-denied, revoked…); its log says why',
        peer: config.serverId,
      });
    });
  }
}

/**
 * Inbound tunnels: a caller connection that selected ALPN svcca-tunnel/1 and passed every
 * check a direct connection gets (inbound.ts judged it before handing it here) speaks
 * HTTP/2; each CONNECT stream on it is one app connection from that caller, served by the
 * very handler a direct connection gets (inbound.ts: piped to `forward` in tcp mode,
 * parsed and judged per request in http mode). The CONNECT authority chooses nothing.
 *
 * What is bounded here, per tunnel, so that one caller's misbehaviour costs only it:
 * concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS, and refused streams beyond it),
 * header size, streams the peer resets (rapid reset, CVE-2023-44487), protocol errors
 * (a CONTINUATION flood is one: nghttp2 ends the session); and per caller, tunnels.
 */
import {
  constants as h2,
  createServer as createH2Server,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { InboundConfig } from '../config/schema.js';
import type { Metrics } from '../metrics.js';
import { clipForLog } from '../log-fields.js';
import { CONNECTION_WINDOW, MAX_HEADER_LIST_SIZE, tunnelSettings } from './tunnel-protocol.js';

/** A verified caller, as inbound.ts worked it out at the handshake. */
export interface TunnelCaller {
  readonly peer: string;
  readonly address: string;
}

export type TunnelRefusalReason = 'too-many-tunnels' | 'too-many-connections' | 'bad-tunnel-stream' | 'tunnel-abuse';

export interface TunnelInboundDeps {
  readonly config: InboundConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Whether one more app connection fits in inbound.maxConnections. */
  readonly hasRoom: () => boolean;
  /** Serves a stream exactly as a direct connection from the tunnel's caller. */
  readonly serveStream: (stream: ServerHttp2Stream, tunnel: InboundTunnel) => void;
  /** Logs and counts a refusal (same line and metric as a refused connection). */
  readonly refuse: (peer: string, address: string, reason: TunnelRefusalReason, detail: string, extra?: Record<string, unknown>) => void;
}

/** Streams the peer may reset in a burst, and how many per second refill it: an app resets
 *  a connection now and then; a rapid-reset attack does it thousands of times a second. */
const RESET_BURST = 200;
const RESETS_PER_SECOND = 50;
/** How long a cut tunnel's socket may take to flush its GOAWAY before it is destroyed. */
const CUT_FLUSH_MS = 1_000;

export class InboundTunnel {
  readonly streams = new Set<ServerHttp2Stream>();
  #resetBudget = RESET_BURST;
  #budgetAt = Date.now();
  #cut = false;
  constructor(
    readonly caller: TunnelCaller,
    readonly socket: TLSSocket,
    readonly session: ServerHttp2Session,
  ) {}

  /** Ends the tunnel and every stream on it now; returns how many streams were cut. */
  cut(code: number = h2.NGHTTP2_CANCEL): number {
    const n = this.streams.size;
    if (this.#cut) return n;
    this.#cut = true;
    for (const s of this.streams) if (!s.closed) s.close(code);
    // Sends GOAWAY with `code`, then ends the socket once it is written: the peer learns
    // why. Destroying the socket here as well would drop the GOAWAY when it was still
    // queued; a peer that never reads it loses the socket after CUT_FLUSH_MS all the same.
    this.session.destroy(undefined, code);
    setTimeout(() => this.socket.destroy(), CUT_FLUSH_MS).unref();
    return n;
  }

  /** GOAWAY: no new streams; the session closes once its streams are done. */
  drain(): void {
    if (!this.session.closed && !this.session.destroyed) this.session.close();
  }

  /** A stream the peer reset: false when the budget is spent (rapid reset). */
  spendReset(): boolean {
    const now = Date.now();
    this.#resetBudget = Math.min(RESET_BURST, this.#resetBudget + ((now - this.#budgetAt) / 1000) * RESETS_PER_SECOND);
    this.#budgetAt = now;
    this.#resetBudget -= 1;
    return this.#resetBudget >= 0;
  }
}

export class TunnelInbound {
  readonly #deps: TunnelInboundDeps;
  readonly #server: Http2Server;
  readonly #byCaller = new Map<string, Set<InboundTunnel>>();
  readonly #all = new Set<InboundTunnel>();
  #streamCount = 0;

  constructor(deps: TunnelInboundDeps) {
    this.#deps = deps;
    // Never listens: inbound.ts hands it verified TLS sockets, as http-inbound.ts's server.
    this.#server = createH2Server({
      settings: tunnelSettings(deps.config.maxTunnelStreams),
      maxHeaderListPairs: 32,
      maxSendHeaderBlockLength: MAX_HEADER_LIST_SIZE,
      // Streams refused beyond maxConcurrentStreams, and invalid frames: past these, the
      // peer is not a sidecar that lost count but an attacker, and its session ends.
      maxSessionRejectedStreams: 100,
      maxSessionInvalidFrames: 100,
      maxOutstandingPings: 10,
      // MB of buffered frames and header state per session before nghttp2 refuses more.
      maxSessionMemory: 32,
    });
  }

  get streamCount(): number {
    return this.#streamCount;
  }

  get tunnelCount(): number {
    return this.#all.size;
  }

  /** Serves HTTP/2 on a verified caller's socket; undefined when the caller has its limit of tunnels. */
  accept(socket: TLSSocket, caller: TunnelCaller): InboundTunnel | undefined {
    const { config, metrics, logger } = this.#deps;
    const mine = this.#byCaller.get(caller.peer) ?? new Set<InboundTunnel>();
    if (mine.size >= config.maxTunnelsPerCaller) {
      this.#deps.refuse(
        caller.peer,
        caller.address,
        'too-many-tunnels',
        `${caller.peer} already has ${mine.size} tunnels open (inbound.maxTunnelsPerCaller)`,
      );
      socket.destroy();
      return undefined;
    }
    // Half-close belongs to the streams: the caller's FIN ends the tunnel and its streams.
    socket.allowHalfOpen = false;
    let session: ServerHttp2Session | undefined;
    const grab = (s: ServerHttp2Session) => (session = s);
    this.#server.once('session', grab);
    this.#server.emit('connection', socket);
    this.#server.off('session', grab);
    if (!session) {
      socket.destroy();
      return undefined;
    }
    const tunnel = new InboundTunnel(caller, socket, session);
    mine.add(tunnel);
    this.#byCaller.set(caller.peer, mine);
    this.#all.add(tunnel);
    metrics.tunnels.inc({ direction: 'inbound' });
    logger.debug({ event: 'tunnel-open', direction: 'inbound', peer: caller.peer, address: caller.address }, 'tunnel opened');
    session.on('connect', () => session!.setLocalWindowSize(CONNECTION_WINDOW));
    if (!session.connecting) session.setLocalWindowSize(CONNECTION_WINDOW);
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.onStream(tunnel, stream, headers));
    session.on('error', (err: NodeJS.ErrnoException) => {
      // nghttp2 ended the session: a protocol error (a CONTINUATION flood is one), too many
      // refused streams or invalid frames. Only this caller's tunnel goes.
      this.#deps.refuse(
        caller.peer,
        caller.address,
        'tunnel-abuse',
        `the tunnel broke the HTTP/2 rules (${err.code ?? 'error'}: ${clipForLog(err.message, 120)}); cutting it`,
        { streams: tunnel.streams.size },
      );
      tunnel.cut(h2.NGHTTP2_PROTOCOL_ERROR);
    });
    session.on('frameError', () => undefined);
    // A tunnel with nothing on it for idleTimeout is closed from this side too (its
    // outbound normally closes it first); one with streams is left to their own timeouts.
    session.setTimeout(config.idleTimeoutMs, () => {
      if (tunnel.streams.size === 0) tunnel.drain();
    });
    session.once('close', () => {
      mine.delete(tunnel);
      if (mine.size === 0) this.#byCaller.delete(caller.peer);
      this.#all.delete(tunnel);
      metrics.tunnels.dec({ direction: 'inbound' });
      socket.destroy();
      logger.debug({ event: 'tunnel-closed', direction: 'inbound', peer: caller.peer, address: caller.address }, 'tunnel closed');
    });
    socket.once('close', () => {
      if (!session!.destroyed) session!.destroy();
    });
    return tunnel;
  }

  /** Shutdown or a new certificate: GOAWAY on every tunnel; open streams finish. */
  drainAll(): void {
    for (const t of this.#all) t.drain();
  }

  destroyAll(): void {
    for (const t of this.#all) t.cut();
  }

  private onStream(tunnel: InboundTunnel, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const { metrics, logger } = this.#deps;
    const { caller } = tunnel;
    const refuse = (reason: TunnelRefusalReason, detail: string, code: number) => {
      metrics.tunnelStreamsTotal.inc({ direction: 'inbound', result: 'refused' });
      this.#deps.refuse(caller.peer, caller.address, reason, detail, { stream: stream.id });
      stream.close(code);
    };
    stream.on('error', () => undefined);
    if (headers[':method'] !== 'CONNECT') {
      refuse(
        'bad-tunnel-stream',
        `a tunnel stream must open with CONNECT, not ${clipForLog(String(headers[':method']), 20)}`,
        h2.NGHTTP2_PROTOCOL_ERROR,
      );
      return;
    }
    if (!this.#deps.hasRoom()) {
      refuse(
        'too-many-connections',
        `the limit of ${this.#deps.config.maxConnections} connections is reached (tunnel streams count)`,
        h2.NGHTTP2_REFUSED_STREAM,
      );
      return;
    }
    tunnel.streams.add(stream);
    this.#streamCount++;
    metrics.tunnelStreams.inc({ direction: 'inbound' });
    metrics.active.inc({ direction: 'inbound' });
    let weClosed = false;
    const origClose = stream.close.bind(stream);
    stream.close = ((code?: number, cb?: () => void) => {
      weClosed = true;
      origClose(code, cb);
    }) as typeof stream.close;
    stream.once('close', () => {
      tunnel.streams.delete(stream);
      this.#streamCount--;
      metrics.tunnelStreams.dec({ direction: 'inbound' });
      metrics.active.dec({ direction: 'inbound' });
      const reset = stream.rstCode !== undefined && stream.rstCode !== h2.NGHTTP2_NO_ERROR;
      metrics.tunnelStreamsTotal.inc({ direction: 'inbound', result: reset ? 'reset' : 'done' });
      if (reset && !weClosed && !tunnel.spendReset()) {
        this.#deps.refuse(
          caller.peer,
          caller.address,
          'tunnel-abuse',
          `the peer reset more than ${RESET_BURST} streams in a burst (rapid reset, CVE-2023-44487); cutting the tunnel`,
          { streams: tunnel.streams.size },
        );
        tunnel.cut(h2.NGHTTP2_ENHANCE_YOUR_CALM);
      }
    });
    // The authority names what the caller asked for; it chooses nothing (logged).
    if (logger.isLevelEnabled('debug'))
      logger.debug(
        {
          event: 'tunnel-stream',
          direction: 'inbound',
          peer: caller.peer,
          address: caller.address,
          stream: stream.id,
          authority: clipForLog(String(headers[':authority'] ?? ''), 200),
        },
        'tunnel stream opened',
      );
    stream.respond({ ':status': 200 }, { endStream: false });
    // Node 20's Http2Stream._writev garbles string chunks (http.Server corks its response
    // head and writes it as a string: the status line arrived as binary noise). One chunk
    // at a time goes through _write, which is right.
    (stream as unknown as { _writev: unknown })._writev = null;
    this.#deps.serveStream(stream, tunnel);
  }
}

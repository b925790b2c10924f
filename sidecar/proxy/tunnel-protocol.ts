/**
 * svcca-tunnel/1: what both sidecars agree on. A TLS connection whose ALPN is
 * `svcca-tunnel/1` speaks HTTP/2; each app connection is one stream opened with CONNECT
 * (as Istio ambient's HBONE). The CONNECT authority is informational only — the inbound
 * always forwards to its own configured `forward` — so it carries the outbound's
 * configured `connect` for the logs.
 */
import type { Settings } from 'node:http2';

export const TUNNEL_ALPN = 'svcca-tunnel/1';

/** What the outbound offers with tunnel: auto. http/1.1 second: a server that knows only
 *  HTTP ALPN names (a Go or Node server listing h2 and http/1.1) then picks http/1.1 —
 *  bytes on the wire as with no ALPN at all — rather than failing the handshake. */
export const OUTBOUND_ALPN = [TUNNEL_ALPN, 'http/1.1'];

/**
 * The inbound's ALPN choice (h2 only in http mode, which serves it). Node's servers refuse a client whose ALPN list shares
 * nothing with theirs (a fatal alert), and there is no "select none"; so: the tunnel when
 * offered, else http/1.1 when offered (what a client that got no ALPN speaks), else the
 * client's own first choice — its bytes go to the service unchanged, as they would have.
 */
export function selectInboundAlpn(offered: readonly string[], serves: { h2: boolean }): string {
  if (offered.includes(TUNNEL_ALPN)) return TUNNEL_ALPN;
  // http mode serves HTTP/2 itself (http2-inbound.ts).
  if (serves.h2 && offered.includes('h2')) return 'h2';
  if (offered.includes('http/1.1')) return 'http/1.1';
  return offered[0]!;
}

/**
 * Flow-control windows. A stream's window bounds what a peer may send into it before its
 * reader takes it (so a slow app reader holds at most this much per stream in the other
 * sidecar); the connection window bounds the sum over all streams of one tunnel. 1 MiB per
 * stream keeps one stream near a direct TLS connection's throughput on a LAN; 16 MiB per
 * connection lets a dozen such streams run at once.
 */
export const STREAM_WINDOW = 1024 * 1024;
export const CONNECTION_WINDOW = 16 * 1024 * 1024;

export const MAX_FRAME_SIZE = 128 * 1024;

/** Headers of a CONNECT are tiny; anything above this is an attack on the parser. */
export const MAX_HEADER_LIST_SIZE = 8 * 1024;

/** SETTINGS both sides send. */
export function tunnelSettings(maxConcurrentStreams: number): Settings {
  return {
    initialWindowSize: STREAM_WINDOW,
    maxConcurrentStreams,
    maxHeaderListSize: MAX_HEADER_LIST_SIZE,
    enablePush: false,
    // The peer may send DATA frames this large: fewer frames (and writes) per MB than the
    // default 16 KiB, while one frame still takes well under a millisecond on a LAN.
    maxFrameSize: MAX_FRAME_SIZE,
  };
}

/** Streams per tunnel the outbound itself opens at most (the inbound's SETTINGS may lower it). */
export const OUTBOUND_MAX_STREAMS = 256;

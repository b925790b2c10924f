/**
 * Header translation for HTTP/2 in http mode, pure. An HTTP/2 request's fields go through
 * the same sanitizing as an HTTP/1.1 request's (upstreamRequestHeaders: XFCC set, every
 * forwarding header dropped, a Connection nomination of a sidecar header refused), after
 * the pseudo-header `:authority` is turned into `Host` and split `cookie` fields are joined
 * (RFC 9113 §8.2.3). What comes out is a flat HTTP/1.1 field list; h2cRequestHeaders turns
 * it back into HTTP/2 for an h2c service.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { upstreamRequestHeaders, type UpstreamHeaders } from './http-headers.js';

/** HTTP/2 forbids these in a message (RFC 9113 §8.2.2); `te` is allowed only as "trailers". */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

export interface Http2RequestInput {
  /** The stream's raw header list (name, value, …), pseudo-headers included. */
  readonly rawHeaders: readonly string[];
  readonly xfcc: string;
  readonly clientIp: string | undefined;
  readonly fallbackHost: string;
  /** The stream was not ended with its HEADERS frame: a body (or trailers) may follow. */
  readonly hasBody: boolean;
}

/** Header fields that are not pseudo-headers. */
export function regularHeaderCount(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (!rawHeaders[i]!.startsWith(':')) n++;
  return n;
}

/**
 * The sanitized HTTP/1.1 field list for an HTTP/2 request. A body of unknown length is
 * announced as chunked, the one framing HTTP/1.1 has for it (and for trailers).
 */
export function http2UpstreamHeaders(input: Http2RequestInput): UpstreamHeaders {
  const raw = input.rawHeaders;
  const fields: string[] = [];
  const cookies: string[] = [];
  let authority: string | undefined;
  let host: string | undefined;
  let contentLength = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (name === ':authority') authority = value;
    else if (name.startsWith(':')) continue;
    else if (name === 'host') host = value;
    else if (name === 'cookie') cookies.push(value);
    else {
      if (name === 'content-length') contentLength = true;
      fields.push(name, value);
    }
  }
  // :authority wins over Host when both are present (RFC 9113 §8.3.1); both differing is ambiguous.
  if (authority !== undefined && host !== undefined && authority !== host) {
    return { ok: false, reason: 'bad-request', detail: ':authority and Host differ' };
  }
  const hostValue = authority ?? host;
  const list = [...(hostValue !== undefined ? ['host', hostValue] : []), ...fields];
  if (cookies.length > 0) list.push('cookie', cookies.join('; '));
  if (input.hasBody && !contentLength) list.push('transfer-encoding', 'chunked');
  return upstreamRequestHeaders({
    rawHeaders: list,
    xfcc: input.xfcc,
    clientIp: input.clientIp,
    fallbackHost: input.fallbackHost,
    hostRequired: false,
  });
}

/**
 * The HTTP/2 request for an h2c service from the sanitized HTTP/1.1 list: pseudo-headers
 * first, connection-specific fields dropped, `te: trailers` kept when the caller sent it
 * (gRPC servers require it).
 */
export function h2cRequestHeaders(
  method: string,
  path: string,
  sanitized: readonly string[],
  callerTe: string | undefined,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': method, ':path': path, ':scheme': 'http' };
  for (let i = 0; i + 1 < sanitized.length; i += 2) {
    const name = sanitized[i]!.toLowerCase();
    if (name === 'host') {
      out[':authority'] = sanitized[i + 1]!;
      continue;
    }
    if (CONNECTION_SPECIFIC.has(name)) continue;
    addField(out, name, sanitized[i + 1]!);
  }
  if (callerTe !== undefined && callerTe.trim().toLowerCase() === 'trailers') out.te = 'trailers';
  return out;
}

/** An HTTP/1.1 field list (already stripped of hop-by-hop fields) as HTTP/2 response headers. */
export function http2ResponseHeaders(fields: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toLowerCase();
    if (CONNECTION_SPECIFIC.has(name) || name === 'te' || name.startsWith(':')) continue;
    addField(out, name, fields[i + 1]!);
  }
  return out;
}

/** A received HTTP/2 header block without its pseudo-headers and connection-specific fields. */
export function regularHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || CONNECTION_SPECIFIC.has(name) || name === 'te') continue;
    out[name] = value;
  }
  return out;
}

function addField(out: OutgoingHttpHeaders, name: string, value: string): void {
  const had = out[name];
  if (had === undefined) out[name] = value;
  else out[name] = Array.isArray(had) ? [...had, value] : [String(had), value];
}

/** A gRPC request (`content-type: application/grpc`, `application/grpc+proto`, …). */
export function isGrpc(contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && /^application\/grpc(?:[+;]|$)/i.test(contentType);
}

/** gRPC status codes the sidecar answers with. */
export const GRPC_STATUS = { permissionDenied: 7, unauthenticated: 16, unimplemented: 12 } as const;

/**
 * A trailers-only gRPC answer: HTTP 200 with `grpc-status` and a `grpc-message`
 * percent-encoded as the gRPC HTTP/2 spec asks (bytes outside 0x20–0x7E, and `%`).
 */
export function grpcErrorHeaders(status: number, message: string): OutgoingHttpHeaders {
  let encoded = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    encoded +=
      byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(status), 'grpc-message': encoded };
}

/**
 * Header rewriting for http mode, pure: what the local service receives and what the
 * caller gets back.
 *
 * The local service trusts `x-forwarded-client-cert` to say who called, so nothing the
 * caller sent may survive under that name in any spelling the service could read it by:
 * header names are compared after lower-casing and mapping `_` to `-`, because CGI/WSGI
 * servers (and many frameworks) read `X_Forwarded_Client_Cert` and
 * `X-Forwarded-Client-Cert` as the same variable. Every copy is removed (rawHeaders keeps
 * duplicates), then the sidecar adds exactly one, Envoy's SANITIZE_SET.
 *
 * A request whose `Connection` header names a header the sidecar sets is refused rather
 * than cleaned: a proxy further in honours the nomination and would strip the sidecar's
 * own value, leaving the service with none (or with one an app falls back to).
 *
 * Every `x-forwarded-*` header (`-for`, `-proto`, `-host`, `-port`, `-prefix`, `-uri`…),
 * `forwarded`, `x-real-ip`, and the URL overrides `x-original-url` / `x-rewrite-url` are
 * dropped in every spelling, and `x-forwarded-for` / `x-forwarded-proto` set from the
 * connection itself: a caller must not choose the address the service logs or
 * rate-limits by, nor a route other than the path the policy judged (some frameworks
 * route by `x-original-url`).
 */
import { createHash } from 'node:crypto';

/** RFC 9110 §7.6.1 and the de-facto ones (`proxy-connection`, `keep-alive`). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
]);

/** Set by the sidecar from the connection, or not at all; anything the caller sent is dropped. */
const SIDECAR_SET = new Set(['forwarded', 'x-real-ip', 'x-original-url', 'x-rewrite-url']);
const SIDECAR_SET_PREFIX = 'x-forwarded-';

function setBySidecar(canonical: string): boolean {
  return SIDECAR_SET.has(canonical) || canonical.startsWith(SIDECAR_SET_PREFIX);
}

/** The sidecar answers `Expect: 100-continue` itself, after the policy allowed the request. */
const ANSWERED_HERE = new Set(['expect']);

/**
 * Framing and routing stay end to end even when the caller nominates them in
 * `Connection`: the sidecar, not the caller, decides how the body is delimited.
 */
const NEVER_NOMINATED = new Set(['host', 'content-length']);

export const XFCC = 'x-forwarded-client-cert';

/** Lower case, `_` read as `-`: the name as a CGI-style server would see it. */
export function canonicalHeaderName(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

/**
 * Envoy's element for a verified caller: `By=<own id>;Hash=<hex SHA-256 of the caller's
 * DER>;URI=<caller id>`. SPIFFE IDs carry no `;`, `,`, `=` or `"`, so no quoting is needed.
 */
export function xfccValue(selfUri: string, callerDer: Buffer, callerUri: string): string {
  return `By=${selfUri};Hash=${createHash('sha256').update(callerDer).digest('hex')};URI=${callerUri}`;
}

export interface UpstreamRequestInput {
  /** `req.rawHeaders`: name, value, name, value … with every duplicate. */
  readonly rawHeaders: readonly string[];
  /** The value built by xfccValue for this connection. */
  readonly xfcc: string;
  /** The caller's IP (the TLS peer), or undefined on a unix listener. */
  readonly clientIp: string | undefined;
  /** Used as Host when an HTTP/1.0 request has none. */
  readonly fallbackHost: string;
  /** HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 does not. */
  readonly hostRequired: boolean;
  /** The `Upgrade` value to pass on, for an upgrade request; undefined otherwise. */
  readonly upgrade?: string | undefined;
}

export type UpstreamHeaders =
  | {
      readonly ok: true;
      /** flat name/value list, for http.request's `headers` */
      readonly headers: string[];
      /** the body arrives chunked */
      readonly chunked: boolean;
      /**
       * The request carries a body (chunked, or Content-Length above 0), read from the same
       * header list the forwarded headers are built from: a body announced to the service is
       * always sent to it.
       */
      readonly hasBody: boolean;
    }
  | {
      readonly ok: false;
      readonly reason: 'sidecar-header-nominated' | 'bad-request' /** one short line, safe for a 400 body */;
      readonly detail: string;
    };

/** The headers the local service receives for one request, or why the request is refused. */
export function upstreamRequestHeaders(input: UpstreamRequestInput): UpstreamHeaders {
  const raw = input.rawHeaders;
  const nominated = new Set<string>();
  let hosts = 0;
  let transferEncoding: string | undefined;
  let contentLength: string | undefined;
  let contentLengths = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'connection') {
      for (const token of raw[i + 1]!.split(',')) {
        const t = canonicalHeaderName(token.trim());
        if (t === '') continue;
        if (setBySidecar(t))
          return { ok: false, reason: 'sidecar-header-nominated', detail: `the Connection header names ${t}, which the sidecar sets` };
        if (!NEVER_NOMINATED.has(t)) nominated.add(t);
      }
    } else if (name === 'host') hosts++;
    else if (name === 'content-length') {
      contentLengths++;
      contentLength = raw[i + 1]!.trim();
    } else if (name === 'transfer-encoding')
      transferEncoding = transferEncoding === undefined ? raw[i + 1]! : `${transferEncoding}, ${raw[i + 1]!}`;
  }
  // Two Host headers are read differently by different servers (first, last, joined).
  if (hosts > 1) return { ok: false, reason: 'bad-request', detail: 'more than one Host header' };
  if (hosts === 0 && input.hostRequired) return { ok: false, reason: 'bad-request', detail: 'no Host header (HTTP/1.1 requires one)' };
  // Node's parser has already refused Transfer-Encoding together with Content-Length.
  // Any coding besides chunked would have to be passed on undecoded and re-framed:
  // refuse it rather than guess (Envoy does the same).
  const chunked = transferEncoding !== undefined;
  if (chunked && transferEncoding!.trim().toLowerCase() !== 'chunked') {
    return { ok: false, reason: 'bad-request', detail: 'only Transfer-Encoding: chunked is accepted' };
  }
  // Node's parser refuses these too; refusing here as well keeps the framing decision in
  // one place whatever the parser lets through.
  if (contentLengths > 1) return { ok: false, reason: 'bad-request', detail: 'more than one Content-Length header' };
  if (contentLength !== undefined && !/^\d{1,15}$/.test(contentLength))
    return { ok: false, reason: 'bad-request', detail: 'Content-Length is not a whole number' };
  if (chunked && contentLength !== undefined)
    return { ok: false, reason: 'bad-request', detail: 'both Transfer-Encoding and Content-Length' };
  const hasBody = chunked || (contentLength !== undefined && Number(contentLength) > 0);

  const headers: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const c = canonicalHeaderName(name);
    if (HOP_BY_HOP.has(c) || setBySidecar(c) || ANSWERED_HERE.has(c) || nominated.has(c)) continue;
    headers.push(name, raw[i + 1]!);
  }
  if (hosts === 0) headers.push('host', input.fallbackHost);
  // Setting it by hand makes Node chunk the body it re-sends, whatever the method.
  if (chunked) headers.push('transfer-encoding', 'chunked');
  if (input.upgrade !== undefined) headers.push('connection', 'upgrade', 'upgrade', input.upgrade);
  headers.push(XFCC, input.xfcc);
  if (input.clientIp) headers.push('x-forwarded-for', input.clientIp);
  headers.push('x-forwarded-proto', 'https');
  return { ok: true, headers, chunked, hasBody };
}

/**
 * The local service's response headers as the caller gets them: hop-by-hop headers and
 * those its `Connection` names removed (Node frames the body again on the caller's side).
 * For a 101, `Connection: upgrade` and the `Upgrade` value are kept.
 */
export function clientResponseHeaders(rawHeaders: readonly string[], opts: { upgrade?: boolean } = {}): string[] {
  const nominated = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') {
      for (const token of rawHeaders[i + 1]!.split(',')) nominated.add(token.trim().toLowerCase());
    }
  }
  nominated.delete('upgrade');
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (opts.upgrade && lower === 'upgrade') {
      out.push(name, rawHeaders[i + 1]!);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || nominated.has(lower)) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  if (opts.upgrade) out.push('Connection', 'Upgrade');
  return out;
}

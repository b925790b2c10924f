/**
 * The per-request verdict of http mode, shared by HTTP/1.1 (http-inbound.ts) and HTTP/2
 * (http2-inbound.ts) so that both judge a request the same way, in the same order: the
 * header count, the caller still valid under the current snapshot (a CRL or the clock may
 * have moved since the handshake), the protocol's own framing problem if any, the target
 * normalized, the forwarded headers sanitized (XFCC set, forwarding headers dropped),
 * then the policy on the method and normalized path. The policy decision is recorded
 * (counted; a would-deny logged) here, once per request.
 */
import type { Logger } from 'pino';
import { normalizeRequestTarget } from '../../common/http-path.js';
import { clipForLog } from '../log-fields.js';
import type { Metrics } from '../metrics.js';
import type { Snapshot } from '../snapshot.js';
import type { UpstreamHeaders } from './http-headers.js';
import type { HttpCaller, HttpRefusalReason, HttpResult } from './http-inbound.js';
import type { PolicyDecisions } from './policy-decisions.js';
import { policyDecision } from './verdict.js';
import { stillValid } from './verify-peer.js';

export type Gate =
  | {
      readonly ok: true;
      readonly path: string;
      readonly forwardPath: string;
      readonly headers: string[];
      readonly hasBody: boolean;
      /** The caller's body arrives chunked (and goes on chunked). */
      readonly chunked: boolean;
      readonly rule: string | undefined;
      /** Audit mode let a request through that the allow list denies (already logged). */
      readonly wouldDeny: boolean;
    }
  | GateRefusal;

export interface GateRefusal {
  readonly ok: false;
  readonly status: 400 | 403 | 431;
  readonly result: HttpResult;
  readonly reason: HttpRefusalReason;
  readonly detail: string;
  readonly body: string;
  /** The normalized path, once known. */
  readonly path?: string;
}

export interface RequestToJudge {
  readonly snap: Snapshot;
  readonly caller: HttpCaller;
  readonly now: Date;
  readonly method: string;
  /** The request target as sent (`:path` in HTTP/2). */
  readonly target: string;
  /** Header fields the request carries, and the limit (inbound.maxRequestHeaders). */
  readonly headerCount: number;
  readonly maxHeaders: number;
  /** Why this protocol's framing cannot be served, checked after the caller's validity. */
  readonly protocolProblem?: string | undefined;
  /** The sanitized headers for the local service (upstreamRequestHeaders or its HTTP/2 twin). */
  readonly upstreamHeaders: () => UpstreamHeaders;
  readonly decisions: PolicyDecisions;
}

/** The verdict on one request; see the module comment for the order of the checks. */
export function judgeRequest(r: RequestToJudge): Gate {
  const tooMany = headerLimitRefusal(r.headerCount, r.maxHeaders);
  if (tooMany) return tooMany;
  const caller = r.caller;
  const still = stillValid(caller.leaf, r.snap, r.now);
  if (!still.ok) {
    const reason = still.reason === 'revoked' ? 'revoked' : 'expired';
    return {
      ok: false,
      status: 403,
      result: 'denied',
      reason,
      detail: still.detail,
      body: `forbidden: ${caller.peer} is no longer accepted (${reason})\n`,
    };
  }
  if (r.protocolProblem !== undefined) return badRequest('bad-request', r.protocolProblem);
  const target = normalizeRequestTarget(r.target);
  if (!target.ok) return badRequest('bad-target', target.reason);
  const headers = r.upstreamHeaders();
  if (!headers.ok) return { ...badRequest(headers.reason, headers.detail), path: target.path };
  const d = policyDecision(r.snap, caller.service, { method: r.method, path: target.path });
  r.decisions.record(d, { peer: caller.peer, address: caller.address, mode: 'http', method: r.method, path: target.path });
  if (!d.allow) {
    return {
      ok: false,
      status: 403,
      result: 'denied',
      reason: 'policy-denied',
      detail: d.reason,
      body: `forbidden: no rule allows ${caller.peer} to ${r.method} ${target.path}\n`,
      path: target.path,
    };
  }
  return {
    ok: true,
    path: target.path,
    forwardPath: target.query ? `${target.path}?${target.query}` : target.path,
    headers: headers.headers,
    hasBody: headers.hasBody,
    chunked: headers.chunked,
    rule: d.rule,
    wouldDeny: d.wouldDeny !== undefined,
  };
}

/**
 * A request with more header fields than the limit: Node keeps only the first 1,000 in
 * `req.headers` but more in `req.rawHeaders`, and a decision read from one while the
 * headers forwarded come from the other is how a request gets smuggled. Refused whole.
 */
export function headerLimitRefusal(count: number, max: number): GateRefusal | undefined {
  if (count <= max) return undefined;
  const detail = `the request has ${count >= 1000 ? 'at least 1000' : count} header fields; the limit is ${max} (inbound.maxRequestHeaders)`;
  return {
    ok: false,
    status: 431,
    result: 'bad-request',
    reason: 'too-many-headers',
    detail,
    body: `request header fields too large: ${detail}\n`,
  };
}

function badRequest(reason: HttpRefusalReason, detail: string): GateRefusal {
  return { ok: false, status: 400, result: 'bad-request', reason, detail, body: `bad request: ${detail}\n` };
}

/**
 * The log line and metrics of a refused http-mode request (HTTP/1.1 or, with
 * `protocol: 'h2'`, an HTTP/2 stream): who, from where, what was asked, and why.
 */
export function logHttpRefusal(
  deps: { readonly logger: Logger; readonly metrics: Metrics },
  caller: HttpCaller | undefined,
  request: { readonly method?: string | undefined; readonly target?: string | undefined; readonly protocol?: 'h2' },
  g: { status: number; result: HttpResult; reason: string; detail: string; path?: string },
): void {
  deps.metrics.refusals.inc({ direction: 'inbound', reason: g.reason });
  deps.metrics.httpRequests.inc({ status: String(g.status), result: g.result });
  deps.logger.warn(
    {
      event: 'refused',
      direction: 'inbound',
      mode: 'http',
      ...(request.protocol && { protocol: request.protocol }),
      peer: caller?.peer ?? 'unknown',
      address: caller?.address ?? 'unknown',
      method: request.method,
      path: g.path === undefined ? undefined : clipForLog(g.path),
      // The raw target only when it could not be normalized, cut short: it is the
      // caller's text.
      target: g.path === undefined && request.target !== undefined ? clipForLog(request.target, 200) : undefined,
      status: g.status,
      reason: g.reason,
      detail: g.detail,
    },
    g.status === 403 ? 'request refused' : 'bad request refused',
  );
}

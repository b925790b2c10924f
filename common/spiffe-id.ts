/**
 * SPIFFE IDs, trust domains and service names: pure parsing and validation.
 * Grammar: the SPIFFE-ID spec (trust domain `[a-z0-9._-]+`, path segments
 * `[A-Za-z0-9._-]+`, no empty, `.` or `..` segment, no query, fragment, port,
 * user info or percent-encoding). Service names the CA issues are narrower still.
 */
import { UsageError } from './errors.js';

export const SPIFFE_SCHEME = 'spiffe://';
export const MAX_SERVICE_NAME = 128;
export const MAX_TRUST_DOMAIN = 255;
/** The SPIFFE spec's bound on a whole ID. */
export const MAX_SPIFFE_ID = 2048;

const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const SPEC_PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
const SERVICE_SEGMENT = /^[a-z0-9][a-z0-9._-]*$/;

export interface SpiffeId {
  readonly trustDomain: string;
  /** The path without its leading `/`: the service name. */
  readonly service: string;
  readonly uri: string;
}

/** Why `value` is not a valid trust domain, or undefined when it is. */
export function trustDomainProblem(value: string): string | undefined {
  if (value.length === 0) return 'is empty';
  if (value.length > MAX_TRUST_DOMAIN) return `is longer than ${MAX_TRUST_DOMAIN} characters`;
  for (const ch of value) {
    if (!TRUST_DOMAIN_CHAR.test(ch)) return `contains ${describeChar(ch)}; only lower-case letters, digits, ".", "-" and "_" are allowed`;
  }
  return undefined;
}

/** Why `value` is not a valid service name, or undefined when it is. */
export function serviceNameProblem(value: string): string | undefined {
  if (value.length === 0) return 'is empty';
  if (value.length > MAX_SERVICE_NAME) return `is ${value.length} characters long; the limit is ${MAX_SERVICE_NAME}`;
  const segments = value.split('/');
  for (const segment of segments) {
    if (segment.length === 0) return 'has an empty path segment (a leading, trailing or doubled "/")';
    if (segment === '.' || segment === '..') return `has a "${segment}" path segment`;
    for (const ch of segment) {
      if (!/^[a-z0-9._-]$/.test(ch))
        return `contains ${describeChar(ch)}; only lower-case letters, digits, ".", "-", "_" and "/" between segments are allowed`;
    }
    if (!SERVICE_SEGMENT.test(segment)) return `has a segment "${segment}" that does not start with a letter or digit`;
  }
  return undefined;
}

export function assertTrustDomain(value: string): string {
  const problem = trustDomainProblem(value);
  if (problem)
    throw new UsageError(`invalid trust domain ${JSON.stringify(value)}: it ${problem}`, 'use a DNS-like name such as example.org');
  return value;
}

export function assertServiceName(value: string): string {
  const problem = serviceNameProblem(value);
  if (problem) {
    throw new UsageError(
      `invalid service name ${JSON.stringify(truncate(value))}: it ${problem}`,
      'use 1-128 characters of a-z 0-9 . - _, each "/"-separated segment starting with a letter or digit (e.g. payment-service or ns/prod/api)',
    );
  }
  return value;
}

export function spiffeIdFor(trustDomain: string, service: string): string {
  return `${SPIFFE_SCHEME}${trustDomain}/${service}`;
}

/**
 * Parses a SPIFFE ID by the spec's grammar. Returns a reason string instead of
 * throwing so that the sidecar can log why a peer was refused.
 */
export function parseSpiffeId(uri: string): { ok: true; id: SpiffeId } | { ok: false; reason: string } {
  if (uri.length > MAX_SPIFFE_ID) return { ok: false, reason: 'SPIFFE ID is longer than 2048 bytes' };
  if (!uri.startsWith(SPIFFE_SCHEME)) return { ok: false, reason: 'URI scheme is not spiffe' };
  const rest = uri.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) return { ok: false, reason: `trust domain ${tdProblem}` };
  if (slash === -1) return { ok: false, reason: 'SPIFFE ID has no path (a trust domain alone names no workload)' };
  const path = rest.slice(slash + 1);
  if (path.length === 0) return { ok: false, reason: 'SPIFFE ID has an empty path' };
  for (const segment of path.split('/')) {
    if (segment.length === 0) return { ok: false, reason: 'SPIFFE ID path has an empty segment' };
    if (segment === '.' || segment === '..') return { ok: false, reason: 'SPIFFE ID path has a dot segment' };
    if (!SPEC_PATH_SEGMENT.test(segment)) return { ok: false, reason: 'SPIFFE ID path has a character outside A-Z a-z 0-9 . - _' };
  }
  return { ok: true, id: { trustDomain, service: path, uri } };
}

function describeChar(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x20 || cp === 0x7f || cp > 0x7e) return `the character U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return `"${ch}"`;
}

function truncate(value: string): string {
  return value.length > 80 ? `${value.slice(0, 77)}...` : value;
}

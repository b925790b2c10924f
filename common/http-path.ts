/**
 * Request-target normalization for the sidecar's http mode (RFC 3986 §6.2.2), pure.
 *
 * The policy is matched against the path this returns, and the same path is what the
 * sidecar forwards, so the service behind it sees exactly what was authorized: there is
 * no second interpretation of the target left for the backend to disagree with.
 *
 * Decisions beyond the RFC, each because a backend could read the raw form differently
 * from the form that was matched:
 * - Only origin form (`/path?query`) is accepted; asterisk, absolute and authority forms
 *   are refused (a sidecar is not a forward proxy).
 * - Refused anywhere in the target: control characters, space, non-ASCII (clients must
 *   percent-encode it) and `#` (a fragment is never sent on the wire).
 * - Refused in the path: `%2F` / `%5C` (an encoded separator that some backends decode
 *   into one after we matched), a raw `\` (which some servers treat as `/`), encoded
 *   control characters (`%00` truncates paths in C backends), malformed `%`, and a dot
 *   segment with parameters (`..;x`, which Tomcat and Spring resolve as `..`).
 * - Percent-encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, before
 *   dot segments are removed, so `/%2e%2e/admin` cannot slip past a prefix rule; every
 *   other encoding is kept, with upper-case hex (§6.2.2.1), because decoding a reserved
 *   character (`%3A`, `%3B`, `%25`, ...) can change the meaning of the path.
 * - Printable ASCII characters that a path may not carry raw (`"<>[]^`{|}`) are
 *   percent-encoded, so each path has one canonical spelling for matching.
 * - `//` runs are merged before dot segments are removed, so `..` always climbs one
 *   real segment (`/a//../b` → `/b`, as nginx does).
 * - The query is not normalized or matched; it is returned unchanged (`''` when absent
 *   or empty) for forwarding.
 */

export type NormalizedTarget =
  | { readonly ok: true /** normalized, starts with `/` */; readonly path: string /** without `?`; '' when none */; readonly query: string }
  | { readonly ok: false /** one short line, safe to log and to put in a 400 body */; readonly reason: string };

const HEX = '0123456789ABCDEF';

/** Normalizes an HTTP request target (as in the request line) for policy matching and forwarding. */
export function normalizeRequestTarget(target: string): NormalizedTarget {
  if (target.length === 0) return fail('empty request target');
  if (target[0] !== '/') return fail(notOriginForm(target));
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f)
      return fail(c === 0x20 ? 'space in the request target' : `control character ${codePoint(c)} in the request target`);
    if (c > 0x7e) return fail('non-ASCII character in the request target (percent-encode it)');
    if (c === 0x23) return fail('fragment ("#") in the request target');
  }
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  const decoded = normalizeEncoding(rawPath);
  if (!decoded.ok) return decoded;
  const path = removeDotSegments(decoded.path);
  if (!path.ok) return path;
  return { ok: true, path: path.path, query };
}

type Step = { ok: true; path: string } | { ok: false; reason: string };

function normalizeEncoding(raw: string): Step {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch === '%') {
      const value = hexByte(raw, i + 1);
      if (value === undefined) return fail('malformed percent-encoding in the path');
      i += 2;
      if (value === 0x2f) return fail('encoded "/" (%2F) in the path');
      if (value === 0x5c) return fail('encoded "\\" (%5C) in the path');
      if (value < 0x20 || value === 0x7f) return fail(`encoded control character (%${hex(value)}) in the path`);
      out += isUnreserved(value) ? String.fromCharCode(value) : `%${hex(value)}`;
    } else if (ch === '\\') {
      return fail('"\\" in the path');
    } else if (ch === '/' || isPchar(ch.charCodeAt(0))) {
      out += ch;
    } else {
      out += `%${hex(ch.charCodeAt(0))}`;
    }
  }
  return { ok: true, path: out };
}

function removeDotSegments(path: string): Step {
  const segments = path.split('/');
  const kept: string[] = [];
  // segments[0] is the empty string before the leading '/'.
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const semicolon = segment.indexOf(';');
    if (semicolon !== -1) {
      const head = segment.slice(0, semicolon);
      if (head === '.' || head === '..') return fail(`dot segment with parameters ("${head};") in the path`);
    }
    if (segment === '..') kept.pop();
    else if (segment !== '.' && segment !== '') kept.push(segment);
  }
  const last = segments[segments.length - 1];
  const trailingSlash = kept.length > 0 && (last === '' || last === '.' || last === '..');
  return { ok: true, path: `/${kept.join('/')}${trailingSlash ? '/' : ''}` };
}

function notOriginForm(target: string): string {
  if (target === '*') return 'asterisk-form target "*" is not origin form';
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(target)) return 'absolute-form target (a proxy request) is not origin form';
  return 'request target does not start with "/" (not origin form)';
}

function hexByte(s: string, at: number): number | undefined {
  if (at + 2 > s.length) return undefined;
  const hi = hexDigit(s.charCodeAt(at));
  const lo = hexDigit(s.charCodeAt(at + 1));
  return hi === undefined || lo === undefined ? undefined : hi * 16 + lo;
}

function hexDigit(c: number): number | undefined {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return undefined;
}

function hex(value: number): string {
  return HEX[value >> 4]! + HEX[value & 15]!;
}

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e
  );
}

/** RFC 3986 pchar minus pct-encoded: unreserved, sub-delims, ':' and '@'. */
function isPchar(c: number): boolean {
  return isUnreserved(c) || "!$&'()*+,;=:@".includes(String.fromCharCode(c));
}

function codePoint(c: number): string {
  return `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

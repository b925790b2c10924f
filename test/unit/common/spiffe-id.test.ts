/**
 * SPIFFE IDs, trust domains and service names, in the spirit of go-spiffe's
 * `spiffeid` tests: every byte 0–255 in a trust domain and in a path segment, then
 * named tables for the structural cases (empty, dot and dot-dot segments,
 * percent-encoding, trailing slash, ports, user info, upper case, over-long names).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  MAX_SERVICE_NAME,
  MAX_SPIFFE_ID,
  MAX_TRUST_DOMAIN,
  assertServiceName,
  assertTrustDomain,
  parseSpiffeId,
  serviceNameProblem,
  spiffeIdFor,
  trustDomainProblem,
} from '../../../common/spiffe-id.js';
import { UsageError } from '../../../common/errors.js';

const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const DIGITS = '0123456789';
/** The SPIFFE-ID spec's trust-domain alphabet. */
const TD_CHARS = new Set([...LOWER, ...DIGITS, '.', '-', '_']);
/** The spec's path-segment alphabet (upper case allowed in paths, not in trust domains). */
const SPEC_PATH_CHARS = new Set([...LOWER, ...UPPER, ...DIGITS, '.', '-', '_']);
/** What `svcca issue` accepts in a service name: the spec's alphabet minus upper case. */
const SERVICE_CHARS = new Set([...LOWER, ...DIGITS, '.', '-', '_']);

const ALL_BYTES = Array.from({ length: 256 }, (_, b) => String.fromCharCode(b));
const show = (ch: string) => `0x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;

describe('trust domain: every byte 0-255', () => {
  it('accepts exactly lower-case letters, digits, ".", "-" and "_"', () => {
    const accepted: string[] = [];
    for (const ch of ALL_BYTES) {
      const td = `a${ch}b`;
      const problem = trustDomainProblem(td);
      if (problem === undefined) accepted.push(ch);
      assert.equal(problem === undefined, TD_CHARS.has(ch), `trust domain with ${show(ch)}: ${problem ?? 'accepted'}`);
    }
    assert.equal(accepted.length, TD_CHARS.size);
  });

  it('parseSpiffeId agrees byte for byte on the trust-domain part', () => {
    for (const ch of ALL_BYTES) {
      if (ch === '/') continue; // a "/" ends the trust domain: covered by the structural table
      const res = parseSpiffeId(`spiffe://a${ch}b/svc`);
      assert.equal(res.ok, TD_CHARS.has(ch), `spiffe://a${show(ch)}b/svc`);
      if (!res.ok) assert.match(res.reason, /trust domain/);
    }
  });

  it('names the offending character in the message', () => {
    assert.match(trustDomainProblem('exa mple.org') ?? '', /" "/);
    assert.match(trustDomainProblem('exa\u0000mple') ?? '', /U\+0000/);
    assert.match(trustDomainProblem('exa\u00e9mple') ?? '', /U\+00E9/);
  });
});

describe('trust domain: named cases', () => {
  const cases: { name: string; input: string; ok: boolean }[] = [
    { name: 'plain', input: 'example.org', ok: true },
    { name: 'single label', input: 'trustdomain', ok: true },
    { name: 'digits and punctuation', input: '0-9_a.b', ok: true },
    { name: 'empty', input: '', ok: false },
    { name: 'upper case', input: 'Example.org', ok: false },
    { name: 'all upper case', input: 'EXAMPLE.ORG', ok: false },
    { name: 'with a port', input: 'example.org:8080', ok: false },
    { name: 'with user info', input: 'user@example.org', ok: false },
    { name: 'with user and password', input: 'user:pass@example.org', ok: false },
    { name: 'percent-encoded', input: 'example%2eorg', ok: false },
    { name: 'percent-encoded space', input: 'trust%20domain', ok: false },
    { name: 'with a scheme', input: 'spiffe://example.org', ok: false },
    { name: 'with a path', input: 'example.org/x', ok: false },
    { name: 'trailing slash', input: 'example.org/', ok: false },
    { name: 'query', input: 'example.org?x=1', ok: false },
    { name: 'fragment', input: 'example.org#x', ok: false },
    { name: 'IPv6 literal', input: '[::1]', ok: false },
    { name: 'non-ASCII (IDN not punycoded)', input: 'exämple.org', ok: false },
    { name: 'punycoded IDN', input: 'xn--exmple-cua.org', ok: true },
    { name: `exactly ${MAX_TRUST_DOMAIN} characters`, input: 'a'.repeat(MAX_TRUST_DOMAIN), ok: true },
    { name: `${MAX_TRUST_DOMAIN + 1} characters`, input: 'a'.repeat(MAX_TRUST_DOMAIN + 1), ok: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problem = trustDomainProblem(c.input);
      assert.equal(problem === undefined, c.ok, `${JSON.stringify(c.input)}: ${problem ?? 'accepted'}`);
      if (c.ok) assert.equal(assertTrustDomain(c.input), c.input);
      else
        assert.throws(
          () => assertTrustDomain(c.input),
          (err: unknown) => err instanceof UsageError && /invalid trust domain/.test(err.message) && err.hint.length > 0,
        );
    });
  }
});

describe('service name: every byte 0-255 in a path segment', () => {
  it('accepts exactly lower-case letters, digits, ".", "-" and "_" inside a segment', () => {
    for (const ch of ALL_BYTES) {
      if (ch === '/') continue; // the separator: covered by the structural table
      const problem = serviceNameProblem(`a${ch}b`);
      assert.equal(problem === undefined, SERVICE_CHARS.has(ch), `service a${show(ch)}b: ${problem ?? 'accepted'}`);
      const nested = serviceNameProblem(`ns/a${ch}b`);
      assert.equal(nested === undefined, SERVICE_CHARS.has(ch), `service ns/a${show(ch)}b: ${nested ?? 'accepted'}`);
    }
  });

  it('accepts only a letter or digit as the first byte of a segment', () => {
    for (const ch of ALL_BYTES) {
      if (ch === '/') continue;
      const firstOk = /^[a-z0-9]$/.test(ch);
      assert.equal(serviceNameProblem(`${ch}x`) === undefined, firstOk, `service ${show(ch)}x`);
      assert.equal(serviceNameProblem(`ns/${ch}x`) === undefined, firstOk, `service ns/${show(ch)}x`);
    }
  });

  it('parseSpiffeId follows the spec: upper case allowed in a path, nothing else extra', () => {
    for (const ch of ALL_BYTES) {
      if (ch === '/') continue;
      const res = parseSpiffeId(`spiffe://example.org/a${ch}b`);
      assert.equal(res.ok, SPEC_PATH_CHARS.has(ch), `spiffe://example.org/a${show(ch)}b`);
    }
  });
});

describe('service name: named cases', () => {
  const cases: { name: string; input: string; ok: boolean }[] = [
    { name: 'plain', input: 'order-service', ok: true },
    { name: 'nested path', input: 'ns/prod/sa/payments', ok: true },
    { name: 'dots and underscores inside', input: 'a.b_c-d', ok: true },
    { name: 'starts with a digit', input: '9lives', ok: true },
    { name: 'a single character', input: 'a', ok: true },
    { name: 'empty', input: '', ok: false },
    { name: 'leading slash', input: '/api', ok: false },
    { name: 'trailing slash', input: 'api/', ok: false },
    { name: 'doubled slash', input: 'ns//api', ok: false },
    { name: 'only a slash', input: '/', ok: false },
    { name: '"." segment', input: 'ns/./api', ok: false },
    { name: '".." segment', input: 'ns/../api', ok: false },
    { name: 'just ".."', input: '..', ok: false },
    { name: 'just "."', input: '.', ok: false },
    { name: 'segment starting with "."', input: 'ns/.hidden', ok: false },
    { name: 'segment starting with "-"', input: '-flag', ok: false },
    { name: 'segment starting with "_"', input: 'ns/_x', ok: false },
    { name: 'upper case', input: 'Order-Service', ok: false },
    { name: 'percent-encoded', input: 'order%2dservice', ok: false },
    { name: 'percent-encoded slash', input: 'ns%2fapi', ok: false },
    { name: 'query', input: 'api?x=1', ok: false },
    { name: 'fragment', input: 'api#x', ok: false },
    { name: 'a full SPIFFE ID', input: 'spiffe://example.org/api', ok: false },
    { name: 'space', input: 'order service', ok: false },
    { name: 'newline', input: 'api\nx', ok: false },
    { name: 'backslash', input: 'ns\\api', ok: false },
    { name: 'non-ASCII', input: 'zahlungsdienst-ä', ok: false },
    { name: `exactly ${MAX_SERVICE_NAME} characters`, input: 'a'.repeat(MAX_SERVICE_NAME), ok: true },
    { name: `${MAX_SERVICE_NAME + 1} characters`, input: 'a'.repeat(MAX_SERVICE_NAME + 1), ok: false },
    { name: `${MAX_SERVICE_NAME} characters over segments`, input: `${'a'.repeat(63)}/${'b'.repeat(64)}`, ok: true },
    { name: `${MAX_SERVICE_NAME + 1} characters over segments`, input: `${'a'.repeat(64)}/${'b'.repeat(64)}`, ok: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const problem = serviceNameProblem(c.input);
      assert.equal(problem === undefined, c.ok, `${JSON.stringify(c.input)}: ${problem ?? 'accepted'}`);
      if (c.ok) {
        assert.equal(assertServiceName(c.input), c.input);
        const parsed = parseSpiffeId(spiffeIdFor('example.org', c.input));
        assert.ok(parsed.ok, 'every service name svcca accepts is a valid SPIFFE ID path');
        assert.equal(parsed.id.service, c.input);
      } else {
        assert.throws(
          () => assertServiceName(c.input),
          (err: unknown) =>
            err instanceof UsageError && /invalid service name/.test(err.message) && !err.message.includes('\n') && err.hint.length > 0,
        );
      }
    });
  }

  it('quotes an over-long name truncated, never the whole of it', () => {
    const long = 'x'.repeat(5000);
    assert.throws(
      () => assertServiceName(long),
      (err: unknown) => err instanceof UsageError && err.line.length < 400,
    );
  });
});

describe('parseSpiffeId: named cases', () => {
  type Want = { trustDomain: string; service: string } | RegExp;
  const cases: { name: string; input: string; want: Want }[] = [
    { name: 'plain', input: 'spiffe://example.org/api', want: { trustDomain: 'example.org', service: 'api' } },
    { name: 'nested path', input: 'spiffe://example.org/ns/prod/api', want: { trustDomain: 'example.org', service: 'ns/prod/api' } },
    { name: 'upper case in the path', input: 'spiffe://example.org/API/Prod', want: { trustDomain: 'example.org', service: 'API/Prod' } },
    { name: 'dots inside a segment', input: 'spiffe://example.org/a..b/.c', want: { trustDomain: 'example.org', service: 'a..b/.c' } },
    { name: 'empty', input: '', want: /scheme/ },
    { name: 'no scheme', input: 'example.org/api', want: /scheme/ },
    { name: 'another scheme', input: 'https://example.org/api', want: /scheme/ },
    { name: 'upper-case scheme', input: 'SPIFFE://example.org/api', want: /scheme/ },
    { name: 'scheme without slashes', input: 'spiffe:example.org/api', want: /scheme/ },
    { name: 'scheme only', input: 'spiffe://', want: /trust domain is empty/ },
    { name: 'missing trust domain', input: 'spiffe:///api', want: /trust domain is empty/ },
    { name: 'trust domain only', input: 'spiffe://example.org', want: /no path/ },
    { name: 'trust domain with a trailing slash', input: 'spiffe://example.org/', want: /empty path/ },
    { name: 'path with a trailing slash', input: 'spiffe://example.org/api/', want: /empty segment/ },
    { name: 'doubled slash', input: 'spiffe://example.org//api', want: /empty segment/ },
    { name: 'two slashes only', input: 'spiffe://example.org//', want: /empty segment/ },
    { name: '"." segment', input: 'spiffe://example.org/./api', want: /dot segment/ },
    { name: '".." segment', input: 'spiffe://example.org/../api', want: /dot segment/ },
    { name: 'trailing ".."', input: 'spiffe://example.org/api/..', want: /dot segment/ },
    { name: 'trailing "."', input: 'spiffe://example.org/api/.', want: /dot segment/ },
    { name: 'upper-case trust domain', input: 'spiffe://Example.org/api', want: /trust domain/ },
    { name: 'port', input: 'spiffe://example.org:8443/api', want: /trust domain/ },
    { name: 'user info', input: 'spiffe://user@example.org/api', want: /trust domain/ },
    { name: 'user and password', input: 'spiffe://user:pass@example.org/api', want: /trust domain/ },
    { name: 'percent-encoded trust domain', input: 'spiffe://example%2eorg/api', want: /trust domain/ },
    { name: 'percent-encoded path', input: 'spiffe://example.org/a%2fb', want: /character/ },
    { name: 'percent-encoded dot segment', input: 'spiffe://example.org/%2e%2e/api', want: /character/ },
    { name: 'query', input: 'spiffe://example.org/api?x=1', want: /character/ },
    { name: 'fragment', input: 'spiffe://example.org/api#x', want: /character/ },
    { name: 'query right after the trust domain', input: 'spiffe://example.org?x', want: /trust domain/ },
    { name: 'space in the path', input: 'spiffe://example.org/a b', want: /character/ },
    { name: 'NUL in the path', input: 'spiffe://example.org/a\u0000b', want: /character/ },
    { name: 'backslash in the path', input: 'spiffe://example.org/a\\b', want: /character/ },
    { name: 'non-ASCII in the path', input: 'spiffe://example.org/caf\u00e9', want: /character/ },
    { name: 'leading space', input: ' spiffe://example.org/api', want: /scheme/ },
    { name: 'trailing newline', input: 'spiffe://example.org/api\n', want: /character/ },
    {
      name: `exactly ${MAX_SPIFFE_ID} bytes`,
      input: `spiffe://example.org/${'a'.repeat(MAX_SPIFFE_ID - 'spiffe://example.org/'.length)}`,
      want: { trustDomain: 'example.org', service: 'a'.repeat(MAX_SPIFFE_ID - 'spiffe://example.org/'.length) },
    },
    {
      name: `${MAX_SPIFFE_ID + 1} bytes`,
      input: `spiffe://example.org/${'a'.repeat(MAX_SPIFFE_ID + 1 - 'spiffe://example.org/'.length)}`,
      want: /2048/,
    },
    { name: 'over-long trust domain', input: `spiffe://${'a'.repeat(MAX_TRUST_DOMAIN + 1)}/api`, want: /trust domain is longer/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const res = parseSpiffeId(c.input);
      if (c.want instanceof RegExp) {
        assert.equal(res.ok, false, `${JSON.stringify(c.input)} must be refused`);
        if (!res.ok) assert.match(res.reason, c.want);
      } else {
        assert.ok(res.ok, `${JSON.stringify(c.input)}: ${res.ok ? '' : res.reason}`);
        assert.equal(res.id.trustDomain, c.want.trustDomain);
        assert.equal(res.id.service, c.want.service);
        assert.equal(res.id.uri, c.input);
      }
    });
  }
});

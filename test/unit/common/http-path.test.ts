import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeRequestTarget } from '../../../common/http-path.js';
import type { NormalizedTarget } from '../../../common/http-path.js';

const ok = (path: string, query = ''): NormalizedTarget => ({ ok: true, path, query });

describe('normalizeRequestTarget: accepted targets', () => {
  const cases: { name: string; input: string; want: NormalizedTarget }[] = [
    { name: 'root', input: '/', want: ok('/') },
    { name: 'plain path', input: '/stock/a', want: ok('/stock/a') },
    { name: 'trailing slash kept', input: '/stock/', want: ok('/stock/') },
    { name: 'query split off and kept raw', input: '/stock?id=1&x=%2F', want: ok('/stock', 'id=1&x=%2F') },
    { name: 'empty query', input: '/stock?', want: ok('/stock') },
    { name: 'query may hold "?" and "/"', input: '/a?b=/c?d', want: ok('/a', 'b=/c?d') },
    { name: 'single dot segment', input: '/a/./b', want: ok('/a/b') },
    { name: 'double dot segment', input: '/a/b/../c', want: ok('/a/c') },
    { name: 'dot segments above the root', input: '/../../etc/passwd', want: ok('/etc/passwd') },
    { name: 'trailing ".." leaves a slash', input: '/a/b/..', want: ok('/a/') },
    { name: 'trailing "." leaves a slash', input: '/a/b/.', want: ok('/a/b/') },
    { name: '".." to the root', input: '/a/..', want: ok('/') },
    { name: 'doubled slashes merged', input: '//stock///a//', want: ok('/stock/a/') },
    { name: 'slashes merged before dots', input: '/a//../b', want: ok('/b') },
    { name: 'leading "//" is a path, not an authority', input: '//evil.example/x', want: ok('/evil.example/x') },
    { name: 'encoded unreserved decoded', input: '/%41%62%2D%5F%7E%30', want: ok('/Ab-_~0') },
    { name: 'encoded dots decoded before dot removal', input: '/stock/%2e%2E/admin', want: ok('/admin') },
    { name: 'encoded single dot', input: '/a/%2E/b', want: ok('/a/b') },
    { name: 'reserved encodings kept, hex upper-cased', input: '/a%3ab%3B%25', want: ok('/a%3Ab%3B%25') },
    { name: 'non-ASCII UTF-8 encoding kept', input: '/caf%c3%a9', want: ok('/caf%C3%A9') },
    { name: 'sub-delims, ":" and "@" kept raw', input: "/a:b@c!$&'()*+,;=", want: ok("/a:b@c!$&'()*+,;=") },
    { name: 'raw characters a path may not hold get encoded', input: '/a|b{c}^[d]"<>`', want: ok('/a%7Cb%7Bc%7D%5E%5Bd%5D%22%3C%3E%60') },
    { name: 'path parameter on a normal segment kept', input: '/a;v=1/b', want: ok('/a;v=1/b') },
    { name: 'dots inside a name are not dot segments', input: '/a/.../..b/.c', want: ok('/a/.../..b/.c') },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.deepEqual(normalizeRequestTarget(input), want));
  }
});

describe('normalizeRequestTarget: refused targets', () => {
  const cases: { name: string; input: string; want: RegExp }[] = [
    { name: 'empty', input: '', want: /empty/ },
    { name: 'asterisk form', input: '*', want: /asterisk-form/ },
    { name: 'absolute form', input: 'http://svc/stock', want: /absolute-form/ },
    { name: 'authority form', input: 'svc:443', want: /not origin form/ },
    { name: 'relative path', input: 'stock', want: /not origin form/ },
    { name: 'encoded slash', input: '/stock%2F..%2Fadmin', want: /encoded "\/"/ },
    { name: 'encoded slash, lower case', input: '/a%2fb', want: /encoded "\/"/ },
    { name: 'encoded backslash', input: '/a%5Cb', want: /encoded "\\"/ },
    { name: 'encoded backslash, lower case', input: '/a%5cb', want: /encoded "\\"/ },
    { name: 'raw backslash', input: '/a\\..\\admin', want: /"\\" in the path/ },
    { name: 'NUL', input: '/a\u0000b', want: /control character U\+0000/ },
    { name: 'tab', input: '/a\tb', want: /control character/ },
    { name: 'CR LF', input: '/a\r\nX-Evil: 1', want: /control character/ },
    { name: 'DEL', input: '/a\u007f', want: /control character/ },
    { name: 'control character in the query', input: '/a?b=\u0001', want: /control character/ },
    { name: 'space', input: '/a b', want: /space/ },
    { name: 'encoded NUL', input: '/a%00.txt', want: /encoded control character \(%00\)/ },
    { name: 'encoded newline', input: '/a%0d%0a', want: /encoded control character/ },
    { name: 'malformed percent', input: '/a%zz', want: /malformed percent/ },
    { name: 'truncated percent', input: '/a%4', want: /malformed percent/ },
    { name: 'non-ASCII', input: '/café', want: /non-ASCII/ },
    { name: 'fragment', input: '/a#frag', want: /fragment/ },
    { name: '"..;" which Tomcat reads as ".."', input: '/public/..;/admin', want: /dot segment with parameters/ },
    { name: '".;x"', input: '/public/.;x/admin', want: /dot segment with parameters/ },
    { name: 'encoded "..;"', input: '/public/%2e%2e;/admin', want: /dot segment with parameters/ },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => {
      const got = normalizeRequestTarget(input);
      assert.equal(got.ok, false, `expected ${JSON.stringify(input)} to be refused, got ${JSON.stringify(got)}`);
      if (!got.ok) assert.match(got.reason, want);
    });
  }
});

describe('normalizeRequestTarget: properties', () => {
  it('is idempotent: a normalized path normalizes to itself', () => {
    for (const input of ['/a/./b/../c//d/', '/%2e%2e/%41%3a', '/a|b', '/x/%C3%A9/..', '/']) {
      const first = normalizeRequestTarget(input);
      assert.ok(first.ok);
      assert.deepEqual(normalizeRequestTarget(first.path), ok(first.path));
    }
  });

  it('takes linear time on a long hostile path', () => {
    // Correctness check on a size where a quadratic algorithm would still finish; no timing asserted.
    const input = `/${'a/../'.repeat(50_000)}b`;
    assert.deepEqual(normalizeRequestTarget(input), ok('/b'));
  });

  it('every byte as a raw path character is refused or leaves only RFC 3986 path characters raw', () => {
    for (let c = 0; c < 256; c++) {
      const ch = String.fromCharCode(c);
      const got = normalizeRequestTarget(`/x${ch}y`);
      if (!got.ok) continue;
      // What survives raw is only what RFC 3986 allows in a path.
      assert.match(got.path, /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/, `byte 0x${c.toString(16)} gave ${got.path}`);
      assert.ok(!got.path.includes('\\'));
    }
  });
});

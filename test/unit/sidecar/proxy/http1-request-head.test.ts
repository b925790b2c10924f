/**
 * The request head http mode writes to the local service (requestHead in
 * sidecar/proxy/http1-upstream.ts): one well-formed line per field, and a refusal for
 * anything that could end a line early or start a second request, whatever the caller's
 * parser let through.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { requestHead } from '../../../../sidecar/proxy/http1-upstream.js';

describe('requestHead', () => {
  it('writes the request line and the fields as given', () => {
    assert.equal(
      requestHead('GET', '/stock/1?x=%20y', ['Host', 'inventory', 'x-a', 'v\twith tab, obs-text \xe9']),
      'GET /stock/1?x=%20y HTTP/1.1\r\nHost: inventory\r\nx-a: v\twith tab, obs-text \xe9\r\n\r\n',
    );
  });

  it('refuses a field value that could end its line or carry a control character', () => {
    for (const value of ['a\r\nX-Injected: 1', 'a\nb', 'a\rb', 'a\0b', 'a\x7fb', 'a\x1bb']) {
      assert.throws(() => requestHead('GET', '/', ['x-a', value]), /control character/, JSON.stringify(value));
    }
  });

  it('refuses a field name that is not a token', () => {
    for (const name of ['x a', 'x:a', '', 'x\r\na', 'é']) {
      assert.throws(() => requestHead('GET', '/', [name, 'v']), /not a token/, JSON.stringify(name));
    }
  });

  it('refuses a method or target that would break the request line', () => {
    assert.throws(() => requestHead('GET /x', '/', []), /method/);
    assert.throws(() => requestHead('', '/', []), /method/);
    for (const path of ['/a b', '/a\r\nGET /b', '/a\tb', '', '/\u0100']) {
      assert.throws(() => requestHead('GET', path, []), /request target/, JSON.stringify(path));
    }
  });
});

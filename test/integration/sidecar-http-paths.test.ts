/**
 * http mode matches the policy against the normalized path and forwards that same path:
 * the `/stock/../admin`, `//admin` and `%2e%2e` tricks (Envoy CVE-2019-9901) are judged
 * as `/admin`; an encoded `/` or `\` (CVE-2021-29492), a raw `\`, and targets not in
 * origin form get 400 and a log line. The service sees only normalized paths.
 *
 * Raw requests over mTLS: no client library would send most of these targets as written.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, linesFromNow, refusalFrom, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import {
  getRequest,
  httpSidecarYaml,
  rawCall,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

describe('sidecar http mode: path normalization', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let backend: RecordingBackend;
  let notification: string;
  let order: string;

  before(async () => {
    ca = makeCa();
    notification = ca.issue('notification-service');
    order = ca.issue('order-service');
    const inventory = ca.issue('inventory-service');
    backend = await startRecordingBackend();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy: writePolicy(ca.root, STOCK_POLICY), forward: backend.address }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  // notification-service may GET /stock and /stock/* only.
  const judged: { name: string; target: string; want: 200 | 403; forwarded?: string; logged?: string }[] = [
    { name: 'dot-dot out of an allowed prefix', target: '/stock/../admin', want: 403, logged: '/admin' },
    { name: 'double slash before a denied path', target: '//admin', want: 403, logged: '/admin' },
    { name: 'encoded dot-dot', target: '/stock/%2e%2e/admin', want: 403, logged: '/admin' },
    { name: 'upper-case encoded dot-dot', target: '/stock/%2E%2E/admin', want: 403, logged: '/admin' },
    { name: 'dot-dot behind a double slash', target: '/stock//../../admin', want: 403, logged: '/admin' },
    { name: 'dot-dot that stays inside', target: '/stock/a/../b', want: 200, forwarded: '/stock/b' },
    { name: 'merged slashes into an allowed path', target: '//stock///42', want: 200, forwarded: '/stock/42' },
    { name: 'dot segments around an allowed path', target: '/./stock/./42/.', want: 200, forwarded: '/stock/42/' },
    { name: 'an encoded unreserved character decoded', target: '/st%6Fck', want: 200, forwarded: '/stock' },
    { name: 'the query passed on unchanged', target: '/stock/../stock/1?q=%2F..%5C&x', want: 200, forwarded: '/stock/1?q=%2F..%5C&x' },
  ];
  for (const c of judged) {
    it(`${c.name}: ${c.target} → ${c.want}`, async () => {
      const seen = backend.received.length;
      const fresh = linesFromNow(sidecar);
      const r = await rawCall(sidecar.inbound!, credsFromDir(notification), getRequest(c.target));
      assert.equal(r.status, c.want, r.body.toString());
      if (c.forwarded) {
        assert.equal(backend.received.length, seen + 1);
        assert.equal(backend.received.at(-1)!.url, c.forwarded, 'the service must see the normalized path');
      } else {
        assert.equal(backend.received.length, seen, 'the service saw a refused request');
        const line = await sidecar.waitForLine(fresh(refusalFrom(r.localPort)));
        assert.equal(line.path, c.logged);
        assert.equal(line.reason, 'policy-denied');
      }
    });
  }

  it('forwards the normalized path even when the caller may call any path', async () => {
    const r = await rawCall(sidecar.inbound!, credsFromDir(order), getRequest('/a/./b/../c//d?x=1'));
    assert.equal(r.status, 200);
    assert.equal(backend.received.at(-1)!.url, '/a/c/d?x=1');
  });

  const refused: { name: string; request: string; detail: RegExp }[] = [
    { name: 'encoded slash %2F', request: getRequest('/stock%2F..%2Fadmin'), detail: /%2F/ },
    { name: 'lower-case encoded slash %2f', request: getRequest('/stock/a%2fb'), detail: /%2F/ },
    { name: 'encoded backslash %5C', request: getRequest('/stock%5C..%5Cadmin'), detail: /%5C/ },
    { name: 'raw backslash', request: getRequest('/stock\\..\\admin'), detail: /"\\" in the path/ },
    { name: 'absolute form', request: getRequest('http://inventory.internal/stock'), detail: /absolute-form/ },
    { name: 'asterisk form', request: getRequest('*', [], 'OPTIONS'), detail: /asterisk/ },
    { name: 'authority form (CONNECT)', request: getRequest('inventory.internal:443', [], 'CONNECT'), detail: /origin form/ },
    { name: 'encoded NUL', request: getRequest('/stock/a%00b'), detail: /control character/ },
    { name: 'dot-dot with parameters', request: getRequest('/stock/..;x/admin'), detail: /parameters/ },
    { name: 'an HTTP/0.9 request line', request: 'GET /stock/1\r\n\r\n', detail: /HTTP\/0\.9 is not served here/ },
    {
      name: 'HTTP/2.0 in a request line',
      request: 'GET /stock/1 HTTP/2.0\r\nHost: inventory.internal\r\n\r\n',
      detail: /HTTP\/2\.0 is not served here/,
    },
  ];
  for (const c of refused) {
    for (const [who, set] of [
      ['notification', () => notification],
      ['order', () => order],
    ] as const) {
      it(`400 for ${c.name} (${who}-service)`, async () => {
        const seen = backend.received.length;
        const fresh = linesFromNow(sidecar);
        const r = await rawCall(sidecar.inbound!, credsFromDir(set()), c.request);
        assert.equal(r.status, 400, r.body.toString());
        assert.match(r.body.toString(), /^bad request: /);
        assert.equal(backend.received.length, seen, 'the service saw a refused request');
        const line = await sidecar.waitForLine(fresh(refusalFrom(r.localPort)));
        assert.equal(line.status, 400);
        assert.equal(line.peer, `spiffe://example.org/${who}-service`);
        assert.match(String(line.detail), c.detail);
        assert.equal(typeof line.target, 'string', 'the raw target is logged');
      });
    }
  }
});

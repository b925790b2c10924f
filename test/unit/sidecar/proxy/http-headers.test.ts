/**
 * The http-mode header rewrite, as tables: what the local service receives, what the
 * caller gets back, and which requests are refused.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { canonicalHeaderName, clientResponseHeaders, upstreamRequestHeaders, xfccValue } from '../../../../sidecar/proxy/http-headers.js';

const XFCC = 'By=spiffe://td/inventory;Hash=ab;URI=spiffe://td/order';
const base = { xfcc: XFCC, clientIp: '10.0.0.7', fallbackHost: '127.0.0.1:8080', hostRequired: true };

function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

describe('upstreamRequestHeaders', () => {
  const kept: { name: string; raw: string[]; want: [string, string][] }[] = [
    {
      name: 'plain request: Host kept, XFCC, x-forwarded-for and -proto added',
      raw: ['Host', 'inv', 'Accept', '*/*'],
      want: [
        ['Host', 'inv'],
        ['Accept', '*/*'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
    {
      name: 'every XFCC spelling and copy removed',
      raw: [
        'Host',
        'inv',
        'X-Forwarded-Client-Cert',
        'a',
        'x_forwarded_client_cert',
        'b',
        'X_FORWARDED-client_CERT',
        'c',
        'x-forwarded-client-cert',
        'd',
      ],
      want: [
        ['Host', 'inv'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
    {
      name: 'forwarding headers the caller chose are removed',
      raw: [
        'Host',
        'inv',
        'X-Forwarded-For',
        '1.2.3.4',
        'x_forwarded_for',
        '1.2.3.5',
        'Forwarded',
        'for=x',
        'X-Real-IP',
        '1',
        'X-Forwarded-Host',
        'evil',
        'X-Forwarded-Proto',
        'http',
      ],
      want: [
        ['Host', 'inv'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
    {
      name: 'every x-forwarded-* header and the URL overrides are removed, in any spelling',
      raw: [
        'Host',
        'inv',
        'X-Forwarded-Port',
        '80',
        'X-Forwarded-Prefix',
        '/admin',
        'X_Forwarded_Server',
        'e',
        'X-Forwarded-Ssl',
        'off',
        'X-Forwarded-Scheme',
        'http',
        'X-Forwarded-Uri',
        '/admin',
        'X-Original-URL',
        '/admin',
        'x_rewrite_url',
        '/admin',
        'X-Forwardedness',
        'kept',
      ],
      want: [
        ['Host', 'inv'],
        ['X-Forwardedness', 'kept'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
    {
      name: 'hop-by-hop and nominated headers removed, any spelling of the nominated one',
      raw: [
        'Host',
        'inv',
        'Connection',
        'keep-alive, X-Secret',
        'X-Secret',
        '1',
        'x_secret',
        '2',
        'Keep-Alive',
        '5',
        'TE',
        'trailers',
        'Trailer',
        'x',
        'Upgrade',
        'h2c',
        'Proxy-Authorization',
        'b',
        'Proxy-Connection',
        'k',
        'Expect',
        '100-continue',
        'X-Other',
        'y',
      ],
      want: [
        ['Host', 'inv'],
        ['X-Other', 'y'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
    {
      name: "Host and Content-Length survive a nomination (framing is the sidecar's)",
      raw: ['Host', 'inv', 'Content-Length', '3', 'Connection', 'host, content-length'],
      want: [
        ['Host', 'inv'],
        ['Content-Length', '3'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
    {
      name: 'chunked body: re-chunked explicitly',
      raw: ['Host', 'inv', 'Transfer-Encoding', 'chunked'],
      want: [
        ['Host', 'inv'],
        ['transfer-encoding', 'chunked'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
    {
      name: 'HTTP/1.0 without Host: the forward address is used',
      raw: ['Accept', '*/*'],
      want: [
        ['Accept', '*/*'],
        ['host', '127.0.0.1:8080'],
        ['x-forwarded-client-cert', XFCC],
        ['x-forwarded-for', '10.0.0.7'],
        ['x-forwarded-proto', 'https'],
      ],
    },
  ];
  for (const c of kept) {
    it(c.name, () => {
      const r = upstreamRequestHeaders({ ...base, hostRequired: c.raw.some((h) => h.toLowerCase() === 'host'), rawHeaders: c.raw });
      assert.ok(r.ok, JSON.stringify(r));
      assert.deepEqual(pairs(r.headers), c.want);
    });
  }

  it('an upgrade keeps Connection: upgrade and its Upgrade value', () => {
    const r = upstreamRequestHeaders({
      ...base,
      rawHeaders: ['Host', 'inv', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'],
      upgrade: 'websocket',
    });
    assert.ok(r.ok);
    assert.deepEqual(pairs(r.headers), [
      ['Host', 'inv'],
      ['Sec-WebSocket-Key', 'k'],
      ['connection', 'upgrade'],
      ['upgrade', 'websocket'],
      ['x-forwarded-client-cert', XFCC],
      ['x-forwarded-for', '10.0.0.7'],
      ['x-forwarded-proto', 'https'],
    ]);
  });

  it('a unix listener sets no x-forwarded-for', () => {
    const r = upstreamRequestHeaders({ ...base, clientIp: undefined, rawHeaders: ['Host', 'inv', 'X-Forwarded-For', '1.1.1.1'] });
    assert.ok(r.ok);
    assert.deepEqual(
      pairs(r.headers).filter(([k]) => k === 'x-forwarded-for'),
      [],
    );
  });

  const refused: { name: string; raw: string[]; reason: string; detail: RegExp }[] = [
    {
      name: 'Connection names XFCC',
      raw: ['Host', 'a', 'Connection', 'x-forwarded-client-cert'],
      reason: 'sidecar-header-nominated',
      detail: /x-forwarded-client-cert/,
    },
    {
      name: 'Connection names XFCC with _ and upper case',
      raw: ['Host', 'a', 'Connection', 'close, X_Forwarded_Client_Cert'],
      reason: 'sidecar-header-nominated',
      detail: /x-forwarded-client-cert/,
    },
    {
      name: 'Connection names x-forwarded-for',
      raw: ['Host', 'a', 'Connection', 'X-Forwarded-For'],
      reason: 'sidecar-header-nominated',
      detail: /x-forwarded-for/,
    },
    {
      name: 'Connection names XFCC in a second header',
      raw: ['Host', 'a', 'Connection', 'close', 'connection', ' x-forwarded-client-cert '],
      reason: 'sidecar-header-nominated',
      detail: /x-forwarded-client-cert/,
    },
    {
      name: 'Connection names x-forwarded-for',
      raw: ['Host', 'a', 'Connection', 'X-Forwarded-For'],
      reason: 'sidecar-header-nominated',
      detail: /x-forwarded-for/,
    },
    { name: 'two Host headers', raw: ['Host', 'a', 'host', 'b'], reason: 'bad-request', detail: /Host/ },
    { name: 'no Host (HTTP/1.1)', raw: ['Accept', '*/*'], reason: 'bad-request', detail: /no Host/ },
    { name: 'gzip, chunked', raw: ['Host', 'a', 'Transfer-Encoding', 'gzip, chunked'], reason: 'bad-request', detail: /chunked/ },
    {
      name: 'chunked twice in two headers',
      raw: ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'],
      reason: 'bad-request',
      detail: /chunked/,
    },
  ];
  for (const c of refused) {
    it(`refuses: ${c.name}`, () => {
      const r = upstreamRequestHeaders({ ...base, rawHeaders: c.raw });
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.equal(r.reason, c.reason);
      assert.match(r.detail, c.detail);
    });
  }
});

describe('clientResponseHeaders', () => {
  const table: { name: string; raw: string[]; upgrade?: boolean; want: [string, string][] }[] = [
    {
      name: 'hop-by-hop removed',
      raw: [
        'Content-Type',
        'text/plain',
        'Connection',
        'keep-alive',
        'Keep-Alive',
        'timeout=5',
        'Transfer-Encoding',
        'chunked',
        'Set-Cookie',
        'a=1',
        'Set-Cookie',
        'b=2',
      ],
      want: [
        ['Content-Type', 'text/plain'],
        ['Set-Cookie', 'a=1'],
        ['Set-Cookie', 'b=2'],
      ],
    },
    {
      name: 'nominated removed',
      raw: ['Connection', 'X-Internal', 'X-Internal', 'secret', 'Content-Length', '2'],
      want: [['Content-Length', '2']],
    },
    {
      name: 'a 101 keeps Upgrade and says Connection: Upgrade',
      raw: ['Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Accept', 'x'],
      upgrade: true,
      want: [
        ['Upgrade', 'websocket'],
        ['Sec-WebSocket-Accept', 'x'],
        ['Connection', 'Upgrade'],
      ],
    },
  ];
  for (const c of table) {
    it(c.name, () => assert.deepEqual(pairs(clientResponseHeaders(c.raw, c.upgrade ? { upgrade: true } : {})), c.want));
  }
});

describe('small pieces', () => {
  it("xfccValue is Envoy's By;Hash;URI with the hex SHA-256 of the DER", () => {
    const der = Buffer.from('not really a certificate');
    const hash = createHash('sha256').update(der).digest('hex');
    assert.equal(xfccValue('spiffe://td/a', der, 'spiffe://td/b'), `By=spiffe://td/a;Hash=${hash};URI=spiffe://td/b`);
  });
  it('canonicalHeaderName reads _ as -', () => assert.equal(canonicalHeaderName('X_Forwarded-CLIENT_cert'), 'x-forwarded-client-cert'));
  // hasBody is read from the same raw list the forwarded headers are built from: a body
  // announced to the service is always sent (a Content-Length far down the list included).
  const filler = Array.from({ length: 60 }, (_, i) => [`h${i}`, '1']).flat();
  const bodies: { name: string; raw: string[]; want: boolean | string }[] = [
    { name: 'none', raw: ['Host', 'a'], want: false },
    { name: 'length 0', raw: ['Host', 'a', 'Content-Length', '0'], want: false },
    { name: 'length 5', raw: ['Host', 'a', 'content-length', '5'], want: true },
    { name: 'length 5 after 60 other headers', raw: ['Host', 'a', ...filler, 'Content-Length', '5'], want: true },
    { name: 'chunked', raw: ['Host', 'a', 'Transfer-Encoding', 'chunked'], want: true },
    {
      name: 'two Content-Lengths',
      raw: ['Host', 'a', 'Content-Length', '5', 'content-length', '5'],
      want: 'more than one Content-Length header',
    },
    {
      name: 'a Content-Length that is not a number',
      raw: ['Host', 'a', 'Content-Length', '5, 5'],
      want: 'Content-Length is not a whole number',
    },
    {
      name: 'chunked and a length',
      raw: ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Content-Length', '5'],
      want: 'both Transfer-Encoding and Content-Length',
    },
  ];
  for (const c of bodies) {
    it(`hasBody: ${c.name}`, () => {
      const r = upstreamRequestHeaders({ ...base, rawHeaders: c.raw });
      if (typeof c.want === 'string') assert.deepEqual(r, { ok: false, reason: 'bad-request', detail: c.want });
      else {
        assert.ok(r.ok);
        assert.equal(r.hasBody, c.want);
      }
    });
  }
});

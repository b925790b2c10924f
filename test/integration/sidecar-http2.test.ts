/**
 * HTTP/2 callers in http mode (issue 14), to an HTTP/1.1 service: every stream is judged
 * like an HTTP/1.1 request (normalized `:path`, method rules, XFCC set, spoofed forwarding
 * headers dropped, the same 400s and 403s), and translated for the service: `:authority`
 * as Host, a body of unknown length chunked, request trailers passed in chunked framing,
 * 1xx and response trailers passed back. Driven by curl --http2 and Node's http2 client.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, runAsync, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import { expectedXfcc, headerValues, httpSidecarYaml, patternBytes, sha256, STOCK_POLICY } from './sidecar-http-harness.js';

const TD = 'spiffe://example.org';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
  readonly rawTrailers: readonly string[];
  readonly bodySha256: string;
  readonly bodyBytes: number;
}

/** An HTTP/1.1 service: `/hints` sends 103 first, `/trailers` ends with a trailer, anything else echoes the body's hash. */
async function startService(): Promise<{ server: Server; address: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const hash = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      hash.update(c);
      n += c.length;
    });
    req.on('end', () => {
      seen.push({
        method: req.method!,
        url: req.url!,
        rawHeaders: req.rawHeaders,
        rawTrailers: req.rawTrailers,
        bodySha256: hash.digest('hex'),
        bodyBytes: n,
      });
      if (req.url === '/stock/hints') res.writeEarlyHints({ link: '</style.css>; rel=preload' });
      if (req.url === '/stock/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('body');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-body-bytes': String(n) });
      res.end(`ok ${req.method} ${req.url}\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, address: `127.0.0.1:${(server.address() as { port: number }).port}`, seen };
}

interface H2Response {
  readonly headers: IncomingHttpHeaders;
  readonly informational: IncomingHttpHeaders[];
  readonly trailers: IncomingHttpHeaders | undefined;
  readonly body: Buffer;
}

function h2Request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: { data: Buffer; trailers?: OutgoingHttpHeaders },
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined, ...(body?.trailers ? { waitForTrailers: true } : {}) });
    const informational: IncomingHttpHeaders[] = [];
    let response: IncomingHttpHeaders | undefined;
    let trailers: IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on('headers', (h) => informational.push(h));
    req.on('response', (h) => (response = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () =>
      response
        ? resolve({ headers: response, informational, trailers, body: Buffer.concat(chunks) })
        : reject(new Error(`stream closed with code ${req.rstCode}`)),
    );
    if (body) {
      if (body.trailers) req.once('wantTrailers', () => req.sendTrailers(body.trailers!));
      req.end(body.data);
    }
  });
}

describe('sidecar http mode: HTTP/2 callers, HTTP/1.1 service', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let service: Awaited<ReturnType<typeof startService>>;
  let sets: Record<'order' | 'notification', string>;
  let session: ClientHttp2Session;

  before(async () => {
    ca = makeCa();
    sets = { order: ca.issue('order-service'), notification: ca.issue('notification-service') };
    const inventory = ca.issue('inventory-service');
    service = await startService();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy: writePolicy(ca.root, STOCK_POLICY), forward: service.address }),
    );
    const creds = credsFromDir(sets.notification);
    session = http2Connect(`https://${sidecar.inbound}`, { ...creds, checkServerIdentity: () => undefined });
    await new Promise((resolve, reject) => session.once('connect', resolve).once('error', reject));
  });
  after(async () => {
    session?.close();
    await sidecar?.stop();
    service?.server.closeAllConnections();
    service?.server.close();
    ca?.cleanup();
  });

  // Run asynchronously: the service lives in this process, and must go on answering.
  const curl = (set: string, target: string, extra: readonly string[] = []) =>
    runAsync('curl', [
      '-sS',
      '--http2',
      '--path-as-is',
      '-k',
      '--cert',
      join(set, 'tls.crt'),
      '--key',
      join(set, 'tls.key'),
      '-o',
      '-',
      '-w',
      '\n%{http_code} %{http_version}',
      ...extra,
      `https://${sidecar.inbound}${target}`,
    ]);

  it('curl --http2: allowed, with the path normalized, Host from :authority and the XFCC of the caller; forged forwarding headers dropped', async () => {
    const r = await curl(sets.notification, '/a/../stock//7?q=1', [
      '-H',
      `x-forwarded-client-cert: By=x;URI=${TD}/order-service`,
      '-H',
      'x-forwarded-for: 10.9.9.9',
      '-H',
      'forwarded: for=10.9.9.9',
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ok GET \/stock\/7\?q=1\n\n200 2$/);
    const got = service.seen.at(-1)!;
    assert.equal(got.url, '/stock/7?q=1');
    assert.deepEqual(headerValues(got.rawHeaders, 'host'), [sidecar.inbound]);
    assert.deepEqual(headerValues(got.rawHeaders, 'x-forwarded-client-cert'), [
      expectedXfcc(`${TD}/inventory-service`, sets.notification, `${TD}/notification-service`),
    ]);
    assert.deepEqual(headerValues(got.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(headerValues(got.rawHeaders, 'forwarded'), []);
  });

  it('curl --http2: a method the rule does not allow is 403 naming the caller, method and path; the service sees nothing', async () => {
    const before = service.seen.length;
    const r = await curl(sets.notification, '/stock/7', ['-X', 'DELETE']);
    assert.equal(r.stdout, `forbidden: no rule allows ${TD}/notification-service to DELETE /stock/7\n\n403 2`);
    assert.equal(service.seen.length, before);
  });

  const badTargets: { name: string; path: string; method?: string; want: RegExp }[] = [
    { name: 'an encoded slash', path: '/stock/%2F..%2Fadmin', want: /encoded "\/" \(%2F\)/ },
    { name: 'a raw backslash', path: '/stock\\..\\admin', want: /"\\" in the path/ },
    { name: 'an asterisk-form target (OPTIONS *)', path: '*', method: 'OPTIONS', want: /not origin form/ },
  ];
  for (const c of badTargets) {
    it(`400 for ${c.name}, on its stream only`, async () => {
      const r = await h2Request(session, { ':method': c.method ?? 'GET', ':path': c.path });
      assert.equal(r.headers[':status'], 400);
      assert.match(r.body.toString(), c.want);
      // The connection carries the next request as usual.
      assert.equal((await h2Request(session, { ':method': 'GET', ':path': '/stock' })).headers[':status'], 200);
    });
  }

  it('a body of unknown length is streamed to the service chunked, request trailers with it', async () => {
    const data = patternBytes(3 * 1024 * 1024 + 17);
    const r = await h2Request(session, { ':method': 'GET', ':path': '/stock/upload' }, { data, trailers: { 'x-digest': 'sha-256' } });
    assert.equal(r.headers[':status'], 200);
    const got = service.seen.at(-1)!;
    assert.equal(got.bodyBytes, data.length);
    assert.equal(got.bodySha256, sha256(data));
    assert.deepEqual(headerValues(got.rawHeaders, 'transfer-encoding'), ['chunked']);
    assert.deepEqual(headerValues(got.rawTrailers, 'x-digest'), ['sha-256']);
  });

  it('1xx (103 Early Hints) and response trailers come back', async () => {
    const hints = await h2Request(session, { ':method': 'GET', ':path': '/stock/hints' });
    assert.deepEqual(
      hints.informational.map((h) => [h[':status'], h.link]),
      [[103, '</style.css>; rel=preload']],
    );
    assert.equal(hints.headers[':status'], 200);
    const t = await h2Request(session, { ':method': 'GET', ':path': '/stock/trailers' });
    assert.equal(t.body.toString(), 'body');
    assert.equal(t.trailers?.['x-checksum'], 'abc123');
  });

  it('CONNECT is refused with 400 (not a forward proxy)', async () => {
    const r = await h2Request(session, { ':method': 'CONNECT', ':authority': 'example.com:443' });
    assert.equal(r.headers[':status'], 400);
    const line = await sidecar.waitForLine((l) => l.reason === 'unsupported-method' && l.protocol === 'h2');
    assert.equal(line.peer, `${TD}/notification-service`);
  });

  it('many requests share one connection', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => h2Request(session, { ':method': 'GET', ':path': `/stock/${i}` })),
    );
    assert.deepEqual(new Set(results.map((r) => r.headers[':status'])), new Set([200]));
  });

  it('HTTP/1.1 callers are still served (ALPN http/1.1)', async () => {
    const r = await runAsync('curl', [
      '-sS',
      '--http1.1',
      '-k',
      '--cert',
      join(sets.order, 'tls.crt'),
      '--key',
      join(sets.order, 'tls.key'),
      '-o',
      '-',
      '-w',
      '\n%{http_version}',
      `https://${sidecar.inbound}/stock`,
    ]);
    assert.equal(r.stdout, 'ok GET /stock\n\n1.1');
  });
});

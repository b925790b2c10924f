/**
 * http mode against request smuggling through the header-count window: Node keeps only
 * the first 1,000 header pairs in `req.headers` but more in `req.rawHeaders`, so a request
 * whose framing header sits past the 1,000th could be judged from one list and forwarded
 * from the other — forwarded with `Content-Length: N` and without its body, and on the
 * pooled keep-alive connection the service would read the next request as that body and
 * run what follows it unjudged. The local service here answers before reading a body, as
 * any handler that ignores bodies does: the shape that turns the mismatch into a smuggle.
 *
 * Also: the sidecar's XFCC always reaches the service; pipelined requests are answered in
 * order even when a later one cannot be parsed, and an unparseable request gets one 400.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import { expectedXfcc, headerValues, httpSidecarYaml, RawHttpConnection, STOCK_POLICY } from './sidecar-http-harness.js';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
}

/** A service that answers at once and never reads a body (Node then skips it itself). */
async function startEagerService(): Promise<{ server: Server; address: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders });
    const delay = req.url!.includes('slow') ? 300 : 0;
    setTimeout(() => res.end(`ran ${req.method} ${req.url}\n`), delay);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    address: `127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const filler = (n: number): string[] => Array.from({ length: n }, (_, i) => `h${i}: 1`);

describe('sidecar http mode: request smuggling and header limits', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let service: Awaited<ReturnType<typeof startEagerService>>;
  let notification: string;
  let inventory: string;

  before(async () => {
    ca = makeCa();
    notification = ca.issue('notification-service'); // may only GET /stock and /stock/*
    inventory = ca.issue('inventory-service');
    const policy = writePolicy(ca.root, STOCK_POLICY);
    service = await startEagerService();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy, forward: service.address, crl: join(ca.dir, 'crl.pem') }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await service?.close();
    ca?.cleanup();
  });

  function unjudged(): Seen[] {
    return service.seen.filter((s) => !/^\/stock(\/|$)/.test(s.url) || s.method !== 'GET' || s.url.includes('admin'));
  }

  /**
   * The reproduction: Content-Length as header pair 1,001, then a second request whose
   * header value, once read as the first one's body leftovers, starts `GET /admin`.
   */
  for (const framing of ['Content-Length: 27', 'Transfer-Encoding: chunked'] as const) {
    it(`a framing header past the 1,000th (${framing.split(':')[0]}) gets 431 and the connection closed; the service never sees an unjudged request`, async () => {
      const before = service.seen.length;
      const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
      try {
        const body = framing.startsWith('Content') ? 'x'.repeat(27) : '1b\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\n\r\n';
        const first = ['GET /stock/a HTTP/1.1', 'Host: a', ...filler(999), framing, '', body].join('\r\n');
        const second = ['GET /stock/b HTTP/1.1', 'X: GET /admin HTTP/1.1', 'Host: a', '', ''].join('\r\n');
        c.write(first + second);
        const r = await c.readResponse();
        assert.equal(r.status, 431, r.body.toString());
        assert.match(r.body.toString(), /limit is 100 \(inbound\.maxRequestHeaders\)/);
        await c.waitClosed();
      } finally {
        c.close();
      }
      // Give a smuggled request time to arrive, were there one.
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(service.seen.slice(before), [], 'the service saw a request from a connection refused with 431');
      assert.deepEqual(unjudged(), []);
      const line = await sidecar.waitForLine((l) => l.reason === 'too-many-headers');
      assert.equal(line.peer, 'spiffe://example.org/notification-service');
      assert.equal(line.status, 431);
    });
  }

  it('a body announced under the header limit is always sent: the next request on the pooled connection reaches the service as judged', async () => {
    const before = service.seen.length;
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      for (let i = 0; i < 3; i++) {
        // Content-Length as the 95th header: within the limit, far from the first.
        const req = ['GET /stock/body HTTP/1.1', 'Host: a', ...filler(93), 'Content-Length: 27', '', 'x'.repeat(27)].join('\r\n');
        const r = await c.send(req);
        assert.equal(r.status, 200);
        const next = await c.send(['GET /stock/b HTTP/1.1', 'X: GET /admin HTTP/1.1', 'Host: a', '', ''].join('\r\n'));
        assert.equal(next.status, 200);
        assert.equal(next.body.toString(), 'ran GET /stock/b\n');
      }
    } finally {
      c.close();
    }
    assert.deepEqual(
      service.seen.slice(before).map((s) => s.url),
      ['/stock/body', '/stock/b', '/stock/body', '/stock/b', '/stock/body', '/stock/b'],
    );
    assert.deepEqual(unjudged(), []);
  });

  it('the sidecar XFCC always reaches the service, even with a request at the header limit carrying forged ones', async () => {
    const before = service.seen.length;
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      const forged = 'x-forwarded-client-cert: By=spiffe://example.org/inventory-service;URI=spiffe://example.org/order-service';
      const r = await c.send(['GET /stock/xfcc HTTP/1.1', 'Host: a', forged, ...filler(96), forged, '', ''].join('\r\n'));
      assert.equal(r.status, 200, r.body.toString());
    } finally {
      c.close();
    }
    const got = service.seen.slice(before);
    assert.equal(got.length, 1);
    assert.deepEqual(headerValues(got[0]!.rawHeaders, 'x-forwarded-client-cert'), [
      expectedXfcc('spiffe://example.org/inventory-service', notification, 'spiffe://example.org/notification-service'),
    ]);
  });

  it('pipelined: a slow allowed request is answered before the 400 for a malformed one behind it, and the 400 comes once', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      const slow = ['GET /stock/slow HTTP/1.1', 'Host: a', '', ''].join('\r\n');
      const bad = ['POST /stock/x HTTP/1.1', 'Host: a', 'Transfer-Encoding: xchunked', '', 'garbage that is not a chunk\r\n\r\n'].join(
        '\r\n',
      );
      c.write(slow + bad);
      const first = await c.readResponse();
      assert.equal(first.status, 200, first.body.toString());
      assert.equal(first.body.toString(), 'ran GET /stock/slow\n');
      const second = await c.readResponse();
      assert.equal(second.status, 400, second.body.toString());
      await c.waitClosed();
      assert.equal(c.buffered.toString('latin1'), '', 'more followed the 400');
    } finally {
      c.close();
    }
  });

  it('pipelined: a slow allowed request is answered before the 400 for an unparseable head behind it', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      c.write(
        ['GET /stock/slow-2 HTTP/1.1', 'Host: a', '', ''].join('\r\n') +
          ['GET /stock/y HTTP/1.1', 'Host: a', 'A header line without a colon', '', ''].join('\r\n'),
      );
      const first = await c.readResponse();
      assert.equal(first.status, 200, first.body.toString());
      assert.equal(first.body.toString(), 'ran GET /stock/slow-2\n');
      const second = await c.readResponse();
      assert.equal(second.status, 400, second.body.toString());
      assert.match(second.body.toString(), /HPE_INVALID_HEADER_TOKEN/);
      await c.waitClosed();
      assert.equal(c.buffered.toString('latin1'), '', 'more followed the 400');
    } finally {
      c.close();
    }
  });

  it('pipelined: an xchunked request alone gets exactly one 400', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      c.write(['POST /stock/x HTTP/1.1', 'Host: a', 'Transfer-Encoding: xchunked', '', 'zz\r\nabc\r\n0\r\n\r\n'].join('\r\n'));
      const r = await c.readResponse();
      assert.equal(r.status, 400);
      await c.waitClosed();
      assert.equal(c.buffered.toString('latin1'), '', 'a second response followed the 400');
    } finally {
      c.close();
    }
  });
});

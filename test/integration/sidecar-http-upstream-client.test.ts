/**
 * http mode's own HTTP/1.1 client to the local service (sidecar/proxy/http1-upstream.ts),
 * against a scripted raw TCP service that answers exactly the bytes each test chooses:
 *
 * - body bytes read into the shared buffer reach a slow caller intact, with Content-Length
 *   and chunked, when the service writes in small pieces (the case where a slice handed on
 *   by reference would be overwritten by the next read);
 * - responses whose framing could be read two ways get a 502 naming why, and the caller's
 *   connection goes on;
 * - interim 1xx heads, a head split into single bytes, a body read to the end of the
 *   connection, bytes after a body, and a service that closes a kept connection.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import { getRequest, httpSidecarYaml, RawHttpConnection, STOCK_POLICY } from './sidecar-http-harness.js';

/** One answer of the scripted service: the bytes, written in pieces of at most `piece`, one per turn. */
type Script = (socket: Socket) => void;

/** Larger than the loopback socket buffers on both sides can hold, so a stopped caller
 *  makes the sidecar queue writes while the service still sends. */
const BODY = randomBytes(24 * 1024 * 1024);

function writeInPieces(socket: Socket, data: Buffer, piece: number, done?: () => void): void {
  let at = 0;
  const next = () => {
    if (socket.destroyed) return;
    if (at >= data.length) return void done?.();
    // Sizes vary so the reads on the sidecar's side do not line up with anything.
    const n = Math.min(data.length - at, 1 + ((at * 7919) % piece));
    const ok = socket.write(data.subarray(at, at + n));
    at += n;
    if (ok) setImmediate(next);
    else socket.once('drain', next);
  };
  next();
}

function chunked(data: Buffer, size: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) {
    const c = data.subarray(at, at + size);
    parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\nX-Trailer: t\r\n\r\n'));
  return Buffer.concat(parts);
}

const SCRIPTS: Record<string, Script> = {
  '/length': (s) => writeInPieces(s, Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n`), BODY]), 3000),
  '/chunked': (s) =>
    writeInPieces(s, Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), chunked(BODY, 5000)]), 3000),
  '/two-lengths': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok'),
  '/length-and-chunked': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'),
  '/bare-lf': (s) => s.write('HTTP/1.1 200 OK\nContent-Length: 2\n\nok'),
  '/huge-head': (s) => s.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(20_000)}\r\nContent-Length: 2\r\n\r\nok`),
  '/interim': (s) =>
    writeInPieces(
      s,
      Buffer.from(
        'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal',
      ),
      1,
    ),
  '/until-close': (s) => s.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nread to the end'),
  '/trailing-bytes': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA'),
  '/then-close': (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
  '/short-keepalive': (s) => {
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=1\r\n\r\nok');
    // The service closes it exactly when it said it would: the sidecar must not reuse it.
    setTimeout(() => s.destroy(), 1000);
  },
};

interface ScriptedService {
  readonly server: Server;
  readonly address: string;
  /** Paths asked for, in order, each with the number of the connection it came on. */
  readonly asked: { path: string; connection: number }[];
}

async function startScriptedService(): Promise<ScriptedService> {
  const asked: { path: string; connection: number }[] = [];
  let connections = 0;
  const server = createServer((socket) => {
    const connection = ++connections;
    let buf = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const path = buf.subarray(0, end).toString('latin1').split(' ')[1] ?? '';
        buf = buf.subarray(end + 4);
        asked.push({ path, connection });
        const script = SCRIPTS[path];
        if (script) script(socket);
        else socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${path.length}\r\n\r\n${path}`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, address: `127.0.0.1:${(server.address() as { port: number }).port}`, asked };
}

/** GET over a fresh mTLS connection, read slowly: the body's sha256 and length. */
function slowDownload(
  address: string,
  creds: ReturnType<typeof credsFromDir>,
  path: string,
): Promise<{ head: string; sha: string; bytes: number }> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host, port: Number(port), ...creds, checkServerIdentity: () => undefined });
    let head: string | undefined;
    let pending = Buffer.alloc(0);
    const hash = createHash('sha256');
    let bytes = 0;
    let sincePause = 0;
    s.once('secureConnect', () => s.write(getRequest(path, ['Connection: close'])));
    s.on('data', (d: Buffer) => {
      if (head === undefined) {
        pending = Buffer.concat([pending, d]);
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = pending.subarray(0, end).toString('latin1');
        d = pending.subarray(end + 4);
      }
      hash.update(d);
      bytes += d.length;
      sincePause += d.length;
      // A caller that keeps stopping long enough for the kernel's buffers to fill: the
      // sidecar's writes to it then queue while the service keeps sending small pieces.
      if (sincePause > 4 * 1024 * 1024) {
        sincePause = 0;
        s.pause();
        setTimeout(() => s.resume(), 400);
      }
    });
    s.on('error', reject);
    s.on('close', () => (head === undefined ? reject(new Error('no response')) : resolve({ head, sha: hash.digest('hex'), bytes })));
  });
}

describe('sidecar http mode: its HTTP/1.1 client to the local service', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let service: ScriptedService;
  let creds: ReturnType<typeof credsFromDir>;

  before(async () => {
    ca = makeCa();
    creds = credsFromDir(ca.issue('order-service'));
    const inventory = ca.issue('inventory-service');
    service = await startScriptedService();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy: writePolicy(ca.root, STOCK_POLICY), forward: service.address }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    service?.server.close();
    ca?.cleanup();
  });

  const want = createHash('sha256').update(BODY).digest('hex');

  /** Runs `body` on a new caller connection, closed afterwards. */
  async function onConnection(body: (c: RawHttpConnection) => Promise<void>): Promise<void> {
    const c = await RawHttpConnection.open(sidecar.inbound!, creds);
    try {
      await body(c);
    } finally {
      c.close();
    }
  }

  it('delivers a Content-Length body written in small pieces intact to a caller that keeps stopping', async () => {
    const r = await slowDownload(sidecar.inbound!, creds, '/length');
    assert.match(r.head, /^HTTP\/1\.1 200 /);
    assert.match(r.head, new RegExp(`content-length: ${BODY.length}`, 'i'));
    assert.equal(r.bytes, BODY.length);
    assert.equal(r.sha, want, 'the body changed on the way: a slice of the shared read buffer was overwritten');
  });

  it('delivers a chunked body written in small pieces intact to a caller that keeps stopping', async () => {
    await onConnection(async (c) => {
      c.write(getRequest('/chunked'));
      // Read while stopping now and then, through the connection's own reader.
      const timer = setInterval(() => {
        c.socket.pause();
        setTimeout(() => c.socket.resume(), 10);
      }, 30);
      const r = await c.readResponse(60_000);
      clearInterval(timer);
      assert.equal(r.status, 200);
      assert.equal(r.body.length, BODY.length);
      assert.equal(createHash('sha256').update(r.body).digest('hex'), want);
    });
  });

  for (const [path, why] of [
    ['/two-lengths', /more than one Content-Length/],
    ['/length-and-chunked', /both Content-Length and Transfer-Encoding/],
    ['/bare-lf', /bare LF in the response head/],
    ['/huge-head', /response head larger than 16384 bytes/],
  ] as const) {
    it(`answers 502 to a response with ${path.slice(1)}, logs why, and the caller's connection goes on`, async () => {
      await onConnection(async (c) => {
        const r = await c.send(getRequest(path));
        assert.equal(r.status, 502);
        const line = await sidecar.waitForLine(
          (l) => l.event === 'upstream-error' && l.path === path && typeof l.address === 'string' && l.address.endsWith(`:${c.localPort}`),
        );
        assert.equal(line.reason, 'upstream-unavailable');
        assert.match(String(line.detail), why);
        const next = await c.send(getRequest('/after'));
        assert.equal(next.status, 200);
        assert.equal(next.body.toString(), '/after');
      });
    });
  }

  it('reads past 100 and 103 heads, even one byte at a time, to the final response', async () => {
    await onConnection(async (c) => {
      const r = await c.send(getRequest('/interim'));
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'final');
    });
  });

  it('passes on a body read to the end of the connection, then uses a new connection', async () => {
    await onConnection(async (c) => {
      const r = await c.send(getRequest('/until-close'));
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'read to the end');
      const before = service.asked.length;
      const next = await c.send(getRequest('/after-close'));
      assert.equal(next.status, 200);
      const asked = service.asked.slice(before);
      const closed = service.asked.find((a) => a.path === '/until-close')!;
      assert.notEqual(asked[0]!.connection, closed.connection, 'a connection read to its end was reused');
    });
  });

  it('does not reuse a connection that sent bytes after a response', async () => {
    await onConnection(async (c) => {
      const r = await c.send(getRequest('/trailing-bytes'));
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'ok');
      const next = await c.send(getRequest('/after-trailing'));
      assert.equal(next.status, 200);
      assert.equal(next.body.toString(), '/after-trailing');
      const bad = service.asked.find((a) => a.path === '/trailing-bytes')!;
      const after = service.asked.find((a) => a.path === '/after-trailing')!;
      assert.notEqual(after.connection, bad.connection);
    });
  });

  it('reuses a kept connection, and goes on when the service closed it or its Keep-Alive timeout passed', async () => {
    await onConnection(async (c) => {
      assert.equal((await c.send(getRequest('/keep-1'))).status, 200);
      assert.equal((await c.send(getRequest('/keep-2'))).status, 200);
      const k1 = service.asked.find((a) => a.path === '/keep-1')!;
      const k2 = service.asked.find((a) => a.path === '/keep-2')!;
      assert.equal(k2.connection, k1.connection, 'a kept connection was not reused');

      assert.equal((await c.send(getRequest('/then-close'))).status, 200);
      await new Promise((r) => setTimeout(r, 200));
      const afterClose = await c.send(getRequest('/after-then-close'));
      assert.equal(afterClose.status, 200);
      assert.equal(afterClose.body.toString(), '/after-then-close');

      assert.equal((await c.send(getRequest('/short-keepalive'))).status, 200);
      await new Promise((r) => setTimeout(r, 1100));
      const late = await c.send(getRequest('/after-keepalive'));
      assert.equal(late.status, 200);
      assert.equal(late.body.toString(), '/after-keepalive');
      const short = service.asked.find((a) => a.path === '/short-keepalive')!;
      const next = service.asked.find((a) => a.path === '/after-keepalive')!;
      assert.notEqual(next.connection, short.connection, 'a connection past its Keep-Alive timeout was reused');
    });
  });
});

/**
 * SIGTERM in http mode: a request in flight finishes (200, `Connection: close`), an idle
 * keep-alive connection is closed at once instead of holding the drain for the whole
 * grace period, new connections are refused, and the process exits 0.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, startSidecarProcess, within, writePolicy } from './sidecar-harness.js';
import { getRequest, httpSidecarYaml, RawHttpConnection, STOCK_POLICY } from './sidecar-http-harness.js';

/**
 * A service that answers `/slow` once the test calls `answerSlow()` (by an event, not a
 * timer: the answer must come after the sidecar began its drain, however slow the
 * machine), anything else at once.
 */
async function startSlowBackend(): Promise<{
  address: string;
  slowArrived: Promise<void>;
  answerSlow: () => void;
  close: () => Promise<void>;
}> {
  let arrived!: () => void;
  const slowArrived = new Promise<void>((r) => (arrived = r));
  let answerSlow!: () => void;
  const slowAnswered = new Promise<void>((r) => (answerSlow = r));
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/stock/slow') {
        arrived();
        void slowAnswered.then(() => res.end('slow answer\n'));
      } else res.end(`ok ${req.url}\n`);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    slowArrived,
    answerSlow,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('sidecar http mode: SIGTERM drain', () => {
  let ca: TestCa;
  let order: string;
  let inventory: string;
  let policy: string;
  const closers: (() => Promise<unknown>)[] = [];

  before(() => {
    ca = makeCa();
    order = ca.issue('order-service');
    inventory = ca.issue('inventory-service');
    policy = writePolicy(ca.root, STOCK_POLICY);
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    ca?.cleanup();
  });

  it('finishes the request in flight with Connection: close, closes the idle connection, refuses new ones, exits 0', {
    timeout: 120_000,
  }, async () => {
    const backend = await startSlowBackend();
    closers.push(() => backend.close());
    // A grace period far longer than every bound below: an idle connection that is not
    // closed by the drain itself would only go at its end, and the test would fail.
    const sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy, forward: backend.address, extra: 'shutdown:\n  grace: 90s' }),
      'http-drain.yaml',
    );
    closers.push(() => sidecar.stop('SIGKILL'));
    // Each step is bounded and named, with the sidecar's last words: a hang says where.
    const lastLines = () => `sidecar said: ${JSON.stringify(sidecar.lines.slice(-6))}`;
    const step = <T>(name: string, ms: number, p: Promise<T>) => within(name, ms, p, lastLines);
    const creds = credsFromDir(order);

    const idle = await step('open the idle connection', 10_000, RawHttpConnection.open(sidecar.inbound!, creds));
    const busy = await step('open the busy connection', 10_000, RawHttpConnection.open(sidecar.inbound!, creds));
    closers.push(async () => {
      idle.close();
      busy.close();
    });
    // The idle one has served a request and stays open (keep-alive).
    const warm = await idle.send(getRequest('/stock/1'));
    assert.equal(warm.status, 200);
    assert.notEqual(warm.headers.connection, 'close');

    busy.write(getRequest('/stock/slow'));
    await step('the slow request reaches the service', 10_000, backend.slowArrived);
    sidecar.proc.kill('SIGTERM');
    await sidecar.waitForLine((l) => l.event === 'shutdown');

    // New connections are no longer served: no TLS session can be opened.
    const fresh = await step(
      'a new connection is refused',
      10_000,
      RawHttpConnection.open(sidecar.inbound!, creds).then(
        (c) => {
          c.close();
          return 'a TLS session was opened';
        },
        (e: NodeJS.ErrnoException) => e.code ?? e.message,
      ),
    );
    assert.ok(['ECONNREFUSED', 'ECONNRESET'].includes(fresh), fresh);

    // The idle keep-alive connection is closed by the drain (bound: a safety net only,
    // far below the grace period).
    await idle.waitClosed(20_000);

    // Only now does the service answer: the request was in flight through all of the above.
    backend.answerSlow();
    // The request in flight completes, and the caller is told not to reuse the connection.
    const answer = await busy.readResponse(20_000);
    assert.equal(answer.status, 200);
    assert.equal(answer.body.toString(), 'slow answer\n');
    assert.equal(answer.headers.connection, 'close');
    await busy.waitClosed(20_000);

    assert.equal(await step('the sidecar exits after the drain', 20_000, sidecar.exited), 0);
    assert.ok(sidecar.lines.some((l) => l.event === 'stopped'));
    assert.ok(!sidecar.lines.some((l) => l.event === 'shutdown' && l.level === 'warn'), 'the grace period ran out');
  });
});

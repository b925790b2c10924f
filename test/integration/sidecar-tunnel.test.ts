/**
 * svcca-tunnel/1 between two real sidecars: app connections carried as HTTP/2 streams on
 * warm mTLS tunnels, judged exactly as direct connections (the caller at the tunnel's
 * handshake; in http mode every request), cut with their tunnel, falling back to a TLS
 * connection per app connection when the server does not speak the tunnel.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2Connect } from 'node:http2';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { spawn, type ChildProcess } from 'node:child_process';
import { makeCa, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import {
  credsFromDir,
  revokeSerials,
  serialOfSet,
  sidecarYaml,
  splitHostPort,
  startSidecarProcess,
  unusedPort,
  within,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';
import { startRecordingBackend, type RecordingBackend } from './sidecar-http-harness.js';
import { rotateNow } from './sidecar-reload-helpers.js';
import { AppConn, metric, startModalService, type ModalService } from './sidecar-tunnel-harness.js';

const TD = 'spiffe://example.org';

/** One echo exchange through `address`: `E`, a line, half-close; the whole reply. */
async function echoOnce(address: string, line: string): Promise<string> {
  const c = new AppConn(address);
  c.socket.end(`E${line}`);
  await c.closed;
  return c.text();
}

describe('sidecar tunnels (svcca-tunnel/1)', () => {
  let ca: TestCa;
  let service: ModalService;
  let decoy: ModalService;
  let backend: RecordingBackend;
  let payment: RunningSidecar;
  let inventory: RunningSidecar;
  let order: RunningSidecar;
  let billing: RunningSidecar;
  let audit: RunningSidecar;
  let sServer: ChildProcess | undefined;
  let sServerAddress = '';
  let orderSet = '';
  let auditSet = '';

  before(async () => {
    ca = makeCa();
    orderSet = ca.issue('order-service');
    const billingSet = ca.issue('billing-service');
    auditSet = ca.issue('audit-service');
    const paymentSet = ca.issue('payment-service');
    const inventorySet = ca.issue('inventory-service');
    const crl = join(ca.dir, 'crl.pem');
    const policy = writePolicy(
      ca.root,
      `services:
  payment-service:
    allow: [order-service, billing-service, audit-service]
  inventory-service:
    allow:
      - from: order-service
        methods: [GET]
        paths: [/stock, /stock/*]
`,
    );
    service = await startModalService('payment');
    decoy = await startModalService('decoy');
    backend = await startRecordingBackend();
    const admin = 'admin:\n  listen: 127.0.0.1:0\nlog:\n  level: debug';
    payment = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: paymentSet, crl, policy, forward: service.address, extra: `${admin}\nreload:\n  interval: 200ms` }),
      'payment.yaml',
    );
    inventory = await startSidecarProcess(
      ca.root,
      `identity:\n  dir: ${inventorySet}\n  crl: ${crl}\npolicy: ${policy}\ninbound:\n  listen: 127.0.0.1:0\n  forward: ${backend.address}\n  mode: http\n${admin}\n`,
      'inventory.yaml',
    );
    // A plain TLS server that knows nothing of tunnels, with payment's certificate.
    const port = await unusedPort();
    sServerAddress = `127.0.0.1:${port}`;
    sServer = spawn(
      'openssl',
      [
        's_server',
        '-accept',
        String(port),
        '-cert',
        join(paymentSet, 'tls.crt'),
        '-cert_chain',
        join(paymentSet, 'tls.crt'),
        '-key',
        join(paymentSet, 'tls.key'),
        '-CAfile',
        join(paymentSet, 'ca.crt'),
        '-Verify',
        '1',
        '-rev',
        '-quiet',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    sServer.stdout!.resume();
    sServer.stderr!.resume();
    await within(
      'openssl s_server listening',
      10_000,
      (async () => {
        for (;;) {
          const ok = await new Promise<boolean>((r) => {
            const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
              s.destroy();
              r(true);
            });
            s.on('error', () => r(false));
          });
          if (ok) return;
          await new Promise((r) => setTimeout(r, 50));
        }
      })(),
    );
    const out = (connect: string, serverId: string, extra = '') =>
      `  - listen: 127.0.0.1:0\n    connect: ${connect}\n    serverId: ${TD}/${serverId}${extra}`;
    const outbound = [
      out(payment.inbound!, 'payment-service'),
      out(inventory.inbound!, 'inventory-service'),
      out(sServerAddress, 'payment-service'),
      out(payment.inbound!, 'payment-service', '\n    tunnel: off'),
      out(payment.inbound!, 'inventory-service'),
      // One tunnel at most: no second one opened lazily while a test counts new tunnels.
      out(payment.inbound!, 'payment-service', '\n    tunnelConnections: 1'),
    ];
    order = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: orderSet, crl, inbound: false, extra: `outbound:\n${outbound.join('\n')}\nlog:\n  level: debug` }),
      'order.yaml',
    );
    billing = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: billingSet, crl, inbound: false, extra: `outbound:\n${out(payment.inbound!, 'payment-service')}` }),
      'billing.yaml',
    );
    audit = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: auditSet,
        crl,
        inbound: false,
        extra: `outbound:\n${out(payment.inbound!, 'payment-service')}\nlog:\n  level: debug`,
      }),
      'audit.yaml',
    );
  });

  after(async () => {
    for (const s of [order, billing, audit, payment, inventory]) await s?.stop();
    sServer?.kill();
    await service?.close();
    await decoy?.close();
    await backend?.close();
    ca?.cleanup();
  });

  it('carries app connections as streams on one tunnel per caller, never shared between callers', async () => {
    assert.equal(await echoOnce(order.outbound[0]!, 'one\n'), 'hello payment\none\n');
    assert.equal(await echoOnce(order.outbound[0]!, 'two\n'), 'hello payment\ntwo\n');
    assert.equal(await echoOnce(billing.outbound[0]!, 'three\n'), 'hello payment\nthree\n');
    const opened = payment.lines.filter((l) => l.event === 'tunnel-open');
    assert.deepEqual(
      opened.map((l) => l.peer).sort(),
      [`${TD}/billing-service`, `${TD}/order-service`],
      'one tunnel each: the second order connection reused the first tunnel',
    );
    // Each stream is served as a connection from its tunnel's caller, and no other.
    const allowed = payment.lines.filter((l) => l.event === 'allowed' && l.tunnel === true).map((l) => l.peer);
    assert.deepEqual(allowed.sort(), [`${TD}/billing-service`, `${TD}/order-service`, `${TD}/order-service`]);
    assert.equal(await metric(payment.admin!, 'svcca_sidecar_tunnels_open', { direction: 'inbound' }), 2);
    assert.equal(await metric(payment.admin!, 'svcca_sidecar_tunnel_streams_total', { direction: 'inbound', result: 'done' }), 3);
  });

  it('sends a stream only to forward, whatever its CONNECT authority names (and logs the authority)', async () => {
    const creds = credsFromDir(orderSet);
    const [host, port] = splitHostPort(payment.inbound!);
    const session = h2Connect(`https://${payment.inbound}`, {
      createConnection: () =>
        tlsConnect({
          host,
          port,
          cert: creds.cert,
          key: creds.key,
          ca: creds.ca,
          ALPNProtocols: ['svcca-tunnel/1'],
          checkServerIdentity: () => undefined,
        }),
    });
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'CONNECT', ':authority': decoy.address });
    let data = '';
    stream.setEncoding('latin1');
    stream.on('data', (d: string) => (data += d));
    stream.end('Eping\n');
    await new Promise<void>((r) => stream.once('close', () => r()));
    session.close();
    assert.equal(data, 'hello payment\nping\n');
    assert.equal(decoy.connections(), 0, 'the authority chose nothing');
    const line = await payment.waitForLine((l) => l.event === 'tunnel-stream' && l.authority === decoy.address);
    assert.equal(line.peer, `${TD}/order-service`);
  });

  it('passes half-close through a stream: 10 MB each way while the other way keeps flowing', async () => {
    const tenMb = 10 * 1024 * 1024;
    // Caller → service, then the caller half-closes; the service's echo keeps coming.
    const up = new AppConn(order.outbound[0]!);
    up.socket.write('E');
    up.socket.end(Buffer.alloc(tenMb, 0x62));
    await up.closed;
    assert.equal(up.received.length, 'hello payment\n'.length + tenMb);
    assert.equal(up.ended, true);
    // Service → caller, then the service half-closes; the caller still sends, and it arrives.
    const down = new AppConn(order.outbound[0]!);
    const before = service.afterEnd.length;
    down.socket.write(`S${tenMb}\n`);
    await down.until(() => down.ended);
    assert.equal(down.received.length, tenMb);
    down.socket.end(Buffer.alloc(tenMb, 0x63));
    await down.closed;
    await within(
      'the service saw the caller end',
      10_000,
      (async () => {
        while (service.afterEnd.length === before) await new Promise((r) => setTimeout(r, 20));
      })(),
    );
    assert.equal(service.afterEnd.at(-1), tenMb);
  });

  it('judges every request of an http-mode stream and sets XFCC', async () => {
    const call = async (request: string) => {
      const c = new AppConn(order.outbound[1]!);
      c.socket.write(request);
      const text = await c.until((t) => /\r\n\r\n/.test(t) && (/content-length: 0\r\n/i.test(t) || t.endsWith('\n')));
      c.socket.destroy();
      return text;
    };
    const ok = await call('GET /stock/42 HTTP/1.1\r\nHost: inventory\r\n\r\n');
    assert.match(ok, /^HTTP\/1\.1 200 /);
    const denied = await call('DELETE /stock/42 HTTP/1.1\r\nHost: inventory\r\n\r\n');
    assert.match(denied, /^HTTP\/1\.1 403 /);
    const reached = backend.received.filter((r) => r.url === '/stock/42');
    assert.equal(reached.length, 1, 'the denied request never reached the service');
    const xfcc = reached[0]!.rawHeaders.find((_, i, a) => i % 2 === 1 && a[i - 1]!.toLowerCase() === 'x-forwarded-client-cert');
    assert.match(xfcc ?? '', new RegExp(`URI=${TD}/order-service`));
    const refused = await inventory.waitForLine((l) => l.event === 'refused' && l.mode === 'http' && l.method === 'DELETE');
    assert.equal(refused.peer, `${TD}/order-service`);
    assert.ok(
      inventory.lines.some((l) => l.event === 'tunnel-open' && l.peer === `${TD}/order-service`),
      'the requests came on a tunnel',
    );
  });

  it('falls back to one mTLS connection per app connection with openssl s_server, and with tunnel: off', async () => {
    const c = new AppConn(order.outbound[2]!);
    c.socket.write('olleh\n');
    assert.equal(await c.until((t) => t.includes('\n')), 'hello\n', JSON.stringify(order.lines.slice(-4)));
    c.socket.destroy();
    await order.waitForLine((l) => l.event === 'tunnel-unsupported' && l.address === sServerAddress);
    // The second one goes direct without asking again.
    const d = new AppConn(order.outbound[2]!);
    d.socket.write('dlrow\n');
    assert.equal(await d.until((t) => t.includes('\n')), 'world\n');
    d.socket.destroy();

    const streamsBefore = await metric(payment.admin!, 'svcca_sidecar_tunnel_streams_total', { direction: 'inbound', result: 'done' });
    const tunnelsBefore = payment.lines.filter((l) => l.event === 'tunnel-open').length;
    assert.equal(await echoOnce(order.outbound[3]!, 'direct\n'), 'hello payment\ndirect\n');
    assert.equal(
      await metric(payment.admin!, 'svcca_sidecar_tunnel_streams_total', { direction: 'inbound', result: 'done' }),
      streamsBefore,
    );
    assert.equal(payment.lines.filter((l) => l.event === 'tunnel-open').length, tunnelsBefore);
    assert.ok(
      payment.lines.some((l) => l.event === 'allowed' && l.peer === `${TD}/order-service` && l.tunnel === undefined),
      'a direct connection',
    );
  });

  it('refuses a tunnel to the wrong serverId before any app byte leaves', async () => {
    const before = service.connections();
    const c = new AppConn(order.outbound[4]!);
    c.socket.write('Esecret\n');
    // The outbound ends the app's connection: a FIN when our bytes had not reached it yet
    // (this socket, half-open, then stays open until we end it too), else a reset.
    await within(
      'the app connection ended by the refusing outbound',
      20_000,
      c.until(() => c.ended),
      () => JSON.stringify(order.lines.slice(-8)),
    );
    c.socket.destroy();
    assert.equal(c.text(), '', 'nothing came back');
    const line = await within(
      'the refusal logged',
      10_000,
      order.waitForLine((l) => l.event === 'refused' && l.reason === 'wrong-server-id'),
      () => order.stderr(),
    );
    assert.equal(line.peer, `${TD}/payment-service`);
    assert.equal(service.connections(), before, 'no stream reached the service');
  });

  it('keeps 20 open streams flowing across a certificate reload; new streams get a new tunnel', async () => {
    const conns = Array.from({ length: 20 }, () => new AppConn(order.outbound[0]!));
    try {
      for (const c of conns) c.socket.write('E');
      await Promise.all(conns.map((c) => c.until((t) => t.startsWith('hello payment\n'))));
      await rotateNow(ca.dir, 'payment-service');
      const rotated = serialOfSet(join(ca.root, 'sets', 'payment-service'));
      await payment.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === rotated);
      const reloadAt = payment.lines.findIndex((l) => l.event === 'reload' && l.result === 'success' && l.serial === rotated);
      // New app connections are carried on a new tunnel, made with the new certificate: the
      // new stream's line names a tunnel that payment opened after its reload. (Its log
      // travels on another pipe than the reply: wait for it. The old tunnels' opening lines
      // may still arrive too, which is why tunnels are told apart by address, not counted.)
      assert.equal(await echoOnce(order.outbound[0]!, 'after\n'), 'hello payment\nafter\n');
      const fromOrder = (l: (typeof payment.lines)[number]) => l.peer === `${TD}/order-service`;
      const stream = await within(
        "the new stream in payment's log",
        10_000,
        (async () => {
          for (;;) {
            const found = payment.lines.slice(reloadAt + 1).find((l) => l.event === 'allowed' && l.tunnel === true && fromOrder(l));
            if (found) return found;
            await new Promise((r) => setTimeout(r, 20));
          }
        })(),
      );
      const openedAfter = payment.lines.slice(reloadAt + 1).filter((l) => l.event === 'tunnel-open' && fromOrder(l));
      assert.ok(
        openedAfter.some((l) => l.address === stream.address),
        `the new stream went out on ${stream.address}, not on a tunnel opened after the reload (${openedAfter.map((l) => l.address).join(', ')})`,
      );
      // The 20 old ones finish on the old tunnel, every byte there.
      for (const [i, c] of conns.entries()) c.socket.end(`stream ${i}\n`);
      const results = await Promise.all(conns.map((c) => c.closed));
      for (const [i, c] of conns.entries())
        assert.equal(c.text(), `hello payment\nstream ${i}\n`, `stream ${i}: ${results[i]!.error ?? ''}`);
    } finally {
      // A failure here must not leave streams open for the drain test below.
      for (const c of conns) c.socket.destroy();
    }
  });

  it("a reload of the caller's own certificate makes a new tunnel; streams on the old one finish", async () => {
    const conns = Array.from({ length: 5 }, () => new AppConn(order.outbound[5]!));
    try {
      for (const c of conns) c.socket.write('E');
      await Promise.all(conns.map((c) => c.until((t) => t.startsWith('hello payment\n'))));
      const opened = () => payment.lines.filter((l) => l.event === 'tunnel-open' && l.peer === `${TD}/order-service`).length;
      const before = opened();
      await rotateNow(ca.dir, 'order-service');
      const rotated = serialOfSet(orderSet);
      await order.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === rotated);
      assert.equal(await echoOnce(order.outbound[5]!, 'fresh\n'), 'hello payment\nfresh\n');
      // Its log line travels on another pipe than the reply: wait for it, then count.
      await within(
        "the new tunnel in payment's log",
        10_000,
        (async () => {
          while (opened() < before + 1) await new Promise((r) => setTimeout(r, 20));
        })(),
      );
      assert.equal(opened(), before + 1, 'a new tunnel, made with the new certificate');
      for (const [i, c] of conns.entries()) c.socket.end(`old ${i}\n`);
      await Promise.all(conns.map((c) => c.closed));
      for (const [i, c] of conns.entries()) assert.equal(c.text(), `hello payment\nold ${i}\n`);
    } finally {
      // A failure here must not leave streams open for the drain test below.
      for (const c of conns) c.socket.destroy();
    }
  });

  it("cuts a revoked caller's tunnel and all its streams, logged with their number, while another caller's keep flowing", async () => {
    const victims = Array.from({ length: 3 }, () => new AppConn(audit.outbound[0]!));
    for (const c of victims) c.socket.write('E');
    await Promise.all(victims.map((c) => c.until((t) => t.startsWith('hello payment\n'))));
    const other = new AppConn(billing.outbound[0]!);
    other.socket.write('E');
    await other.until((t) => t.startsWith('hello payment\n'));

    await revokeSerials(ca, [serialOfSet(auditSet)], TEST_PASSPHRASE);
    const cut = await payment.waitForLine((l) => l.event === 'refused' && l.peer === `${TD}/audit-service` && l.reason === 'revoked');
    assert.equal(cut.tunnel, true);
    assert.equal(cut.streams, 3);
    // The app's connection is closed under it (the outbound ends it when its stream is reset).
    for (const c of victims)
      await within(
        'a revoked stream cut',
        10_000,
        c.until(() => c.ended),
      );
    // The other caller's stream is untouched.
    other.socket.write('still here\n');
    assert.equal(await other.until((t) => t.includes('still here\n')), 'hello payment\nstill here\n');
    other.socket.destroy();
    // And the revoked caller gets no new tunnel.
    const again = new AppConn(audit.outbound[0]!);
    again.socket.write('Eagain\n');
    await within(
      'the refused app connection ended',
      20_000,
      again.until(() => again.ended),
    );
    again.socket.destroy();
    assert.equal(again.text(), '');
  });

  it('SIGTERM drains tunnels: an open stream finishes, then the sidecar exits 0', async () => {
    const open = new AppConn(billing.outbound[0]!);
    open.socket.write('E');
    await open.until((t) => t.startsWith('hello payment\n'));
    payment.proc.kill('SIGTERM');
    await payment.waitForLine((l) => l.event === 'shutdown');
    // GOAWAY: the open stream goes on; the tunnel closes when it is done.
    open.socket.write('during\n');
    assert.equal(await open.until((t) => t.includes('during\n')), 'hello payment\nduring\n');
    assert.equal(payment.proc.exitCode, null, 'still draining while a stream is open');
    open.socket.end();
    await open.closed;
    assert.equal(await within('payment exits after the drain', 15_000, payment.exited), 0);
  });
});

/**
 * A Kubernetes-style `..data` swap (what `svcca rotate` writes, and what a Secret volume
 * does) is picked up by the file watcher alone — no event ever names tls.crt — for new
 * handshakes both ways: new inbound clients are shown the new serial, the next outbound
 * connection presents the new client certificate in a full handshake (the old TLS session
 * is dropped), an open connection goes on, and the expiry gauge follows.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { parseCertificate } from '../../common/x509.js';
import { decodeCertificates } from '../../common/pem.js';
import { readFileSync } from 'node:fs';
import {
  credsFromDir,
  serialOfSet,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';
import { eventually, gauge, reloadCount, rotateNow, servedSerial, WATCH_ONLY } from './sidecar-reload-helpers.js';

/** A TLS server standing in for the other service's sidecar: records each client's serial. */
async function recordingServer(creds: {
  cert: string;
  key: string;
  ca: string;
}): Promise<{ server: TlsServer; address: string; seen: { serial: string; reused: boolean }[]; close: () => Promise<void> }> {
  const seen: { serial: string; reused: boolean }[] = [];
  const sockets = new Set<TLSSocket>();
  const server = createTlsServer({ ...creds, requestCert: true, rejectUnauthorized: true }, (s: TLSSocket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    const cert = s.getPeerX509Certificate();
    seen.push({ serial: cert ? BigInt(`0x${cert.serialNumber}`).toString(16) : 'none', reused: s.isSessionReused() });
    s.on('error', () => undefined);
    s.end('ok\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    seen,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
        // Node's TLS server may wait on a half-torn connection it no longer tracks.
        setTimeout(r, 1_000);
      }),
  };
}

function plainCall(address: string): Promise<string> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve) => {
    let data = '';
    const s = netConnect({ host, port });
    s.setEncoding('utf8');
    s.on('connect', () => s.end('hi\n'));
    s.on('data', (d: string) => (data += d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(data));
  });
}

describe('sidecar reload: Kubernetes ..data swap', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let target: Awaited<ReturnType<typeof recordingServer>>;
  let payment: string;
  let order: string;

  before(async () => {
    ca = makeCa();
    payment = ca.issue('payment-service');
    order = ca.issue('order-service');
    const inventory = ca.issue('inventory-service');
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    echo = await startEchoService('payment');
    target = await recordingServer(credsFromDir(inventory));
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: payment,
        crl: join(ca.dir, 'crl.pem'),
        policy,
        forward: echo.address,
        extra: `outbound:\n  - listen: 127.0.0.1:0\n    connect: ${target.address}\n    serverId: spiffe://example.org/inventory-service\nadmin:\n  listen: 127.0.0.1:0\n${WATCH_ONLY}`,
      }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    await target?.close();
    ca?.cleanup();
  });

  it('shows new clients the rotated certificate, keeps the open connection, and updates the expiry gauge', async () => {
    const creds = credsFromDir(order);
    const before = serialOfSet(payment);
    assert.equal(await servedSerial(sidecar.inbound!, creds), before);

    // A connection opened before the swap, used again after it.
    const [host, port] = splitHostPort(sidecar.inbound!);
    const open = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
    open.setEncoding('utf8');
    let received = '';
    open.on('data', (d: string) => (received += d));
    await eventually('greeting', () => (received === 'hello payment\n' ? true : undefined));

    await rotateNow(ca.dir, 'payment-service');
    const after = serialOfSet(payment);
    assert.notEqual(after, before, 'svcca rotate wrote a new certificate');
    const line = await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.identityChanged === true);
    assert.equal(line.trigger, 'watch', 'only the watcher can have noticed this soon (stat poll a week, hash check a minute)');
    assert.equal(line.serial, after);
    assert.equal(await servedSerial(sidecar.inbound!, creds), after);

    open.write('still here\n');
    await eventually('echo on the old connection', () => (received === 'hello payment\nstill here\n' ? true : undefined));
    assert.equal(open.destroyed, false);
    open.destroy();

    assert.equal(await reloadCount(sidecar.admin!, 'identity', 'applied'), 1);
    const notAfter = parseCertificate(decodeCertificates(readFileSync(join(payment, 'tls.crt'), 'utf8'), 'tls.crt')[0]!).notAfter;
    assert.equal(await gauge(sidecar.admin!, 'svcca_sidecar_certificate_expiry_timestamp_seconds'), notAfter.getTime() / 1000);
  });

  it('presents the new certificate outbound in a full handshake (the old TLS session is dropped)', async () => {
    const out = sidecar.outbound[0]!;
    assert.equal(await plainCall(out), 'ok\n');
    assert.equal(await plainCall(out), 'ok\n');
    const current = serialOfSet(payment);
    assert.deepEqual(
      target.seen.slice(-2),
      [
        { serial: current, reused: false },
        { serial: current, reused: true },
      ],
      'the second call resumed the cached session',
    );

    await rotateNow(ca.dir, 'payment-service');
    const rotated = serialOfSet(payment);
    await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === rotated);
    assert.equal(await plainCall(out), 'ok\n');
    assert.deepEqual(target.seen.at(-1), { serial: rotated, reused: false });
  });
});

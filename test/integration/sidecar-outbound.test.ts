/**
 * Outbound: plaintext in, mTLS out under the service's identity to another sidecar; the
 * server must present exactly serverId, or the connection is closed before any of the
 * client's bytes leave. Sessions are reused toward the same target.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { createIntermediate, createRootCa, issueSvid } from '../helpers/attacker-ca.js';
import {
  credsFromDir,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';

/** Connects to a plaintext outbound listener, writes `payload`, half-closes, collects the reply. */
function plainExchange(address: string, payload: string): Promise<{ data: string; localPort: number | undefined }> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve) => {
    let data = '';
    const s = address.startsWith('unix:')
      ? netConnect({ path: address.slice(5), allowHalfOpen: true })
      : netConnect({ host, port, allowHalfOpen: true });
    let localPort: number | undefined;
    s.setEncoding('utf8');
    s.on('connect', () => {
      localPort = s.localPort;
      s.end(payload);
    });
    s.on('data', (d: string) => (data += d));
    s.on('error', () => undefined);
    s.on('close', () => resolve({ data, localPort }));
  });
}

/** A TLS server that presents `cert` and counts every byte it receives. */
async function impostor(
  cert: string,
  key: string,
): Promise<{ server: TlsServer; address: string; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const server = createTlsServer({ cert, key, requestCert: true, rejectUnauthorized: false }, (s) => {
    s.on('data', (d: Buffer) => (received += d.length));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address() as { port: number };
  return { server, address: `127.0.0.1:${a.port}`, received: () => received, close: () => new Promise((r) => server.close(() => r())) };
}

describe('sidecar outbound', () => {
  let ca: TestCa;
  let payment: RunningSidecar;
  let order: RunningSidecar;
  let inventory: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  const fakes: Awaited<ReturnType<typeof impostor>>[] = [];

  before(async () => {
    ca = makeCa();
    const orderSet = ca.issue('order-service');
    const paymentSet = ca.issue('payment-service');
    const intruderSet = ca.issue('intruder');
    const inventorySet = ca.issue('inventory-service');
    const policy = writePolicy(
      ca.root,
      'services:\n  payment-service:\n    allow: [order-service]\n  order-service:\n    allow: []\n  inventory-service:\n    allow: []\n',
    );
    echo = await startEchoService('payment');
    payment = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: paymentSet, crl: join(ca.dir, 'crl.pem'), policy, forward: echo.address }),
      'payment.yaml',
    );
    inventory = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: inventorySet, crl: join(ca.dir, 'crl.pem'), policy, forward: echo.address }),
      'inventory.yaml',
    );

    const intruder = credsFromDir(intruderSet);
    fakes.push(await impostor(intruder.cert, intruder.key));
    const otherRoot = await createRootCa('svcca root');
    const otherInter = await createIntermediate(otherRoot, { permittedUriHost: 'example.org' });
    const forged = await issueSvid(otherInter, 'spiffe://example.org/payment-service');
    fakes.push(await impostor(forged.chainPem, forged.keyPem));

    const outbound = [
      `  - listen: 127.0.0.1:0\n    connect: ${payment.inbound}\n    serverId: spiffe://example.org/payment-service`,
      `  - listen: 127.0.0.1:0\n    connect: ${fakes[0]!.address}\n    serverId: spiffe://example.org/payment-service`,
      `  - listen: 127.0.0.1:0\n    connect: ${fakes[1]!.address}\n    serverId: spiffe://example.org/payment-service`,
      `  - listen: 127.0.0.1:0\n    connect: ${payment.inbound}\n    serverId: spiffe://example.org/inventory-service`,
      `  - listen: unix:${join(ca.root, 'order-out.sock')}\n    connect: ${payment.inbound}\n    serverId: spiffe://example.org/payment-service`,
      `  - listen: 127.0.0.1:0\n    connect: ${inventory.inbound}\n    serverId: spiffe://example.org/inventory-service`,
      `  - listen: 127.0.0.1:0\n    connect: ${echo.address}\n    serverId: spiffe://example.org/payment-service`,
      // One TLS connection per app connection (no tunnel): what session reuse is about.
      `  - listen: 127.0.0.1:0\n    connect: ${payment.inbound}\n    serverId: spiffe://example.org/payment-service\n    tunnel: off`,
    ];
    order = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: orderSet,
        crl: join(ca.dir, 'crl.pem'),
        policy,
        inbound: false,
        extra: `outbound:\n${outbound.join('\n')}\nlog:\n  level: debug`,
      }),
      'order.yaml',
    );
    assert.equal(order.outbound.length, 8);
  });
  after(async () => {
    await order?.stop();
    await payment?.stop();
    await inventory?.stop();
    await echo?.close();
    for (const f of fakes) await f.close();
    ca?.cleanup();
  });

  it('order → payment goes through the outbound listener, under order-service’s identity', async () => {
    const r = await plainExchange(order.outbound[0]!, 'ping\n');
    assert.equal(r.data, 'hello payment\nping\n');
    const line = await order.waitForLine((l) => l.event === 'allowed' && l.direction === 'outbound');
    assert.equal(line.peer, 'spiffe://example.org/payment-service');
  });

  it("says so when the server's sidecar refuses this service (the app alone sees only an empty reply)", async () => {
    // An app that sends a request and waits, as HTTP clients do (no half-close).
    const [host, port] = splitHostPort(order.outbound[5]!);
    const app = netConnect({ host, port });
    app.on('error', () => undefined);
    let data = '';
    app.on('data', (d: Buffer) => (data += d.toString()));
    await new Promise<void>((r) => app.once('connect', () => r()));
    const localPort = app.localPort;
    app.write('GET / HTTP/1.1\r\nHost: inventory\r\n\r\n');
    await new Promise<void>((r) => app.once('close', () => r()));
    assert.equal(data, '');
    const there = await inventory.waitForLine((l) => l.event === 'refused' && l.peer === 'spiffe://example.org/order-service');
    assert.equal(there.reason, 'policy-denied');
    const here = await order.waitForLine((l) => l.event === 'refused' && l.client === `127.0.0.1:${localPort}`);
    assert.equal(here.reason, 'closed-by-server');
    assert.equal(here.peer, 'spiffe://example.org/inventory-service');
    assert.match(String(here.detail), /before sending a byte: its sidecar most likely refused this service/);
  });

  it('says a target that answers without TLS is not a sidecar, rather than unreachable', async () => {
    const r = await plainExchange(order.outbound[6]!, 'x\n');
    assert.equal(r.data, '');
    const line = await order.waitForLine((l) => l.event === 'refused' && l.client === `127.0.0.1:${r.localPort}`);
    assert.equal(line.reason, 'connect-failed');
    assert.match(String(line.detail), /answered, but not with TLS .*is connect the service itself rather than its sidecar\?/);
  });

  it('does not call an ordinary exchange a refusal', async () => {
    const r = await plainExchange(order.outbound[0]!, 'ok\n');
    assert.equal(r.data, 'hello payment\nok\n');
    await new Promise((res) => setTimeout(res, 300));
    assert.ok(!order.lines.some((l) => l.reason === 'closed-by-server' && l.client === `127.0.0.1:${r.localPort}`));
  });

  it('listens on a unix socket only its own user may use', async () => {
    const path = join(ca.root, 'order-out.sock');
    assert.equal(order.outbound[4], `unix:${path}`);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const r = await plainExchange(order.outbound[4]!, 'via unix\n');
    assert.equal(r.data, 'hello payment\nvia unix\n');
  });

  it('reuses the TLS session toward the same target and serverId (tunnel: off)', async () => {
    await plainExchange(order.outbound[7]!, 'a\n');
    const r = await plainExchange(order.outbound[7]!, 'b\n');
    assert.equal(r.data, 'hello payment\nb\n');
    await order.waitForLine((l) => l.event === 'allowed' && l.direction === 'outbound' && l.resumed === true);
  });

  it('refuses a server presenting the wrong identity (a real CLI certificate) before any client byte leaves', async () => {
    const r = await plainExchange(order.outbound[1]!, 'secret request\n');
    assert.equal(r.data, '');
    const line = await order.waitForLine((l) => l.event === 'refused' && l.client === `127.0.0.1:${r.localPort}`);
    assert.equal(line.reason, 'wrong-server-id');
    assert.equal(line.peer, 'spiffe://example.org/intruder');
    assert.equal(line.address, fakes[0]!.address);
    assert.equal(fakes[0]!.received(), 0, 'not one byte of the request may reach the wrong server');
  });

  it('refuses a server with the right SPIFFE ID from another CA', async () => {
    const r = await plainExchange(order.outbound[2]!, 'secret request\n');
    assert.equal(r.data, '');
    const line = await order.waitForLine((l) => l.event === 'refused' && l.client === `127.0.0.1:${r.localPort}`);
    assert.equal(line.reason, 'untrusted-chain');
    assert.equal(fakes[1]!.received(), 0);
  });

  it('refuses when the real server is not the serverId this listener expects', async () => {
    const r = await plainExchange(order.outbound[3]!, 'x\n');
    assert.equal(r.data, '');
    const line = await order.waitForLine((l) => l.event === 'refused' && l.client === `127.0.0.1:${r.localPort}`);
    assert.equal(line.reason, 'wrong-server-id');
    assert.equal(line.peer, 'spiffe://example.org/payment-service');
  });
});

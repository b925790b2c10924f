/**
 * Connections that must not linger: a client that connects and sends nothing is dropped
 * at the handshake timeout (Node would keep it forever once a tlsClientError listener
 * exists); an allowed caller whose local service is down is closed and the reason logged;
 * connections beyond maxConnections are refused and logged.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import {
  credsFromDir,
  refusalFrom,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  useOrderPayment,
} from './sidecar-harness.js';

describe('sidecar timeouts and limits', () => {
  const pair = useOrderPayment();

  // The timeout only keeps a regression (the client never dropped) from hanging the suite.
  it('drops a silent client at the handshake timeout', { timeout: 30_000 }, async () => {
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      `${sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: '127.0.0.1:1' }).trimEnd()}\n  handshakeTimeout: 300ms\n`,
      'silent.yaml',
    );
    pair.closers.push(() => sidecar.stop());
    const [host, port] = splitHostPort(sidecar.inbound!);
    const s: Socket = netConnect({ host, port });
    s.on('error', () => undefined);
    let localPort: number | undefined;
    await new Promise<void>((r) =>
      s.once('connect', () => {
        localPort = s.localPort;
        r();
      }),
    );
    // Send nothing; the sidecar must close us. (No timing is asserted, only that it happens.)
    await new Promise<void>((r) => s.once('close', () => r()));
    const line = await sidecar.waitForLine(refusalFrom(localPort));
    assert.equal(line.reason, 'handshake-timeout');
    assert.equal(line.peer, 'no certificate');
  });

  it('closes an allowed caller when the local service is down, and says why', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: `127.0.0.1:${deadPort}` }),
      'down.yaml',
    );
    pair.closers.push(() => sidecar.stop());
    const r = await tlsExchange(sidecar.inbound!, credsFromDir(pair.order), { payload: 'hello?\n' });
    assert.equal(r.data, '');
    const line = await sidecar.waitForLine(refusalFrom(r.localPort));
    assert.equal(line.reason, 'forward-unavailable');
    assert.equal(line.peer, 'spiffe://example.org/order-service');
    assert.match(String(line.detail), /ECONNREFUSED/);
  });

  it('refuses connections beyond maxConnections', async () => {
    const echo = await startEchoService('payment');
    pair.closers.push(() => echo.close());
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      `${sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: echo.address }).trimEnd()}\n  maxConnections: 1\n`,
      'max.yaml',
    );
    pair.closers.push(() => sidecar.stop());
    const [host, port] = splitHostPort(sidecar.inbound!);
    const first: Socket = netConnect({ host, port });
    first.on('error', () => undefined);
    await new Promise<void>((r) => first.once('connect', () => r()));
    const second: Socket = netConnect({ host, port });
    second.on('error', () => undefined);
    await new Promise<void>((r) => second.once('close', () => r()));
    const line = await sidecar.waitForLine((l) => l.event === 'refused' && l.reason === 'too-many-connections');
    assert.equal(line.peer, 'no certificate');
    first.destroy();
  });
});

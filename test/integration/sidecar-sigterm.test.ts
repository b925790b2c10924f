/**
 * SIGTERM: stop accepting, let open connections finish (within the grace period), exit 0.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import {
  credsFromDir,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  useOrderPayment,
  within,
} from './sidecar-harness.js';

function openCaller(address: string, creds: ReturnType<typeof credsFromDir>): Promise<TLSSocket> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
    s.setEncoding('utf8');
    s.once('data', () => resolve(s)); // the service's greeting: the connection is through
    s.once('error', reject);
  });
}

function nextData(s: TLSSocket): Promise<string> {
  return new Promise((resolve) => s.once('data', (d: string) => resolve(d)));
}

describe('sidecar SIGTERM', () => {
  const pair = useOrderPayment();

  it('drains: refuses new connections, lets the open one finish, then exits 0', { timeout: 60_000 }, async () => {
    const echo = await startEchoService('payment');
    pair.closers.push(() => echo.close());
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: echo.address, extra: 'admin:\n  listen: 127.0.0.1:0' }),
      'drain.yaml',
    );
    pair.closers.push(() => sidecar.stop('SIGKILL'));
    const caller = await openCaller(sidecar.inbound!, credsFromDir(pair.order));

    sidecar.proc.kill('SIGTERM');
    await sidecar.waitForLine((l) => l.event === 'shutdown');

    // New connections are no longer served: no TLS session can be opened.
    const fresh = await within(
      'a new connection is refused',
      10_000,
      tlsExchange(sidecar.inbound!, credsFromDir(pair.order), { payload: 'ping' }),
    );
    assert.equal(fresh.handshake, false, 'a TLS session was opened during the drain');
    assert.equal(fresh.data, '');

    // The open connection still carries data both ways.
    const echoed = nextData(caller);
    caller.write('still here\n');
    assert.equal(await echoed, 'still here\n');
    assert.equal(sidecar.proc.exitCode, null, 'the sidecar waits for the open connection');

    caller.end();
    assert.equal(await within('the sidecar exits after the drain', 20_000, sidecar.exited), 0);
    assert.ok(sidecar.lines.some((l) => l.event === 'stopped'));
  });

  it('closes what is still open when the grace period ends, and exits 0', { timeout: 60_000 }, async () => {
    const echo = await startEchoService('payment');
    pair.closers.push(() => echo.close());
    const sidecar = await startSidecarProcess(
      pair.ca.root,
      sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: echo.address, extra: 'shutdown:\n  grace: 300ms' }),
      'grace.yaml',
    );
    pair.closers.push(() => sidecar.stop('SIGKILL'));
    const caller = await openCaller(sidecar.inbound!, credsFromDir(pair.order));
    caller.on('error', () => undefined);
    const closed = new Promise<void>((r) => caller.once('close', () => r()));
    sidecar.proc.kill('SIGTERM');
    await closed;
    assert.equal(await sidecar.exited, 0);
    const line = await sidecar.waitForLine((l) => l.event === 'shutdown' && l.open === 1 && l.level === 'warn');
    assert.match(String(line.msg), /grace period over/);
  });
});

/**
 * inbound.idleTimeout on a tcp-mode connection: one where nothing moves either way is
 * closed (and says so in its log line), one where bytes keep moving is not, whichever way
 * they move. The limits are kept by one sweep for all connections (net/idle-sweep.ts),
 * not by a timer per socket; no timing is asserted beyond "closed" and "still open".
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type TLSSocket } from 'node:tls';
import {
  credsFromDir,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  useOrderPayment,
  type RunningSidecar,
} from './sidecar-harness.js';

const IDLE = '1s';

describe('sidecar idle timeout (tcp mode)', () => {
  const pair = useOrderPayment();
  let sidecar: RunningSidecar;

  async function open(): Promise<TLSSocket> {
    if (!sidecar) {
      const echo = await startEchoService('payment');
      pair.closers.push(() => echo.close());
      sidecar = await startSidecarProcess(
        pair.ca.root,
        `${sidecarYaml({ setDir: pair.payment, policy: pair.policy, forward: echo.address, extra: 'log:\n  level: debug' }).replace('inbound:\n', `inbound:\n  idleTimeout: ${IDLE}\n`)}`,
        'idle.yaml',
      );
      pair.closers.push(() => sidecar.stop());
    }
    const [host, port] = splitHostPort(sidecar.inbound!);
    const s = connect({ host, port, ...credsFromDir(pair.order), checkServerIdentity: () => undefined });
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.once('secureConnect', () => r()));
    // The echo answers once the sidecar has joined the two sides.
    s.write('hello\n');
    await new Promise<void>((r) => s.once('data', () => r()));
    return s;
  }

  it('closes a connection on which nothing moves, and logs why', { timeout: 30_000 }, async () => {
    const s = await open();
    const localPort = s.localPort;
    await new Promise<void>((r) => s.once('close', () => r()));
    const line = await sidecar.waitForLine(
      (l) => l.event === 'closed' && typeof l.address === 'string' && l.address.endsWith(`:${localPort}`),
    );
    assert.equal(line.how, 'idle');
  });

  it('keeps a connection whose bytes keep moving past the limit, and closes it once they stop', { timeout: 30_000 }, async () => {
    const s = await open();
    let closed = false;
    s.once('close', () => (closed = true));
    s.on('data', () => undefined);
    // Three times the limit, a byte every 200 ms: each is echoed back, so both ways move.
    for (let i = 0; i < 15; i++) {
      s.write('.');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(closed, false, 'a connection with traffic was closed as idle');
    await new Promise<void>((r) => (closed ? r() : s.once('close', () => r())));
  });
});

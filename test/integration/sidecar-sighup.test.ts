/**
 * SIGHUP reloads the policy (and CRL and identity) at once; a broken policy is refused
 * and the last good one kept; an open connection no longer allowed is closed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { makeCa, type TestCa } from '../helpers/cli.js';
import {
  credsFromDir,
  refusalFrom,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';

/**
 * Replaces a file the way an operator's tooling does (write beside it, rename over it):
 * written in place, the sidecar's watcher could read it half-written (seen: an empty
 * policy refused before the SIGHUP this test waits for).
 */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.new`, text);
  renameSync(`${path}.new`, path);
}

describe('sidecar SIGHUP', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let policy: string;
  let order: string;
  let intruder: string;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    intruder = ca.issue('intruder');
    const payment = ca.issue('payment-service');
    policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    echo = await startEchoService('payment');
    // A poll interval long enough that the stat poll cannot explain a reload (the watcher
    // may; each assertion below holds whichever of the two applied the change).
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: payment, policy, forward: echo.address, extra: 'reload:\n  interval: 7d' }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  it('applies a new policy on SIGHUP, to new connections and open ones', async () => {
    const before = await tlsExchange(sidecar.inbound!, credsFromDir(intruder), { payload: 'x\n' });
    assert.equal(before.data, '');

    const creds = credsFromDir(order);
    const [host, port] = splitHostPort(sidecar.inbound!);
    const open = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
    open.on('error', () => undefined);
    await new Promise<void>((r) => open.once('data', () => r()));
    const openClosed = new Promise<void>((r) => open.once('close', () => r()));

    replaceFile(policy, 'services:\n  payment-service:\n    allow: [intruder]\n');
    sidecar.proc.kill('SIGHUP');
    await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.policyChanged === true);

    const after = await tlsExchange(sidecar.inbound!, credsFromDir(intruder), { payload: 'y\n' });
    assert.equal(after.data, 'hello payment\ny\n');
    await openClosed;
    const line = await sidecar.waitForLine((l) => l.event === 'refused' && l.open === true);
    assert.equal(line.reason, 'policy-denied');
    assert.equal(line.peer, 'spiffe://example.org/order-service');
  });

  it('refuses a broken policy on SIGHUP and keeps the last good one', async () => {
    replaceFile(policy, 'services:\n  payment-service:\n    alow: [order-service]\n');
    sidecar.proc.kill('SIGHUP');
    const refused = await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'failure');
    assert.match(String(refused.reason), /alow/);
    const r = await tlsExchange(sidecar.inbound!, credsFromDir(intruder), { payload: 'z\n' });
    assert.equal(r.data, 'hello payment\nz\n');
    const o = await tlsExchange(sidecar.inbound!, credsFromDir(order), { payload: 'z\n' });
    assert.equal(o.data, '');
    assert.equal((await sidecar.waitForLine(refusalFrom(o.localPort))).reason, 'policy-denied');
  });
});

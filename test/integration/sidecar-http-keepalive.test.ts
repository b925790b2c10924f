/**
 * http mode judges every request on a keep-alive connection against the policy in force
 * now: after a SIGHUP that takes a path away, the next request on the same open
 * connection gets 403 — and the one after a SIGHUP that gives it back gets through, still
 * on that connection. A revocation closes the connection.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { credsFromDir, revokeSerials, serialOfSet, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import {
  getRequest,
  httpSidecarYaml,
  RawHttpConnection,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

const NO_STOCK = `services:
  inventory-service:
    allow:
      - order-service
      - from: notification-service
        methods: [GET]
        paths: [/health]
`;

describe('sidecar http mode: keep-alive connections', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let backend: RecordingBackend;
  let notification: string;
  let order: string;
  let policy: string;

  before(async () => {
    ca = makeCa();
    notification = ca.issue('notification-service');
    order = ca.issue('order-service');
    const inventory = ca.issue('inventory-service');
    policy = writePolicy(ca.root, STOCK_POLICY);
    backend = await startRecordingBackend();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy, forward: backend.address, crl: join(ca.dir, 'crl.pem') }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  async function applyPolicy(body: string): Promise<void> {
    const seen = sidecar.lines.length;
    writeFileSync(policy, body);
    sidecar.proc.kill('SIGHUP');
    await sidecar.waitForLine(
      (l) => sidecar.lines.indexOf(l) >= seen && l.event === 'reload' && l.result === 'success' && l.policyChanged === true,
    );
  }

  it('refuses the next request on an open connection once the policy denies it, and keeps the connection', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(notification));
    try {
      const first = await c.send(getRequest('/stock/1'));
      assert.equal(first.status, 200);
      const seen = backend.received.length;

      await applyPolicy(NO_STOCK);
      const second = await c.send(getRequest('/stock/2'));
      assert.equal(second.status, 403, second.body.toString());
      assert.match(second.body.toString(), /notification-service to GET \/stock\/2/);
      assert.equal(backend.received.length, seen, 'the service saw the refused request');
      const allowed = await c.send(getRequest('/health'));
      assert.equal(allowed.status, 200, 'the connection stays usable for what is allowed');

      await applyPolicy(STOCK_POLICY);
      const third = await c.send(getRequest('/stock/3'));
      assert.equal(third.status, 200);
      assert.equal(backend.received.at(-1)!.url, '/stock/3');
      assert.equal(c.closed, false);
    } finally {
      c.close();
    }
  });

  it('closes an open keep-alive connection when its caller is revoked', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(order));
    try {
      assert.equal((await c.send(getRequest('/stock/1'))).status, 200);
      await revokeSerials(ca, [serialOfSet(order)], TEST_PASSPHRASE);
      sidecar.proc.kill('SIGHUP');
      await c.waitClosed(15_000);
      const line = await sidecar.waitForLine(
        (l) => l.event === 'refused' && l.open === true && l.peer === 'spiffe://example.org/order-service',
      );
      assert.equal(line.reason, 'revoked');
    } finally {
      c.close();
    }
  });
});

/**
 * http mode against a slowloris caller: a request head dripped byte by byte is cut once
 * it has taken longer than inbound.handshakeTimeout since its first byte, logged with the
 * caller's identity, and never reaches the service. An idle keep-alive connection
 * between requests is not affected.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import {
  getRequest,
  httpSidecarYaml,
  RawHttpConnection,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

describe('sidecar http mode: slow request heads', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let backend: RecordingBackend;
  let order: string;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    const inventory = ca.issue('inventory-service');
    const policy = writePolicy(ca.root, STOCK_POLICY);
    backend = await startRecordingBackend();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy, forward: backend.address, extraInbound: '  handshakeTimeout: 1s' }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  it('cuts a caller that drips its request head, logs it, and forwards nothing', async () => {
    const before = backend.received.length;
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(order));
    const port = c.localPort;
    c.write('GET /stock/1 HTTP/1.1\r\nHost: inventory.internal\r\n');
    // Keep dripping header lines (never the blank line that ends the head) until cut off,
    // for at most 15 s.
    for (let i = 0; i < 150 && !c.closed; i++) {
      c.write(`X-Drip-${i}: y\r\n`);
      await sleep(100);
    }
    assert.equal(c.closed, true, 'the dripping caller was never cut off');
    const line = await sidecar.waitForLine(
      (l) => l.reason === 'request-head-timeout' && typeof l.address === 'string' && l.address.endsWith(`:${port}`),
    );
    assert.equal(line.peer, 'spiffe://example.org/order-service');
    assert.equal(line.event, 'refused');
    assert.equal(backend.received.length, before, 'a partial request reached the service');
  });

  it('leaves an idle keep-alive connection alone between requests', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(order));
    try {
      assert.equal((await c.send(getRequest('/stock/1'))).status, 200);
      await sleep(2500); // well past the 1 s head timeout, with no bytes sent
      assert.equal(c.closed, false, 'an idle keep-alive connection was cut');
      assert.equal((await c.send(getRequest('/stock/2'))).status, 200);
    } finally {
      c.close();
    }
  });
});

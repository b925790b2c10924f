/**
 * http mode when the local service fails an allowed request: 502 when it cannot be
 * reached, 504 when it does not answer within inbound.upstreamTimeout — each with a log
 * line naming the caller, method, path and reason — and the caller's connection stays
 * usable for the next request. A malformed request gets 400.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, startSidecarProcess, unusedPort as deadPort, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import {
  getRequest,
  httpSidecarYaml,
  RawHttpConnection,
  rawCall,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

describe('sidecar http mode: local service failures', () => {
  let ca: TestCa;
  let slow: RunningSidecar;
  let down: RunningSidecar;
  let backend: RecordingBackend;
  let order: string;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    const inventory = ca.issue('inventory-service');
    const policy = writePolicy(ca.root, STOCK_POLICY);
    backend = await startRecordingBackend();
    slow = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy, forward: backend.address, extraInbound: '  upstreamTimeout: 300ms' }),
      'slow.yaml',
    );
    down = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy, forward: `127.0.0.1:${await deadPort()}` }),
      'down.yaml',
    );
  });
  after(async () => {
    await slow?.stop();
    await down?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  it('answers 502 when the local service is unreachable, and logs it', async () => {
    const r = await rawCall(down.inbound!, credsFromDir(order), getRequest('/stock/1'));
    assert.equal(r.status, 502);
    assert.match(r.body.toString(), /bad gateway/);
    const line = await down.waitForLine(
      (l) => l.event === 'upstream-error' && typeof l.address === 'string' && l.address.endsWith(`:${r.localPort}`),
    );
    assert.equal(line.status, 502);
    assert.equal(line.reason, 'upstream-unavailable');
    assert.equal(line.peer, 'spiffe://example.org/order-service');
    assert.equal(line.path, '/stock/1');
    assert.match(String(line.detail), /ECONNREFUSED/);
  });

  it('answers 504 when the local service is too slow, and the connection goes on', async () => {
    const c = await RawHttpConnection.open(slow.inbound!, credsFromDir(order));
    try {
      const r = await c.send(getRequest('/stock/1?slow'));
      assert.equal(r.status, 504);
      assert.match(r.body.toString(), /gateway timeout/);
      assert.equal(backend.received.at(-1)!.url, '/stock/1?slow', 'the request did reach the service');
      const line = await slow.waitForLine((l) => l.event === 'upstream-error' && l.status === 504);
      assert.equal(line.reason, 'upstream-timeout');
      assert.equal(line.method, 'GET');
      const next = await c.send(getRequest('/stock/2'));
      assert.equal(next.status, 200);
    } finally {
      c.close();
    }
  });

  it('answers 400 to a malformed request and logs it', async () => {
    const r = await rawCall(slow.inbound!, credsFromDir(order), 'GET /stock HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n');
    assert.equal(r.status, 400);
    const line = await slow.waitForLine(
      (l) => l.event === 'refused' && l.status === 400 && typeof l.address === 'string' && l.address.endsWith(`:${r.localPort}`),
    );
    assert.equal(line.reason, 'bad-request');
    assert.equal(line.peer, 'spiffe://example.org/order-service');
  });

  it('answers 400 to an HTTP/1.1 request without Host and 417 to an unknown Expect, each logged', async () => {
    const noHost = await rawCall(slow.inbound!, credsFromDir(order), 'GET /stock HTTP/1.1\r\n\r\n');
    assert.equal(noHost.status, 400);
    assert.match(
      (await slow.waitForLine((l) => l.event === 'refused' && typeof l.address === 'string' && l.address.endsWith(`:${noHost.localPort}`)))
        .detail as string,
      /no Host/,
    );
    const expect = await rawCall(slow.inbound!, credsFromDir(order), getRequest('/stock', ['Expect: something-else']));
    assert.equal(expect.status, 417);
    assert.equal(
      (await slow.waitForLine((l) => l.event === 'refused' && typeof l.address === 'string' && l.address.endsWith(`:${expect.localPort}`)))
        .status,
      417,
    );
  });
});

/**
 * http mode forwards allowed requests to the local service: with Node's https and with
 * curl --cert, a 10 MB body streamed up and a 10 MB body streamed down intact, and over
 * a keep-alive pool (the service sees fewer connections than the callers made).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, runAsync, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import {
  httpSidecarYaml,
  httpsCall,
  patternBytes,
  sha256,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

const TEN_MB = 10 * 1024 * 1024;

describe('sidecar http mode: forwarding', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let backend: RecordingBackend;
  let order: string;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    const inventory = ca.issue('inventory-service');
    backend = await startRecordingBackend();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({
        setDir: inventory,
        policy: writePolicy(ca.root, STOCK_POLICY),
        forward: backend.address,
        crl: join(ca.dir, 'crl.pem'),
      }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  it('forwards an allowed GET (Node https) with its query, and the answer comes back', async () => {
    const r = await httpsCall(sidecar.inbound!, credsFromDir(order), { path: '/stock/42?color=red&size=%2F' });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'ok GET /stock/42?color=red&size=%2F\n');
    assert.equal(backend.received.at(-1)!.url, '/stock/42?color=red&size=%2F');
  });

  it('forwards an allowed GET from curl --cert', async () => {
    const r = await runAsync(
      'curl',
      [
        '-sS',
        '--max-time',
        '10',
        '-k',
        '--cert',
        join(order, 'tls.crt'),
        '--key',
        join(order, 'tls.key'),
        '-w',
        '\n%{http_code}',
        `https://${sidecar.inbound}/orders/7`,
      ],
      { timeoutMs: 15_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'ok GET /orders/7\n\n200');
  });

  it('streams a 10 MB POST body up and back intact', async () => {
    const body = randomBytes(TEN_MB);
    const r = await httpsCall(sidecar.inbound!, credsFromDir(order), {
      method: 'POST',
      path: '/upload?echo',
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(r.status, 200);
    const seen = backend.received.at(-1)!;
    assert.equal(seen.bodyBytes, TEN_MB);
    assert.equal(seen.bodySha256, sha256(body), 'the service received the body intact');
    assert.equal(r.body.length, TEN_MB);
    assert.equal(sha256(r.body), sha256(body), 'the caller got the echo intact');
  });

  it('streams a chunked 10 MB POST body (no Content-Length) intact', async () => {
    const body = randomBytes(TEN_MB);
    const r = await httpsCall(sidecar.inbound!, credsFromDir(order), {
      method: 'POST',
      path: '/upload?echo',
      body,
      headers: { 'transfer-encoding': 'chunked' },
    });
    assert.equal(r.status, 200);
    assert.equal(backend.received.at(-1)!.bodySha256, sha256(body));
    assert.equal(sha256(r.body), sha256(body));
  });

  it('streams a 10 MB download intact (curl)', async () => {
    const r = await runAsync(
      'bash',
      [
        '-c',
        `curl -sS --max-time 30 -k --cert ${join(order, 'tls.crt')} --key ${join(order, 'tls.key')} 'https://${sidecar.inbound}/files?big=${TEN_MB}' | sha256sum`,
      ],
      { timeoutMs: 40_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split(' ')[0], sha256(patternBytes(TEN_MB)));
  });

  it('reuses its connections to the service (keep-alive pool)', async () => {
    const before = backend.connections();
    for (let i = 0; i < 8; i++) {
      const r = await httpsCall(sidecar.inbound!, credsFromDir(order), { path: `/stock/${i}` });
      assert.equal(r.status, 200);
    }
    // Eight caller connections, one after the other: a pool needs one upstream connection.
    assert.ok(backend.connections() - before <= 1, `the service saw ${backend.connections() - before} new connections for 8 requests`);
  });
});

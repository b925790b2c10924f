/**
 * The allowed caller gets through with every real client (Node, openssl s_client, curl
 * --cert); the TLS floor holds (no TLS 1.1, no non-ECDHE or non-AEAD TLS 1.2 suite);
 * the start line says who the sidecar is and where it listens; the admin endpoints answer;
 * no log line ever holds key material.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { decodeCertificates, encodePem } from '../../common/pem.js';
import {
  adminGet,
  credsFromDir,
  runAsync,
  sidecarYaml,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';

describe('sidecar: an allowed caller', () => {
  let ca: TestCa;
  let order: string;
  let tcp: RunningSidecar;
  let http: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let web: Server;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    const payment = ca.issue('payment-service');
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    echo = await startEchoService('payment');
    tcp = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: payment,
        crl: join(ca.dir, 'crl.pem'),
        policy,
        forward: echo.address,
        extra: 'admin:\n  listen: 127.0.0.1:0\nlog:\n  level: debug',
      }),
      'tcp.yaml',
    );
    // An HTTP service behind a tcp-mode sidecar, for curl.
    web = createServer((req, res) => res.end(`payment says hi to ${req.url}\n`));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    http = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: payment,
        crl: join(ca.dir, 'crl.pem'),
        policy,
        forward: `127.0.0.1:${(web.address() as { port: number }).port}`,
      }),
      'web.yaml',
    );
  });
  after(async () => {
    await tcp?.stop();
    await http?.stop();
    await echo?.close();
    await new Promise((r) => web?.close(r));
    ca?.cleanup();
  });

  it('logs a start line with identity, listeners and certificate expiry', () => {
    const start = tcp.lines.find((l) => l.event === 'started')!;
    assert.equal(start.identity, 'spiffe://example.org/payment-service');
    assert.match(String(start.certificateExpiry), /^\d{4}-\d\d-\d\dT/);
    assert.match(tcp.inbound!, /^127\.0\.0\.1:\d+$/);
    assert.match(tcp.admin!, /^127\.0\.0\.1:\d+$/);
  });

  it('gets through with Node, and is logged at debug level', async () => {
    const r = await tlsExchange(tcp.inbound!, credsFromDir(order), { payload: 'ping\n' });
    assert.equal(r.data, 'hello payment\nping\n');
    const line = await tcp.waitForLine((l) => l.event === 'allowed' && l.address === `127.0.0.1:${r.localPort}`);
    assert.equal(line.level, 'debug');
    assert.equal(line.peer, 'spiffe://example.org/order-service');
  });

  it('gets through over TLS 1.2 too', async () => {
    const r = await tlsExchange(tcp.inbound!, credsFromDir(order), { payload: 'old\n', maxVersion: 'TLSv1.2' });
    assert.equal(r.data, 'hello payment\nold\n');
  });

  it('gets through with openssl s_client', async () => {
    const certs = decodeCertificates(readFileSync(join(order, 'tls.crt'), 'utf8'), 'tls.crt');
    const leaf = join(ca.root, 'order-leaf.pem');
    const chain = join(ca.root, 'order-chain.pem');
    writeFileSync(leaf, encodePem('CERTIFICATE', certs[0]!));
    writeFileSync(
      chain,
      certs
        .slice(1)
        .map((c) => encodePem('CERTIFICATE', c))
        .join(''),
    );
    const r = await runAsync(
      'openssl',
      [
        's_client',
        '-connect',
        tcp.inbound!,
        '-cert',
        leaf,
        '-cert_chain',
        chain,
        '-key',
        join(order, 'tls.key'),
        '-CAfile',
        join(order, 'ca.crt'),
        '-quiet',
        '-verify_return_error',
      ],
      { input: 'from openssl\n', timeoutMs: 15_000, until: /from openssl\n/ },
    );
    assert.match(r.stdout, /hello payment\nfrom openssl\n/);
  });

  it('gets through with curl --cert', async () => {
    const r = await runAsync(
      'curl',
      [
        '-sS',
        '--max-time',
        '10',
        '--cacert',
        join(order, 'ca.crt'),
        '-k',
        '--cert',
        join(order, 'tls.crt'),
        '--key',
        join(order, 'tls.key'),
        `https://${http.inbound}/orders`,
      ],
      { timeoutMs: 15_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'payment says hi to /orders\n');
  });

  it('refuses TLS 1.1 and TLS 1.2 suites without ECDHE or AEAD', async () => {
    const base = ['s_client', '-connect', tcp.inbound!, '-cert', join(order, 'tls.crt'), '-key', join(order, 'tls.key')];
    for (const extra of [['-tls1_1'], ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA'], ['-tls1_2', '-cipher', 'AES128-GCM-SHA256']]) {
      const r = await runAsync('openssl', [...base, ...extra, '-quiet'], { input: 'x\n', timeoutMs: 15_000 });
      assert.doesNotMatch(r.stdout, /hello payment/, `openssl ${extra.join(' ')} got through`);
      assert.notEqual(r.status, 0, `openssl ${extra.join(' ')} handshake succeeded`);
    }
  });

  it('answers /healthz, /readyz and /metrics', async () => {
    assert.equal((await adminGet(tcp.admin!, '/healthz')).status, 200);
    const ready = await adminGet(tcp.admin!, '/readyz');
    assert.equal(ready.status, 200);
    assert.match(ready.body, /payment-service valid until/);
    const m = (await adminGet(tcp.admin!, '/metrics')).body;
    for (const name of [
      'svcca_sidecar_connections_total{direction="inbound",result="allowed"}',
      'svcca_sidecar_active_connections',
      'svcca_sidecar_handshake_seconds_bucket',
      'svcca_sidecar_bytes_total{direction="inbound",flow="received"}',
      'svcca_sidecar_certificate_expiry_timestamp_seconds',
      'svcca_sidecar_crl_expired 0',
    ]) {
      assert.ok(m.includes(name), `missing ${name}`);
    }
    // The process figures, read at scrape time (no event-loop monitor ticking between).
    const rss = Number(/^svcca_sidecar_process_resident_memory_bytes (\d+)$/m.exec(m)?.[1]);
    assert.ok(rss > 10 * 1048576 && rss < 1024 * 1048576, `resident memory ${rss}`);
    assert.match(m, /^svcca_sidecar_process_cpu_user_seconds_total \d/m);
    assert.match(m, /^svcca_sidecar_process_open_fds [1-9]\d*$/m);
    assert.doesNotMatch(m, /eventloop_lag/, 'the event-loop monitor is running');
  });

  it('never logs key material', () => {
    const key = readFileSync(join(ca.root, 'sets', 'payment-service', 'tls.key'), 'utf8');
    const body = key.split('\n')[1]!;
    for (const s of [tcp, http]) {
      const all = JSON.stringify(s.lines);
      assert.ok(!all.includes('PRIVATE KEY'));
      assert.ok(!all.includes(body));
    }
  });
});

/**
 * http mode tells the service who called, and nobody else can: every
 * `x-forwarded-client-cert` the caller sends is removed (any case, `_` for `-`, several
 * copies), a `Connection` header naming it is refused, and the service sees exactly one,
 * `By=<inventory's ID>;Hash=<sha256 of the caller's DER>;URI=<caller's ID>` — the hash
 * computed here from the caller's tls.crt. Hop-by-hop headers and client-chosen
 * forwarding headers do not reach the service either.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { credsFromDir, refusalFrom, runAsync, startSidecarProcess, writePolicy, type RunningSidecar } from './sidecar-harness.js';
import {
  expectedXfcc,
  getRequest,
  headerValues,
  httpSidecarYaml,
  httpsCall,
  rawCall,
  RawHttpConnection,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

const TD = 'spiffe://example.org';
const FORGED = `By=${TD}/inventory-service;Hash=0000;URI=${TD}/admin-service`;

describe('sidecar http mode: x-forwarded-client-cert', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let backend: RecordingBackend;
  let order: string;
  let notification: string;
  let xfccOrder: string;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    notification = ca.issue('notification-service');
    const inventory = ca.issue('inventory-service');
    xfccOrder = expectedXfcc(`${TD}/inventory-service`, order, `${TD}/order-service`);
    backend = await startRecordingBackend();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({ setDir: inventory, policy: writePolicy(ca.root, STOCK_POLICY), forward: backend.address }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  const spoofs: { name: string; lines: string[] }[] = [
    { name: 'none sent', lines: [] },
    { name: 'X-Forwarded-Client-Cert', lines: [`X-Forwarded-Client-Cert: ${FORGED}`] },
    { name: 'lower case', lines: [`x-forwarded-client-cert: ${FORGED}`] },
    { name: 'underscores (x_forwarded_client_cert)', lines: [`x_forwarded_client_cert: ${FORGED}`] },
    { name: 'upper-case underscores', lines: [`X_FORWARDED_CLIENT_CERT: ${FORGED}`] },
    { name: 'mixed - and _', lines: [`X-Forwarded_Client-Cert: ${FORGED}`] },
    { name: 'two copies', lines: [`x-forwarded-client-cert: ${FORGED}`, `X-Forwarded-Client-Cert: By=x;URI=${TD}/other`] },
    {
      name: 'every spelling at once',
      lines: [
        `x-forwarded-client-cert: ${FORGED}`,
        `x_forwarded_client_cert: ${FORGED}`,
        `X-FORWARDED-CLIENT-CERT: ${FORGED}`,
        `x-forwarded-client-cert: ${FORGED}`,
      ],
    },
    { name: 'an empty one', lines: ['x-forwarded-client-cert:'] },
  ];
  for (const c of spoofs) {
    it(`the service sees exactly the sidecar's XFCC: ${c.name}`, async () => {
      const r = await rawCall(sidecar.inbound!, credsFromDir(order), getRequest('/stock', c.lines));
      assert.equal(r.status, 200, r.body.toString());
      const seen = backend.received.at(-1)!;
      assert.deepEqual(headerValues(seen.rawHeaders, 'x-forwarded-client-cert'), [xfccOrder]);
    });
  }

  it('carries the right identity per caller (notification-service)', async () => {
    const r = await rawCall(sidecar.inbound!, credsFromDir(notification), getRequest('/stock', [`x-forwarded-client-cert: ${FORGED}`]));
    assert.equal(r.status, 200);
    assert.deepEqual(headerValues(backend.received.at(-1)!.rawHeaders, 'x-forwarded-client-cert'), [
      expectedXfcc(`${TD}/inventory-service`, notification, `${TD}/notification-service`),
    ]);
  });

  it('removes a forged XFCC sent by curl and by Node https', async () => {
    const c = await runAsync(
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
        '-H',
        `X-Forwarded-Client-Cert: ${FORGED}`,
        '-H',
        `x_forwarded_client_cert: ${FORGED}`,
        `https://${sidecar.inbound}/curl`,
      ],
      { timeoutMs: 15_000 },
    );
    assert.equal(c.status, 0, c.stderr);
    assert.deepEqual(headerValues(backend.received.at(-1)!.rawHeaders, 'x-forwarded-client-cert'), [xfccOrder]);
    const n = await httpsCall(sidecar.inbound!, credsFromDir(order), {
      path: '/node',
      headers: { 'X-Forwarded-Client-Cert': FORGED, x_forwarded_client_cert: FORGED },
    });
    assert.equal(n.status, 200);
    assert.deepEqual(headerValues(backend.received.at(-1)!.rawHeaders, 'x-forwarded-client-cert'), [xfccOrder]);
  });

  const nominating: { name: string; line: string }[] = [
    { name: 'Connection: x-forwarded-client-cert', line: 'Connection: x-forwarded-client-cert' },
    { name: 'among other tokens, upper case', line: 'Connection: keep-alive, X-Forwarded-Client-Cert' },
    { name: 'spelt with _', line: 'Connection: x_forwarded_client_cert' },
    { name: 'in a second Connection header', line: 'Connection: keep-alive\r\nConnection: x-forwarded-client-cert' },
  ];
  for (const c of nominating) {
    it(`refuses a request whose Connection header names XFCC: ${c.name}`, async () => {
      const seen = backend.received.length;
      const r = await rawCall(sidecar.inbound!, credsFromDir(order), getRequest('/stock', [c.line]));
      assert.equal(r.status, 400, r.body.toString());
      assert.match(r.body.toString(), /names x-forwarded-client-cert/);
      assert.equal(backend.received.length, seen, 'the service saw the request');
      const line = await sidecar.waitForLine(refusalFrom(r.localPort));
      assert.equal(line.reason, 'sidecar-header-nominated');
      assert.equal(line.peer, `${TD}/order-service`);
    });
  }

  it('sets x-forwarded-for from the connection, whatever the caller sent', async () => {
    const r = await rawCall(
      sidecar.inbound!,
      credsFromDir(order),
      getRequest('/stock', [
        'X-Forwarded-For: 6.6.6.6',
        'x_forwarded_for: 6.6.6.7',
        'Forwarded: for=6.6.6.8',
        'X-Real-IP: 6.6.6.9',
        'X-Forwarded-Proto: http',
      ]),
    );
    assert.equal(r.status, 200);
    const h = backend.received.at(-1)!.rawHeaders;
    assert.deepEqual(headerValues(h, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(headerValues(h, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(headerValues(h, 'forwarded'), []);
    assert.deepEqual(headerValues(h, 'x-real-ip'), []);
  });

  it('strips hop-by-hop headers and those the Connection header names', async () => {
    const r = await rawCall(
      sidecar.inbound!,
      credsFromDir(order),
      getRequest('/stock', [
        'Connection: keep-alive, X-Secret',
        'X-Secret: 1',
        'x_secret: 2',
        'Keep-Alive: timeout=99',
        'TE: trailers',
        'Proxy-Authorization: Basic Zm9vOmJhcg==',
        'Upgrade: h2c',
        'X-Kept: yes',
      ]),
    );
    assert.equal(r.status, 200);
    const h = backend.received.at(-1)!.rawHeaders;
    for (const gone of ['x-secret', 'keep-alive', 'te', 'proxy-authorization', 'upgrade'])
      assert.deepEqual(headerValues(h, gone), [], `${gone} reached the service`);
    assert.deepEqual(headerValues(h, 'x-kept'), ['yes']);
    assert.deepEqual(headerValues(h, 'host'), ['inventory.internal']);
  });

  it('refuses two Host headers and a Transfer-Encoding other than chunked', async () => {
    const seen = backend.received.length;
    const two = await rawCall(sidecar.inbound!, credsFromDir(order), getRequest('/stock', ['Host: evil.internal']));
    assert.equal(two.status, 400);
    const te = await rawCall(
      sidecar.inbound!,
      credsFromDir(order),
      `POST /stock HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    );
    assert.equal(te.status, 400);
    const smuggle = await rawCall(
      sidecar.inbound!,
      credsFromDir(order),
      `POST /stock HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n`,
    );
    assert.equal(smuggle.status, 400);
    assert.equal(backend.received.length, seen, 'the service saw a refused request');
  });

  it('gives each request on a keep-alive connection its own single XFCC', async () => {
    const c = await RawHttpConnection.open(sidecar.inbound!, credsFromDir(order));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await c.send(getRequest(`/stock/${i}`, [`x-forwarded-client-cert: ${FORGED}`, `x_forwarded_client_cert: ${FORGED}`]));
        assert.equal(r.status, 200);
        assert.deepEqual(headerValues(backend.received.at(-1)!.rawHeaders, 'x-forwarded-client-cert'), [xfccOrder]);
      }
    } finally {
      c.close();
    }
  });
});

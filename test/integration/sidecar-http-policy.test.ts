/**
 * http mode applies methods/paths rules per caller: `notification-service` may GET
 * /stock and /stock/* only, `order-service` anything, `intruder` nothing. A refusal is a
 * 403 whose body names the caller and the method and path, one JSON log line, and a
 * metric; the service never sees a refused request.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import {
  adminGet,
  credsFromDir,
  linesFromNow,
  refusalFrom,
  runAsync,
  startSidecarProcess,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';
import {
  getRequest,
  httpSidecarYaml,
  rawCall,
  startRecordingBackend,
  STOCK_POLICY,
  type RecordingBackend,
} from './sidecar-http-harness.js';

const TD = 'spiffe://example.org';

describe('sidecar http mode: method and path rules', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let backend: RecordingBackend;
  let sets: Record<'order' | 'notification' | 'intruder', string>;

  before(async () => {
    ca = makeCa();
    sets = { order: ca.issue('order-service'), notification: ca.issue('notification-service'), intruder: ca.issue('intruder') };
    const inventory = ca.issue('inventory-service');
    backend = await startRecordingBackend();
    sidecar = await startSidecarProcess(
      ca.root,
      httpSidecarYaml({
        setDir: inventory,
        policy: writePolicy(ca.root, STOCK_POLICY),
        forward: backend.address,
        crl: join(ca.dir, 'crl.pem'),
        extra: 'admin:\n  listen: 127.0.0.1:0',
      }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await backend?.close();
    ca?.cleanup();
  });

  const table: { name: string; who: 'order' | 'notification' | 'intruder'; method: string; target: string; want: 200 | 403 }[] = [
    { name: 'notification GET /stock', who: 'notification', method: 'GET', target: '/stock', want: 200 },
    { name: 'notification GET /stock/42', who: 'notification', method: 'GET', target: '/stock/42', want: 200 },
    { name: 'notification GET /stock/ (prefix rule)', who: 'notification', method: 'GET', target: '/stock/', want: 200 },
    { name: 'notification POST /stock (method not allowed)', who: 'notification', method: 'POST', target: '/stock', want: 403 },
    { name: 'notification DELETE /stock/42', who: 'notification', method: 'DELETE', target: '/stock/42', want: 403 },
    { name: 'notification GET /admin (path not allowed)', who: 'notification', method: 'GET', target: '/admin', want: 403 },
    { name: 'notification GET /stockx (not a prefix match)', who: 'notification', method: 'GET', target: '/stockx', want: 403 },
    { name: 'order POST /admin (plain name allows all)', who: 'order', method: 'POST', target: '/admin', want: 200 },
    { name: 'order DELETE /stock/1', who: 'order', method: 'DELETE', target: '/stock/1', want: 200 },
    { name: 'intruder GET /stock (not in the policy)', who: 'intruder', method: 'GET', target: '/stock', want: 403 },
  ];

  for (const c of table) {
    it(c.name, async () => {
      const seenBefore = backend.received.length;
      const r = await rawCall(
        sidecar.inbound!,
        credsFromDir(sets[c.who]),
        c.method === 'POST' ? `${getRequest(c.target, ['Content-Length: 2'], 'POST')}hi` : getRequest(c.target, [], c.method),
      );
      assert.equal(r.status, c.want, r.body.toString());
      if (c.want === 200) {
        assert.equal(backend.received.length, seenBefore + 1);
        assert.equal(backend.received.at(-1)!.method, c.method);
        assert.equal(backend.received.at(-1)!.url, c.target);
      } else {
        assert.equal(backend.received.length, seenBefore, 'the service saw a refused request');
      }
    });
  }

  it('answers a refusal with a body naming the caller, method and path, and one log line', async () => {
    const fresh = linesFromNow(sidecar);
    const r = await rawCall(sidecar.inbound!, credsFromDir(sets.notification), getRequest('/admin/users?id=1', [], 'DELETE'));
    assert.equal(r.status, 403);
    assert.equal(r.body.toString(), `forbidden: no rule allows ${TD}/notification-service to DELETE /admin/users\n`);
    assert.match(r.headers['content-type'] ?? '', /^text\/plain/);
    const line = await sidecar.waitForLine(fresh((l) => refusalFrom(r.localPort)(l) && l.method === 'DELETE'));
    assert.equal(line.level, 'warn');
    assert.equal(line.peer, `${TD}/notification-service`);
    assert.equal(line.address, `127.0.0.1:${r.localPort}`);
    assert.equal(line.path, '/admin/users');
    assert.equal(line.reason, 'policy-denied');
    assert.equal(line.status, 403);
    assert.match(String(line.detail), /no rule in services\.inventory-service allows notification-service to DELETE \/admin\/users/);
  });

  it('refuses with curl too (403 and the body)', async () => {
    const n = sets.notification;
    const r = await runAsync(
      'curl',
      [
        '-sS',
        '--max-time',
        '10',
        '-k',
        '--cert',
        join(n, 'tls.crt'),
        '--key',
        join(n, 'tls.key'),
        '-X',
        'POST',
        '-d',
        'x=1',
        '-w',
        '%{http_code}',
        `https://${sidecar.inbound}/stock`,
      ],
      { timeoutMs: 15_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `forbidden: no rule allows ${TD}/notification-service to POST /stock\n403`);
  });

  it('counts requests by status and policy result', async () => {
    const m = await adminGet(sidecar.admin!, '/metrics');
    const count = (status: string, result: string) =>
      Number(new RegExp(`svcca_sidecar_http_requests_total\\{status="${status}",result="${result}"\\} (\\d+)`).exec(m.body)?.[1] ?? 0);
    // The table's 5 allowed and 5 refused, the DELETE and curl's POST above.
    assert.equal(count('200', 'allowed'), 5, m.body);
    assert.equal(count('403', 'denied'), 7, m.body);
  });
});

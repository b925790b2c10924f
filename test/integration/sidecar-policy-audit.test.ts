/**
 * Audit mode (issue 14): an entry with `mode: audit` lets through what its allow list
 * would deny — per request in http mode, per connection in tcp mode — and logs it once
 * per distinct (caller, method, path) as `event: would-deny`, counted in
 * svcca_sidecar_policy_decisions_total; the identity checks stay enforced (a revoked
 * caller is still refused). `svcca policy learn` then reads that log and proposes the
 * entries that would allow what was seen, and `policy graph --observed` draws it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, runSvcca, cleanEnv, type TestCa } from '../helpers/cli.js';
import {
  adminGet,
  credsFromDir,
  refusalFrom,
  revokeSerials,
  serialOfSet,
  sidecarYaml,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';
import {
  getRequest,
  headerValues,
  httpSidecarYaml,
  rawCall,
  startRecordingBackend,
  type RecordingBackend,
} from './sidecar-http-harness.js';
import { TEST_PASSPHRASE } from '../helpers/cli.js';

const TD = 'spiffe://example.org';
const AUDIT_POLICY = `# rolled out in audit mode first
services:
  inventory-service:
    mode: audit
    allow:
      - from: notification-service
        methods: [GET]
        paths: [/stock, /stock/*]
`;

function metric(body: string, result: string): number {
  const m = new RegExp(`^svcca_sidecar_policy_decisions_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(body);
  return m ? Number(m[1]) : 0;
}

describe('sidecar policy audit mode', () => {
  let ca: TestCa;
  let http: RunningSidecar;
  let tcp: RunningSidecar;
  let backend: RecordingBackend;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let sets: Record<'notification' | 'intruder' | 'revoked', string>;
  let policy: string;

  before(async () => {
    ca = makeCa();
    sets = { notification: ca.issue('notification-service'), intruder: ca.issue('intruder'), revoked: ca.issue('revoked-service') };
    await revokeSerials(ca, [serialOfSet(sets.revoked)], TEST_PASSPHRASE);
    const inventory = ca.issue('inventory-service');
    policy = writePolicy(ca.root, AUDIT_POLICY);
    backend = await startRecordingBackend();
    echo = await startEchoService('inventory');
    const crl = join(ca.dir, 'crl.pem');
    [http, tcp] = await Promise.all([
      startSidecarProcess(
        ca.root,
        httpSidecarYaml({ setDir: inventory, policy, forward: backend.address, crl, extra: 'admin:\n  listen: 127.0.0.1:0' }),
        'http.yaml',
      ),
      startSidecarProcess(ca.root, sidecarYaml({ setDir: inventory, policy, crl, forward: echo.address }), 'tcp.yaml'),
    ]);
  });
  after(async () => {
    await http?.stop();
    await tcp?.stop();
    await backend?.close();
    await echo?.close();
    ca?.cleanup();
  });

  it('http: a request the allow list denies reaches the service, with the XFCC of its caller', async () => {
    const seen = backend.received.length;
    const r = await rawCall(http.inbound!, credsFromDir(sets.intruder), getRequest('/admin/users?id=1', [], 'DELETE'));
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(backend.received.length, seen + 1);
    assert.match(headerValues(backend.received.at(-1)!.rawHeaders, 'x-forwarded-client-cert')[0] ?? '', new RegExp(`URI=${TD}/intruder$`));
  });

  it('http: logs one would-deny line per distinct caller, method and path, and counts every request', async () => {
    const creds = credsFromDir(sets.intruder);
    for (const target of ['/orders/1', '/orders/1', '/orders/2'])
      assert.equal((await rawCall(http.inbound!, creds, getRequest(target, [], 'POST'))).status, 200);
    assert.equal((await rawCall(http.inbound!, credsFromDir(sets.notification), getRequest('/stock/7'))).status, 200);
    await http.waitForLine((l) => l.event === 'would-deny' && l.path === '/orders/2');
    const lines = http.lines.filter((l) => l.event === 'would-deny' && l.peer === `${TD}/intruder` && l.method === 'POST');
    assert.deepEqual(
      lines.map((l) => l.path),
      ['/orders/1', '/orders/2'],
    );
    const line = lines[0]!;
    assert.equal(line.level, 'warn');
    assert.equal(line.mode, 'http');
    assert.equal(line.self, `${TD}/inventory-service`);
    assert.match(String(line.address), /^127\.0\.0\.1:\d+$/);
    assert.match(String(line.detail), /^no rule in services\.inventory-service allows intruder$/);
    const body = (await adminGet(http.admin!, '/metrics')).body;
    assert.equal(metric(body, 'would-deny'), 4); // DELETE /admin/users and three POSTs
    assert.equal(metric(body, 'allowed'), 1);
    assert.equal(metric(body, 'denied'), 0);
  });

  it('identity checks stay enforced: a revoked caller is refused at the handshake', async () => {
    const r = await tlsExchange(http.inbound!, credsFromDir(sets.revoked), { payload: getRequest('/stock') });
    assert.equal(r.data, '');
    assert.equal((await http.waitForLine(refusalFrom(r.localPort))).reason, 'revoked');
  });

  it('tcp: a connection the allow list denies is piped through and logged as would-deny', async () => {
    // notification-service has only a methods/paths rule, which allows nothing in tcp mode.
    const r = await tlsExchange(tcp.inbound!, credsFromDir(sets.notification), { payload: 'ping\n' });
    assert.equal(r.data, 'hello inventory\nping\n');
    const line = await tcp.waitForLine((l) => l.event === 'would-deny');
    assert.equal(line.mode, 'tcp');
    assert.equal(line.peer, `${TD}/notification-service`);
    assert.match(String(line.detail), /only with methods\/paths/);
  });

  it('svcca policy learn proposes exactly the entries that allow what was seen; --write writes a policy that allows it', () => {
    const log = join(ca.root, 'sidecars.log');
    writeFileSync(log, `${[...http.lines, ...tcp.lines].map((l) => JSON.stringify(l)).join('\n')}\n`);
    const env = cleanEnv();
    const patch = runSvcca(['policy', 'learn', '--log', log, '--policy', policy], { env });
    assert.equal(patch.status, 0, patch.stderr);
    // tcp saw notification-service: only a name allows tcp. intruder: one entry per method set.
    assert.match(patch.stdout, /# learned: seen 1 time \(would-deny 1\)[^\n]*\n\s+- notification-service\n/);
    assert.match(patch.stdout, /- from: intruder\n\s+methods: \[DELETE\]\n\s+paths: \[\/admin\/users\]/);
    assert.match(patch.stdout, /- from: intruder\n\s+methods: \[POST\]\n\s+paths: \[\/orders\/1, \/orders\/2\]/);
    assert.match(patch.stdout, /in audit mode: inventory-service/);

    const folded = join(ca.root, 'learned.yaml');
    const wrote = runSvcca(['policy', 'learn', '--log', log, '--policy', policy, '--paths', 'prefix', '--write', folded], { env });
    assert.equal(wrote.status, 0, wrote.stderr);
    const check = (from: string, method: string, path: string) =>
      runSvcca(['policy', 'check', from, 'inventory-service', '--policy', folded, '--method', method, '--path', path], { env }).status;
    // Still in audit mode, so a call outside every rule is a would-deny (5), not an allow.
    assert.equal(check('intruder', 'POST', '/orders/3'), 0, 'prefix folding allows the sibling path');
    assert.equal(check('intruder', 'GET', '/orders/3'), 5, 'but not another method');
    assert.equal(check('intruder', 'DELETE', '/admin/users'), 0);
    assert.equal(check('notification-service', 'GET', '/stock/1'), 0, 'the existing rule is kept');

    const graph = runSvcca(['policy', 'graph', '--policy', policy, '--observed', log, '--format', 'dot'], { env });
    assert.equal(graph.status, 0, graph.stderr);
    assert.match(graph.stdout, /"intruder" -> "inventory-service" \[color=orange, fontcolor=orange, style=dotted, label="would deny 3"\];/);
  });
});

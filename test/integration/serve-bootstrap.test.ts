/**
 * `svcca token` + `svcca bootstrap` / POST /v1/bootstrap (issue 16): a first credential
 * set made from a one-time token, its key made by the client; the CA trusted only through
 * the root fingerprint in the token or --ca-bundle, never on first use; a token used,
 * expired or revoked gets one and the same refusal; a request refused before the token is
 * checked (another CA, a damaged CSR) does not use it up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, run, type TestCa } from '../helpers/cli.js';
import { formatBootstrapToken, parseBootstrapToken } from '../../common/bootstrap-token.js';
import { readLedger, readSet, sleep } from './cli-rotate-helpers.js';
import { curl, opensslCsr, startServeProcess, svccaClient, type RunningServe } from './serve-harness.js';

describe('svcca serve: bootstrap with one-time tokens', () => {
  let ca: TestCa;
  let other: TestCa;
  let serve: RunningServe;

  const token = (service: string, extra: string[] = []): string => {
    const res = ca.svcca(['token', service, ...extra]);
    assert.equal(res.status, 0, res.stderr);
    return res.stdout.trim();
  };
  const bootstrap = (t: string, out: string, extra: string[] = []) =>
    svccaClient(['bootstrap', '--ca', serve.url, '--token', t, '--out', out, '--json', ...extra]);
  const curlBootstrap = async (t: string, csrPem: string) => {
    const body = join(ca.root, `bootstrap-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(body, JSON.stringify({ token: t, csr: csrPem }));
    return curl(`${serve.url}/v1/bootstrap`, ['-H', 'content-type: application/json', '--data-binary', `@${body}`]);
  };

  before(async () => {
    ca = makeCa();
    other = makeCa();
    serve = await startServeProcess(ca);
  });
  after(async () => {
    await serve?.stop();
    ca?.cleanup();
    other?.cleanup();
  });

  it('makes the first set from a token, trusting the CA through the fingerprint it carries; the set then renews itself', async () => {
    const out = join(ca.root, 'boot', 'web');
    const res = await bootstrap(token('web', ['--dns', 'web.internal']), out);
    assert.equal(res.status, 0, res.stderr);
    const made = JSON.parse(res.stdout) as { spiffeId: string; serial: string };
    assert.equal(made.spiffeId, 'spiffe://example.org/web');
    const set = readSet(out);
    assert.equal(set.serial, made.serial);
    assert.equal(set.keyMatches, true);
    const verify = run('openssl', [
      'verify',
      '-CAfile',
      join(ca.dir, 'root.crt'),
      '-untrusted',
      join(out, 'tls.crt'),
      join(out, 'tls.crt'),
    ]);
    assert.equal(verify.status, 0, verify.stderr);
    assert.match(run('openssl', ['x509', '-in', join(out, 'tls.crt'), '-noout', '-ext', 'subjectAltName']).stdout, /DNS:web\.internal/);
    const ledger = readLedger(ca);
    assert.equal(ledger.active.get('web')!.serial, set.serial);
    assert.ok(ledger.events.some((e) => e.kind === 'issue' && e.serial === set.serial));
    const renew = await svccaClient(['renew', '--ca', serve.url, '--dir', out, '--force']);
    assert.equal(renew.status, 0, renew.stderr);
    assert.notEqual(readSet(out).serial, set.serial);
  });

  it('a token is single use: the second bootstrap is refused and writes nothing', async () => {
    const t = token('once');
    assert.equal((await bootstrap(t, join(ca.root, 'boot', 'once-1'))).status, 0);
    const second = await bootstrap(t, join(ca.root, 'boot', 'once-2'));
    assert.equal(second.status, 2);
    assert.match(second.stderr, /403 token-invalid/);
    assert.equal(existsSync(join(ca.root, 'boot', 'once-2', 'tls.key')), false);
  });

  it('an expired token and a revoked token get the same refusal as a used one', async () => {
    const expiring = token('late', ['--ttl', '1s']);
    const revoked = token('withdrawn');
    const rev = ca.svcca(['token', 'withdrawn', '--revoke']);
    assert.equal(rev.status, 0, rev.stderr);
    assert.match(rev.stdout, /Revoked 1 unused bootstrap token/);
    await sleep(1_200);
    const { csrPem } = await opensslCsr(ca.root, 'late');
    const answers = [await curlBootstrap(expiring, csrPem), await curlBootstrap(revoked, csrPem)];
    for (const a of answers) {
      assert.equal(a.status, 403, a.body);
      assert.equal(a.json?.error, 'token-invalid');
    }
    assert.equal(answers[0]!.body, answers[1]!.body, 'nothing tells the three cases apart');
    assert.equal(readLedger(ca).active.has('late'), false);
  });

  it('never trusts on first use: a fingerprint or --ca-bundle of another CA is refused before the token is sent', async () => {
    const t = token('careful');
    const claims = parseBootstrapToken(t);
    const otherRootFp = parseBootstrapToken(other.svcca(['token', 'x']).stdout.trim()).rootSha256;
    const forged = formatBootstrapToken({ ...claims, rootSha256: otherRootFp });
    const byFingerprint = await bootstrap(forged, join(ca.root, 'boot', 'careful-1'));
    assert.equal(byFingerprint.status, 2);
    assert.match(byFingerprint.stderr, /not the one the token names/);
    const byBundle = await bootstrap(t, join(ca.root, 'boot', 'careful-2'), ['--ca-bundle', join(other.dir, 'ca.crt')]);
    assert.equal(byBundle.status, 2);
    assert.match(byBundle.stderr, /not in --ca-bundle/);
    // The token was never presented, so it still works, here with the right bundle.
    const ok = await bootstrap(t, join(ca.root, 'boot', 'careful-3'), ['--ca-bundle', join(ca.dir, 'ca.crt')]);
    assert.equal(ok.status, 0, ok.stderr);
  });

  it('a damaged CSR is refused without using the token up', async () => {
    const t = token('patient');
    const bad = await curlBootstrap(t, 'not a CSR');
    assert.equal(bad.status, 400);
    assert.equal(bad.json?.error, 'bad-csr');
    const { csrPem } = await opensslCsr(ca.root, 'patient', { subj: '/CN=someone-else', san: 'URI:spiffe://example.org/admin' });
    const good = await curlBootstrap(t, csrPem);
    assert.equal(good.status, 200, good.body);
    assert.equal(good.json?.spiffeId, 'spiffe://example.org/patient', 'the service comes from the ledger, not the CSR');
  });

  it('bad input to svcca token and svcca bootstrap is one line and exit 1', async () => {
    const ttl = ca.svcca(['token', 'x', '--ttl', '48h']);
    assert.equal(ttl.status, 1);
    assert.match(ttl.stderr, /^svcca: --ttl 48h: a token lives between 1s and 24h/);
    const notToken = await svccaClient(['bootstrap', '--ca', serve.url, '--token', 'hello', '--out', join(ca.root, 'x')]);
    assert.equal(notToken.status, 1);
    assert.match(notToken.stderr, /^svcca: --token is not an svcca bootstrap token/);
    const http = await svccaClient(['bootstrap', '--ca', 'http://127.0.0.1:1', '--token', 'x', '--out', join(ca.root, 'x')]);
    assert.equal(http.status, 1);
    assert.match(http.stderr, /over https only/);
  });
});

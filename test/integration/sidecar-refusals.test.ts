/**
 * Inbound refusals, each by the check that exists for it: the log line must carry that
 * check's own reason (were the check removed, the connection would either get through or
 * be refused for another reason, and the test would fail). Each also proves the local
 * service saw nothing, and that the refusal line names the caller, its address and why.
 * Certificates the real CLI refuses to make come from the test-only signer, most of them
 * signed by the real CA's own keys so that OpenSSL's chain check lets them through.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyUsageBit } from '../../common/x509.js';
import { makeCa, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { createIntermediate, createRootCa, issueCert, issueSvid, loadCaDir, type IssuedCert } from '../helpers/attacker-ca.js';
import {
  credsFromDir,
  refusalFrom,
  runAsync,
  sidecarYaml,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  type Creds,
  type RunningSidecar,
} from './sidecar-harness.js';

const ORDER = 'spiffe://example.org/order-service';
const DAY = 86_400_000;

describe('sidecar inbound refuses', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let caPem: string;
  let signer: ReturnType<typeof loadCaDir>;
  const as = (c: IssuedCert): Creds => ({ cert: c.chainPem, key: c.keyPem, ca: caPem });

  before(async () => {
    ca = makeCa();
    ca.issue('order-service');
    const payment = ca.issue('payment-service');
    ca.issue('intruder');
    caPem = readFileSync(join(ca.dir, 'ca.crt'), 'utf8');
    signer = loadCaDir(ca.dir, TEST_PASSPHRASE);
    echo = await startEchoService('payment');
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({ setDir: payment, crl: join(ca.dir, 'crl.pem'), policy, forward: echo.address }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  /** Connects, expects nothing back and the refusal line with `reason`; returns that line. */
  async function expectRefused(creds: Creds, reason: string) {
    const before = echo.connections();
    const r = await tlsExchange(sidecar.inbound!, creds, { payload: 'ping\n' });
    const line = await sidecar.waitForLine(refusalFrom(r.localPort));
    assert.equal(r.data, '', 'the refused caller must get nothing from the service');
    assert.equal(echo.connections(), before, 'the local service must not even be dialled');
    assert.equal(line.reason, reason, `refused for ${line.reason} (${line.detail}), expected ${reason}`);
    assert.equal(line.level, 'warn');
    assert.equal(line.address, `127.0.0.1:${r.localPort}`);
    assert.equal(line.direction, 'inbound');
    return line;
  }

  it('lets the allowed caller through (the control case)', async () => {
    const r = await tlsExchange(sidecar.inbound!, credsFromDir(join(ca.root, 'sets', 'order-service')), { payload: 'ping\n' });
    assert.equal(r.data, 'hello payment\nping\n');
  });

  it('a caller without a client certificate (Node)', async () => {
    const line = await expectRefused({ ca: caPem }, 'no-certificate');
    assert.equal(line.peer, 'no certificate');
  });

  it('a caller without a client certificate (openssl s_client and curl)', async () => {
    const count = () => sidecar.lines.filter((l) => l.reason === 'no-certificate').length;
    const before = count();
    const [host, port] = [sidecar.inbound!.split(':')[0]!, sidecar.inbound!.split(':')[1]!];
    const s = await runAsync(
      'openssl',
      ['s_client', '-connect', `${host}:${port}`, '-CAfile', join(ca.dir, 'ca.crt'), '-quiet', '-no_ign_eof'],
      { input: 'ping\n', timeoutMs: 15_000 },
    );
    assert.doesNotMatch(s.stdout, /hello payment/);
    const c = await runAsync('curl', ['-sS', '--max-time', '10', '--cacert', join(ca.dir, 'ca.crt'), '-k', `https://${sidecar.inbound}/`], {
      timeoutMs: 15_000,
    });
    assert.notEqual(c.status, 0, 'curl without a certificate must fail');
    await sidecar.waitForLine(() => count() >= before + 2);
  });

  it('a certificate from another CA with the right SPIFFE ID', async () => {
    const otherRoot = await createRootCa('svcca root');
    const otherInter = await createIntermediate(otherRoot, { cn: 'svcca intermediate', permittedUriHost: 'example.org' });
    const leaf = await issueSvid(otherInter, ORDER);
    const line = await expectRefused(as(leaf), 'untrusted-chain');
    // The ID in the log comes from the certificate the client really sent.
    assert.equal(line.peer, ORDER);
  });

  it('an expired certificate', async () => {
    const leaf = await issueSvid(signer.intermediate, ORDER, {
      notBefore: new Date(Date.now() - 2 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const line = await expectRefused(as(leaf), 'expired');
    assert.equal(line.peer, ORDER);
  });

  it('a certificate that is not yet valid', async () => {
    const leaf = await issueSvid(signer.intermediate, ORDER, {
      notBefore: new Date(Date.now() + DAY),
      notAfter: new Date(Date.now() + 2 * DAY),
    });
    await expectRefused(as(leaf), 'not-yet-valid');
  });

  it('a certificate with two URI SANs', async () => {
    const leaf = await issueCert(signer.intermediate, { cn: 'order-service', uris: [ORDER, 'spiffe://example.org/admin-service'] });
    await expectRefused(as(leaf), 'multiple-uri-sans');
  });

  it('a DNS SAN that reads like URI:spiffe://… and no URI SAN', async () => {
    const leaf = await issueCert(signer.intermediate, { cn: 'order-service', dns: [`URI:${ORDER}`] });
    const line = await expectRefused(as(leaf), 'no-uri-san');
    assert.match(line.detail!, /URI:spiffe/);
  });

  it('a URI SAN from another trust domain, under an intermediate without name constraints', async () => {
    // Signed by the real root: OpenSSL's chain check passes; only the sidecar's
    // trust-domain check stands in the way.
    const unconstrained = await createIntermediate(signer.root, { cn: 'unconstrained intermediate' });
    const leaf = await issueSvid(unconstrained, 'spiffe://evil.org/order-service');
    const line = await expectRefused(as(leaf), 'foreign-trust-domain');
    assert.equal(line.peer, 'spiffe://evil.org/order-service');
  });

  it('a CA certificate presented as a client', async () => {
    const caCert = await issueCert(signer.root, {
      cn: 'order-service',
      isCA: true,
      uris: [ORDER],
      keyUsage: KeyUsageBit.digitalSignature | KeyUsageBit.keyCertSign | KeyUsageBit.cRLSign,
      eku: ['1.3.6.1.5.5.7.3.2', '1.3.6.1.5.5.7.3.1'],
    });
    await expectRefused(as(caCert), 'ca-certificate');
  });

  it('a CA:FALSE certificate that may still sign certificates (keyCertSign)', async () => {
    const leaf = await issueCert(signer.intermediate, {
      cn: 'order-service',
      uris: [ORDER],
      keyUsage: KeyUsageBit.digitalSignature | KeyUsageBit.keyCertSign,
    });
    await expectRefused(as(leaf), 'ca-key-usage');
  });

  it('a caller the policy does not list (a real CLI certificate)', async () => {
    const line = await expectRefused(credsFromDir(join(ca.root, 'sets', 'intruder')), 'policy-denied');
    assert.equal(line.peer, 'spiffe://example.org/intruder');
    assert.match(line.detail!, /intruder/);
  });

  it('a caller the policy does not list, through curl --cert', async () => {
    const count = () => sidecar.lines.filter((l) => l.reason === 'policy-denied').length;
    const before = count();
    const set = join(ca.root, 'sets', 'intruder');
    const c = await runAsync(
      'curl',
      [
        '-sS',
        '--max-time',
        '10',
        '--cacert',
        join(set, 'ca.crt'),
        '-k',
        '--cert',
        join(set, 'tls.crt'),
        '--key',
        join(set, 'tls.key'),
        `https://${sidecar.inbound}/`,
      ],
      { timeoutMs: 15_000 },
    );
    assert.notEqual(c.status, 0);
    assert.doesNotMatch(c.stdout, /hello payment/);
    await sidecar.waitForLine(() => count() > before);
  });

  it('a client certificate through openssl s_client from another CA', async () => {
    const otherRoot = await createRootCa('svcca root');
    const leaf = await issueSvid(otherRoot, ORDER);
    const certFile = join(ca.root, 'other.crt');
    const keyFile = join(ca.root, 'other.key');
    writeFileSync(certFile, leaf.certPem);
    writeFileSync(keyFile, leaf.keyPem);
    const count = () => sidecar.lines.filter((l) => l.reason === 'untrusted-chain').length;
    const before = count();
    const s = await runAsync(
      'openssl',
      ['s_client', '-connect', sidecar.inbound!, '-cert', certFile, '-key', keyFile, '-quiet', '-no_ign_eof'],
      { input: 'ping\n', timeoutMs: 15_000 },
    );
    assert.doesNotMatch(s.stdout, /hello payment/);
    const line = await sidecar.waitForLine(() => count() > before);
    assert.ok(line);
  });
});

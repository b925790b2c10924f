/**
 * Each invalid change is refused and the last good state keeps serving (ghostunnel's
 * test-server-reload-broken-certificate, one case per check): a key that does not match,
 * an expired certificate, another SPIFFE ID, garbage PEM, a certificate from another CA —
 * each arriving as a real `..data` swap — an older CRL, and a broken policy. Each must
 * show up as one refusal line naming the check, and in the reload counter; new clients
 * must still be shown the old serial; a valid change afterwards is applied.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { createIntermediate, createRootCa, issueSvid, loadCaDir } from '../helpers/attacker-ca.js';
import { writeCredentialSet } from '../../common/credential-set.js';
import {
  credsFromDir,
  refusalFrom,
  revokeSerials,
  serialOfSet,
  sidecarYaml,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  type LogLine,
  type RunningSidecar,
} from './sidecar-harness.js';
import { reloadCount, rotateNow, servedSerial, WATCH_ONLY } from './sidecar-reload-helpers.js';

const PAYMENT = 'spiffe://example.org/payment-service';
const DAY = 86_400_000;

describe('sidecar reload: invalid changes refused, last good state kept', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let payment: string;
  let order: string;
  let intruder: string;
  let policy: string;
  let original: string;
  const read = (dir: string, name: string) => readFileSync(join(dir, name), 'utf8');

  before(async () => {
    ca = makeCa();
    payment = ca.issue('payment-service');
    order = ca.issue('order-service');
    intruder = ca.issue('intruder');
    policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service, intruder]\n');
    echo = await startEchoService('payment');
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: payment,
        crl: join(ca.dir, 'crl.pem'),
        policy,
        forward: echo.address,
        extra: `admin:\n  listen: 127.0.0.1:0\n${WATCH_ONLY}`,
      }),
    );
    original = serialOfSet(payment);
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  /** Resolves with the first line logged after index `from` that matches. */
  const lineAfter = (from: number, pred: (l: LogLine) => boolean) =>
    sidecar.waitForLine((l) => sidecar.lines.indexOf(l) >= from && pred(l));

  async function expectRefused(kind: string, refusal: string, change: () => void | Promise<void>): Promise<LogLine> {
    const count = await reloadCount(sidecar.admin!, kind, 'refused');
    const from = sidecar.lines.length;
    await change();
    const line = await lineAfter(from, (l) => l.event === 'reload' && l.result === 'failure');
    assert.equal(line.kind, kind, JSON.stringify(line));
    assert.equal(line.refusal, refusal, JSON.stringify(line));
    assert.equal(line.level, 'error');
    assert.equal(await reloadCount(sidecar.admin!, kind, 'refused'), count + 1);
    // The old pair still serves new handshakes, and traffic flows.
    assert.equal(await servedSerial(sidecar.inbound!, credsFromDir(order)), original);
    assert.equal((await tlsExchange(sidecar.inbound!, credsFromDir(order), { payload: 'ping\n' })).data, 'hello payment\nping\n');
    return line;
  }

  const swapIn = (files: { certChainPem: string; keyPem: string; caPem?: string }) => () => {
    writeCredentialSet(payment, { caPem: read(payment, 'ca.crt'), ...files });
  };

  it('refuses a key that does not match the certificate', async () => {
    const line = await expectRefused(
      'identity',
      'key-mismatch',
      swapIn({ certChainPem: read(payment, 'tls.crt'), keyPem: read(order, 'tls.key') }),
    );
    assert.match(String(line.reason), /does not belong to the certificate/);
  });

  it('refuses an expired certificate', async () => {
    const { intermediate } = loadCaDir(ca.dir, TEST_PASSPHRASE);
    const now = Date.now();
    const expired = await issueSvid(intermediate, PAYMENT, { notBefore: new Date(now - 2 * DAY), notAfter: new Date(now - DAY) });
    const line = await expectRefused('identity', 'expired', swapIn({ certChainPem: expired.chainPem, keyPem: expired.keyPem }));
    assert.match(String(line.reason), /expired at/);
  });

  it('refuses a certificate for another SPIFFE ID', async () => {
    const line = await expectRefused(
      'identity',
      'different-identity',
      swapIn({ certChainPem: read(order, 'tls.crt'), keyPem: read(order, 'tls.key') }),
    );
    assert.match(String(line.reason), /order-service, not spiffe:\/\/example\.org\/payment-service/);
  });

  it('refuses garbage PEM', async () => {
    const garbage = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
    await expectRefused('identity', 'unparsable', swapIn({ certChainPem: garbage, keyPem: read(order, 'tls.key') }));
  });

  it('refuses a certificate from another CA', async () => {
    const root = await createRootCa('other root');
    const inter = await createIntermediate(root, { permittedUriHost: 'example.org' });
    const foreign = await issueSvid(inter, PAYMENT);
    const line = await expectRefused('identity', 'untrusted-chain', swapIn({ certChainPem: foreign.chainPem, keyPem: foreign.keyPem }));
    assert.match(String(line.reason), /does not chain to/);
  });

  it('applies a valid certificate after all those refusals', async () => {
    await rotateNow(ca.dir, 'payment-service');
    const rotated = serialOfSet(payment);
    await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === rotated);
    assert.equal(await servedSerial(sidecar.inbound!, credsFromDir(order)), rotated);
    original = rotated;
  });

  it('refuses a CRL older than the one in force: a revoked caller stays revoked', async () => {
    const crlPath = join(ca.dir, 'crl.pem');
    const old = readFileSync(crlPath, 'utf8');
    const from = sidecar.lines.length;
    await revokeSerials(ca, [serialOfSet(intruder)], TEST_PASSPHRASE);
    await lineAfter(from, (l) => l.event === 'reload' && l.result === 'success' && l.crlChanged === true);
    const refusedBefore = await tlsExchange(sidecar.inbound!, credsFromDir(intruder), { payload: 'x\n' });
    assert.equal(refusedBefore.data, '');

    const line = await expectRefused('crl', 'crl-rollback', () => {
      // Replayed the way the CA publishes: a whole new file renamed over the old one.
      writeFileSync(`${crlPath}.replay`, old);
      renameSync(`${crlPath}.replay`, crlPath);
    });
    assert.match(String(line.reason), /lower than/);
    const still = await tlsExchange(sidecar.inbound!, credsFromDir(intruder), { payload: 'x\n' });
    assert.equal(still.data, '');
    assert.equal((await sidecar.waitForLine(refusalFrom(still.localPort))).reason, 'revoked');
  });

  it('refuses a broken policy picked up from the file event and keeps the last good one', async () => {
    const line = await expectRefused('policy', 'policy-invalid', () =>
      writeFileSync(policy, 'services:\n  payment-service:\n    allow: [order-service\n'),
    );
    assert.match(String(line.reason), /policy\.yaml/);
  });
});

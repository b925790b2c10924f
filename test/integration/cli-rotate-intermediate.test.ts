/**
 * The intermediate's end and `svcca rotate --intermediate`. A test-only step ages the CA:
 * it retires the intermediate the way a roll does and puts in its place one the root
 * signed 300 days ago that ends in 10 hours. Then: cron warns (exit 4); a renewal that
 * would outlive the intermediate is cut at its end and said (exit 4); a wrong root
 * passphrase changes nothing; the roll makes a new intermediate, keeps the root (ca.crt
 * unchanged), re-signs the root's CRL past the new end, and the retired intermediates go
 * on signing CRLs for their own leaves, which openssl then refuses once revoked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { X509Certificate, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_PASSPHRASE, makeCa, run, type TestCa } from '../helpers/cli.js';
import { exportEncryptedKeyPem, generateKey, openEncryptedKey, signingAlgorithm, toSigningCryptoKey } from '../../common/keys.js';
import { parseCertificate } from '../../common/x509.js';
import { decodeCertificates, encodePem } from '../../common/pem.js';
import { intermediateExtensions, intermediateSubject, randomSerialHex } from '../../cli/ca/profiles.js';
import { spkiOf } from '../../cli/ca/authority.js';
import { x509 } from '../../cli/ca/x509-lib.js';
import { crlText, isOneLineError, readCrlFile, readSet, verifyPemWithCrl, verifyWithCrl } from './cli-rotate-helpers.js';

const H = 3_600_000;

/** Retires the current intermediate as a roll would, and installs an old one ending in `leftMs`. */
async function ageIntermediate(ca: TestCa, leftMs: number): Promise<void> {
  const rootDer = decodeCertificates(readFileSync(join(ca.dir, 'root.crt'), 'utf8'), 'root')[0]!;
  const root = parseCertificate(rootDer);
  const rootKey = openEncryptedKey(readFileSync(join(ca.dir, 'root.key'), 'utf8'), TEST_PASSPHRASE, 'root');
  const current = parseCertificate(decodeCertificates(readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8'), 'int')[0]!);
  mkdirSync(join(ca.dir, 'retired'), { recursive: true, mode: 0o700 });
  writeFileSync(join(ca.dir, 'retired', `${current.subjectKeyId}.crt`), readFileSync(join(ca.dir, 'intermediate.crt')));
  writeFileSync(join(ca.dir, 'retired', `${current.subjectKeyId}.key`), readFileSync(join(ca.dir, 'intermediate.key')), { mode: 0o600 });

  const key = generateKey('ecdsa-p256');
  const alg = signingAlgorithm('ecdsa-p256');
  const publicKey = (await webcrypto.subtle.importKey('spki', spkiOf(key), alg.importAlg as never, true, ['verify'])) as CryptoKey;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: intermediateSubject(ca.trustDomain, 7),
    issuer: new x509.X509Certificate(new Uint8Array(rootDer)).subjectName,
    notBefore: new Date(now - 300 * 24 * H),
    notAfter: new Date(now + leftMs),
    publicKey,
    signingKey: await toSigningCryptoKey(rootKey, 'ecdsa-p256'),
    signingAlgorithm: alg.signAlg,
    extensions: await intermediateExtensions(publicKey, root.subjectKeyId!, ca.trustDomain),
  });
  writeFileSync(join(ca.dir, 'intermediate.key'), exportEncryptedKeyPem(key, TEST_PASSPHRASE), { mode: 0o600 });
  writeFileSync(join(ca.dir, 'intermediate.crt'), encodePem('CERTIFICATE', Buffer.from(cert.rawData)));
}

describe('the intermediate nearing its end, and svcca rotate --intermediate', () => {
  let ca: TestCa;
  let web: string;
  let firstLeaf: string;
  let firstIntermediate: string;
  let agedIntermediate: string;
  before(async () => {
    ca = makeCa();
    web = ca.issue('web', ['--ttl', '24h']);
    firstLeaf = readSet(web).leafPem;
    firstIntermediate = readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8');
    await ageIntermediate(ca, 10 * H);
    agedIntermediate = readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8');
  });
  after(() => ca.cleanup());

  it('cron warns with exit 4 when less than a third of the intermediate is left, and publishes its CRL', () => {
    const res = ca.svcca(['rotate']);
    assert.equal(res.status, 4, res.stderr);
    assert.match(res.stderr, /the intermediate ends .*svcca rotate --intermediate/);
    assert.match(res.stdout, /Republished .*has no CRL for intermediate/);
    assert.equal(readCrlFile(ca).crls.length, 3, 'root, the aged intermediate, and the retired one whose leaf is unexpired');
  });

  it('a renewal that would outlive the intermediate ends with it, says so, exit 4', () => {
    const res = ca.svcca(['rotate', '--renew-before', '100%', '--json']);
    assert.equal(res.status, 4, res.stderr);
    const json = JSON.parse(res.stdout) as { renewed: { service: string; clamped: boolean; notAfter: string }[]; warnings: string[] };
    assert.equal(json.renewed[0]!.clamped, true);
    const end = new X509Certificate(agedIntermediate).validTo;
    assert.equal(Date.parse(json.renewed[0]!.notAfter), Date.parse(end));
    assert.equal(Date.parse(new X509Certificate(readSet(web).leafPem).validTo), Date.parse(end));
    assert.ok(json.warnings.some((w) => /cut short at the intermediate's end/.test(w)));
    const human = ca.svcca(['rotate', '--renew-before', '100%']);
    assert.match(human.stdout, /cut short: ends with the intermediate/);
  });

  it('both generations of leaves verify with -crl_check_all', () => {
    assert.equal(verifyWithCrl(ca, web, '-crl_check_all').status, 0);
    const old = verifyPemWithCrl(ca, firstLeaf, firstIntermediate, '-crl_check_all');
    assert.equal(old.status, 0, old.stdout + old.stderr);
  });

  it('a wrong root passphrase: one line, exit 1, nothing changed', () => {
    const crl = readFileSync(join(ca.dir, 'crl.pem'));
    const retired = readdirSync(join(ca.dir, 'retired')).sort();
    const res = ca.svcca(['rotate', '--intermediate'], { SVCCA_ROOT_PASSPHRASE: 'not-the-root-passphrase' });
    assert.ok(isOneLineError(res), res.stderr);
    assert.match(res.stderr, /root key/);
    assert.equal(readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8'), agedIntermediate);
    assert.deepEqual(readFileSync(join(ca.dir, 'crl.pem')), crl);
    assert.deepEqual(readdirSync(join(ca.dir, 'retired')).sort(), retired);
    assert.equal(existsSync(join(ca.dir, 'intermediate.next.crt')), false);
  });

  it('--intermediate rolls: new key under the same root, root CRL re-signed past the new end, exit 0', () => {
    const trust = readFileSync(join(ca.dir, 'ca.crt'));
    const rootCrlBefore = crlText(ca, readCrlFile(ca).crls[0]!);
    const res = ca.svcca(['rotate', '--intermediate'], { SVCCA_ROOT_PASSPHRASE: undefined });
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /Rolled the intermediate: .*the trust bundle is unchanged/);
    const now = readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8');
    assert.notEqual(now, agedIntermediate);
    assert.deepEqual(readFileSync(join(ca.dir, 'ca.crt')), trust);
    const newInt = new X509Certificate(now);
    assert.ok(newInt.verify(new X509Certificate(readFileSync(join(ca.dir, 'root.crt'))).publicKey));
    assert.ok(Date.parse(newInt.validTo) > Date.now() + 300 * 24 * H);
    const file = readCrlFile(ca);
    const rootCrl = crlText(ca, file.crls[0]!);
    assert.ok(rootCrl.number > rootCrlBefore.number);
    assert.ok(Date.parse(/Next Update: (.*)/.exec(rootCrl.text)![1]!) > Date.parse(newInt.validTo));
    assert.equal(file.crls.length, 4, 'root + new + aged + first (each still has an unexpired leaf or is current)');
    assert.equal(file.certs.length, 3);
    const issuers = join(ca.root, 'issuers.pem');
    writeFileSync(issuers, readFileSync(join(ca.dir, 'root.crt'), 'utf8') + file.certs.join(''));
    file.crls.forEach((pem, i) => {
      writeFileSync(join(ca.root, `c${i}.pem`), pem);
      const v = run('openssl', ['crl', '-in', join(ca.root, `c${i}.pem`), '-noout', '-verify', '-CAfile', issuers]);
      assert.equal(v.status, 0, v.stderr);
    });
  });

  it('after the roll: cron is quiet, new leaves come from the new intermediate, old ones still verify', () => {
    const quiet = ca.svcca(['rotate']);
    assert.equal(quiet.status, 0, quiet.stderr);
    const fresh = ca.issue('fresh');
    assert.equal(readSet(fresh).chain[1], readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8'));
    for (const dir of [fresh, web]) assert.equal(verifyWithCrl(ca, dir, '-crl_check_all').status, 0);
  });

  it('revoking a service whose leaves came from retired intermediates: their own CRLs list them', () => {
    const agedLeaf = readSet(web).leafPem;
    assert.equal(ca.svcca(['revoke', 'web']).status, 0);
    for (const [leaf, int] of [
      [agedLeaf, agedIntermediate],
      [firstLeaf, firstIntermediate],
    ] as const) {
      for (const mode of ['-crl_check', '-crl_check_all'] as const) {
        const res = verifyPemWithCrl(ca, leaf, int, mode);
        assert.notEqual(res.status, 0);
        assert.match(res.stdout + res.stderr, /certificate revoked/);
      }
    }
    assert.equal(verifyWithCrl(ca, join(ca.root, 'sets', 'fresh'), '-crl_check_all').status, 0);
  });
});

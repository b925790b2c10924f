/**
 * svcca export: PKCS#12 that OpenSSL 3 reads without -legacy and keytool lists, for
 * every key type; --legacy for old Java/macOS; never a built-in password.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createPublicKey } from 'node:crypto';
import { makeCa, run, writeSecretFile, type TestCa, opensslEcCsr } from '../helpers/cli.js';

const cas: TestCa[] = [];
after(() => {
  for (const c of cas) c.cleanup();
});

function pubkeyOfCert(certPath: string): string {
  return createPublicKey(readFileSync(certPath)).export({ type: 'spki', format: 'pem' }).toString();
}

for (const keyType of ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072']) {
  test(`export ${keyType}: openssl without -legacy and keytool read it`, () => {
    const ca = makeCa({ keyType });
    cas.push(ca);
    const set = ca.issue('order-service');
    const pw = writeSecretFile(ca.root, 'p12.pass', 'correct horse\n');
    const p12 = join(ca.root, 'order.p12');
    const res = ca.svcca(['export', 'order-service', '--p12', p12, '--password-file', pw]);
    assert.equal(res.status, 0, res.stderr);
    assert.equal(statSync(p12).mode & 0o777, 0o600);

    const info = run('openssl', ['pkcs12', '-in', p12, '-passin', 'pass:correct horse', '-nodes', '-info']);
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stderr, /MAC: sha256/);
    assert.match(info.stderr, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC/);
    // The key inside matches the issued certificate.
    const keyOut = run('openssl', ['pkcs12', '-in', p12, '-passin', 'pass:correct horse', '-nocerts', '-nodes']);
    const keyPub = createPublicKey(keyOut.stdout).export({ type: 'spki', format: 'pem' }).toString();
    assert.equal(keyPub, pubkeyOfCert(join(set, 'tls.crt')));
    // Leaf and intermediate are both there.
    const certs = run('openssl', ['pkcs12', '-in', p12, '-passin', 'pass:correct horse', '-nokeys']);
    assert.equal((certs.stdout.match(/BEGIN CERTIFICATE/g) ?? []).length, 2);

    const kt = run('keytool', ['-list', '-v', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', 'correct horse']);
    assert.equal(kt.status, 0, kt.stdout + kt.stderr);
    assert.match(kt.stdout, /Entry type: PrivateKeyEntry/);
    assert.match(kt.stdout, /Alias name: order-service/);
    assert.match(kt.stdout, /Certificate chain length: 2/);
  });
}

test('export --legacy uses 3DES and a SHA-1 MAC; the password comes from SVCCA_P12_PASSWORD', () => {
  const ca = makeCa();
  cas.push(ca);
  ca.issue('billing');
  const p12 = join(ca.root, 'legacy.p12');
  const res = ca.svcca(['export', 'billing', '--p12', p12, '--legacy'], { SVCCA_P12_PASSWORD: 'env-pass' });
  assert.equal(res.status, 0, res.stderr);
  const info = run('openssl', ['pkcs12', '-in', p12, '-passin', 'pass:env-pass', '-nodes', '-info', '-legacy']);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stderr, /MAC: sha1/);
  assert.match(info.stderr, /pbeWithSHA1And3-KeyTripleDES-CBC/);
  const kt = run('keytool', ['-list', '-keystore', p12, '-storetype', 'PKCS12', '-storepass', 'env-pass']);
  assert.equal(kt.status, 0, kt.stdout + kt.stderr);
  assert.match(kt.stdout, /PrivateKeyEntry/);
});

test('a wrong password does not open the file', () => {
  const ca = makeCa();
  cas.push(ca);
  ca.issue('svc');
  const p12 = join(ca.root, 'svc.p12');
  assert.equal(ca.svcca(['export', 'svc', '--p12', p12], { SVCCA_P12_PASSWORD: 'right' }).status, 0);
  const bad = run('openssl', ['pkcs12', '-in', p12, '-passin', 'pass:wrong', '-nodes']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /invalid password|mac verify/i);
});

test('no password source and no terminal: refused with one line, nothing written', () => {
  const ca = makeCa();
  cas.push(ca);
  ca.issue('svc');
  const p12 = join(ca.root, 'nopass.p12');
  const res = ca.svcca(['export', 'svc', '--p12', p12]);
  assert.equal(res.status, 1);
  assert.equal(res.stderr.trim().split('\n').length, 1);
  assert.match(res.stderr, /no password for the PKCS#12 file given.*--password-file/);
  assert.equal(existsSync(p12), false);
});

test('export refuses an unknown service, a CSR-signed one, and a directory as --p12', () => {
  const ca = makeCa();
  cas.push(ca);
  const env = { SVCCA_P12_PASSWORD: 'x' };
  const unknown = ca.svcca(['export', 'ghost', '--p12', join(ca.root, 'g.p12')], env);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /no certificate has been issued for ghost; issue one first: svcca issue ghost/);
  ca.issue('order-service');
  const typo = ca.svcca(['export', 'ordr-service', '--p12', join(ca.root, 'o.p12')], env);
  assert.equal(typo.status, 1);
  assert.match(typo.stderr, /no certificate has been issued for ordr-service; did you mean order-service\?/);
  ca.issue('short-lived', ['--ttl', '2s']);
  spawnSync('sleep', ['3']);
  const expired = ca.svcca(['export', 'short-lived', '--p12', join(ca.root, 's.p12')], env);
  assert.equal(expired.status, 1);
  assert.match(
    expired.stderr,
    /the certificate of short-lived expired at .*; renew it first: svcca rotate short-lived --renew-before 100%/,
  );
  assert.equal(existsSync(join(ca.root, 's.p12')), false);

  const key = join(ca.root, 'own.key');
  const csr = join(ca.root, 'own.csr');
  assert.equal(opensslEcCsr(key, csr, '/CN=own').status, 0);
  assert.equal(ca.svcca(['issue', 'own', '--csr', csr, '--out', join(ca.root, 'own')]).status, 0);
  const fromCsr = ca.svcca(['export', 'own', '--p12', join(ca.root, 'own.p12')], env);
  assert.equal(fromCsr.status, 1);
  assert.match(fromCsr.stderr, /signed from a CSR/);

  ca.issue('svc');
  const dirTarget = ca.svcca(['export', 'svc', '--p12', ca.root], env);
  assert.equal(dirTarget.status, 1);
  assert.match(dirTarget.stderr, /is a directory/);
});

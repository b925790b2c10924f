/**
 * `svcca revoke`: a service's every unexpired certificate (the rotated-away one too) with
 * its reason, rotation stopped until the next issue, `--serial` for one certificate, and
 * crl.pem republished at once. Checked by tools nobody here wrote: `openssl crl -verify`
 * on each CRL, and `openssl verify -crl_check` / `-crl_check_all` accepting a live leaf and
 * refusing a revoked one. Bad input: one line, exit 1, nothing changed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, run, type TestCa, opensslEcCsr } from '../helpers/cli.js';
import { crlText, isOneLineError, readCrlFile, readLedger, readSet, verifyPemWithCrl, verifyWithCrl } from './cli-rotate-helpers.js';

describe('svcca revoke', () => {
  let ca: TestCa;
  let order: string;
  let payment: string;
  let oldOrderLeaf: string;
  let intermediatePem: string;
  before(() => {
    ca = makeCa();
    order = ca.issue('order-service');
    payment = ca.issue('payment-service');
    oldOrderLeaf = readSet(order).leafPem;
    intermediatePem = readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8');
    // A rotation leaves the old certificate valid: revoking the service must list it too.
    assert.equal(ca.svcca(['rotate', 'order-service', '--renew-before', '100%']).status, 0);
  });
  after(() => ca.cleanup());

  it('before any revocation: both levels of checking accept every leaf', () => {
    for (const mode of ['-crl_check', '-crl_check_all'] as const) {
      const res = verifyWithCrl(ca, order, mode);
      assert.equal(res.status, 0, `${mode}: ${res.stdout}${res.stderr}`);
    }
  });

  it('revoke SERVICE --reason keyCompromise lists every unexpired certificate of it, with the reason', () => {
    const before = readLedger(ca);
    const serials = before.certs
      .filter((c) => c.service === 'order-service')
      .map((c) => c.serial)
      .sort();
    assert.equal(serials.length, 2);
    const crlBefore = crlText(ca, readCrlFile(ca).crls[1]!).number;
    const res = ca.svcca(['revoke', 'order-service', '--reason', 'keyCompromise']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /rotation of order-service stopped/);
    const file = readCrlFile(ca);
    assert.equal(file.crls.length, 2, 'the root CRL and the intermediate CRL');
    const intCrl = crlText(ca, file.crls[1]!);
    assert.deepEqual([...intCrl.serials].sort(), serials);
    assert.ok(intCrl.number > crlBefore, 'the CRL number grows');
    assert.match(intCrl.text, /Key Compromise/);
    assert.match(intCrl.text, /Authority Key Identifier/);
    const after = readLedger(ca);
    assert.equal(after.active.get('order-service')!.rotation, false);
    for (const s of serials) assert.ok(after.revoked.has(s));
  });

  it('openssl crl -verify accepts each CRL against the root and the certificates crl.pem carries', () => {
    const file = readCrlFile(ca);
    const issuers = join(ca.root, 'issuers.pem');
    writeFileSync(issuers, readFileSync(join(ca.dir, 'root.crt'), 'utf8') + file.certs.join(''));
    file.crls.forEach((pem, i) => {
      const path = join(ca.root, `crl-${i}.pem`);
      writeFileSync(path, pem);
      const res = run('openssl', ['crl', '-in', path, '-noout', '-verify', '-CAfile', issuers]);
      assert.equal(res.status, 0, res.stderr);
      assert.match(res.stderr + res.stdout, /verify OK/);
    });
  });

  for (const mode of ['-crl_check', '-crl_check_all'] as const) {
    it(`openssl verify ${mode}: a live leaf passes, both revoked ones say "certificate revoked"`, () => {
      const live = verifyWithCrl(ca, payment, mode);
      assert.equal(live.status, 0, live.stdout + live.stderr);
      for (const leaf of [readSet(order).leafPem, oldOrderLeaf]) {
        const res = verifyPemWithCrl(ca, leaf, intermediatePem, mode);
        assert.notEqual(res.status, 0);
        assert.match(res.stdout + res.stderr, /certificate revoked/);
      }
    });
  }

  it('a revoked service is not rotated; `svcca issue` starts it again with a new key', () => {
    const revokedSerial = readSet(order).serial;
    const res = ca.svcca(['rotate', '--renew-before', '100%']);
    assert.equal(res.status, 0, res.stderr);
    assert.doesNotMatch(res.stdout, /Renewed order-service/);
    assert.equal(readSet(order).serial, revokedSerial);
    assert.equal(ca.svcca(['issue', 'order-service', '--out', order]).status, 0);
    assert.equal(readLedger(ca).active.get('order-service')!.rotation, true);
    assert.equal(verifyWithCrl(ca, order, '-crl_check_all').status, 0);
  });

  it('revoke --serial revokes exactly that certificate (any case, colons accepted)', () => {
    const target = readSet(payment).serial;
    const typed = target
      .toUpperCase()
      .match(/.{1,2}/g)!
      .join(':');
    const res = ca.svcca(['revoke', '--serial', typed, '--reason', 'superseded']);
    assert.equal(res.status, 0, res.stderr);
    const intCrl = crlText(ca, readCrlFile(ca).crls[1]!);
    assert.ok(intCrl.serials.includes(target));
    assert.match(intCrl.text, /Superseded/);
    assert.equal(readLedger(ca).certs.find((c) => c.serial === target)!.revocationReason, 'superseded');
  });

  it('a CSR key revoked for keyCompromise is never signed again, even for another service', () => {
    const key = join(ca.root, 'csr.key');
    const csr = join(ca.root, 'req.csr');
    assert.equal(opensslEcCsr(key, csr, '/CN=x').status, 0);
    assert.equal(ca.svcca(['issue', 'csr-service', '--csr', csr, '--out', join(ca.root, 'csr-set')]).status, 0);
    assert.equal(ca.svcca(['revoke', 'csr-service', '--reason', 'keyCompromise']).status, 0);
    const again = ca.svcca(['issue', 'other-service', '--csr', csr, '--out', join(ca.root, 'csr-set2')]);
    assert.ok(isOneLineError(again), again.stderr);
    assert.match(again.stderr, /keyCompromise/);
  });

  const bad: { name: string; args: string[]; says: RegExp }[] = [
    { name: 'an unknown service', args: ['revoke', 'nobody'], says: /unknown service nobody/ },
    { name: 'an unknown serial', args: ['revoke', '--serial', '4242'], says: /no certificate with serial 4242/ },
    { name: 'a serial that is not hex', args: ['revoke', '--serial', 'xyz'], says: /not a hexadecimal serial/ },
    { name: 'an unknown reason', args: ['revoke', 'payment-service', '--reason', 'because'], says: /reason/ },
    { name: 'unspecified is not offered', args: ['revoke', 'payment-service', '--reason', 'unspecified'], says: /reason/ },
    { name: 'both a service and a serial', args: ['revoke', 'payment-service', '--serial', '42'], says: /not both/ },
    { name: 'neither', args: ['revoke'], says: /revoke what/ },
    { name: 'an invalid service name', args: ['revoke', 'Bad/../Name'], says: /./ },
  ];
  for (const c of bad) {
    it(`${c.name}: one line, exit 1, nothing changed`, () => {
      const crl = readFileSync(join(ca.dir, 'crl.pem'));
      const events = readLedger(ca).events.length;
      const res = ca.svcca(c.args);
      assert.ok(isOneLineError(res), `${res.status} ${res.stderr}`);
      assert.match(res.stderr, c.says);
      assert.deepEqual(readFileSync(join(ca.dir, 'crl.pem')), crl);
      assert.equal(readLedger(ca).events.length, events);
    });
  }

  it('an already revoked certificate or service: one line, exit 1, nothing changed', () => {
    const revoked = [...readLedger(ca).revoked][0]!;
    const crl = readFileSync(join(ca.dir, 'crl.pem'));
    for (const args of [
      ['revoke', '--serial', revoked],
      ['revoke', 'csr-service'],
    ]) {
      const res = ca.svcca(args);
      assert.ok(isOneLineError(res), res.stderr);
      assert.match(res.stderr, /already revoked/);
    }
    assert.deepEqual(readFileSync(join(ca.dir, 'crl.pem')), crl);
  });
});

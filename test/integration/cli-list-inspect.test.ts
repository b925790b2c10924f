/**
 * svcca list and inspect: what the ledger holds, and a certificate in words.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { makeCa, run, runSvcca, type TestCa } from '../helpers/cli.js';

const cas: TestCa[] = [];
after(() => {
  for (const c of cas) c.cleanup();
});

test('list shows active and superseded certificates; --json is parseable; --expiring filters', () => {
  const ca = makeCa();
  cas.push(ca);
  ca.issue('order-service');
  ca.issue('payment-service', ['--ttl', '2h']);
  ca.issue('order-service'); // supersedes the first
  const res = ca.svcca(['list', '--json']);
  assert.equal(res.status, 0, res.stderr);
  const items = JSON.parse(res.stdout) as { service: string; status: string; spiffeId: string; serial: string }[];
  assert.equal(items.length, 3);
  assert.deepEqual(
    items
      .filter((i) => i.service === 'order-service')
      .map((i) => i.status)
      .sort(),
    ['active', 'superseded'],
  );
  assert.equal(items.find((i) => i.service === 'payment-service')?.spiffeId, 'spiffe://example.org/payment-service');

  const expiring = JSON.parse(ca.svcca(['list', '--expiring', '6h', '--json']).stdout) as { service: string }[];
  assert.deepEqual(
    expiring.map((i) => i.service),
    ['payment-service'],
  );

  const table = ca.svcca(['list']);
  assert.match(table.stdout, /^SERVICE\s+SPIFFE ID\s+SERIAL\s+NOT AFTER\s+STATUS$/m);
  assert.match(table.stdout, /payment-service\s+spiffe:\/\/example\.org\/payment-service\s+[0-9a-f]{32}\s+\S+Z\s+active/);
});

test('list --expiring refuses a malformed duration', () => {
  const ca = makeCa();
  cas.push(ca);
  const res = ca.svcca(['list', '--expiring', 'soon']);
  assert.equal(res.status, 1);
  assert.match(res.stderr, /--expiring: "soon" is not a duration/);
});

test('inspect by service and by file shows the SPIFFE ID, serial, fingerprint and a good chain', () => {
  const ca = makeCa();
  cas.push(ca);
  const set = ca.issue('order-service', ['--dns', 'order.internal']);
  const byName = ca.svcca(['inspect', 'order-service', '--json']);
  assert.equal(byName.status, 0, byName.stderr);
  const info = JSON.parse(byName.stdout) as {
    spiffeId: string;
    serial: string;
    chain: { ok: boolean };
    fingerprints: { sha256: string };
    dnsNames: string[];
    status: string;
  };
  assert.equal(info.spiffeId, 'spiffe://example.org/order-service');
  assert.equal(info.chain.ok, true);
  assert.deepEqual(info.dnsNames, ['order.internal']);
  assert.equal(info.status, 'valid');
  // The fingerprint agrees with openssl's.
  const fp = run('openssl', ['x509', '-in', join(set, 'tls.crt'), '-noout', '-fingerprint', '-sha256']);
  assert.equal(fp.stdout.trim().split('=')[1], info.fingerprints.sha256);

  // A file outside any CA: the chain is checked against ca.crt beside it.
  const byFile = runSvcca(['inspect', join(set, 'tls.crt'), '--dir', join(ca.root, 'no-ca-here')]);
  assert.equal(byFile.status, 0, byFile.stderr);
  assert.match(byFile.stdout, /SPIFFE ID\s+spiffe:\/\/example\.org\/order-service/);
  assert.match(byFile.stdout, /Chain\s+OK, chains to/);
});

test('inspect says when a certificate does not chain to this CA', () => {
  const ca = makeCa();
  const other = makeCa({ trustDomain: 'other.org' });
  cas.push(ca, other);
  const set = other.issue('stranger');
  const res = ca.svcca(['inspect', join(set, 'tls.crt'), '--json']);
  assert.equal(res.status, 0, res.stderr);
  const info = JSON.parse(res.stdout) as { chain: { ok: boolean; detail: string } };
  assert.equal(info.chain.ok, false);
  assert.match(info.chain.detail, /does not chain/);
});

test('inspect refuses a missing, empty or garbage file with one line', () => {
  const ca = makeCa();
  cas.push(ca);
  const empty = join(ca.root, 'empty.pem');
  const garbage = join(ca.root, 'garbage.pem');
  writeFileSync(empty, '');
  writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n');
  for (const [target, pattern] of [
    [join(ca.root, 'missing.pem'), /does not exist/],
    [empty, /is empty/],
    [garbage, /invalid base64|not a valid X\.509/],
  ] as const) {
    const res = ca.svcca(['inspect', target]);
    assert.equal(res.status, 1, target);
    assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
    assert.match(res.stderr, pattern);
  }
});

test('inspect crl.pem shows every CRL in it (openssl crl reads only the first), the revoked serials with their services, and checks the signatures', () => {
  const ca = makeCa();
  cas.push(ca);
  ca.issue('order-service');
  ca.issue('payment-service');
  const serial = JSON.parse(ca.svcca(['inspect', 'order-service', '--json']).stdout).serial as string;
  assert.equal(ca.svcca(['revoke', 'order-service', '--reason', 'keyCompromise']).status, 0);
  const crlPath = join(ca.dir, 'crl.pem');

  // What a user tries first, for comparison: OpenSSL reads the root's CRL alone, with no entries.
  const openssl = run('openssl', ['crl', '-in', crlPath, '-noout', '-text']);
  assert.equal(openssl.status, 0, openssl.stderr);
  assert.match(openssl.stdout, /No Revoked Certificates/);

  const text = ca.svcca(['inspect', crlPath]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /CRL #1 +O=svcca, CN=svcca root CA for example\.org/);
  assert.match(text.stdout, /CRL #2 +O=svcca, CN=svcca intermediate CA 1 for example\.org/);
  assert.match(text.stdout, new RegExp(`^ +${serial}  order-service$`, 'm'));
  assert.match(text.stdout, /Signatures +every signature verifies against .*ca\.crt/);

  const json = JSON.parse(ca.svcca(['inspect', crlPath, '--json']).stdout) as {
    crls: { issuer: string; revoked: { serial: string; service: string | null }[] }[];
  };
  assert.equal(json.crls.length, 2);
  assert.deepEqual(json.crls[1]!.revoked, [{ serial, service: 'order-service' }]);

  // A copy whose intermediate CRL was tampered with: listed, and the signature check says so.
  const pem = readFileSync(crlPath, 'utf8');
  const blocks = pem.split('-----END X509 CRL-----\n');
  const lines = blocks[1]!.split('\n');
  const mid = Math.floor(lines.length / 2);
  lines[mid] = lines[mid]!.slice(0, 10) + (lines[mid]![10] === 'A' ? 'B' : 'A') + lines[mid]!.slice(11);
  blocks[1] = lines.join('\n');
  const tampered = join(ca.root, 'tampered-crl.pem');
  writeFileSync(tampered, blocks.join('-----END X509 CRL-----\n'));
  const t = ca.svcca(['inspect', tampered]);
  assert.match(t.stdout + t.stderr, /FAILED against .*ca\.crt|is malformed/);
});

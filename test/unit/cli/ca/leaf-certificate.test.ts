/**
 * The hand-written leaf DER and the hand-written certificate parser, checked against
 * Node's (OpenSSL's) own parser.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate, createPublicKey } from 'node:crypto';
import { buildLeafDer, randomSerialHex } from '../../../../cli/ca/leaf-certificate.js';
import { parseCertificate, KeyUsageBit } from '../../../../common/x509.js';
import { seq, setOf, oid, tlv } from '../../../../common/der.js';

const issuer = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const issuerNameDer = seq(setOf(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from('test issuer')))));

function leaf(overrides: { service?: string; dnsNames?: string[]; ips?: string[] } = {}) {
  const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const der = buildLeafDer({
    service: overrides.service ?? 'payments',
    spiffeId: `spiffe://example.org/${overrides.service ?? 'payments'}`,
    dnsNames: overrides.dnsNames ?? [],
    ips: overrides.ips ?? [],
    serialHex: randomSerialHex(),
    spkiDer: createPublicKey(key.privateKey).export({ type: 'spki', format: 'der' }),
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2026-01-02T00:00:00Z'),
    issuerNameDer,
    issuerKeyId: '0102030405',
    issuerKey: issuer.privateKey,
    issuerKeyType: 'ecdsa-p256',
  });
  return { der, node: new X509Certificate(der) };
}

test('the signature verifies with the issuer key and OpenSSL reads every field', () => {
  const { der, node } = leaf({ dnsNames: ['payments.internal'] });
  assert.equal(node.verify(issuer.publicKey), true);
  assert.equal(node.subject, 'CN=payments');
  assert.equal(node.issuer, 'CN=test issuer');
  assert.equal(node.subjectAltName, 'URI:spiffe://example.org/payments, DNS:payments.internal');
  assert.equal(node.ca, false);
  assert.deepEqual(node.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const info = parseCertificate(der);
  assert.equal(info.keyUsage, KeyUsageBit.digitalSignature);
  assert.equal(info.isCA, false);
  assert.equal(info.authorityKeyId, '0102030405');
  assert.equal(info.serialHex, node.serialNumber.toLowerCase().replace(/^0+/, ''));
  assert.equal(info.serialHex.length, 32);
  assert.deepEqual(info.criticalExtensionOids, ['2.5.29.19', '2.5.29.15']);
});

const ipCases = [
  { name: 'IPv4', ip: '10.0.0.7', node: 'IP Address:10.0.0.7' },
  { name: 'loopback v6', ip: '::1', node: 'IP Address:0:0:0:0:0:0:0:1' },
  { name: 'documentation v6', ip: '2001:db8::10', node: 'IP Address:2001:DB8:0:0:0:0:0:10' },
  { name: 'v4-mapped v6', ip: '::ffff:1.2.3.4', node: 'IP Address:0:0:0:0:0:FFFF:102:304' },
  { name: 'two zero runs, the first compressed', ip: 'fe80::1:0:0:1', node: 'IP Address:FE80:0:0:0:1:0:0:1' },
  { name: 'all groups', ip: '1:2:3:4:5:6:7:8', node: 'IP Address:1:2:3:4:5:6:7:8' },
];
for (const c of ipCases) {
  test(`IP SAN round trip: ${c.name}`, () => {
    const { der, node } = leaf({ ips: [c.ip] });
    assert.equal(node.subjectAltName, `URI:spiffe://example.org/payments, ${c.node}`);
    const parsed = parseCertificate(der).ips[0]!;
    // The parser's text reads back to the same address bytes.
    const again = leaf({ ips: [parsed] });
    assert.equal(again.node.subjectAltName, node.subjectAltName);
  });
}

test('a name over 64 characters has no subject and a critical SAN', () => {
  const service = 'a'.repeat(65);
  const { der, node } = leaf({ service });
  assert.ok(!node.subject, 'no subject');
  const info = parseCertificate(der);
  assert.equal(info.subjectCN, undefined);
  assert.ok(info.criticalExtensionOids.includes('2.5.29.17'));
});

test('the parser refuses truncated and trailing-garbage DER with one clear error', () => {
  const { der } = leaf();
  assert.throws(() => parseCertificate(der.subarray(0, der.length - 5), 'x.pem'), /x\.pem is not a valid X\.509 certificate/);
  assert.throws(() => parseCertificate(Buffer.concat([der, Buffer.from([0])]), 'x.pem'), /not a valid X\.509 certificate/);
  assert.throws(() => parseCertificate(Buffer.from('garbage'), 'x.pem'), /not a valid X\.509 certificate/);
});

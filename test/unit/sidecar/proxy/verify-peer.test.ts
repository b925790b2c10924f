import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CertCache, stillValid, verifyPeer } from '../../../../sidecar/proxy/verify-peer.js';
import type { Snapshot } from '../../../../sidecar/snapshot.js';
import { KeyUsageBit, parseCertificate } from '../../../../common/x509.js';
import { subjectNameDer } from '../../../../common/crl.js';
import { createIntermediate, createRootCa, issueCert, issueSvid, type IssuedCert, type Signer } from '../../../helpers/attacker-ca.js';

const DAY = 86_400_000;
const ORDER = 'spiffe://example.org/order-service';

/** Just what verifyPeer reads from a snapshot: a CRL set holding one CRL per issuer in `crlsFrom`. */
function snapshot(revoked: string[] = [], crlsFrom: Signer[] = [inter]): Snapshot {
  const crls = crlsFrom.map((s) => {
    const info = parseCertificate(s.certDer);
    return {
      issuerNameHex: subjectNameDer(s.certDer).toString('hex'),
      issuerSubject: info.subject,
      issuerKeyId: info.subjectKeyId,
      authorityKeyId: info.subjectKeyId,
      crlNumber: 1n,
      thisUpdate: new Date(),
      nextUpdate: undefined,
      revokedCount: revoked.length,
    };
  });
  return {
    identity: { id: { trustDomain: 'example.org', service: 'payment-service', uri: 'spiffe://example.org/payment-service' } },
    crl: { path: 'crl.pem', hash: '', set: { crls, issuers: [], revoked: new Set(revoked) } },
  } as unknown as Snapshot;
}

let inter: Signer;

describe('verifyPeer (X509-SVID checks in JS)', () => {
  const certs: Record<string, IssuedCert> = {};
  before(async () => {
    const root = await createRootCa();
    inter = await createIntermediate(root, { permittedUriHost: 'example.org' });
    const now = Date.now();
    certs.good = await issueSvid(inter, ORDER);
    certs.expired = await issueSvid(inter, ORDER, { notBefore: new Date(now - 2 * DAY), notAfter: new Date(now - DAY) });
    certs.future = await issueSvid(inter, ORDER, { notBefore: new Date(now + DAY), notAfter: new Date(now + 2 * DAY) });
    certs.twoUris = await issueCert(inter, { uris: [ORDER, 'spiffe://example.org/x'] });
    certs.dnsOnly = await issueCert(inter, { dns: [`URI:${ORDER}`] });
    certs.https = await issueCert(inter, { uris: ['https://example.org/order-service'] });
    certs.foreign = await issueSvid(inter, 'spiffe://evil.org/order-service');
    certs.ca = await issueCert(inter, { isCA: true, uris: [ORDER] });
    certs.signer = await issueCert(inter, { uris: [ORDER], keyUsage: KeyUsageBit.digitalSignature | KeyUsageBit.cRLSign });
    certs.serverOnly = await issueCert(inter, { uris: [ORDER], eku: ['1.3.6.1.5.5.7.3.1'] });
    certs.noDigSig = await issueCert(inter, { uris: [ORDER], keyUsage: KeyUsageBit.keyEncipherment });
    certs.noBasicConstraints = await issueCert(inter, { uris: [ORDER], isCA: undefined });
    certs.noKeyUsage = await issueCert(inter, { uris: [ORDER], keyUsage: null });
  });

  const table: {
    name: string;
    cert: string | undefined;
    authorized?: boolean;
    role?: 'client' | 'server';
    revoked?: boolean;
    want: string;
  }[] = [
    { name: 'a good SVID', cert: 'good', want: 'ok' },
    { name: 'no certificate', cert: undefined, want: 'no-certificate' },
    { name: 'expired', cert: 'expired', want: 'expired' },
    { name: 'not yet valid', cert: 'future', want: 'not-yet-valid' },
    { name: 'two URI SANs', cert: 'twoUris', want: 'multiple-uri-sans' },
    { name: 'a DNS SAN reading URI:spiffe://', cert: 'dnsOnly', want: 'no-uri-san' },
    { name: 'a non-spiffe URI', cert: 'https', want: 'not-spiffe-id' },
    { name: 'another trust domain', cert: 'foreign', want: 'foreign-trust-domain' },
    { name: 'CA:TRUE', cert: 'ca', want: 'ca-certificate' },
    { name: 'cRLSign on a leaf', cert: 'signer', want: 'ca-key-usage' },
    { name: 'no digitalSignature', cert: 'noDigSig', want: 'wrong-key-usage' },
    { name: 'no basicConstraints at all', cert: 'noBasicConstraints', want: 'ca-certificate' },
    { name: 'no key usage at all', cert: 'noKeyUsage', want: 'wrong-key-usage' },
    { name: 'serverAuth only, as a client', cert: 'serverOnly', want: 'wrong-key-usage' },
    { name: 'serverAuth only, as a server', cert: 'serverOnly', role: 'server', want: 'ok' },
    { name: 'a chain OpenSSL refused', cert: 'good', authorized: false, want: 'untrusted-chain' },
    { name: 'revoked', cert: 'good', revoked: true, want: 'revoked' },
  ];
  for (const t of table) {
    it(t.name, () => {
      const leaf = t.cert ? certs[t.cert]! : undefined;
      const snap = snapshot(t.revoked && leaf ? [leaf.serialHex] : []);
      const v = verifyPeer(
        { leafDer: leaf?.certDer, authorized: t.authorized ?? true, authorizationError: 'X', role: t.role ?? 'client' },
        snap,
        new Date(),
        new CertCache(),
      );
      assert.equal(v.ok ? 'ok' : v.reason, t.want, v.ok ? '' : v.detail);
    });
  }

  it('stillValid notices a revocation and notAfter after the fact', () => {
    const cache = new CertCache();
    const v = verifyPeer({ leafDer: certs.good!.certDer, authorized: true, role: 'client' }, snapshot(), new Date(), cache);
    assert.ok(v.ok);
    assert.deepEqual(stillValid(v.leaf, snapshot(), new Date()), { ok: true });
    assert.equal((stillValid(v.leaf, snapshot([certs.good!.serialHex]), new Date()) as { reason: string }).reason, 'revoked');
    assert.equal((stillValid(v.leaf, snapshot(), new Date(Date.now() + 2 * DAY)) as { reason: string }).reason, 'expired');
    // The CRL from its issuer cut out of the file: revocation unknown, so no longer valid.
    assert.equal((stillValid(v.leaf, snapshot([], []), new Date()) as { reason: string }).reason, 'revocation-unknown');
  });

  it('refuses a certificate whose issuer has no CRL in the file (a CRL cut out)', async () => {
    const otherRoot = await createRootCa();
    const otherInter = await createIntermediate(otherRoot, { permittedUriHost: 'example.org' });
    const cache = new CertCache();
    const judge = (crlsFrom: Signer[]) =>
      verifyPeer({ leafDer: certs.good!.certDer, authorized: true, role: 'client' }, snapshot([], crlsFrom), new Date(), cache);
    const none = judge([]);
    assert.equal(none.ok ? 'ok' : none.reason, 'revocation-unknown');
    const otherOnly = judge([otherInter]);
    assert.equal(otherOnly.ok ? 'ok' : otherOnly.reason, 'revocation-unknown');
    assert.match(otherOnly.ok ? 'accepted' : otherOnly.detail, /holds no CRL from the certificate's issuer/);
    assert.ok(judge([otherInter, inter]).ok);
  });
});

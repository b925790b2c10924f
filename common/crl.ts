/**
 * Reading `crl.pem` as the contract lays it out: one `X509 CRL` block per live issuer
 * (the root's, then each intermediate's), followed by those intermediates' certificates.
 *
 * Parsed with a small DER reader over Buffer rather than @peculiar/x509's X509Crl, which
 * refuses CRLs above about 1,250 entries and is slow on large ones; this reads and
 * verifies 100,000 entries in about a tenth of a second. Each CRL counts only once its
 * signature verifies against an issuer that chains to a root in `ca.crt`: a CRL nobody
 * trusted signed must not be able to revoke (or un-revoke) anyone. The revocation check
 * itself happens in the sidecar, not in OpenSSL, so that an expired CRL keeps being
 * enforced instead of locking every caller out.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { InputError } from './errors.js';
import { decodePemBlocks, encodePem } from './pem.js';
import { KeyUsageBit, isSignedBy, parseCertificate, type CertInfo } from './x509.js';
import { DerError, children, expectTag, readExtensions, readIntegerHex, readOid, readTime, readTlv } from './der-reader.js';

export const CRL_PEM_LABEL = 'X509 CRL';

export const OID_CRL_NUMBER = '2.5.29.20';
export const OID_AUTHORITY_KEY_ID = '2.5.29.35';
const OID_DELTA_CRL_INDICATOR = '2.5.29.27';
const OID_ISSUING_DISTRIBUTION_POINT = '2.5.29.28';
export const OID_REASON_CODE = '2.5.29.21';
const OID_INVALIDITY_DATE = '2.5.29.24';
const OID_CERTIFICATE_ISSUER = '2.5.29.29';

/** Signature algorithms a CRL (or a CSR) may use, mapped to node:crypto's digest (null for EdDSA). */
export const SIGNATURE_DIGESTS: Record<string, string | null> = {
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null, // Ed25519
};

export interface CrlInfo {
  /** The issuer's distinguished name, DER, hex (what a certificate's issuer field holds). */
  readonly issuerNameHex: string;
  /** The verified issuer's subject, for messages. */
  readonly issuerSubject: string;
  /** The issuer's subject key identifier (hex), when it has one. */
  readonly issuerKeyId: string | undefined;
  /** The CRL's authority key identifier (hex), when present. */
  readonly authorityKeyId: string | undefined;
  readonly crlNumber: bigint | undefined;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly revokedCount: number;
}

export interface CrlSet {
  readonly crls: readonly CrlInfo[];
  /** Every serial any verified CRL lists, as CertInfo.serialHex spells it (lower-case hex,
   *  no leading zeros). Serials are 16 random bytes per the profile, so one set for all
   *  issuers is safe, and errs towards refusing. Strings, not BigInts: V8 hashes a BigInt
   *  by its low 64 bits only, so serials sharing those collide into one slow bucket. */
  readonly revoked: ReadonlySet<string>;
  /** Certificates that followed the CRLs (the live intermediates). */
  readonly issuers: readonly CertInfo[];
}

/** One DER CRL as PEM, labelled `X509 CRL`: OpenSSL cannot read the `BEGIN CRL` others write. */
export function crlToPem(der: Buffer): string {
  return encodePem(CRL_PEM_LABEL, der);
}

/** True when any CRL's nextUpdate has passed (its entries are still enforced). */
export function crlSetExpired(set: CrlSet, now: Date = new Date()): boolean {
  return set.crls.some((c) => c.nextUpdate !== undefined && c.nextUpdate.getTime() < now.getTime());
}

/** The earliest nextUpdate of the set, if any CRL has one. */
export function crlSetNextUpdate(set: CrlSet): Date | undefined {
  let min: Date | undefined;
  for (const c of set.crls) if (c.nextUpdate && (!min || c.nextUpdate < min)) min = c.nextUpdate;
  return min;
}

interface ParsedCrl {
  readonly tbs: Buffer;
  readonly signatureOid: string;
  readonly signature: Buffer;
  readonly issuerNameDer: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly crlNumber: bigint | undefined;
  readonly authorityKeyId: string | undefined;
  readonly revoked: string[];
}

/** Parses one DER CRL (RFC 5280 §5.1) without checking its signature. */
export function parseCrlDer(der: Buffer): ParsedCrl {
  const outer = expectTag(readTlv(der, 0, der.length), 0x30, 'CertificateList');
  if (outer.end !== der.length) throw new DerError('trailing bytes after the CRL');
  const [tbsTlv, algTlv, sigTlv] = children(der, outer);
  expectTag(tbsTlv, 0x30, 'TBSCertList');
  const algParts = children(der, expectTag(algTlv, 0x30, 'signatureAlgorithm'));
  const signatureOid = readOid(der, algParts[0]!);
  expectTag(sigTlv, 0x03, 'signatureValue');
  if (der[sigTlv!.contentStart] !== 0) throw new DerError('signature BIT STRING has unused bits');
  const signature = der.subarray(sigTlv!.contentStart + 1, sigTlv!.end);

  const fields = children(der, tbsTlv!);
  let i = 0;
  if (fields[i]?.tag === 0x02) i++; // version v2
  const innerAlg = children(der, expectTag(fields[i++], 0x30, 'signature'));
  if (readOid(der, innerAlg[0]!) !== signatureOid) throw new DerError('the two signature algorithm fields differ');
  const issuerTlv = expectTag(fields[i++], 0x30, 'issuer');
  const issuerNameDer = der.subarray(issuerTlv.start, issuerTlv.end);
  const thisUpdate = readTime(der, fields[i++]!);
  let nextUpdate: Date | undefined;
  if (fields[i] && (fields[i]!.tag === 0x17 || fields[i]!.tag === 0x18)) nextUpdate = readTime(der, fields[i++]!);
  const revoked: string[] = [];
  if (fields[i]?.tag === 0x30) {
    const list = fields[i++]!;
    let p = list.contentStart;
    while (p < list.end) {
      const entry = readTlv(der, p, list.end);
      if (entry.tag !== 0x30) throw new DerError('revoked entry: expected SEQUENCE');
      const serialTlv = readTlv(der, entry.contentStart, entry.end);
      revoked.push(readIntegerHex(der, serialTlv));
      const dateTlv = readTlv(der, serialTlv.end, entry.end);
      readTime(der, dateTlv);
      if (dateTlv.end < entry.end) {
        for (const ext of readExtensions(der, readTlv(der, dateTlv.end, entry.end))) {
          if (ext.critical && ext.oid !== OID_REASON_CODE && ext.oid !== OID_INVALIDITY_DATE) {
            // certificateIssuer makes an indirect CRL: entries for another CA's serials.
            throw new DerError(
              `an entry has an unsupported critical extension ${ext.oid === OID_CERTIFICATE_ISSUER ? '(indirect CRL)' : ext.oid}`,
            );
          }
        }
      }
      p = entry.end;
    }
  }
  let crlNumber: bigint | undefined;
  let authorityKeyId: string | undefined;
  if (fields[i]?.tag === 0xa0) {
    const wrapper = fields[i++]!;
    for (const ext of readExtensions(der, readTlv(der, wrapper.contentStart, wrapper.end))) {
      if (ext.oid === OID_CRL_NUMBER) {
        crlNumber = BigInt(`0x${readIntegerHex(ext.value, readTlv(ext.value, 0, ext.value.length))}`);
      } else if (ext.oid === OID_AUTHORITY_KEY_ID) {
        const akiSeq = readTlv(ext.value, 0, ext.value.length);
        for (const part of children(ext.value, akiSeq)) {
          if (part.tag === 0x80) authorityKeyId = ext.value.subarray(part.contentStart, part.end).toString('hex');
        }
      } else if (ext.oid === OID_DELTA_CRL_INDICATOR) {
        throw new DerError('delta CRLs are not supported');
      } else if (ext.critical && ext.oid !== OID_ISSUING_DISTRIBUTION_POINT) {
        throw new DerError(`unsupported critical extension ${ext.oid}`);
      } else if (ext.oid === OID_ISSUING_DISTRIBUTION_POINT && ext.critical) {
        // A partitioned CRL would cover only some certificates; we need complete CRLs.
        throw new DerError('partitioned CRLs (issuingDistributionPoint) are not supported');
      }
    }
  }
  if (i !== fields.length) throw new DerError('unexpected fields in TBSCertList');
  return {
    tbs: der.subarray(tbsTlv!.start, tbsTlv!.end),
    signatureOid,
    signature,
    issuerNameDer,
    thisUpdate,
    nextUpdate,
    crlNumber,
    authorityKeyId,
    revoked,
  };
}

/** The subject Name of a certificate, DER, located without a full parse. */
export function subjectNameDer(certDer: Buffer): Buffer {
  const cert = readTlv(certDer, 0, certDer.length);
  const tbs = readTlv(certDer, cert.contentStart, cert.end);
  const f = children(certDer, tbs);
  let i = 0;
  if (f[0]?.tag === 0xa0) i++; // version
  // serial, signature, issuer, validity, subject
  const subject = f[i + 4]!;
  return certDer.subarray(subject.start, subject.end);
}

/** The issuer Name (DER hex) of a certificate: what to match against a CRL's issuer. */
export function issuerNameHexOf(certDer: Buffer): string {
  const cert = readTlv(certDer, 0, certDer.length);
  const tbs = readTlv(certDer, cert.contentStart, cert.end);
  const f = children(certDer, tbs);
  let i = 0;
  if (f[0]?.tag === 0xa0) i++;
  const issuer = f[i + 2]!;
  return certDer.subarray(issuer.start, issuer.end).toString('hex');
}

interface Candidate {
  readonly info: CertInfo;
  readonly nameHex: string;
  readonly key: KeyObject;
}

function candidate(info: CertInfo): Candidate {
  return {
    info,
    nameHex: subjectNameDer(info.der).toString('hex'),
    key: createPublicKey({ key: info.spkiDer, format: 'der', type: 'spki' }),
  };
}

/**
 * Reads and verifies `crl.pem`. `rootsDer` are the trust anchors (`ca.crt`). Throws an
 * InputError naming `source` when a block is malformed, a CRL's issuer is unknown, a
 * certificate after the CRLs does not chain to a root, or a signature does not verify:
 * the caller keeps its previous CRLs (or refuses to start) rather than enforce a CRL
 * it cannot trust.
 */
export function loadCrlPem(pemText: string, rootsDer: readonly Buffer[], source = 'crl.pem'): CrlSet {
  const blocks = decodePemBlocks(pemText);
  const crlBlocks = blocks.filter((b) => b.label === CRL_PEM_LABEL || b.label === 'CRL');
  const certBlocks = blocks.filter((b) => b.label === 'CERTIFICATE');
  const other = blocks.find((b) => b.label !== CRL_PEM_LABEL && b.label !== 'CRL' && b.label !== 'CERTIFICATE');
  if (other)
    throw new InputError(
      `${source} holds a "${other.label}" block`,
      `it should hold only ${CRL_PEM_LABEL} blocks and the intermediates' certificates, as svcca writes it`,
    );
  if (crlBlocks.length === 0)
    throw new InputError(
      `${source} holds no ${CRL_PEM_LABEL} block`,
      'publish one with `svcca crl` and point identity.crl at ca-data/crl.pem',
    );

  const roots = rootsDer.map((der) => candidate(parseCertificate(der, 'a certificate in ca.crt')));
  const issuers: CertInfo[] = [];
  const candidates: Candidate[] = [...roots];
  certBlocks.forEach((b, n) => {
    const info = parseCertificate(b.der, `certificate #${n + 1} in ${source}`);
    const root = roots.find((r) => isSignedBy(info.der, r.info.der));
    if (!root)
      throw new InputError(
        `certificate #${n + 1} in ${source} (${info.subject}) does not chain to ca.crt`,
        'the CRL file belongs to another CA; copy crl.pem from the CA that issued this identity',
      );
    if (info.isCA !== true)
      throw new InputError(
        `certificate #${n + 1} in ${source} (${info.subject}) is not a CA certificate`,
        'only issuing CAs belong after the CRLs',
      );
    issuers.push(info);
    candidates.push(candidate(info));
  });

  const crls: CrlInfo[] = [];
  const revoked = new Set<string>();
  crlBlocks.forEach((b, n) => {
    const what = `CRL #${n + 1} in ${source}`;
    let parsed: ParsedCrl;
    try {
      parsed = parseCrlDer(b.der);
    } catch (err) {
      if (err instanceof DerError) throw new InputError(`${what} is malformed: ${err.message}`, 'publish it again with `svcca crl`', err);
      throw err;
    }
    const digest = SIGNATURE_DIGESTS[parsed.signatureOid];
    if (digest === undefined)
      throw new InputError(
        `${what} uses an unsupported signature algorithm ${parsed.signatureOid}`,
        'svcca signs with ECDSA or RSA PKCS#1 v1.5 over SHA-2',
      );
    const nameHex = parsed.issuerNameDer.toString('hex');
    const matching = candidates.filter(
      (c) =>
        c.nameHex === nameHex &&
        (parsed.authorityKeyId === undefined || c.info.subjectKeyId === undefined || c.info.subjectKeyId === parsed.authorityKeyId),
    );
    if (matching.length === 0)
      throw new InputError(
        `${what} was issued by a CA that is neither in ca.crt nor among the certificates after the CRLs`,
        'append the issuing intermediate after the CRLs, as `svcca crl` does',
      );
    const issuer = matching.find((c) => {
      try {
        return cryptoVerify(digest, parsed.tbs, c.key, parsed.signature);
      } catch {
        return false;
      }
    });
    if (!issuer)
      throw new InputError(
        `${what}: its signature does not verify against its issuer`,
        'the file was altered or signed by another key; publish it again with `svcca crl`',
      );
    if (issuer.info.keyUsage !== undefined && (issuer.info.keyUsage & KeyUsageBit.cRLSign) === 0) {
      throw new InputError(
        `${what}: its issuer ${issuer.info.subject} may not sign CRLs (no cRLSign key usage)`,
        'publish it again with `svcca crl`',
      );
    }
    for (const serial of parsed.revoked) revoked.add(serial);
    crls.push({
      issuerNameHex: nameHex,
      issuerSubject: issuer.info.subject,
      issuerKeyId: issuer.info.subjectKeyId,
      authorityKeyId: parsed.authorityKeyId,
      crlNumber: parsed.crlNumber,
      thisUpdate: parsed.thisUpdate,
      nextUpdate: parsed.nextUpdate,
      revokedCount: parsed.revoked.length,
    });
  });
  return { crls, revoked, issuers };
}

/**
 * The CRL in `set` from the CA that issued `cert`, or undefined when the set holds none.
 * A certificate whose issuer has no CRL here has an unknown revocation status: callers
 * refuse it, since a crl.pem with one issuer's CRL cut out (the other CRLs still genuine
 * and signed) would otherwise un-revoke everything that issuer revoked.
 */
export function crlCovering(set: CrlSet, cert: CertInfo): CrlInfo | undefined {
  if (cert.authorityKeyId !== undefined) {
    const byKey = set.crls.find((c) => c.issuerKeyId === cert.authorityKeyId);
    if (byKey) return byKey;
  }
  const nameHex = issuerNameHexOf(cert.der);
  return set.crls.find(
    (c) =>
      c.issuerNameHex === nameHex &&
      (c.issuerKeyId === undefined || cert.authorityKeyId === undefined || c.issuerKeyId === cert.authorityKeyId),
  );
}

/**
 * Why `next` must not replace `current`: a CRL whose number is lower than the one in
 * force for the same issuer would un-revoke whatever was revoked in between (a replayed
 * old file). Undefined when `next` may be applied.
 */
export function crlRollbackProblem(current: CrlSet, next: CrlSet): string | undefined {
  for (const old of current.crls) {
    if (old.crlNumber === undefined) continue;
    const key = old.issuerKeyId ?? old.issuerNameHex;
    const replacement = next.crls.find((c) => (c.issuerKeyId ?? c.issuerNameHex) === key);
    if (replacement?.crlNumber !== undefined && replacement.crlNumber < old.crlNumber) {
      return `the CRL of ${old.issuerSubject} has number ${replacement.crlNumber}, lower than ${old.crlNumber} in force`;
    }
  }
  return undefined;
}

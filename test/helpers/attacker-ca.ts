/**
 * TEST-ONLY signer for the certificates and CRLs the real CLI rightly refuses to make:
 * another CA with the right SPIFFE ID, expired and not-yet-valid leaves, two URI SANs, a
 * DNS SAN that reads `URI:spiffe://…`, another trust domain under an intermediate without
 * name constraints, CA certificates presented as clients, and CRLs. It can also load the
 * real CA's keys from a `svcca init` directory, so that the sidecar's own checks (not
 * OpenSSL's chain check) are the only thing standing between such a certificate and the
 * service. Never import this from product code.
 */
import 'reflect-metadata';
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign as cryptoSign, webcrypto, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } from '@peculiar/asn1-x509';
import { subjectNameDer } from '../../common/crl.js';
import { generateKey, keyTypeOf, signingAlgorithm, type KeyType } from '../../common/keys.js';
import { decodeCertificates, encodePem } from '../../common/pem.js';
import { parseCertificate } from '../../common/x509.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export interface Signer {
  readonly certDer: Buffer;
  readonly certPem: string;
  readonly key: KeyObject;
  readonly keyType: KeyType;
  /** The chain above this signer, leaf-most first, not including the root (PEM). */
  readonly chainAbovePem: string;
}

export interface IssuedCert {
  readonly certDer: Buffer;
  readonly certPem: string;
  readonly keyPem: string;
  readonly key: KeyObject;
  /** Leaf then the issuing chain up to (not including) the root: what tls.crt holds. */
  readonly chainPem: string;
  readonly serialHex: string;
}

const HOUR = 3_600_000;

// Keys the same way the CA makes them: node:crypto, never pure JS.
const newKey = generateKey;

async function cryptoKeyOf(key: KeyObject, type: KeyType): Promise<CryptoKey> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return (await webcrypto.subtle.importKey('pkcs8', der, signingAlgorithm(type).importAlg as never, false, ['sign'])) as CryptoKey;
}

function spkiOf(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

/** A fresh ArrayBuffer copy: what @peculiar/x509's BufferSource parameters accept. */
function ab(b: Buffer): ArrayBuffer {
  return new Uint8Array(b).buffer as ArrayBuffer;
}

function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function keyId(spki: Buffer): Buffer {
  return createHash('sha1').update(spki).digest();
}

/** The issuer's own subject key identifier (what the real CLI wrote), so AKIs match it. */
function issuerKeyId(issuer: Signer): Buffer {
  const ski = parseCertificate(issuer.certDer).subjectKeyId;
  return ski ? Buffer.from(ski, 'hex') : keyId(spkiOf(issuer.key));
}

export interface CertOptions {
  readonly cn?: string;
  readonly uris?: readonly string[];
  readonly dns?: readonly string[];
  readonly ips?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** basicConstraints cA; undefined leaves the extension out. Default false. */
  readonly isCA?: boolean | undefined;
  readonly pathLen?: number;
  /** KeyUsageFlags bits; default digitalSignature (leaf) or keyCertSign|cRLSign (CA). */
  /** null: no key usage extension at all. */
  readonly keyUsage?: number | null;
  /** Extended key usages; default serverAuth+clientAuth for a leaf, none for a CA. */
  readonly eku?: readonly string[];
  /** A URI name constraint host (e.g. `example.org`); none when undefined. */
  readonly permittedUriHost?: string;
  readonly keyType?: KeyType;
  readonly serialHex?: string;
  /** Sign with this key instead of a fresh one (e.g. to reuse a leaf key). */
  readonly key?: KeyObject;
}

async function makeCert(issuer: Signer | undefined, opts: CertOptions): Promise<IssuedCert> {
  const keyType = opts.keyType ?? issuer?.keyType ?? 'ecdsa-p256';
  const key = opts.key ?? newKey(keyType);
  const spki = spkiOf(key);
  const isCA = 'isCA' in opts ? opts.isCA : false;
  const extensions: x509.Extension[] = [];
  if (isCA !== undefined) extensions.push(new x509.BasicConstraintsExtension(isCA, opts.pathLen, true));
  const ku =
    opts.keyUsage === null
      ? undefined
      : (opts.keyUsage ?? (isCA ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature));
  if (ku !== undefined) extensions.push(new x509.KeyUsagesExtension(ku, true));
  const eku = opts.eku ?? (isCA ? [] : ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  if (eku.length) extensions.push(new x509.ExtendedKeyUsageExtension([...eku] as x509.ExtendedKeyUsageType[]));
  const names: x509.JsonGeneralName[] = [
    ...(opts.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(opts.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  extensions.push(new x509.Extension('2.5.29.14', false, ab(derOctetString(keyId(spki)))));
  if (issuer) extensions.push(new x509.Extension('2.5.29.35', false, ab(derSeq(derTlv(0x80, issuerKeyId(issuer))))));
  if (opts.permittedUriHost !== undefined) {
    const nc = new NameConstraints({
      permittedSubtrees: new GeneralSubtrees([
        new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: opts.permittedUriHost }) }),
      ]),
    });
    extensions.push(new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(nc)));
  }
  const now = Date.now();
  const subjectName = opts.cn !== undefined ? [{ CN: [opts.cn] }] : [];
  const signingKeyType = issuer?.keyType ?? keyType;
  const signingKey = await cryptoKeyOf(issuer?.key ?? key, signingKeyType);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: opts.serialHex ?? randomSerialHex(),
    subject: subjectName as never,
    issuer: issuer ? new x509.X509Certificate(ab(issuer.certDer)).subjectName : (subjectName as never),
    notBefore: opts.notBefore ?? new Date(now - 60_000),
    notAfter: opts.notAfter ?? new Date(now + 24 * HOUR),
    publicKey: ab(spki),
    signingKey,
    signingAlgorithm: signingAlgorithm(signingKeyType).signAlg as never,
    extensions,
  });
  const certDer = Buffer.from(cert.rawData);
  const certPem = encodePem('CERTIFICATE', certDer);
  const chainPem = certPem + (issuer && isNotRoot(issuer) ? issuer.certPem + issuer.chainAbovePem : '');
  return {
    certDer,
    certPem,
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    key,
    chainPem,
    serialHex: cert.serialNumber.replace(/^(00)+/, '').toLowerCase(),
  };
}

function isNotRoot(s: Signer): boolean {
  const c = new x509.X509Certificate(ab(s.certDer));
  return c.subject !== c.issuer;
}

function toSigner(cert: IssuedCert, keyType: KeyType, chainAbovePem: string): Signer {
  return { certDer: cert.certDer, certPem: cert.certPem, key: cert.key, keyType, chainAbovePem };
}

/** A fresh self-signed root: "another CA". */
export async function createRootCa(cn = 'attacker root', keyType: KeyType = 'ecdsa-p256'): Promise<Signer> {
  const c = await makeCert(undefined, { cn, isCA: true, keyType, notAfter: new Date(Date.now() + 24 * 365 * HOUR) });
  return toSigner(c, keyType, '');
}

/** An intermediate under `parent`; with `permittedUriHost` it carries the SPIFFE name constraint. */
export async function createIntermediate(
  parent: Signer,
  opts: { cn?: string; permittedUriHost?: string; keyType?: KeyType } = {},
): Promise<Signer> {
  const keyType = opts.keyType ?? parent.keyType;
  const c = await makeCert(parent, {
    cn: opts.cn ?? 'attacker intermediate',
    isCA: true,
    pathLen: 0,
    keyType,
    notAfter: new Date(Date.now() + 24 * 30 * HOUR),
    ...(opts.permittedUriHost !== undefined ? { permittedUriHost: opts.permittedUriHost } : {}),
  });
  const above = isNotRoot(parent) ? parent.certPem + parent.chainAbovePem : '';
  return toSigner(c, keyType, above);
}

/** Any certificate signed by `issuer` (leaf by default); see CertOptions. */
export async function issueCert(issuer: Signer, opts: CertOptions): Promise<IssuedCert> {
  return makeCert(issuer, { keyType: issuer.keyType, ...opts });
}

/** A well-formed X509-SVID for `spiffeId` signed by `issuer`. */
export async function issueSvid(issuer: Signer, spiffeId: string, opts: Omit<CertOptions, 'uris'> = {}): Promise<IssuedCert> {
  return issueCert(issuer, { uris: [spiffeId], cn: spiffeId.split('/').pop() ?? 'svid', ...opts });
}

/**
 * The real CA's root and intermediate from a `svcca init` directory, opened with the
 * passphrase (the root's defaults to the intermediate's, as in the CLI).
 */
export function loadCaDir(dir: string, passphrase: string, rootPassphrase = passphrase): { root: Signer; intermediate: Signer } {
  const open = (name: string, pass: string): KeyObject =>
    createPrivateKey({ key: readFileSync(join(dir, name), 'utf8'), format: 'pem', passphrase: pass });
  const rootKey = open('root.key', rootPassphrase);
  const interKey = open('intermediate.key', passphrase);
  const rootDer = decodeCertificates(readFileSync(join(dir, 'root.crt'), 'utf8'), 'root.crt')[0]!;
  const interDer = decodeCertificates(readFileSync(join(dir, 'intermediate.crt'), 'utf8'), 'intermediate.crt')[0]!;
  const root: Signer = {
    certDer: rootDer,
    certPem: encodePem('CERTIFICATE', rootDer),
    key: rootKey,
    keyType: keyTypeOf(rootKey) ?? 'ecdsa-p256',
    chainAbovePem: '',
  };
  const intermediate: Signer = {
    certDer: interDer,
    certPem: encodePem('CERTIFICATE', interDer),
    key: interKey,
    keyType: keyTypeOf(interKey) ?? 'ecdsa-p256',
    chainAbovePem: '',
  };
  return { root, intermediate };
}

/** Writes a plain credential directory (tls.crt, tls.key, ca.crt). */
export function writeSetDir(dir: string, cert: IssuedCert, caPem: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tls.crt'), cert.chainPem);
  writeFileSync(join(dir, 'tls.key'), cert.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.crt'), caPem);
  return dir;
}

// ---------------------------------------------------------------------------------------
// CRLs, written by hand in DER: @peculiar/x509's generator takes minutes for 100k entries.

function derLen(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function derTlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLen(content.length), content]);
}

function derSeq(...parts: Buffer[]): Buffer {
  return derTlv(0x30, Buffer.concat(parts));
}

function derOctetString(b: Buffer): Buffer {
  return derTlv(0x04, b);
}

function derInteger(value: bigint): Buffer {
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let b = Buffer.from(hex, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return derTlv(0x02, b);
}

function derOid(oid: string): Buffer {
  const parts = oid.split('.').map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    let v = Math.floor(p / 128);
    while (v > 0) {
      stack.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...stack);
  }
  return derTlv(0x06, Buffer.from(out));
}

function derTime(d: Date): Buffer {
  const iso = d.toISOString();
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '');
  if (d.getUTCFullYear() < 2050 && d.getUTCFullYear() >= 1950) return derTlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'latin1'));
  return derTlv(0x18, Buffer.from(`${digits}Z`, 'latin1'));
}

function signatureAlgorithm(type: KeyType): { oid: string; digest: string; params: Buffer } {
  switch (type) {
    case 'ecdsa-p256':
      return { oid: '1.2.840.10045.4.3.2', digest: 'sha256', params: Buffer.alloc(0) };
    case 'ecdsa-p384':
      return { oid: '1.2.840.10045.4.3.3', digest: 'sha384', params: Buffer.alloc(0) };
    default:
      return { oid: '1.2.840.113549.1.1.11', digest: 'sha256', params: Buffer.from([0x05, 0x00]) };
  }
}

export interface CrlOptions {
  /** Serials to revoke, hex or bigint. */
  readonly serials?: readonly (string | bigint)[];
  readonly thisUpdate?: Date;
  readonly nextUpdate?: Date;
  readonly crlNumber?: bigint;
  /** Flip a byte of the signature (a forged or altered CRL). */
  readonly corruptSignature?: boolean;
}

/** A DER CRL signed by `issuer` (v2, CRL number, AKI). */
export function makeCrlDer(issuer: Signer, opts: CrlOptions = {}): Buffer {
  const alg = signatureAlgorithm(issuer.keyType);
  const algId = derSeq(derOid(alg.oid), alg.params);
  const now = Date.now();
  const revDate = derTime(new Date(now - 60_000));
  const entries = (opts.serials ?? []).map((s) => derSeq(derInteger(typeof s === 'bigint' ? s : BigInt(`0x${s}`)), revDate));
  const exts = derSeq(
    derSeq(derOid('2.5.29.20'), derOctetString(derInteger(opts.crlNumber ?? 1n))),
    derSeq(derOid('2.5.29.35'), derOctetString(derSeq(derTlv(0x80, issuerKeyId(issuer))))),
  );
  const tbs = derSeq(
    derInteger(1n),
    algId,
    subjectNameDer(issuer.certDer),
    derTime(opts.thisUpdate ?? new Date(now - 60_000)),
    derTime(opts.nextUpdate ?? new Date(now + 24 * HOUR)),
    ...(entries.length ? [derSeq(...entries)] : []),
    derTlv(0xa0, exts),
  );
  const sig = cryptoSign(alg.digest, tbs, issuer.key);
  if (opts.corruptSignature) sig[sig.length - 3] = sig[sig.length - 3]! ^ 0xff;
  return derSeq(tbs, algId, derTlv(0x03, Buffer.concat([Buffer.from([0]), sig])));
}

/** The contract's crl.pem: each CRL (root's first), then the intermediates' certificates. */
export function crlPemFile(crls: readonly Buffer[], intermediates: readonly Signer[]): string {
  return crls.map((d) => encodePem('X509 CRL', d)).join('') + intermediates.map((s) => s.certPem).join('');
}

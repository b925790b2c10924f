/**
 * The issuing authority: the intermediate's certificate and (decrypted) key, and the
 * operations that sign with it. Commands never sign: they decode and validate their
 * flags, then hand typed options to cli/ca/ (issuance.ts, rotation.ts, create-ca.ts,
 * crl-refresh.ts), which use this.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, renameSync } from 'node:fs';
import { fsyncDir } from '../../common/atomic-file.js';
import { CaStateError } from '../../common/errors.js';
import { encodePem, decodeCertificates } from '../../common/pem.js';
import { parseCertificate, type CertInfo } from '../../common/x509.js';
import { keyMatchesSpki, openEncryptedKey, keyTypeOf, type KeyType } from '../../common/keys.js';
import { FILE_CAPS } from '../../common/capped-file.js';
import { CA_FILES, readCaFile, type CaConfig, type CaDir } from '../store/ca-dir.js';
import { BACKDATE_MS, buildLeafDer, randomSerialHex, type LeafNames } from './leaf-certificate.js';

export interface IssuerCert {
  readonly pem: string;
  readonly info: CertInfo;
}

export interface Authority {
  readonly config: CaConfig;
  readonly intermediate: IssuerCert;
  readonly intermediateKey: KeyObject;
  readonly keyType: KeyType;
  readonly rootPem: string;
}

export function readIssuerCert(dir: CaDir, name: string): IssuerCert {
  const path = dir.file(name);
  const pem = readCaFile(path, FILE_CAPS.pemBundle);
  const der = decodeCertificates(pem, path)[0]!;
  return { pem: encodePem('CERTIFICATE', der), info: parseCertificate(der, path) };
}

/**
 * Loads and opens the current intermediate: the only key day-to-day commands need.
 * Refuses a key that does not belong to intermediate.crt, after finishing a roll that
 * stopped between moving the new key and moving its certificate (the one state in which
 * they legitimately disagree).
 */
export function loadAuthority(dir: CaDir, config: CaConfig, passphrase: string): Authority {
  let intermediate = readIssuerCert(dir, CA_FILES.intermediateCert);
  const keyPath = dir.file(CA_FILES.intermediateKey);
  const keyPem = readCaFile(keyPath, FILE_CAPS.key);
  const intermediateKey = openEncryptedKey(keyPem, passphrase, 'the intermediate key');
  const keyType = keyTypeOf(intermediateKey);
  if (!keyType) throw new CaStateError(`${keyPath} holds an unsupported key type`, 'restore it from your backup');
  if (!keyMatchesSpki(intermediateKey, intermediate.info.spkiDer)) {
    const nextPath = dir.file(CA_FILES.nextIntermediateCert);
    const next = existsSync(nextPath) ? readIssuerCert(dir, CA_FILES.nextIntermediateCert) : undefined;
    if (!next || !keyMatchesSpki(intermediateKey, next.info.spkiDer)) {
      throw new CaStateError(
        `${keyPath} does not belong to ${dir.file(CA_FILES.intermediateCert)}`,
        'restore both from the same backup of the CA directory',
      );
    }
    renameSync(nextPath, dir.file(CA_FILES.intermediateCert));
    fsyncDir(dir.path);
    intermediate = next;
  }
  const rootPem = readIssuerCert(dir, CA_FILES.rootCert).pem;
  return { config, intermediate, intermediateKey, keyType, rootPem };
}

export interface LeafRequest extends LeafNames {
  readonly service: string;
  /** The public key to certify (SPKI DER). */
  readonly spkiDer: Buffer;
  readonly keyType: KeyType;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface SignedLeaf {
  readonly der: Buffer;
  readonly pem: string;
  readonly info: CertInfo;
  readonly spkiSha256: string;
}

/** Signs an X509-SVID with the intermediate. */
export async function signLeaf(authority: Authority, req: LeafRequest): Promise<SignedLeaf> {
  const issuerKeyId = authority.intermediate.info.subjectKeyId;
  if (!issuerKeyId) throw new CaStateError('intermediate.crt has no subject key identifier', 'restore it from backup');
  const der = buildLeafDer({
    ...req,
    serialHex: randomSerialHex(),
    issuerNameDer: authority.intermediate.info.subjectDer,
    issuerKeyId,
    issuerKey: authority.intermediateKey,
    issuerKeyType: authority.keyType,
  });
  return {
    der,
    pem: encodePem('CERTIFICATE', der),
    info: parseCertificate(der),
    spkiSha256: createHash('sha256').update(req.spkiDer).digest('hex'),
  };
}

/** Validity of a leaf issued now: back-dated start, end after `ttlMs`. */
export function leafValidity(now: number, ttlMs: number): { notBefore: Date; notAfter: Date } {
  // Whole seconds: X.509 times carry no fraction, and the ledger should agree with the certificate.
  const start = Math.floor(now / 1000) * 1000;
  return { notBefore: new Date(start - BACKDATE_MS), notAfter: new Date(start + ttlMs) };
}

export function spkiOf(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

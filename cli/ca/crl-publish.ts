/**
 * `crl.pem`: the root's CRL, then each live intermediate's, then those intermediates'
 * certificates, so a holder of the root alone can check every CRL's signature and
 * clients that check every level (-crl_check_all, HAProxy, nginx, Node) accept it.
 */
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { decodePemBlocks, encodePem } from '../../common/pem.js';
import type { KeyType } from '../../common/keys.js';
import { CaStateError } from '../../common/errors.js';
import type { Ledger } from '../store/ledger.js';
import { REVOCATION_REASONS } from '../store/ledger.js';
import { CA_FILES, type CaDir } from '../store/ca-dir.js';
import type { IssuerCert } from './authority.js';
import { buildCrlDer, crlToPem, CRL_PEM_LABEL } from './crl-writer.js';

export interface CrlSigner {
  readonly cert: IssuerCert;
  readonly key: KeyObject;
  readonly keyType: KeyType;
}

export interface SignedCrl {
  readonly issuerKeyId: string;
  readonly number: bigint;
  readonly entries: number;
  readonly nextUpdate: Date;
  readonly pem: string;
}

/**
 * Signs the issuer's CRL with every revocation the ledger holds for it. Takes the CRL
 * number inside the caller's transaction, so number and content always agree.
 */
export async function signIssuerCrl(ledger: Ledger, signer: CrlSigner, now: Date, nextUpdate: Date): Promise<SignedCrl> {
  const issuerKeyId = signer.cert.info.subjectKeyId;
  if (!issuerKeyId) throw new CaStateError('an issuer certificate has no subject key identifier', 'restore the CA from backup');
  const revoked = await ledger.listRevokedForCrl(issuerKeyId);
  const number = await ledger.nextCrlNumber(issuerKeyId);
  const der = buildCrlDer({
    issuerDer: signer.cert.info.der,
    issuerKeyId,
    issuerKey: signer.key,
    keyType: signer.keyType,
    number,
    thisUpdate: now,
    nextUpdate,
    entries: revoked.map((r) => ({
      serial: r.serial,
      revokedAt: new Date(r.revokedAt ?? now.getTime()),
      ...(r.revocationReason ? { reasonCode: REVOCATION_REASONS[r.revocationReason] } : {}),
    })),
  });
  await ledger.recordCrlPublished(issuerKeyId, number, now.getTime());
  return { issuerKeyId, number, entries: revoked.length, nextUpdate, pem: crlToPem(der) };
}

/** Writes crl.pem atomically: root CRL, intermediate CRLs, intermediate certificates. */
export function writeCrlBundle(dir: CaDir, rootCrlPem: string, intermediateCrlPems: readonly string[], intermediateCertPems: readonly string[]): void {
  writeFileAtomic(dir.file(CA_FILES.crl), [rootCrlPem, ...intermediateCrlPems, ...intermediateCertPems].join(''), 0o644);
}

/** The CRL blocks of the current crl.pem, in order (the root's comes first). */
export function readCrlBlocks(dir: CaDir): Buffer[] {
  let text: string;
  try {
    text = readFileSync(dir.file(CA_FILES.crl), 'utf8');
  } catch {
    return [];
  }
  return decodePemBlocks(text)
    .filter((b) => b.label === CRL_PEM_LABEL)
    .map((b) => b.der);
}

export function pemOfCrl(der: Buffer): string {
  return encodePem(CRL_PEM_LABEL, der);
}

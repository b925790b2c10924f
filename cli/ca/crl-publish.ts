/**
 * `crl.pem`: the root's CRL, then each live intermediate's, then those intermediates'
 * certificates, so a holder of the root alone can check every CRL's signature and
 * clients that check every level (-crl_check_all, HAProxy, nginx, Node) accept it.
 */
import type { Progress } from '../progress.js';
import type { KeyObject } from 'node:crypto';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { decodePemBlocks } from '../../common/pem.js';
import type { KeyType } from '../../common/keys.js';
import { CaStateError, InputError, SvccaError } from '../../common/errors.js';
import { CRL_PEM_LABEL, crlToPem, parseCrlDer } from '../../common/crl.js';
import { FILE_CAPS, readCappedText } from '../../common/capped-file.js';
import type { Ledger } from '../store/ledger.js';
import { REVOCATION_REASONS } from '../store/ledger.js';
import { CA_FILES, type CaDir } from '../store/ca-dir.js';
import type { IssuerCert } from './authority.js';
import { buildCrlDer } from './crl-writer.js';

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

/** Makes a progress bar for signing one CRL of `total` entries (the command's; silent off a terminal). */
export type CrlProgress = (label: string, total: number) => Progress;

/**
 * Signs the issuer's CRL with every revocation the ledger holds for it. Takes the CRL
 * number inside the caller's transaction, so number and content always agree.
 */
export async function signIssuerCrl(
  ledger: Ledger,
  signer: CrlSigner,
  now: Date,
  nextUpdate: Date,
  atLeast?: bigint,
  progress?: CrlProgress,
): Promise<SignedCrl> {
  const issuerKeyId = signer.cert.info.subjectKeyId;
  if (!issuerKeyId) throw new CaStateError('an issuer certificate has no subject key identifier', 'restore the CA from backup');
  // The number first: taking it locks the issuer's CRL state (PostgreSQL), so the list
  // read after it holds every revocation committed by whoever took the number before.
  const number = await ledger.nextCrlNumber(issuerKeyId, atLeast);
  const revoked = await ledger.listRevokedForCrl(issuerKeyId);
  const bar = progress?.(`CRL #${number}`, revoked.length);
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
    ...(bar ? { onEntries: (done: number) => bar.update(done) } : {}),
  });
  bar?.stop();
  const pem = crlToPem(der);
  await ledger.recordCrlPublished(issuerKeyId, number, now.getTime(), pem);
  return { issuerKeyId, number, entries: revoked.length, nextUpdate, pem };
}

/** Writes crl.pem atomically: root CRL, intermediate CRLs, intermediate certificates. */
export function writeCrlBundle(
  dir: CaDir,
  rootCrlPem: string,
  intermediateCrlPems: readonly string[],
  intermediateCertPems: readonly string[],
): void {
  writeFileAtomic(dir.file(CA_FILES.crl), [rootCrlPem, ...intermediateCrlPems, ...intermediateCertPems].join(''), 0o644);
}

/** The CRL blocks of the current crl.pem, in order (the root's comes first). */
export function readCrlBlocks(dir: CaDir): Buffer[] {
  let text: string;
  try {
    text = readCappedText(dir.file(CA_FILES.crl), FILE_CAPS.crl, {
      error: CaStateError,
      hint: 'move it away and run `svcca crl` to publish it again',
    });
  } catch (err) {
    // Too large is refused; missing means nothing was published yet.
    if (err instanceof SvccaError) throw err;
    return [];
  }
  return decodePemBlocks(text)
    .filter((b) => b.label === CRL_PEM_LABEL)
    .map((b) => b.der);
}

/** The fields of a CRL the CA decides republishing by. */
export interface CrlSummary {
  /** Authority key identifier (hex), undefined when absent. */
  readonly authorityKeyId: string | undefined;
  readonly number: bigint | undefined;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly entries: number;
}

/** Summarizes one of the CA's own CRLs (its signature unchecked); InputError when it is not one. */
export function summarizeCrl(der: Buffer): CrlSummary {
  let crl: ReturnType<typeof parseCrlDer>;
  try {
    crl = parseCrlDer(der);
  } catch (err) {
    throw new InputError('crl.pem holds a CRL that cannot be read', 'run `svcca crl` to write a fresh one', err);
  }
  return {
    authorityKeyId: crl.authorityKeyId,
    number: crl.crlNumber,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    entries: crl.revoked.length,
  };
}

/** What the current crl.pem holds: each CRL's summary by issuer key id, and the root's PEM block. */
export interface PublishedCrls {
  readonly byIssuer: ReadonlyMap<string, CrlSummary>;
  /** The root's CRL exactly as written (copied verbatim when only the intermediates' are re-signed). */
  readonly rootPem: string | undefined;
  readonly rootSummary: CrlSummary | undefined;
}

export function readPublishedCrls(dir: CaDir, rootKeyId: string): PublishedCrls {
  const byIssuer = new Map<string, CrlSummary>();
  let rootPem: string | undefined;
  let rootSummary: CrlSummary | undefined;
  for (const der of readCrlBlocks(dir)) {
    const summary = summarizeCrl(der);
    if (!summary.authorityKeyId) continue;
    byIssuer.set(summary.authorityKeyId, summary);
    if (summary.authorityKeyId === rootKeyId) {
      rootPem = crlToPem(der);
      rootSummary = summary;
    }
  }
  return { byIssuer, rootPem, rootSummary };
}

/** The CRL number to start from for an issuer: one past what crl.pem already shows. */
export function numberFloor(published: PublishedCrls, issuerKeyId: string): bigint {
  const n = published.byIssuer.get(issuerKeyId)?.number;
  return n === undefined ? 1n : n + 1n;
}

/**
 * Writes crl.pem while holding the ledger's write lock, unless the file already holds a
 * newer CRL of one of these issuers: that one was signed after ours was committed, so it
 * lists everything ours does. Two processes publishing at once can therefore never move
 * crl.pem backwards. The newer of the given root CRL and the one on disk is kept. Returns
 * whether it wrote.
 */
export async function writeCrlBundleIfNewer(
  ledger: Ledger,
  dir: CaDir,
  rootKeyId: string,
  rootCrlPem: string,
  signed: readonly SignedCrl[],
  intermediateCertPems: readonly string[],
): Promise<boolean> {
  return ledger.transaction(async (tx) => {
    await tx.lockCrls(signed.map((c) => c.issuerKeyId));
    const current = readPublishedCrls(dir, rootKeyId);
    for (const crl of signed) {
      const there = current.byIssuer.get(crl.issuerKeyId)?.number;
      if (there !== undefined && there > crl.number) return false;
    }
    const ours = summarizeCrl(decodeOne(rootCrlPem)).number ?? 0n;
    const root = current.rootPem && (current.rootSummary?.number ?? 0n) > ours ? current.rootPem : rootCrlPem;
    writeCrlBundle(
      dir,
      root,
      signed.map((c) => c.pem),
      intermediateCertPems,
    );
    return true;
  });
}

function decodeOne(pem: string): Buffer {
  const block = decodePemBlocks(pem).find((b) => b.label === CRL_PEM_LABEL);
  if (!block) throw new CaStateError('the root CRL block is not a CRL', 'run `svcca rotate --intermediate` to re-sign it');
  return block.der;
}

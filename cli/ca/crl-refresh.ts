/**
 * Publishing the intermediates' CRLs: what `revoke`, `crl` and every `rotate` run do.
 * The root's CRL is copied from crl.pem verbatim (only `init` and `rotate --intermediate`
 * hold the root key), the live intermediates' CRLs are re-signed with CRL numbers taken
 * in one ledger transaction (together with the revocation being published, if any), and
 * the file is written after the commit under the ledger's lock. A crash between commit
 * and write leaves crl.pem behind the ledger, which `crlRefreshReason` notices.
 */
import { CaStateError } from '../../common/errors.js';
import { CA_FILES, type CaDir } from '../store/ca-dir.js';
import type { Ledger } from '../store/ledger.js';
import { readIssuerCert, type Authority, type IssuerCert } from './authority.js';
import { numberFloor, readPublishedCrls, signIssuerCrl, writeCrlBundleIfNewer, type CrlProgress, type SignedCrl } from './crl-publish.js';
import { currentSigner, forgetRetiredKey, openRetiredSigner, requireKeyId, retiredIssuers } from './issuers.js';

export interface CaHandles {
  readonly dir: CaDir;
  readonly ledger: Ledger;
  readonly authority: Authority;
  /** The intermediate passphrase, which also opens retired intermediates' keys. */
  readonly passphrase: string;
}

export interface PublishedCrlInfo {
  readonly issuer: string;
  readonly issuerKeyId: string;
  readonly number: string;
  readonly entries: number;
  readonly nextUpdate: string;
}

export interface PublishOutcome {
  readonly crls: readonly PublishedCrlInfo[];
  /** False when a concurrent run had already written a newer crl.pem (which includes ours). */
  readonly written: boolean;
  /** Retired intermediates whose leaves have all expired: dropped from crl.pem, keys deleted. */
  readonly dropped: readonly string[];
}

/** Half of a CRL's validity: republish after that, so no CRL expires while cron runs. */
export const REFRESH_FRACTION = 0.5;
/** Revocation times carry milliseconds, CRL times only seconds. */
const TIME_SLACK_MS = 1000;

export function rootKeyIdOf(dir: CaDir): { root: IssuerCert; rootKeyId: string } {
  const root = readIssuerCert(dir, CA_FILES.rootCert);
  return { root, rootKeyId: requireKeyId(root) };
}

/**
 * Why crl.pem must be republished now, or undefined when it is current: a live
 * intermediate's CRL is missing, past half its validity or behind the ledger (a number
 * or revocation it does not show), or the file still carries an intermediate that
 * has nothing left to publish.
 */
export async function crlRefreshReason(dir: CaDir, ledger: Ledger, intermediate: IssuerCert, now: number): Promise<string | undefined> {
  const { rootKeyId } = rootKeyIdOf(dir);
  const published = readPublishedCrls(dir, rootKeyId);
  const currentKeyId = requireKeyId(intermediate);
  const { live } = await retiredIssuers(dir, ledger, currentKeyId, now);
  const liveIds = new Set([currentKeyId, ...live.map(requireKeyId)]);
  for (const keyId of liveIds) {
    const crl = published.byIssuer.get(keyId);
    if (!crl || crl.nextUpdate === undefined) return `crl.pem has no CRL for intermediate ${keyId}`;
    const validity = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
    if (now >= crl.thisUpdate.getTime() + validity * REFRESH_FRACTION) return 'the CRLs are past half of their validity';
    if ((crl.number ?? 0n) < (await ledger.currentCrlNumber(keyId))) return 'crl.pem is behind the ledger (an interrupted publication)';
    if ((await ledger.lastRevocationAt(keyId)) > crl.thisUpdate.getTime() + TIME_SLACK_MS)
      return 'the ledger holds a revocation crl.pem does not';
  }
  for (const keyId of published.byIssuer.keys()) {
    if (keyId !== rootKeyId && !liveIds.has(keyId)) return 'a retired intermediate has no unexpired leaves left';
  }
  return undefined;
}

/** The validity of the CRLs being replaced, so a `crl --next-update` choice survives cron. */
export function currentCrlValidityMs(dir: CaDir, intermediate: IssuerCert, fallbackMs: number): number {
  const { rootKeyId } = rootKeyIdOf(dir);
  const crl = readPublishedCrls(dir, rootKeyId).byIssuer.get(requireKeyId(intermediate));
  if (!crl?.nextUpdate) return fallbackMs;
  const ms = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
  return ms > 0 ? ms : fallbackMs;
}

/**
 * Re-signs every live intermediate's CRL and rewrites crl.pem. `mutate` runs first, in the
 * same transaction, so a revocation and the CRL numbers that publish it commit together.
 */
export async function publishIntermediateCrls<T>(
  h: CaHandles,
  opts: { now: number; validityMs: number; why: string; actor: string; mutate?: (tx: Ledger) => Promise<T>; progress?: CrlProgress },
): Promise<{ outcome: PublishOutcome; result: T | undefined }> {
  const { dir, ledger, authority } = h;
  const { rootKeyId } = rootKeyIdOf(dir);
  const published = readPublishedCrls(dir, rootKeyId);
  if (!published.rootPem) {
    throw new CaStateError(
      `${dir.file(CA_FILES.crl)} has no CRL signed by the root`,
      'restore crl.pem from your backup, or run `svcca rotate --intermediate` (with the root passphrase) to sign a new one',
    );
  }
  const currentKeyId = requireKeyId(authority.intermediate);
  const { live, finished } = await retiredIssuers(dir, ledger, currentKeyId, opts.now);
  // Every key is opened before the transaction: a wrong passphrase changes nothing.
  const signers = [currentSigner(authority), ...live.map((cert) => openRetiredSigner(dir, cert, h.passphrase))];
  const now = new Date(opts.now);
  const nextUpdate = new Date(opts.now + opts.validityMs);
  const { result, signed } = await ledger.transaction(async (tx) => {
    const result = opts.mutate ? await opts.mutate(tx) : undefined;
    const signed: SignedCrl[] = [];
    for (const signer of signers) {
      signed.push(await signIssuerCrl(tx, signer, now, nextUpdate, numberFloor(published, requireKeyId(signer.cert)), opts.progress));
    }
    await tx.appendEvent({
      kind: 'crl',
      actor: opts.actor,
      why: `${opts.why}: ${signed.map((c) => `#${c.number} (${c.entries} entries)`).join(', ')}`,
    });
    return { result, signed };
  });
  const written = await writeCrlBundleIfNewer(
    ledger,
    dir,
    rootKeyId,
    published.rootPem,
    signed,
    signers.map((s) => s.cert.pem),
  );
  const dropped: string[] = [];
  if (written) {
    for (const cert of finished) {
      forgetRetiredKey(dir, cert);
      dropped.push(cert.info.subject);
    }
  }
  return {
    result,
    outcome: {
      written,
      dropped,
      crls: signed.map((c, i) => ({
        issuer: signers[i]!.cert.info.subject,
        issuerKeyId: c.issuerKeyId,
        number: c.number.toString(),
        entries: c.entries,
        nextUpdate: c.nextUpdate.toISOString(),
      })),
    },
  };
}

/** When the root's CRL in crl.pem expires (cron cannot re-sign it), or undefined if there is none. */
export function rootCrlNextUpdate(dir: CaDir): Date | undefined {
  const { rootKeyId } = rootKeyIdOf(dir);
  return readPublishedCrls(dir, rootKeyId).rootSummary?.nextUpdate;
}

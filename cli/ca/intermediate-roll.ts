/**
 * `rotate --intermediate`: a new intermediate key signed by the root, the old one kept in
 * retired/ to sign the CRL for its own leaves until they have expired, and the root's CRL
 * re-signed (its nextUpdate reaching past the new intermediate's end). The root, and so
 * every service's trust bundle, stays the same.
 *
 * Order, so that kill -9 anywhere leaves a CA that works:
 *   1. copy the current intermediate to retired/, stage intermediate.next.{key,crt};
 *   2. one transaction: the `roll` event and the CRL numbers (root and intermediates);
 *   3. write crl.pem; 4. rename the key, then the certificate, into place.
 * Before 2 commits, a staged roll is abandoned by the next `rotate --intermediate`; after,
 * it is finished by it (loadAuthority also finishes step 4 if it stopped between renames).
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { fsyncDir, writeFileAtomic } from '../../common/atomic-file.js';
import { CaStateError } from '../../common/errors.js';
import { exportEncryptedKeyPem, keyMatchesSpki, openEncryptedKey } from '../../common/keys.js';
import { FILE_CAPS } from '../../common/capped-file.js';
import { CA_FILES, readCaFile, type CaConfig, type CaDir } from '../store/ca-dir.js';
import type { Ledger } from '../store/ledger.js';
import { readIssuerCert, type Authority, type IssuerCert } from './authority.js';
import { signIntermediate } from './ca-certificates.js';
import { numberFloor, readPublishedCrls, signIssuerCrl, writeCrlBundleIfNewer, type CrlSigner, type SignedCrl } from './crl-publish.js';
import { currentSigner, openRetiredSigner, requireKeyId, retireCopy, retiredIssuers } from './issuers.js';

/** The root's CRL stays valid this long past the newest intermediate's end. */
export const ROOT_CRL_MARGIN_MS = 86_400_000;

export interface RollInput {
  readonly dir: CaDir;
  readonly config: CaConfig;
  readonly ledger: Ledger;
  readonly authority: Authority;
  readonly passphrase: string;
  readonly rootPassphrase: string;
  readonly crlValidityMs: number;
  readonly actor: string;
  readonly now: number;
}

export interface RollOutcome {
  readonly previous: { serial: string; notAfter: string; subject: string };
  readonly current: { serial: string; notAfter: string; subject: string };
  /** True when this run finished a roll an earlier, interrupted run had committed. */
  readonly resumed: boolean;
  readonly rootCrlNumber: string;
}

function openRootKey(dir: CaDir, root: IssuerCert, rootPassphrase: string): KeyObject {
  const path = dir.file(CA_FILES.rootKey);
  const pem = readCaFile(
    path,
    FILE_CAPS.key,
    () =>
      new CaStateError(
        `${path} is not here: rolling the intermediate needs the root key`,
        'bring root.key back from where you keep it offline, then run this again',
      ),
  );
  const key = openEncryptedKey(pem, rootPassphrase, 'the root key');
  if (!keyMatchesSpki(key, root.info.spkiDer))
    throw new CaStateError(`${path} does not belong to root.crt`, 'restore both from the same backup');
  return key;
}

function generationOf(subject: string, fallback: number): number {
  const m = /intermediate CA (\d+) for/.exec(subject);
  return m ? Number(m[1]) + 1 : fallback;
}

async function makeIntermediate(input: RollInput, root: IssuerCert, rootKey: KeyObject): Promise<{ cert: IssuerCert; keyPem: string }> {
  const { authority, config, now } = input;
  const made = await signIntermediate({
    root: { cert: root, key: rootKey },
    keyType: authority.keyType,
    trustDomain: config.trustDomain,
    generation: generationOf(authority.intermediate.info.subject, 2),
    now,
  });
  return { cert: made.cert, keyPem: exportEncryptedKeyPem(made.key, input.passphrase) };
}

/** Rolls the intermediate (or finishes a committed roll that was interrupted). */
export async function rollIntermediate(input: RollInput): Promise<RollOutcome> {
  const { dir, ledger, authority } = input;
  const root = readIssuerCert(dir, CA_FILES.rootCert);
  const rootKeyId = requireKeyId(root);
  // Both passphrases are checked before anything is written.
  const rootKey = openRootKey(dir, root, input.rootPassphrase);
  const old = authority.intermediate;
  const nextCertPath = dir.file(CA_FILES.nextIntermediateCert);
  const nextKeyPath = dir.file(CA_FILES.nextIntermediateKey);

  let next: IssuerCert | undefined;
  let resumed = false;
  if (existsSync(nextCertPath)) {
    const staged = readIssuerCert(dir, CA_FILES.nextIntermediateCert);
    if (await ledger.hasEvent('roll', staged.info.serialHex)) {
      next = staged;
      resumed = true;
    }
  }
  if (!next) {
    rmSync(nextCertPath, { force: true });
    rmSync(nextKeyPath, { force: true });
    const made = await makeIntermediate(input, root, rootKey);
    retireCopy(dir, old, readCaFile(dir.file(CA_FILES.intermediateKey), FILE_CAPS.key));
    writeFileAtomic(nextKeyPath, made.keyPem, 0o600);
    writeFileAtomic(nextCertPath, made.cert.pem, 0o644);
    next = made.cert;
  }
  const nextKey = openEncryptedKey(
    readCaFile(existsSync(nextKeyPath) ? nextKeyPath : dir.file(CA_FILES.intermediateKey), FILE_CAPS.key),
    input.passphrase,
    'the new intermediate key',
  );
  const nextSigner: CrlSigner = { cert: next, key: nextKey, keyType: authority.keyType };

  const nextKeyId = requireKeyId(next);
  const { live } = await retiredIssuers(dir, ledger, nextKeyId, input.now);
  const signers: CrlSigner[] = [nextSigner];
  const oldKeyId = requireKeyId(old);
  if (oldKeyId !== nextKeyId) {
    // The old intermediate's CRL is published while any of its leaves is unexpired.
    if ((await ledger.latestNotAfter(oldKeyId)) > input.now) signers.push(currentSigner(authority));
  }
  for (const cert of live) if (requireKeyId(cert) !== oldKeyId) signers.push(openRetiredSigner(dir, cert, input.passphrase));

  const published = readPublishedCrls(dir, rootKeyId);
  const now = new Date(input.now);
  const { rootCrl, signed } = await ledger.transaction(async (tx) => {
    const rootCrl = await signIssuerCrl(
      tx,
      { cert: root, key: rootKey, keyType: authority.keyType },
      now,
      new Date(next.info.notAfter.getTime() + ROOT_CRL_MARGIN_MS),
      numberFloor(published, rootKeyId),
    );
    const signed: SignedCrl[] = [];
    for (const s of signers)
      signed.push(await signIssuerCrl(tx, s, now, new Date(input.now + input.crlValidityMs), numberFloor(published, requireKeyId(s.cert))));
    if (!resumed) {
      await tx.appendEvent({
        kind: 'roll',
        serial: next.info.serialHex,
        actor: input.actor,
        why: `intermediate ${old.info.serialHex} retired; ${next.info.subject} until ${next.info.notAfter.toISOString()}`,
      });
    } else {
      await tx.appendEvent({ kind: 'crl', actor: input.actor, why: `finished the interrupted roll to ${next.info.serialHex}` });
    }
    return { rootCrl, signed };
  });
  await writeCrlBundleIfNewer(
    ledger,
    dir,
    rootKeyId,
    rootCrl.pem,
    signed,
    signers.map((s) => s.cert.pem),
  );

  if (existsSync(nextKeyPath)) renameSync(nextKeyPath, dir.file(CA_FILES.intermediateKey));
  if (existsSync(nextCertPath)) renameSync(nextCertPath, dir.file(CA_FILES.intermediateCert));
  fsyncDir(dir.path);

  return {
    previous: { serial: old.info.serialHex, notAfter: old.info.notAfter.toISOString(), subject: old.info.subject },
    current: { serial: next.info.serialHex, notAfter: next.info.notAfter.toISOString(), subject: next.info.subject },
    resumed,
    rootCrlNumber: rootCrl.number.toString(),
  };
}

/** True when a roll is staged but not yet switched (cron says so; it never finishes it). */
export function rollPending(dir: CaDir): boolean {
  return existsSync(dir.file(CA_FILES.nextIntermediateCert));
}

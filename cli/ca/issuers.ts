/**
 * Which intermediates are live. The current one (intermediate.crt) signs leaves; a
 * retired one (retired/<key id>.crt and .key, kept by `rotate --intermediate`) signs
 * nothing but the CRL for its own leaves, and only until the last of them has expired.
 * Retired keys keep the intermediate's passphrase: they are the files the roll moved.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirectories, writeFileAtomic } from '../../common/atomic-file.js';
import { CaStateError } from '../../common/errors.js';
import { keyMatchesSpki, keyTypeOf, openEncryptedKey } from '../../common/keys.js';
import { FILE_CAPS } from '../../common/capped-file.js';
import { CA_FILES, readCaFile, type CaDir } from '../store/ca-dir.js';
import type { Ledger } from '../store/ledger.js';
import { readIssuerCert, type Authority, type IssuerCert } from './authority.js';
import type { CrlSigner } from './crl-publish.js';

export function retiredDir(dir: CaDir): string {
  return dir.file(CA_FILES.retired);
}

function retiredName(keyId: string, ext: 'crt' | 'key'): string {
  return join(CA_FILES.retired, `${keyId}.${ext}`);
}

/** Every retired intermediate on disk, oldest file name order (key ids are random). */
export function listRetired(dir: CaDir): IssuerCert[] {
  const path = retiredDir(dir);
  if (!existsSync(path)) return [];
  return readdirSync(path)
    .filter((f) => f.endsWith('.crt'))
    .sort()
    .map((f) => readIssuerCert(dir, join(CA_FILES.retired, f)));
}

/**
 * Copies the current intermediate into retired/ (idempotent). Done before the switch, so
 * that at every moment some file holds each key that may still need to sign a CRL.
 */
export function retireCopy(dir: CaDir, cert: IssuerCert, encryptedKeyPem: string): void {
  const keyId = requireKeyId(cert);
  makeDirectories(retiredDir(dir), 0o700);
  writeFileAtomic(dir.file(retiredName(keyId, 'key')), encryptedKeyPem, 0o600);
  writeFileAtomic(dir.file(retiredName(keyId, 'crt')), cert.pem, 0o644);
}

export function requireKeyId(cert: IssuerCert): string {
  const keyId = cert.info.subjectKeyId;
  if (!keyId)
    throw new CaStateError(`the intermediate ${cert.info.subject} has no subject key identifier`, 'restore the CA directory from backup');
  return keyId;
}

export interface LiveIssuers {
  /** Retired intermediates with a leaf not yet expired at `now`. */
  readonly live: readonly IssuerCert[];
  /** Retired intermediates whose leaves have all expired: their CRL is no longer published. */
  readonly finished: readonly IssuerCert[];
}

export async function retiredIssuers(dir: CaDir, ledger: Ledger, currentKeyId: string, now: number): Promise<LiveIssuers> {
  const live: IssuerCert[] = [];
  const finished: IssuerCert[] = [];
  for (const cert of listRetired(dir)) {
    const keyId = requireKeyId(cert);
    // A copy made by a roll that never switched is the current intermediate itself.
    if (keyId === currentKeyId) continue;
    if ((await ledger.latestNotAfter(keyId)) > now) live.push(cert);
    else finished.push(cert);
  }
  return { live, finished };
}

/** Opens a retired intermediate's key (the intermediate passphrase) for signing its CRL. */
export function openRetiredSigner(dir: CaDir, cert: IssuerCert, passphrase: string): CrlSigner {
  const keyId = requireKeyId(cert);
  const path = dir.file(retiredName(keyId, 'key'));
  const pem = readCaFile(
    path,
    FILE_CAPS.key,
    () =>
      new CaStateError(
        `${path} is missing: the CRL of a retired intermediate cannot be signed`,
        'restore it from your backup of the CA directory',
      ),
  );
  const key = openEncryptedKey(pem, passphrase, `the retired intermediate key ${path}`);
  const keyType = keyTypeOf(key);
  if (!keyType || !keyMatchesSpki(key, cert.info.spkiDer)) {
    throw new CaStateError(`${path} does not belong to its certificate`, 'restore retired/ from your backup of the CA directory');
  }
  return { cert, key, keyType };
}

/** The current intermediate as a CRL signer. */
export function currentSigner(authority: Authority): CrlSigner {
  return { cert: authority.intermediate, key: authority.intermediateKey, keyType: authority.keyType };
}

/** Deletes the key of a retired intermediate that has nothing left to sign for. */
export function forgetRetiredKey(dir: CaDir, cert: IssuerCert): boolean {
  const path = dir.file(retiredName(requireKeyId(cert), 'key'));
  if (!existsSync(path)) return false;
  rmSync(path, { force: true });
  return true;
}

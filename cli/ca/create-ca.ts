/**
 * Creating a CA (`svcca init`): a root (10 y) and an issuing intermediate (1 y) with a
 * name constraint on the trust domain, keys encrypted at rest, an empty ledger and the
 * first crl.pem. Nothing half-written: a failure removes every file it wrote.
 */
import { rmSync } from 'node:fs';
import { writeFileAtomic, fsyncDir } from '../../common/atomic-file.js';
import { exportEncryptedKeyPem, type KeyType } from '../../common/keys.js';
import type { CertInfo } from '../../common/x509.js';
import {
  CA_FILES,
  createCaDir,
  writeConfig,
  DEFAULT_CRL_NEXT_UPDATE_MS,
  DEFAULT_MAX_TTL_MS,
  DEFAULT_TTL_MS,
  type CaConfig,
  type CaDir,
} from '../store/ca-dir.js';
import { signIssuerCrl, writeCrlBundle } from './crl-publish.js';
import { selfSignRoot, signIntermediate } from './ca-certificates.js';
import { openLedger } from './ca-session.js';
import { ROOT_CRL_MARGIN_MS } from './intermediate-roll.js';

export interface CreateCaRequest {
  /** The CA directory to create; refused when a CA is already there. */
  readonly caDir: string;
  readonly trustDomain: string;
  readonly keyType: KeyType;
  /** Encrypts the intermediate key. */
  readonly passphrase: string;
  /** Encrypts the root key (the intermediate's passphrase unless the user gave another). */
  readonly rootPassphrase: string;
  readonly actor: string;
  /** A postgres:// URL for a ledger in PostgreSQL; absent: ledger.db in the CA directory. */
  readonly ledger?: string;
}

export interface CreatedCa {
  readonly dir: CaDir;
  readonly config: CaConfig;
  readonly root: CertInfo;
  readonly intermediate: CertInfo;
}

export async function createCa(req: CreateCaRequest): Promise<CreatedCa> {
  const dir = createCaDir(req.caDir);
  const written: string[] = [];
  const write = (name: string, data: string, mode: number) => {
    written.push(dir.file(name));
    writeFileAtomic(dir.file(name), data, mode);
  };
  try {
    const now = Date.now();
    const root = await selfSignRoot(req.keyType, req.trustDomain, now);
    const intermediate = await signIntermediate({ root, keyType: req.keyType, trustDomain: req.trustDomain, generation: 1, now });
    write(CA_FILES.rootKey, exportEncryptedKeyPem(root.key, req.rootPassphrase), 0o600);
    write(CA_FILES.intermediateKey, exportEncryptedKeyPem(intermediate.key, req.passphrase), 0o600);
    write(CA_FILES.rootCert, root.cert.pem, 0o644);
    write(CA_FILES.intermediateCert, intermediate.cert.pem, 0o644);
    write(CA_FILES.trustBundle, root.cert.pem, 0o644);

    const config: CaConfig = {
      version: 1,
      trustDomain: req.trustDomain,
      keyType: req.keyType,
      defaultTtlMs: DEFAULT_TTL_MS,
      maxTtlMs: DEFAULT_MAX_TTL_MS,
      crlNextUpdateMs: DEFAULT_CRL_NEXT_UPDATE_MS,
      ...(req.ledger !== undefined ? { ledger: req.ledger } : {}),
    };
    if (config.ledger === undefined)
      written.push(dir.file(CA_FILES.ledger), dir.file(`${CA_FILES.ledger}-wal`), dir.file(`${CA_FILES.ledger}-shm`));
    // A PostgreSQL ledger's transaction rolls back on failure; its schema, once created, stays.
    const ledger = await openLedger(dir, config, { create: true });
    try {
      await ledger.transaction(async (tx) => {
        // The root's CRL must outlive the newest intermediate: only init and
        // `rotate --intermediate` hold the root key to re-sign it.
        const at = new Date(now);
        const rootCrl = await signIssuerCrl(
          tx,
          { ...root, keyType: req.keyType },
          at,
          new Date(intermediate.cert.info.notAfter.getTime() + ROOT_CRL_MARGIN_MS),
        );
        const intCrl = await signIssuerCrl(tx, { ...intermediate, keyType: req.keyType }, at, new Date(now + config.crlNextUpdateMs));
        written.push(dir.file(CA_FILES.crl));
        writeCrlBundle(dir, rootCrl.pem, [intCrl.pem], [intermediate.cert.pem]);
        await tx.appendEvent({ kind: 'init', actor: req.actor, why: `trust domain ${req.trustDomain}, ${req.keyType}` });
      });
      // The config is written last: its presence is what makes the directory a CA.
      written.push(dir.file(CA_FILES.config));
      writeConfig(dir, config);
      fsyncDir(dir.path);
    } finally {
      await ledger.close();
    }
    return { dir, config, root: root.cert.info, intermediate: intermediate.cert.info };
  } catch (err) {
    for (const path of written) rmSync(path, { force: true });
    throw err;
  }
}

/**
 * The CA data directory: file names, modes, and the `config` file.
 * Only `init` creates it; every other command refuses a missing or foreign one.
 */
import { accessSync, chmodSync, constants, existsSync, statSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { CaStateError, SvccaError, UsageError, errnoCode } from '../../common/errors.js';
import { FILE_CAPS, readCappedText, type FileCap } from '../../common/capped-file.js';
import { makeDirectories, writeFileAtomic } from '../../common/atomic-file.js';
import type { KeyType } from '../../common/keys.js';

export const CA_FILES = {
  rootCert: 'root.crt',
  rootKey: 'root.key',
  intermediateCert: 'intermediate.crt',
  intermediateKey: 'intermediate.key',
  trustBundle: 'ca.crt',
  crl: 'crl.pem',
  ledger: 'ledger.db',
  config: 'config',
  issued: 'issued',
  /** Retired intermediates kept to sign CRLs for their own leaves. */
  retired: 'retired',
  /** A rolled intermediate staged before the switch (see cli/ca/intermediate-roll.ts). */
  nextIntermediateCert: 'intermediate.next.crt',
  nextIntermediateKey: 'intermediate.next.key',
} as const;

export const DEFAULT_CA_DIR = './ca-data';

export interface CaConfig {
  /** Format version of this file. */
  readonly version: 1;
  readonly trustDomain: string;
  readonly keyType: KeyType;
  /** Default leaf lifetime, ms. */
  readonly defaultTtlMs: number;
  /** Longest leaf lifetime `issue` accepts, ms (30 days unless changed here). */
  readonly maxTtlMs: number;
  /** CRL validity, ms. */
  readonly crlNextUpdateMs: number;
  /**
   * Where the ledger is: absent for ledger.db in this directory (SQLite), or a
   * postgres://USER@HOST:PORT/DB URL (never a password; see cli/store/ledger-url.ts).
   */
  readonly ledger?: string;
}

export const DEFAULT_TTL_MS = 24 * 3_600_000;
export const DEFAULT_MAX_TTL_MS = 30 * 86_400_000;
export const DEFAULT_CRL_NEXT_UPDATE_MS = 24 * 3_600_000;

export class CaDir {
  readonly path: string;
  constructor(path: string) {
    this.path = resolve(path);
  }
  file(name: string): string {
    return join(this.path, name);
  }
  /** Default credential-set folder of a service (a service path nests). */
  issuedSetDir(service: string): string {
    return join(this.path, CA_FILES.issued, ...service.split('/'));
  }
}

/** Opens an existing CA directory or explains exactly why it cannot. */
export function openCaDir(path: string): { dir: CaDir; config: CaConfig } {
  const dir = new CaDir(path);
  let st: Stats;
  try {
    st = statSync(dir.path);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new CaStateError(
        `no CA at ${dir.path}`,
        'run `svcca init --trust-domain <td>` first, or point --dir / SVCCA_DIR at your CA directory',
      );
    }
    throw new CaStateError(`cannot read ${dir.path} (${errnoCode(err)})`, 'check the path and its permissions');
  }
  if (!st.isDirectory())
    throw new CaStateError(`--dir ${dir.path} is a file, not a CA directory`, 'point --dir at the directory `svcca init` created');
  try {
    accessSync(dir.path, constants.R_OK | constants.X_OK);
  } catch (err) {
    if (errnoCode(err) === 'EACCES') {
      throw new CaStateError(
        `${dir.path} is not accessible to this user (uid ${process.getuid?.() ?? '?'}; the CA directory is 0700, owned by uid ${st.uid})`,
        'run svcca as the user that ran `svcca init`',
      );
    }
    throw err;
  }
  const configPath = dir.file(CA_FILES.config);
  if (!existsSync(configPath) || !existsSync(dir.file(CA_FILES.intermediateCert))) {
    throw new CaStateError(
      `${dir.path} is not an svcca CA directory (no config or intermediate.crt)`,
      'run `svcca init` to create one, or point --dir at the right directory',
    );
  }
  return { dir, config: readConfig(configPath) };
}

function readConfig(path: string): CaConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(
      readCaFile(
        path,
        FILE_CAPS.caConfig,
        () => new CaStateError(`${path} cannot be read`, 'restore it from backup; it holds the trust domain and defaults'),
      ),
    );
  } catch (err) {
    if (err instanceof SvccaError) throw err;
    throw new CaStateError(`${path} is not valid JSON`, 'restore it from backup; it holds the trust domain and defaults');
  }
  const c = parsed as Partial<CaConfig>;
  if (typeof c !== 'object' || c === null || c.version !== 1 || typeof c.trustDomain !== 'string' || typeof c.keyType !== 'string') {
    throw new CaStateError(`${path} is not an svcca config (version 1)`, 'restore it from backup');
  }
  if (c.ledger !== undefined && (typeof c.ledger !== 'string' || !/^postgres(ql)?:\/\//i.test(c.ledger))) {
    throw new CaStateError(
      `${path}: ledger must be a postgres:// URL (or absent for ledger.db)`,
      'fix the value, or run `svcca ledger copy --to URL` to move the ledger',
    );
  }
  for (const key of ['defaultTtlMs', 'maxTtlMs', 'crlNextUpdateMs'] as const) {
    if (typeof c[key] !== 'number' || !(c[key]! > 0))
      throw new CaStateError(`${path}: ${key} must be a positive number of milliseconds`, 'fix the value or restore the file');
  }
  return c as CaConfig;
}

/**
 * A file of the CA directory, capped at `cap` (an oversized one is refused as such);
 * any other failure to read it becomes `unreadable()`: by default "missing or unreadable,
 * restore it from your backup".
 */
export function readCaFile(
  path: string,
  cap: FileCap,
  unreadable: () => SvccaError = () =>
    new CaStateError(`${path} is missing or unreadable`, 'restore it from your backup of the CA directory'),
): string {
  try {
    return readCappedText(path, cap, { error: CaStateError, hint: 'restore it from your backup of the CA directory' });
  } catch (err) {
    if (err instanceof SvccaError) throw err;
    throw unreadable();
  }
}

export function writeConfig(dir: CaDir, config: CaConfig): void {
  writeFileAtomic(dir.file(CA_FILES.config), `${JSON.stringify(config, null, 2)}\n`, 0o600);
}

/** Creates a new CA directory (0700); refuses a non-empty one. */
export function createCaDir(path: string): CaDir {
  const dir = new CaDir(path);
  try {
    const st = statSync(dir.path);
    if (!st.isDirectory()) throw new UsageError(`--dir ${dir.path} is a file`, 'point --dir at a new or empty directory');
    if (existsSync(dir.file(CA_FILES.config)) || existsSync(dir.file(CA_FILES.rootKey)) || existsSync(dir.file(CA_FILES.intermediateKey))) {
      throw new CaStateError(
        `a CA already exists at ${dir.path}; init never touches an existing CA`,
        'use another --dir, or move the old CA away first',
      );
    }
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOTDIR')
      throw new UsageError(`--dir ${dir.path} lies below a file, not a directory`, 'point --dir at a new or empty directory');
    if (code !== 'ENOENT') throw err;
  }
  makeDirectories(dir.path, 0o700);
  // An empty folder made beforehand keeps its own mode (0755, even 0777): the CA's is 0700.
  chmodSync(dir.path, 0o700);
  return dir;
}

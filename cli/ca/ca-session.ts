/**
 * Opening a CA: the one place that finds the directory, reads its config, opens the
 * ledger and (for commands that sign) decrypts the intermediate key. Commands hand it a
 * directory and a passphrase source; they never open the ledger themselves, so another
 * ledger back end is chosen here alone.
 */
import { openCaDir, CA_FILES, type CaConfig, type CaDir } from '../store/ca-dir.js';
import { SqliteLedger } from '../store/sqlite-ledger.js';
import type { Ledger } from '../store/ledger.js';
import { loadAuthority, type Authority } from './authority.js';
import { requireSecret, type SecretSource } from '../secrets.js';

/** Where the intermediate key's passphrase comes from: --passphrase-file, SVCCA_PASSPHRASE or a prompt. */
export function intermediatePassphraseSource(passphraseFile: string | undefined, env: NodeJS.ProcessEnv, confirm = false): SecretSource {
  return {
    what: 'passphrase for the intermediate key',
    file: passphraseFile,
    fileFlag: '--passphrase-file',
    envVar: 'SVCCA_PASSPHRASE',
    env,
    confirm,
  };
}

/**
 * The ledger of the CA directory `dir`: the PostgreSQL database its config names, else
 * ledger.db beside it. `create` only for a new CA. node-postgres is loaded only for the former;
 * `maxConnections` sizes its pool (4 by default: a command; a server handling requests in
 * parallel wants more).
 */
export async function openLedger(
  dir: CaDir,
  config: Pick<CaConfig, 'ledger'>,
  opts: { create?: boolean; maxConnections?: number } = {},
): Promise<Ledger> {
  if (config.ledger !== undefined) return (await import('../store/postgres-ledger.js')).PostgresLedger.open(config.ledger, dir.path, opts);
  return SqliteLedger.open(dir.file(CA_FILES.ledger), { create: opts.create });
}

export interface ReadOnlyCa {
  readonly dir: CaDir;
  readonly config: CaConfig;
  readonly ledger: Ledger;
  close(): Promise<void>;
}

export interface CaSession extends ReadOnlyCa {
  authority: Authority;
  /** Kept: it also opens retired intermediates' keys and the new key after a roll. */
  readonly passphrase: string;
  /** Reloads the intermediate after a roll. */
  reload(): void;
}

/** The ledger and config, without any key: for list, inspect and friends. */
export async function openCaForReading(caDir: string): Promise<ReadOnlyCa> {
  const { dir, config } = openCaDir(caDir);
  const ledger = await openLedger(dir, config);
  return { dir, config, ledger, close: () => ledger.close() };
}

/** Everything needed to sign. The passphrase is read and checked before the ledger is opened. */
export async function openCaSession(caDir: string, passphraseSource: SecretSource): Promise<CaSession> {
  const { dir, config } = openCaDir(caDir);
  const passphrase = await requireSecret(passphraseSource);
  const authority = loadAuthority(dir, config, passphrase);
  const ledger = await openLedger(dir, config);
  const session: CaSession = {
    dir,
    config,
    ledger,
    authority,
    passphrase,
    reload() {
      session.authority = loadAuthority(dir, config, passphrase);
    },
    close: () => ledger.close(),
  };
  return session;
}

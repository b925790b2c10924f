/**
 * Opening the CA for a command: directory, config, ledger, and (when signing) the
 * intermediate key, with its passphrase from file, environment or prompt.
 */
import { openCaDir, CA_FILES, type CaConfig, type CaDir } from './store/ca-dir.js';
import { SqliteLedger } from './store/sqlite-ledger.js';
import type { Ledger } from './store/ledger.js';
import { loadAuthority, type Authority } from './ca/authority.js';
import { requireSecret } from './secrets.js';
import type { CommandContext } from './context.js';

export interface OpenCa {
  readonly dir: CaDir;
  readonly config: CaConfig;
  readonly ledger: Ledger;
  readonly authority: Authority;
  close(): void;
}

export interface ReadOnlyCa {
  readonly dir: CaDir;
  readonly config: CaConfig;
  readonly ledger: Ledger;
  close(): void;
}

/** The ledger and config, without any key: for list, inspect and friends. */
export function openCaForReading(ctx: CommandContext): ReadOnlyCa {
  const { dir, config } = openCaDir(ctx.global.dir);
  const ledger = SqliteLedger.open(dir.file(CA_FILES.ledger));
  return { dir, config, ledger, close: () => ledger.close() };
}

export function intermediatePassphrase(ctx: CommandContext, passphraseFile: string | undefined): Promise<string> {
  return requireSecret({ what: 'passphrase for the intermediate key', file: passphraseFile, fileFlag: '--passphrase-file', envVar: 'SVCCA_PASSPHRASE', env: ctx.env });
}

/** Everything needed to sign. The passphrase is checked before the ledger is touched. */
export async function openCa(ctx: CommandContext, opts: { passphraseFile?: string | undefined }): Promise<OpenCa> {
  const { dir, config } = openCaDir(ctx.global.dir);
  const passphrase = await intermediatePassphrase(ctx, opts.passphraseFile);
  const authority = loadAuthority(dir, config, passphrase);
  const ledger = SqliteLedger.open(dir.file(CA_FILES.ledger));
  return { dir, config, ledger, authority, close: () => ledger.close() };
}

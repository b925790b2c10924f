/**
 * Opening the CA for the commands that sign CRLs (rotate, revoke, crl): like open-ca's
 * openCa, but keeping the passphrase, which also opens retired intermediates' keys.
 * Every secret is read and checked before the ledger is opened.
 */
import { openCaDir, CA_FILES, type CaConfig, type CaDir } from '../store/ca-dir.js';
import { SqliteLedger } from '../store/sqlite-ledger.js';
import type { Ledger } from '../store/ledger.js';
import { loadAuthority, type Authority } from './authority.js';
import { intermediatePassphrase } from '../open-ca.js';
import type { CommandContext } from '../context.js';

export interface CaSession {
  readonly dir: CaDir;
  readonly config: CaConfig;
  readonly ledger: Ledger;
  authority: Authority;
  readonly passphrase: string;
  /** Reloads the intermediate after a roll. */
  reload(): void;
  close(): void;
}

export async function openCaSession(ctx: CommandContext, passphraseFile: string | undefined): Promise<CaSession> {
  const { dir, config } = openCaDir(ctx.global.dir);
  const passphrase = await intermediatePassphrase(ctx, passphraseFile);
  const authority = loadAuthority(dir, config, passphrase);
  const ledger = SqliteLedger.open(dir.file(CA_FILES.ledger));
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

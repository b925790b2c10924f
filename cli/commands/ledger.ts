/**
 * `svcca ledger migrate` and `svcca ledger copy --to URL`: the only commands that change
 * where the ledger is or its schema. Every other command refuses a schema that is not
 * this binary's and names the command to run.
 */
import { CaStateError } from '../../common/errors.js';
import { CA_FILES, openCaDir, writeConfig } from '../store/ca-dir.js';
import { PostgresLedger } from '../store/postgres-ledger.js';
import { SqliteLedger, SCHEMA_VERSION as SQLITE_SCHEMA_VERSION } from '../store/sqlite-ledger.js';
import { copySqliteToPostgres } from '../store/ledger-copy.js';
import { parseLedgerUrl } from '../store/ledger-url.js';
import type { CommandContext } from '../context.js';

export interface LedgerCopyOptions {
  readonly to: string;
}

export async function runLedgerMigrate(ctx: CommandContext): Promise<void> {
  const { dir, config } = openCaDir(ctx.global.dir);
  if (config.ledger === undefined) {
    // SQLite ledgers are brought forward when opened; this says where it stands.
    const ledger = SqliteLedger.open(dir.file(CA_FILES.ledger));
    await ledger.close();
    ctx.out.line(`Ledger ${dir.file(CA_FILES.ledger)} (SQLite) is at schema ${SQLITE_SCHEMA_VERSION}, this svcca's`);
    ctx.out.result({ ledger: dir.file(CA_FILES.ledger), from: SQLITE_SCHEMA_VERSION, to: SQLITE_SCHEMA_VERSION });
    return;
  }
  const ledger = PostgresLedger.open(config.ledger, dir.path, { env: ctx.env });
  try {
    const { from, to } = await ledger.migrate();
    ctx.out.line(
      from === to
        ? `Ledger ${ledger.location} is at schema ${to} already`
        : `Migrated ledger ${ledger.location} from schema ${from} to ${to}`,
    );
    ctx.out.result({ ledger: ledger.location, from, to });
  } finally {
    await ledger.close();
  }
}

export async function runLedgerCopy(opts: LedgerCopyOptions, ctx: CommandContext): Promise<void> {
  const url = parseLedgerUrl(opts.to, ctx.env, '--to').url;
  const { dir, config } = openCaDir(ctx.global.dir);
  if (config.ledger !== undefined) {
    throw new CaStateError(
      `this CA's ledger is already in PostgreSQL (${parseLedgerUrl(config.ledger, ctx.env, 'config').where})`,
      'copy between PostgreSQL databases with pg_dump and pg_restore, then edit "ledger" in the config',
    );
  }
  const source = SqliteLedger.open(dir.file(CA_FILES.ledger));
  const target = PostgresLedger.open(url, dir.path, { env: ctx.env });
  try {
    const checks = await copySqliteToPostgres(source, target, async () => {
      // Still under the SQLite write lock: no command wrote ledger.db after the copy.
      writeConfig(dir, { ...config, ledger: url });
    });
    ctx.out.line(`Copied ${source.location} to ${target.location}; every table matches:`);
    for (const c of checks) ctx.out.line(`  ${c.table.padEnd(17)} ${String(c.rows).padStart(8)} rows  sha256 ${c.sha256}`);
    ctx.out.line(`The CA now uses ${url} (in ${dir.file(CA_FILES.config)}); ledger.db is left as it was, as a backup`);
    ctx.out.result({ from: source.location, to: target.location, url, tables: checks });
  } finally {
    await target.close();
    await source.close();
  }
}

/**
 * `svcca ledger copy`: the SQLite ledger into an empty PostgreSQL database. The SQLite
 * write lock is held throughout, so nothing changes the source meanwhile; the rows go in
 * one PostgreSQL transaction, which commits only when every table read back from it has
 * the source's row count and digest (SHA-256 over its rows in key order, each value
 * written the same way whichever back end it came from). A mismatch rolls it all back.
 */
import { createHash } from 'node:crypto';
import { CaStateError } from '../../common/errors.js';
import { LEDGER_TABLES, type LedgerTable } from './postgres-schema.js';
import type { PostgresLedger } from './postgres-ledger.js';
import type { SqliteLedger } from './sqlite-ledger.js';

export interface TableCheck {
  readonly table: string;
  readonly rows: number;
  readonly sha256: string;
}

/** One value as the digest sees it: booleans as 1/0 (SQLite has none), numbers as decimal text. */
function canonical(table: LedgerTable, column: string, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (table.booleans.includes(column)) return v === true || v === 1 ? '1' : '0';
  return String(v);
}

export function tableDigest(table: LedgerTable, rows: readonly Record<string, unknown>[]): TableCheck {
  const hash = createHash('sha256');
  for (const row of rows) hash.update(`${JSON.stringify(table.columns.map((c) => canonical(table, c, row[c])))}\n`);
  return { table: table.name, rows: rows.length, sha256: hash.digest('hex') };
}

/**
 * Copies every table and checks it. `whileLocked` runs after the target committed and
 * before the source's lock is released (the config switch goes there).
 */
export async function copySqliteToPostgres(
  source: SqliteLedger,
  target: PostgresLedger,
  whileLocked: (checks: TableCheck[]) => Promise<void>,
): Promise<TableCheck[]> {
  await target.migrate();
  return source.transaction(async () => {
    const sourceRows = LEDGER_TABLES.map((t) => source.rawRows(t));
    const expected = LEDGER_TABLES.map((t, i) => tableDigest(t, sourceRows[i]!));
    await target.transaction(async (tx) => {
      const pgTx = tx as PostgresLedger;
      for (const t of LEDGER_TABLES) {
        if ((await pgTx.rawRows(t)).length > 0) {
          throw new CaStateError(
            `the ledger database ${target.location} is not empty (its ${t.name} table has rows)`,
            'copy into a new, empty database (createdb); nothing was changed',
          );
        }
      }
      for (let i = 0; i < LEDGER_TABLES.length; i++) await pgTx.insertRawRows(LEDGER_TABLES[i]!, sourceRows[i]!);
      for (let i = 0; i < LEDGER_TABLES.length; i++) {
        const got = tableDigest(LEDGER_TABLES[i]!, await pgTx.rawRows(LEDGER_TABLES[i]!));
        const want = expected[i]!;
        if (got.rows !== want.rows || got.sha256 !== want.sha256) {
          throw new CaStateError(
            `the copy of table ${want.table} does not match (${got.rows} rows, sha256 ${got.sha256.slice(0, 12)}… in ${target.location}; ${want.rows} rows, ${want.sha256.slice(0, 12)}… in ${source.location})`,
            'nothing was committed and the CA still uses ledger.db; report this with both versions of svcca',
          );
        }
      }
    });
    await whileLocked(expected);
    return expected;
  });
}

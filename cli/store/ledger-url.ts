/**
 * The PostgreSQL ledger's URL: `postgres://USER@HOST:PORT/DB[?sslmode=…&passfile=…]`.
 * It is stored in the CA's config, so it never carries a password: that comes from
 * PGPASSWORD, the URL's `passfile`, PGPASSFILE or ~/.pgpass, as libpq's tools find it.
 * Messages name the database by `where` (user@host:port/db), never by the URL.
 */
import { createReadStream, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse as parseConnectionString } from 'pg-connection-string';
import type { PoolConfig } from 'pg';
import { getPassword, usePgPass } from 'pgpass/lib/helper.js';
import { UsageError } from '../../common/errors.js';

export interface LedgerUrl {
  /** The URL as given (no password in it). */
  readonly url: string;
  /** user@host:port/db, for messages. */
  readonly where: string;
  /** What node-postgres needs, password looked up when the server asks for one. */
  readonly pool: PoolConfig;
}

const SSL_MODES = new Set(['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify']);

/** True when `text` names a PostgreSQL ledger rather than the default SQLite file. */
export function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//i.test(text);
}

function readPassFile(file: string, info: { host: string; port: number; database: string; user: string }): Promise<string | undefined> {
  let stats: Stats;
  try {
    stats = statSync(file);
  } catch {
    return Promise.resolve(undefined);
  }
  if (!usePgPass(stats, file)) return Promise.resolve(undefined);
  return new Promise((done) => getPassword({ ...info, port: String(info.port) }, createReadStream(file), done));
}

export function parseLedgerUrl(url: string, env: NodeJS.ProcessEnv = process.env, flag = '--ledger'): LedgerUrl {
  const bad = (why: string) =>
    new UsageError(`${flag} ${why}`, 'use postgres://USER@HOST:PORT/DB (the password in PGPASSWORD or ~/.pgpass)');
  if (!isPostgresUrl(url)) throw bad('must be a postgres:// URL');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw bad('is not a valid URL');
  }
  if (parsed.password !== '' || parsed.searchParams.has('password')) {
    throw new UsageError(
      `${flag} carries a password, and it would be stored in the CA's config`,
      'drop it from the URL and set PGPASSWORD, or put it in ~/.pgpass (or the file named by ?passfile=)',
    );
  }
  const sslmode = parsed.searchParams.get('sslmode');
  if (sslmode !== null && !SSL_MODES.has(sslmode))
    throw bad(`has sslmode=${sslmode}; use disable, prefer, require, verify-ca or verify-full`);
  const passfile = parsed.searchParams.get('passfile') ?? env.PGPASSFILE ?? join(homedir(), '.pgpass');
  // pg-connection-string turns sslmode/sslrootcert/sslcert/sslkey into node:tls options,
  // with libpq's meaning of each sslmode; passfile is libpq's, read here.
  const withoutPassfile = new URL(url);
  withoutPassfile.searchParams.delete('passfile');
  let cfg: ReturnType<typeof parseConnectionString>;
  try {
    cfg = parseConnectionString(withoutPassfile.toString(), { useLibpqCompat: true });
  } catch (err) {
    throw bad(`cannot be used: ${(err as Error).message}`);
  }
  const user = cfg.user || env.PGUSER || '';
  if (!user) throw bad('names no user (postgres://USER@HOST:PORT/DB)');
  const host = cfg.host || 'localhost';
  const port = cfg.port ? Number(cfg.port) : 5432;
  const database = cfg.database || user;
  if (!Number.isSafeInteger(port) || port <= 0 || port > 65535) throw bad(`has port ${cfg.port}, not a port number`);
  const info = { host, port, database, user };
  const pool: PoolConfig = {
    host,
    port,
    database,
    user,
    ssl: cfg.ssl as PoolConfig['ssl'],
    ...(cfg.options ? { options: cfg.options } : {}),
    application_name: 'svcca',
    password: async () => (env.PGPASSWORD ? env.PGPASSWORD : ((await readPassFile(passfile, info)) ?? '')),
  };
  return { url, where: `${user}@${host}:${port}/${database}`, pool };
}

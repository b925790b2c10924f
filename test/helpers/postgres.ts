/**
 * A real PostgreSQL server for a test file (see postgres-server.ts), started through
 * children.ts so it is killed with the file even when a test fails before `after`.
 */
import { spawnTracked } from './children.js';
import { startPostgresServer, type PgServer, type PgServerOptions } from './postgres-server.js';

export { PG_PASSWORD, PG_USER, postgresBinDir, type PgServer } from './postgres-server.js';

export function startPostgres(opts: PgServerOptions = {}): Promise<PgServer> {
  return startPostgresServer(spawnTracked, opts);
}

/** The parts of pgpass (node-postgres' ~/.pgpass reader, untyped) the ledger uses. */
declare module 'pgpass/lib/helper.js' {
  import type { Stats } from 'node:fs';
  import type { Readable } from 'node:stream';
  export interface PgPassConnInfo {
    host: string;
    port: string | number;
    database: string;
    user: string;
  }
  /** False (with a warning on stderr) when the file is not a regular file of mode 0600 or stricter. */
  export function usePgPass(stats: Stats, fname: string): boolean;
  export function getPassword(connInfo: PgPassConnInfo, stream: Readable, cb: (password: string | undefined) => void): void;
}

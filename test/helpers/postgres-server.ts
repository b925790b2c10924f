/**
 * A real PostgreSQL server for tests: Debian's `postgresql` package (installed by
 * .ci/run), a fresh cluster made by initdb in a temp directory, started on a free port of
 * 127.0.0.1 with its unix socket in that directory, as an unprivileged user (PostgreSQL
 * refuses to run as root, and tests run as root in CI: then `nobody`, via setpriv).
 * Logins over TCP need a password (scram-sha-256), so the tests exercise PGPASSWORD too.
 * One server per test file: start it in `before`, stop it in `after`. Tests pass
 * children.ts's spawnTracked (see postgres.ts), so a server outlives no test file; this
 * module imports nothing of node:test, so bench/ can start one too.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const PG_USER = 'svcca';
export const PG_PASSWORD = 'test-db-password';

/** The newest /usr/lib/postgresql/N/bin. */
export function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  const versions = existsSync(base) ? readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'postgres'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error('PostgreSQL is not installed: apt-get install postgresql (see .ci/run)');
  return join(base, versions[0], 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface PgServer {
  readonly port: number;
  /** The scratch directory holding the cluster and the socket. */
  readonly root: string;
  /** postgres://svcca@127.0.0.1:PORT/DB (no password: tests pass `env`). */
  url(database: string): string;
  /** PGPASSWORD for the test user, to merge into a child's environment. */
  readonly env: Record<string, string>;
  /** Creates an empty database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** A client connected to `database` as the superuser (for checks the CLI does not offer). */
  client(database: string): Promise<pg.Client>;
  /** Stops the server (fast shutdown) and waits until it is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops it and removes its files. */
  destroy(): Promise<void>;
}

export interface PgServerOptions {
  /** Serve TLS (ssl=on) with this certificate chain and key; plain connections still work. */
  readonly tls?: { readonly certPem: string; readonly keyPem: string };
}

export async function startPostgresServer(
  spawnChild: (cmd: string, args: readonly string[], opts: SpawnOptions) => ChildProcess = spawn,
  opts: PgServerOptions = {},
): Promise<PgServer> {
  const bin = postgresBinDir();
  const root = mkdtempSync(join(tmpdir(), 'svcca-pg-'));
  const data = join(root, 'data');
  const socketDir = join(root, 'socket');
  mkdirSync(socketDir);
  const pwfile = join(root, 'pwfile');
  writeFileSync(pwfile, `${PG_PASSWORD}\n`, { mode: 0o600 });
  const owned = [root, socketDir, pwfile];
  const tlsArgs: string[] = [];
  if (opts.tls) {
    // PostgreSQL wants its key 0600 and owned by the user it runs as.
    const cert = join(root, 'server.crt');
    const key = join(root, 'server.key');
    writeFileSync(cert, opts.tls.certPem, { mode: 0o644 });
    writeFileSync(key, opts.tls.keyPem, { mode: 0o600 });
    owned.push(cert, key);
    tlsArgs.push('-c', 'ssl=on', '-c', `ssl_cert_file=${cert}`, '-c', `ssl_key_file=${key}`);
  }
  const asRoot = process.getuid?.() === 0;
  // PostgreSQL refuses root: run it as nobody, who must own its directories. setpriv
  // (util-linux, like runuser) execs in place, so signals reach postgres itself.
  const runAs = (cmd: string, args: string[]): [string, string[]] =>
    asRoot ? ['setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', cmd, ...args]] : [cmd, args];
  if (asRoot) {
    const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
    for (const p of owned) chownSync(p, nobody, nobody);
    chmodSync(root, 0o755);
  }
  const [initCmd, initArgs] = runAs(join(bin, 'initdb'), [
    '-D',
    data,
    '-U',
    PG_USER,
    `--pwfile=${pwfile}`,
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '-E',
    'UTF8',
    '--locale=C.UTF-8',
    '--no-sync',
  ]);
  execFileSync(initCmd, initArgs, { stdio: 'pipe' });
  const port = await freePort();
  let proc: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const [cmd, args] = runAs(join(bin, 'postgres'), [
      '-D',
      data,
      '-p',
      String(port),
      '-k',
      socketDir,
      '-c',
      'listen_addresses=127.0.0.1',
      // A throwaway cluster: durability is not what these tests measure.
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=100',
      '-c',
      'logging_collector=off',
      ...tlsArgs,
    ]);
    const child = spawnChild(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = child;
    await new Promise<void>((resolve, reject) => {
      let log = '';
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        if (log.includes('database system is ready to accept connections')) {
          child.stderr!.off('data', onData);
          child.stderr!.resume();
          resolve();
        }
      };
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`postgres exited (${code}) before it was ready:\n${log}`)));
    });
  };

  const stop = async (): Promise<void> => {
    const child = proc;
    proc = undefined;
    if (!child || child.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // SIGINT: fast shutdown.
    child.kill('SIGINT');
    await gone;
  };

  const client = async (database: string): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: PG_USER, password: PG_PASSWORD, database });
    await c.connect();
    return c;
  };

  await start();
  return {
    port,
    root,
    url: (database) => `postgres://${PG_USER}@127.0.0.1:${port}/${database}`,
    env: { PGPASSWORD: PG_PASSWORD },
    async createDatabase(name) {
      const c = await client('postgres');
      try {
        await c.query(`CREATE DATABASE "${name}"`);
      } finally {
        await c.end();
      }
      return `postgres://${PG_USER}@127.0.0.1:${port}/${name}`;
    },
    client,
    stop,
    start,
    async destroy() {
      await stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

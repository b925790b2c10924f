/**
 * Running the real, built CLI from tests, and making throwaway CAs with it.
 */
import { spawnSync, type ChildProcessByStdio, type SpawnSyncReturns } from 'node:child_process';
import type { Readable } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTracked } from './children.js';

/** dist/bin/svcca.mjs, from dist/test/helpers/cli.js. */
export const SVCCA_BIN = fileURLToPath(new URL('../../bin/svcca.mjs', import.meta.url));
export const SIDECAR_BIN = fileURLToPath(new URL('../../bin/svcca-sidecar.mjs', import.meta.url));

export const TEST_PASSPHRASE = 'test-intermediate-passphrase';

export interface RunResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Environment without any svcca secret or directory inherited from the developer's shell. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('SVCCA_')) delete env[key];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export function runSvcca(args: readonly string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): RunResult {
  const res: SpawnSyncReturns<string> = spawnSync(process.execPath, [SVCCA_BIN, ...args], {
    env: opts.env ?? cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }),
    input: opts.input ?? '',
    cwd: opts.cwd,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
}

/** Runs the CLI asynchronously (for concurrency tests and kill -9 loops). */
export function spawnSvcca(
  args: readonly string[],
  env: NodeJS.ProcessEnv = cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }),
): ChildProcessByStdio<null, Readable, Readable> {
  return spawnTracked(process.execPath, [SVCCA_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcessByStdio<
    null,
    Readable,
    Readable
  >;
}

export function tempDir(prefix = 'svcca-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestCa {
  /** The CA data directory. */
  readonly dir: string;
  /** A scratch directory that holds the CA and anything else the test writes. */
  readonly root: string;
  readonly trustDomain: string;
  /** `svcca <args> --dir <ca>` with the test passphrase. */
  svcca(args: readonly string[], env?: Record<string, string | undefined>): RunResult;
  /** Issues a service into `<root>/sets/<service>` and returns that folder. */
  issue(service: string, extra?: readonly string[]): string;
  cleanup(): void;
}

/**
 * `ledger`: a postgres:// URL for a CA whose ledger is in PostgreSQL; `env` is added to
 * every command's environment (PGPASSWORD for such a ledger).
 */
export function makeCa(opts: { trustDomain?: string; keyType?: string; ledger?: string; env?: Record<string, string> } = {}): TestCa {
  const root = tempDir();
  const dir = join(root, 'ca');
  const trustDomain = opts.trustDomain ?? 'example.org';
  const svcca = (args: readonly string[], env: Record<string, string | undefined> = {}) =>
    runSvcca([...args, '--dir', dir], { env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...opts.env, ...env }) });
  const init = svcca([
    'init',
    '--trust-domain',
    trustDomain,
    ...(opts.keyType ? ['--key-type', opts.keyType] : []),
    ...(opts.ledger ? ['--ledger', opts.ledger] : []),
  ]);
  if (init.status !== 0) throw new Error(`svcca init failed: ${init.stderr}`);
  return {
    dir,
    root,
    trustDomain,
    svcca,
    issue(service, extra = []) {
      const out = join(root, 'sets', service);
      const res = svcca(['issue', service, '--out', out, ...extra]);
      if (res.status !== 0) throw new Error(`svcca issue ${service} failed: ${res.stderr}`);
      return out;
    },
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** Runs a command (openssl, curl, keytool) and returns its status and output. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): RunResult {
  const res = spawnSync(cmd, args, {
    input: opts.input ?? '',
    env: opts.env ?? process.env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 30_000,
  });
  return { status: res.status ?? -1, stdout: res.stdout ?? '', stderr: res.stderr ?? '' };
}

export function writeSecretFile(dir: string, name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

/** `openssl req -new` for a fresh P-256 key written to `key`, the CSR to `csr`; `extra` goes last (-addext …). */
export function opensslEcCsr(key: string, csr: string, subject: string, extra: readonly string[] = []): RunResult {
  return run('openssl', [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    key,
    '-out',
    csr,
    '-subj',
    subject,
    ...extra,
  ]);
}

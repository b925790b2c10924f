/**
 * The ledger back ends side by side (issue 17; `BENCH_CA=1 make bench`, never `make test`):
 * the same CLI commands with the ledger in SQLite (ledger.db) and in PostgreSQL (a
 * throwaway server started here on 127.0.0.1 as in the tests, fsync off — so the
 * PostgreSQL column is the protocol and locking cost, not a disk's):
 *  1. one `svcca issue` (median of BENCH_ISSUE_RUNS, 7): process start-up included;
 *  2. `svcca rotate` of BENCH_ROTATE_SERVICES (1,000) due services in one run;
 *  3. `svcca crl` with BENCH_CRL_ENTRIES (100,000) revoked entries (best of 3).
 * Seeding goes through the CLI's own modules in this process, into each CA's own ledger.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { startPostgresServer } from '../test/helpers/postgres-server.js';
import { seedRevocations, seedServices } from './proxy/realistic.js';

const SVCCA = fileURLToPath(new URL('../bin/svcca.mjs', import.meta.url));
const ISSUE_RUNS = Number(process.env.BENCH_ISSUE_RUNS ?? 7);
const ROTATE_SERVICES = Number(process.env.BENCH_ROTATE_SERVICES_PG ?? 1000);
const CRL_ENTRIES = Number(process.env.BENCH_CRL_ENTRIES ?? 100_000);
const PASSPHRASE = 'bench-passphrase';

function svcca(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const res = spawnSync(process.execPath, [SVCCA, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 28 });
  const ms = performance.now() - t0;
  if (res.status !== 0 && res.status !== 4) throw new Error(`svcca ${args.join(' ')} exited ${res.status}: ${res.stderr.slice(-2000)}`);
  return ms;
}

interface Row {
  issueMs: number;
  rotateMs: number;
  crlMs: number;
}

async function measure(work: string, name: string, env: NodeJS.ProcessEnv, ledgerFor: (what: string) => Promise<string[]>): Promise<Row> {
  const init = async (what: string): Promise<string> => {
    const dir = join(work, `${name}-${what}`);
    svcca(['init', '--trust-domain', 'bench.example', '--dir', dir, ...(await ledgerFor(what))], env);
    return dir;
  };
  const issueCa = await init('issue');
  const issues: number[] = [];
  for (let i = 0; i < ISSUE_RUNS; i++) issues.push(svcca(['issue', `one-${i}`, '--dir', issueCa], env));
  issues.sort((a, b) => a - b);

  const rotateCa = await init('rotate');
  await seedServices(rotateCa, PASSPHRASE, ROTATE_SERVICES);
  const rotateMs = svcca(['rotate', '--renew-before', '100%', '--dir', rotateCa], env);

  const crlCa = await init('crl');
  await seedRevocations(crlCa, PASSPHRASE, 'bench.example', CRL_ENTRIES);
  const crls: number[] = [];
  for (let i = 0; i < 3; i++) crls.push(svcca(['crl', '--dir', crlCa], env));
  crls.sort((a, b) => a - b);
  console.log(`${name}: done`);
  return { issueMs: issues[Math.floor(issues.length / 2)]!, rotateMs, crlMs: crls[0]! };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'svcca-bench-pg-'));
  const server = await startPostgresServer();
  try {
    // The seeding in this process opens PostgreSQL ledgers too: it finds the password as the CLI does.
    Object.assign(process.env, server.env);
    const env: NodeJS.ProcessEnv = { ...process.env, SVCCA_PASSPHRASE: PASSPHRASE };
    for (const k of Object.keys(env)) if (k.startsWith('SVCCA_') && k !== 'SVCCA_PASSPHRASE') delete env[k];
    const sqlite = await measure(work, 'sqlite', env, async () => []);
    const postgres = await measure(work, 'postgres', env, async (what) => ['--ledger', await server.createDatabase(`bench_${what}`)]);
    const row = (label: string, s: number, p: number) =>
      console.log(`| ${label} | ${s.toFixed(0)} ms | ${p.toFixed(0)} ms | ${(p / s).toFixed(2)}× |`);
    console.log('');
    console.log('| measurement | SQLite | PostgreSQL | PostgreSQL / SQLite |');
    console.log('|---|--:|--:|--:|');
    row(`one \`svcca issue\` (median of ${ISSUE_RUNS}, process start-up included)`, sqlite.issueMs, postgres.issueMs);
    row(`\`svcca rotate\`, ${ROTATE_SERVICES} due services in one run`, sqlite.rotateMs, postgres.rotateMs);
    row(`\`svcca crl\` with ${CRL_ENTRIES} revoked entries (best of 3)`, sqlite.crlMs, postgres.crlMs);
  } finally {
    await server.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

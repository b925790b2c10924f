/**
 * CA-side numbers for issue 5 (run by `make bench` or by hand, never by `make test`):
 *  1. `svcca rotate` over N due services in one run (default 10,000): wall time and peak
 *     RSS (GNU time's %M);
 *  2. `svcca rotate` with nothing due at the same N services: what cron pays each run;
 *  3. a CRL with 100,000 revoked entries: crl.pem's size and the time `svcca crl` takes to
 *     re-sign it (and the writer alone, in process).
 * The N services are issued in this process through the CLI's own modules (issuing 10,000
 * through the CLI would take most of an hour of process start-ups).
 * Knobs: BENCH_ROTATE_SERVICES (10000), BENCH_CRL_ENTRIES (100000).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { openCaDir } from '../cli/store/ca-dir.js';
import { loadAuthority } from '../cli/ca/authority.js';
import { buildCrlDer } from '../cli/ca/crl-writer.js';
import { seedRevocations, seedServices } from './proxy/realistic.js';

const SVCCA = fileURLToPath(new URL('../bin/svcca.mjs', import.meta.url));
const SERVICES = Number(process.env.BENCH_ROTATE_SERVICES ?? 10_000);
const CRL_ENTRIES = Number(process.env.BENCH_CRL_ENTRIES ?? 100_000);
const PASSPHRASE = 'bench-passphrase';
const env: NodeJS.ProcessEnv = { ...process.env };
for (const k of Object.keys(env)) if (k.startsWith('SVCCA_')) delete env[k];
env.SVCCA_PASSPHRASE = PASSPHRASE;

interface Measured {
  wallMs: number;
  peakRssMb: number | undefined;
  stdout: string;
}

/** Runs the CLI under GNU time when it is there (peak RSS), else plain. */
function svcca(args: string[]): Measured {
  const gnuTime = existsSync('/usr/bin/time');
  const t0 = performance.now();
  const res = gnuTime
    ? spawnSync('/usr/bin/time', ['-f', 'SVCCA_BENCH_RSS_KB=%M', process.execPath, SVCCA, ...args], {
        env,
        encoding: 'utf8',
        maxBuffer: 1 << 28,
      })
    : spawnSync(process.execPath, [SVCCA, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 28 });
  const wallMs = performance.now() - t0;
  if (res.status !== 0 && res.status !== 4) throw new Error(`svcca ${args.join(' ')} exited ${res.status}: ${res.stderr.slice(-2000)}`);
  const rss = /SVCCA_BENCH_RSS_KB=(\d+)/.exec(res.stderr ?? '');
  return { wallMs, peakRssMb: rss ? Number(rss[1]) / 1024 : undefined, stdout: res.stdout };
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function seedKeyCompromises(dir: string, n: number): Promise<void> {
  return seedRevocations(dir, PASSPHRASE, 'bench.example', n, () => 'keyCompromise');
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'svcca-bench-rotate-'));
  try {
    const ca = join(work, 'ca');
    const init = spawnSync(process.execPath, [SVCCA, 'init', '--trust-domain', 'bench.example', '--dir', ca], { env, encoding: 'utf8' });
    if (init.status !== 0) throw new Error(`init failed: ${init.stderr}`);

    let t0 = performance.now();
    await seedServices(ca, PASSPHRASE, SERVICES);
    console.log(`seeded ${SERVICES} services in ${((performance.now() - t0) / 1000).toFixed(1)} s (in process)`);

    const due = svcca(['rotate', '--renew-before', '100%', '--dir', ca]);
    const renewed = /(\d+) renewed/.exec(due.stdout)?.[1];
    const quiet: Measured[] = [];
    for (let i = 0; i < 5; i++) quiet.push(svcca(['rotate', '--dir', ca]));
    quiet.sort((a, b) => a.wallMs - b.wallMs);

    const crlCa = join(work, 'crl-ca');
    const init2 = spawnSync(process.execPath, [SVCCA, 'init', '--trust-domain', 'bench.example', '--dir', crlCa], {
      env,
      encoding: 'utf8',
    });
    if (init2.status !== 0) throw new Error(`init failed: ${init2.stderr}`);
    t0 = performance.now();
    await seedKeyCompromises(crlCa, CRL_ENTRIES);
    console.log(`seeded ${CRL_ENTRIES} revocations in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const crlRuns: Measured[] = [];
    for (let i = 0; i < 3; i++) crlRuns.push(svcca(['crl', '--dir', crlCa]));
    crlRuns.sort((a, b) => a.wallMs - b.wallMs);
    const size = statSync(join(crlCa, 'crl.pem')).size;

    // The writer alone, in process, for comparison with the whole command.
    const { dir: caDir, config } = openCaDir(crlCa);
    const authority = loadAuthority(caDir, config, PASSPHRASE);
    const entries = Array.from({ length: CRL_ENTRIES }, () => ({
      serial: randomBytes(16).toString('hex'),
      revokedAt: new Date(),
      reasonCode: 1,
    }));
    t0 = performance.now();
    const der = buildCrlDer({
      issuerDer: authority.intermediate.info.der,
      issuerKeyId: authority.intermediate.info.subjectKeyId!,
      issuerKey: authority.intermediateKey,
      keyType: authority.keyType,
      number: 1n,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + 86_400_000),
      entries,
    });
    const writerMs = performance.now() - t0;

    const rss = (m: Measured) => (m.peakRssMb === undefined ? 'n/a' : `${m.peakRssMb.toFixed(0)} MB`);
    console.log('');
    console.log('| measurement | result |');
    console.log('|---|--:|');
    console.log(
      `| rotate, ${SERVICES} due services in one run (${renewed ?? '?'} renewed) | ${(due.wallMs / 1000).toFixed(1)} s wall, peak RSS ${rss(due)} |`,
    );
    console.log(
      `| rotate, nothing due at ${SERVICES} services (best / median of 5) | ${quiet[0]!.wallMs.toFixed(0)} / ${quiet[2]!.wallMs.toFixed(0)} ms, peak RSS ${rss(quiet[0]!)} |`,
    );
    console.log(
      `| svcca crl with ${CRL_ENTRIES} revoked entries (best of 3) | ${crlRuns[0]!.wallMs.toFixed(0)} ms wall, peak RSS ${rss(crlRuns[0]!)} |`,
    );
    console.log(`| crl.pem size with ${CRL_ENTRIES} entries (PEM) | ${mb(size)} |`);
    console.log(`| DER writer alone, ${CRL_ENTRIES} entries, build + sign | ${writerMs.toFixed(0)} ms, ${mb(der.length)} DER |`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

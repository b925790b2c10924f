/**
 * CA-side numbers for issue 4 (run by `make bench`, never by `make test`):
 *  1. wall time of one `svcca issue` process, beside the three `openssl` commands that
 *     make an equivalent certificate (genpkey, req, x509 -req with an extfile);
 *  2. 1,000 certificates issued in one process through the CLI's own modules;
 *  3. `svcca issue` on a ledger of 100,000 records against an empty one.
 * Prints a small table. Knob: BENCH_ISSUE_RUNS (9).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { randomBytes, createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { openCaDir } from '../cli/store/ca-dir.js';
import { SqliteLedger } from '../cli/store/sqlite-ledger.js';
import { loadAuthority } from '../cli/ca/authority.js';
import { issueAndRecord, writeIssuedSet } from '../cli/ca/issuance.js';

const SVCCA = fileURLToPath(new URL('../bin/svcca.mjs', import.meta.url));
const RUNS = Number(process.env.BENCH_ISSUE_RUNS ?? 9);
const PASSPHRASE = 'bench-passphrase';
const env: NodeJS.ProcessEnv = { ...process.env, SVCCA_PASSPHRASE: PASSPHRASE };
for (const k of Object.keys(env)) if (k.startsWith('SVCCA_') && k !== 'SVCCA_PASSPHRASE') delete env[k];

function sh(cmd: string, args: string[]): void {
  const res = spawnSync(cmd, args, { env, encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${res.stderr}`);
}

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function stats(samples: number[]): { best: number; median: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { best: s[0]!, median: s[Math.floor(s.length / 2)]! };
}

function initCa(dir: string): void {
  sh(process.execPath, [SVCCA, 'init', '--trust-domain', 'example.org', '--dir', dir]);
}

/** Best and median wall time of `svcca issue` (a new service each run). */
function svccaIssue(dir: string, prefix: string): { best: number; median: number } {
  sh(process.execPath, [SVCCA, 'issue', `${prefix}-warmup`, '--dir', dir]);
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) samples.push(timed(() => sh(process.execPath, [SVCCA, 'issue', `${prefix}-${i}`, '--dir', dir])));
  return stats(samples);
}

/** The same certificate by hand: key, CSR, signature with the encrypted intermediate key. */
function opensslTrio(dir: string, work: string): { best: number; median: number } {
  const ext = join(work, 'leaf.ext');
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth,clientAuth',
      'subjectAltName=URI:spiffe://example.org/openssl-svc',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      '',
    ].join('\n'),
  );
  const samples: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const key = join(work, `o${i}.key`);
    const csr = join(work, `o${i}.csr`);
    const crt = join(work, `o${i}.crt`);
    const t = timed(() => {
      sh('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
      sh('openssl', ['req', '-new', '-key', key, '-subj', '/CN=openssl-svc', '-out', csr]);
      sh('openssl', [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        join(dir, 'intermediate.crt'),
        '-CAkey',
        join(dir, 'intermediate.key'),
        '-passin',
        `pass:${PASSPHRASE}`,
        '-CAcreateserial',
        '-CAserial',
        join(work, 'serial'),
        '-days',
        '1',
        '-sha256',
        '-extfile',
        ext,
        '-out',
        crt,
      ]);
    });
    if (i > 0) samples.push(t); // the first run warms the page cache
  }
  sh('openssl', [
    'verify',
    '-x509_strict',
    '-CAfile',
    join(dir, 'root.crt'),
    '-untrusted',
    join(dir, 'intermediate.crt'),
    join(work, 'o1.crt'),
  ]);
  return stats(samples);
}

function nodeBaseline(): { best: number; median: number } {
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) samples.push(timed(() => sh(process.execPath, ['-e', '0'])));
  return stats(samples);
}

/** 1,000 certificates in one process: sign, record, write each set (fsyncs included). */
async function thousandInOneProcess(dir: string, work: string): Promise<number> {
  const { dir: caDir, config } = openCaDir(dir);
  const authority = loadAuthority(caDir, config, PASSPHRASE);
  const ledger = SqliteLedger.open(caDir.file('ledger.db'));
  try {
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) {
      const service = `bulk-${i}`;
      const issued = await issueAndRecord(authority, ledger, {
        service,
        ttlMs: config.defaultTtlMs,
        dnsNames: [],
        ips: [],
        setDir: join(work, 'bulk', service),
        kind: 'issue',
        actor: 'bench@localhost',
        why: 'bench',
      });
      writeIssuedSet(authority, issued.record, issued.key);
    }
    return performance.now() - t0;
  } finally {
    await ledger.close();
  }
}

/** Fills the ledger with `count` records (10 per service, the last one active) in one transaction. */
function fillLedger(dir: string, count: number): number {
  const pem = readFileSync(join(dir, 'intermediate.crt'), 'utf8');
  const db = new Database(join(dir, 'ledger.db'));
  try {
    const issuer =
      (db.prepare('SELECT issuer_key_id FROM crl_state LIMIT 1').get() as { issuer_key_id: string } | undefined)?.issuer_key_id ?? 'bench';
    const insert = db.prepare(
      `INSERT INTO certificates (serial, service, spiffe_id, issuer_key_id, dns_names, ips, ttl_ms, not_before, not_after,
         key_type, set_dir, status, from_csr, spki_sha256, cert_pem, issued_at)
       VALUES (?, ?, ?, ?, '[]', '[]', ?, ?, ?, 'ecdsa-p256', ?, ?, 0, ?, ?, ?)`,
    );
    const service = db.prepare('INSERT INTO services (name, active_serial, rotation_enabled) VALUES (?, ?, 1)');
    const event = db.prepare(
      "INSERT INTO events (at, kind, service, serial, actor, why) VALUES (?, 'issue', ?, ?, 'bench@localhost', 'bench fill')",
    );
    const now = Date.now();
    const t0 = performance.now();
    db.transaction(() => {
      for (let i = 0; i < count; i++) {
        const name = `filler-${Math.floor(i / 10)}`;
        const last = i % 10 === 9;
        const serial = `4${randomBytes(15).toString('hex').slice(1)}`;
        const issuedAt = now - (count - i) * 60_000;
        insert.run(
          serial,
          name,
          `spiffe://example.org/${name}`,
          issuer,
          86_400_000,
          issuedAt - 60_000,
          issuedAt + 86_400_000,
          join(dir, 'issued', name),
          last ? 'active' : 'superseded',
          createHash('sha256').update(serial).digest('hex'),
          pem,
          issuedAt,
        );
        event.run(issuedAt, name, serial);
        if (last) service.run(name, serial);
      }
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
    return performance.now() - t0;
  } finally {
    db.close();
  }
}

function row(label: string, value: string): string {
  return `| ${label.padEnd(58)} | ${value.padStart(22)} |`;
}
const ms = (n: number) => `${n.toFixed(0)} ms`;
const pair = (s: { best: number; median: number }) => `${ms(s.best)} / ${ms(s.median)}`;

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'svcca-bench-ca-'));
  try {
    const empty = join(work, 'ca-empty');
    const big = join(work, 'ca-100k');
    const bulk = join(work, 'ca-bulk');
    initCa(empty);
    initCa(big);
    initCa(bulk);

    const node0 = nodeBaseline();
    const issueEmpty = svccaIssue(empty, 'svc');
    const trio = opensslTrio(empty, work);
    const thousand = await thousandInOneProcess(bulk, work);
    const fillMs = fillLedger(big, 100_000);
    const issueBig = svccaIssue(big, 'svc');
    const issueEmpty2 = svccaIssue(empty, 'again');

    const lines = [
      row(`measure (best / median of ${RUNS})`, 'wall time'),
      `|${'-'.repeat(60)}|${'-'.repeat(24)}:|`,
      row('`node -e 0` (start-up floor)', pair(node0)),
      row('`svcca issue` (key, signature, ..data swap, ledger row)', pair(issueEmpty)),
      row('the 3 openssl commands (genpkey, req, x509 -req)', pair(trio)),
      row('1,000 certificates in one process (total)', `${(thousand / 1000).toFixed(2)} s`),
      row('1,000 certificates in one process (per certificate)', `${(thousand / 1000).toFixed(1)} ms`),
      row('`svcca issue`, empty ledger (second series)', pair(issueEmpty2)),
      row('`svcca issue`, ledger of 100,000 records', pair(issueBig)),
      row(
        'ratio 100k / empty (medians; the aim is < 2)',
        `${(issueBig.median / Math.min(issueEmpty.median, issueEmpty2.median)).toFixed(2)}x`,
      ),
      row('filling 100,000 records (one transaction, not svcca)', `${(fillMs / 1000).toFixed(2)} s`),
    ];
    console.log(lines.join('\n'));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

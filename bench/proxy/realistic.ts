/**
 * The realistic-load variant of svcca tcp (issue 12): the same sidecar with a crl.pem that
 * holds 10,000 revoked entries and a policy of 1,000 services.
 *
 * The CRL is made by the real CLI: 10,000 revoked certificate records are written into the
 * bench CA's ledger in one transaction through the CLI's own ledger module (issuing and
 * revoking 10,000 certificates through the CLI would take most of an hour of process
 * start-ups, as in bench/ca-rotate.ts), then `svcca crl` re-signs the intermediate's CRL with
 * the intermediate key. The serials are random, so the benchmark client is not among them;
 * the sidecar verifies the CRL against ca.crt as it would in production.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { openCaDir } from '../../cli/store/ca-dir.js';
import { openLedger } from '../../cli/ca/ca-session.js';
import { loadAuthority } from '../../cli/ca/authority.js';
import { issueAndRecord, writeIssuedSet } from '../../cli/ca/issuance.js';
import type { CertificateRecord } from '../../cli/store/ledger.js';

/**
 * Adds `n` revoked (unexpired) certificate records under the CA's intermediate. Also used
 * by bench/ca-rotate.ts, which wants every one revoked for keyCompromise.
 */
export async function seedRevocations(
  caDir: string,
  passphrase: string,
  trustDomain: string,
  n: number,
  reasonOf: (i: number) => CertificateRecord['revocationReason'] = (i) => (i % 3 === 0 ? 'keyCompromise' : 'superseded'),
): Promise<void> {
  const { dir, config } = openCaDir(caDir);
  const authority = loadAuthority(dir, config, passphrase);
  // The CA's own ledger, SQLite or PostgreSQL (bench/ca-postgres.ts).
  const ledger = await openLedger(dir, config);
  const issuerKeyId = authority.intermediate.info.subjectKeyId!;
  const now = Date.now();
  try {
    await ledger.transaction(async (tx) => {
      for (let i = 0; i < n; i++) {
        const serial = randomBytes(16).toString('hex').replace(/^0+/, '');
        const record: CertificateRecord = {
          serial,
          service: `gone-${i}`,
          spiffeId: `spiffe://${trustDomain}/gone-${i}`,
          issuerKeyId,
          dnsNames: [],
          ips: [],
          ttlMs: 86_400_000,
          notBefore: now - 60_000,
          notAfter: now + 86_400_000,
          keyType: authority.keyType,
          setDir: '/nonexistent',
          status: 'revoked',
          fromCsr: false,
          spkiSha256: createHash('sha256').update(serial).digest('hex'),
          certPem: '',
          issuedAt: now,
          revokedAt: now,
          revocationReason: reasonOf(i),
        };
        await tx.insertCertificate(record);
      }
    });
  } finally {
    await ledger.close();
  }
}

/**
 * Issues `n` one-hour services (svc-00000…) with their sets, in this process through the
 * CLI's own modules, into the CA's own ledger: what bench/ca-rotate.ts and
 * bench/ca-postgres.ts then rotate.
 */
export async function seedServices(caDirPath: string, passphrase: string, n: number): Promise<void> {
  const { dir, config } = openCaDir(caDirPath);
  const authority = loadAuthority(dir, config, passphrase);
  const ledger = await openLedger(dir, config);
  try {
    for (let i = 0; i < n; i++) {
      const service = `svc-${String(i).padStart(5, '0')}`;
      const issued = await issueAndRecord(authority, ledger, {
        service,
        ttlMs: 3_600_000,
        dnsNames: [],
        ips: [],
        setDir: dir.issuedSetDir(service),
        kind: 'issue',
        actor: 'bench',
        why: 'bench seed',
      });
      writeIssuedSet(authority, issued.record, issued.key);
    }
  } finally {
    await ledger.close();
  }
}

/**
 * A mesh-wide policy of `n` services: bench-server (allowing bench-client among 20 callers)
 * and n−1 others, each allowing 5 callers by name and one with a method/path rule.
 */
export function writeBigPolicy(file: string, n: number): void {
  const name = (i: number) => `svc-${String(i).padStart(4, '0')}`;
  const lines = ['services:', '  bench-server:', '    allow:', '      - bench-client'];
  for (let j = 1; j < 20; j++) lines.push(`      - ${name(j)}`);
  for (let i = 1; i < n; i++) {
    lines.push(`  ${name(i)}:`, '    allow:');
    for (let k = 1; k <= 5; k++) lines.push(`      - ${name(((i * 7 + k * 13) % (n - 1)) + 1)}`);
    lines.push(
      `      - from: ${name(((i * 11) % (n - 1)) + 1)}`,
      '        methods: [GET, POST]',
      `        paths: [/v1/${name(i)}/*, /healthz]`,
    );
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

/**
 * `svcca crl [--next-update 24h]`: re-signs every live intermediate's CRL and rewrites
 * crl.pem, keeping the root's CRL as it is (only `init` and `rotate --intermediate` hold
 * the root key). `rotate` does the same by itself when due; this is for a new validity, or
 * to publish now.
 */
import { requireDurationMs, formatDuration } from '../../common/duration.js';
import { UsageError } from '../../common/errors.js';
import { CA_FILES } from '../store/ca-dir.js';
import { publishIntermediateCrls, rootCrlNextUpdate } from '../ca/crl-refresh.js';
import { intermediatePassphraseSource, openCaSession } from '../ca/ca-session.js';
import { actor } from '../actor.js';
import { SILENT } from '../progress.js';
import type { CommandContext } from '../context.js';

export interface CrlOptions {
  /** CRL validity; default 24h. */
  readonly nextUpdate?: string;
  readonly passphraseFile?: string;
}

/** Cron republishes at half the validity: below this, a 15-minute cron could not keep up. */
/** Smaller CRLs are signed in well under a second: a bar would only flash. */
const CRL_PROGRESS_ENTRIES = 10_000;

export const MIN_CRL_VALIDITY_MS = 3_600_000;
/** An intermediate CRL valid for longer would hide revocations from clients that cache it. */
export const MAX_CRL_VALIDITY_MS = 30 * 86_400_000;

export async function runCrl(opts: CrlOptions, ctx: CommandContext): Promise<void> {
  const validityMs = requireDurationMs('--next-update', opts.nextUpdate ?? '24h');
  if (validityMs < MIN_CRL_VALIDITY_MS || validityMs > MAX_CRL_VALIDITY_MS) {
    throw new UsageError(
      `--next-update ${formatDuration(validityMs)} is out of range`,
      `use between ${formatDuration(MIN_CRL_VALIDITY_MS)} and ${formatDuration(MAX_CRL_VALIDITY_MS)} (24h is the default)`,
    );
  }
  const s = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  try {
    const { outcome } = await publishIntermediateCrls(s, {
      now: Date.now(),
      validityMs,
      why: 'crl',
      actor: actor(),
      progress: (label, total) => (total >= CRL_PROGRESS_ENTRIES ? ctx.out.progress(`signing ${label}`, total) : SILENT),
    });
    ctx.out.line(`Published ${s.dir.file(CA_FILES.crl)}`);
    for (const c of outcome.crls) ctx.out.line(`  ${c.issuer}: CRL #${c.number}, ${c.entries} entries, next update ${c.nextUpdate}`);
    for (const d of outcome.dropped) ctx.out.line(`  dropped the CRL of ${d}: its leaves have all expired`);
    if (!outcome.written) ctx.out.line('  (a newer crl.pem written meanwhile was kept)');
    const rootEnd = rootCrlNextUpdate(s.dir);
    if (rootEnd) ctx.out.line(`  root CRL kept as it is, next update ${rootEnd.toISOString()}`);
    if (rootEnd && rootEnd.getTime() < s.authority.intermediate.info.notAfter.getTime()) {
      ctx.out.warn(
        `the root's CRL ends ${rootEnd.toISOString()}, before the intermediate: run \`svcca rotate --intermediate\` to re-sign it`,
      );
      ctx.exitCode = 4;
    }
    ctx.out.result({
      file: s.dir.file(CA_FILES.crl),
      crls: outcome.crls,
      dropped: outcome.dropped,
      written: outcome.written,
      rootNextUpdate: rootEnd?.toISOString() ?? null,
    });
  } finally {
    await s.close();
  }
}

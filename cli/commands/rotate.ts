/**
 * `svcca rotate`: what cron runs. Checks the flags, opens the CA, has cli/ca/rotation.ts
 * do the run (or plan it, with --dry-run) and prints its report; see that module for
 * what a run does.
 */
import { assertServiceName } from '../../common/spiffe-id.js';
import { UsageError } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import type { RotationCandidate } from '../store/ledger.js';
import { CA_FILES } from '../store/ca-dir.js';
import { DEFAULT_THRESHOLD, parseThreshold, type Threshold } from '../ca/rotation-plan.js';
import { planRotationRun, runRotation, type DryRunReport, type Renewed, type RotationReport } from '../ca/rotation.js';
import { intermediatePassphraseSource, openCaForReading, openCaSession } from '../ca/ca-session.js';
import { findSecret } from '../secrets.js';
import { actor } from '../actor.js';
import type { CommandContext } from '../context.js';

export interface RotateOptions {
  /** Only these services (all when empty). */
  readonly services: readonly string[];
  /** `33%` (of the lifetime left) or a duration like `8h`; default 33%. */
  readonly renewBefore?: string;
  readonly dryRun?: boolean;
  /** Run after each renewed set, with SVCCA_SERVICE and SVCCA_SET_DIR. */
  readonly exec?: string;
  readonly intermediate?: boolean;
  readonly passphraseFile?: string;
  readonly rootPassphraseFile?: string;
}

export async function runRotate(opts: RotateOptions, ctx: CommandContext): Promise<void> {
  // Every flag is checked before anything is opened.
  const threshold = parseThreshold(opts.renewBefore ?? DEFAULT_THRESHOLD);
  const services = [...new Set(opts.services.map(assertServiceName))];
  if (opts.exec !== undefined && opts.exec.trim() === '')
    throw new UsageError('--exec needs a command', 'e.g. --exec "systemctl reload nginx"');
  if (opts.dryRun) return dryRun(opts, services, threshold, ctx);

  const session = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  try {
    const roll = opts.intermediate
      ? {
          rootPassphrase:
            (await findSecret({
              what: 'passphrase for the root key',
              file: opts.rootPassphraseFile,
              fileFlag: '--root-passphrase-file',
              envVar: 'SVCCA_ROOT_PASSPHRASE',
              env: ctx.env,
            })) ?? session.passphrase,
        }
      : undefined;
    const report = await runRotation(session, {
      services,
      threshold,
      ...(opts.exec !== undefined ? { exec: opts.exec } : {}),
      env: ctx.env,
      ...(roll ? { roll } : {}),
      actor: actor(),
      progress: (total) => ctx.out.progress('renewing', total),
    });
    printReport(report, session.dir.file(CA_FILES.crl), threshold, ctx);
    ctx.exitCode = report.exitCode;
  } finally {
    await session.close();
  }
}

function printReport(r: RotationReport, crlPath: string, threshold: Threshold, ctx: CommandContext): void {
  if (r.roll) {
    ctx.out.line(
      `${r.roll.resumed ? 'Finished rolling' : 'Rolled'} the intermediate: ${r.roll.previous.serial} → ${r.roll.current.serial}, until ${r.roll.current.notAfter}; the root's CRL was re-signed (#${r.roll.rootCrlNumber}); the trust bundle is unchanged`,
    );
  }
  for (const renewed of r.renewed) printRenewed(ctx, renewed);
  for (const e of r.renewalErrors) ctx.out.warn(`${e.service}: renewal failed: ${e.error}`);
  for (const k of r.skipped) ctx.out.line(`Skipped ${k.service}: ${k.reason}`);
  if (r.crl && 'error' in r.crl) ctx.out.warn(`crl.pem: ${r.crl.error}`);
  else if (r.crl) {
    ctx.out.line(
      `Republished ${crlPath} (${r.crl.reason}): ${r.crl.crls.map((c) => `#${c.number}, ${c.entries} entries`).join('; ')}; next update ${r.crl.crls[0]?.nextUpdate ?? '-'}`,
    );
    for (const d of r.crl.dropped) ctx.out.line(`  dropped the CRL of ${d}: its leaves have all expired`);
  }
  for (const w of r.warnings) ctx.out.warn(w);
  const { plan } = r;
  const nextDue = plan.nextDueAt === undefined ? '' : `; next due ${new Date(plan.nextDueAt).toISOString()}`;
  ctx.out.line(
    `rotate: ${r.renewed.length} renewed, ${r.skipped.length} skipped, ${r.failed.length} failed, ${plan.notDue} not due${nextDue}`,
  );
  for (const f of r.failed) ctx.out.warn(`failed: ${f.service}: ${f.error}`);
  ctx.out.result({
    dryRun: false,
    threshold: threshold.text,
    roll: r.roll ?? null,
    renewed: r.renewed,
    skipped: r.skipped,
    failed: r.failed,
    notDue: plan.notDue,
    nextDueAt: plan.nextDueAt === undefined ? null : new Date(plan.nextDueAt).toISOString(),
    crl: r.crl ?? null,
    intermediate: { serial: r.intermediate.serialHex, notAfter: r.intermediate.notAfter.toISOString() },
    warnings: r.warnings,
  });
}

function printRenewed(ctx: CommandContext, r: Renewed): void {
  const notes: string[] = [];
  if (r.expired) notes.push('it had expired');
  if (r.clamped) notes.push('cut short: ends with the intermediate');
  if (r.fromCsr) notes.push('re-signed the same public key (CSR)');
  if (r.interrupted) notes.push('an interrupted run had not written its set');
  if (r.hook) notes.push(r.hook.ok ? 'hook ok' : `hook FAILED: ${r.hook.error}`);
  ctx.out.line(
    `Renewed ${r.service}  ${r.oldSerial} → ${r.newSerial}  until ${r.notAfter}${notes.length ? `  (${notes.join('; ')})` : ''}`,
  );
}

/** --dry-run: the plan only, from the ledger; needs no passphrase and changes nothing. */
async function dryRun(opts: RotateOptions, services: readonly string[], threshold: Threshold, ctx: CommandContext): Promise<void> {
  const ca = await openCaForReading(ctx.global.dir);
  let report: DryRunReport;
  try {
    report = await planRotationRun(ca, services, threshold);
  } finally {
    await ca.close();
  }
  const { plan, intermediate, now } = report;
  if (opts.intermediate)
    ctx.out.line(`Would roll the intermediate ${intermediate.serialHex} (ends ${intermediate.notAfter.toISOString()})`);
  for (const p of plan.due) ctx.out.line(describeDue(p.candidate, p.expired, now, intermediate.notAfter.getTime()));
  if (report.crlDue) ctx.out.line(`Would republish crl.pem (${report.crlDue})`);
  if (report.nearsEnd) ctx.out.warn(`the intermediate ends ${intermediate.notAfter.toISOString()}: run \`svcca rotate --intermediate\``);
  ctx.out.line(`rotate --dry-run: ${plan.due.length} due, ${plan.notDue} not due; nothing was changed`);
  ctx.out.result({
    dryRun: true,
    threshold: threshold.text,
    due: plan.due.map((p) => ({
      service: p.candidate.service,
      serial: p.candidate.serial,
      notAfter: new Date(p.candidate.notAfter).toISOString(),
      expired: p.expired,
      fromCsr: p.candidate.fromCsr,
    })),
    notDue: plan.notDue,
    nextDueAt: plan.nextDueAt === undefined ? null : new Date(plan.nextDueAt).toISOString(),
    crlDue: report.crlDue ?? null,
    intermediate: { serial: intermediate.serialHex, notAfter: intermediate.notAfter.toISOString(), nearsEnd: report.nearsEnd },
  });
}

function describeDue(c: RotationCandidate, expired: boolean, now: number, intermediateEnd: number): string {
  const left = c.notAfter - now;
  const when = expired ? `expired ${formatDuration(-left)} ago` : `${formatDuration(left)} left`;
  const clamp = now + (c.notAfter - c.notBefore) > intermediateEnd ? "; would be cut short at the intermediate's end" : '';
  return `Would renew ${c.service}  ${c.serial}  (${when}${c.fromCsr ? '; same public key, from a CSR' : ''}${clamp})`;
}

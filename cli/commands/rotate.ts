/**
 * `svcca rotate`: what cron runs. Renews every due certificate (new key, same names and
 * TTL, clamped to the intermediate's end and said so), finishes work a killed run left,
 * republishes crl.pem when due, warns as the intermediate nears its end, and with
 * `--intermediate` rolls it first.
 *
 * Certificates signed from a CSR are renewed by re-signing the same public key (the CA
 * never had the private key), and said so; a key revoked for keyCompromise is never signed
 * again, so such a service is skipped with the command its owner should run.
 */
import { assertServiceName } from '../../common/spiffe-id.js';
import { CaStateError, ExitCode, UsageError, errorLine } from '../../common/errors.js';
import { formatDuration } from '../../common/duration.js';
import { decodeCertificates } from '../../common/pem.js';
import { parseCertificate } from '../../common/x509.js';
import { CA_FILES } from '../store/ca-dir.js';
import type { Ledger, RotationCandidate } from '../store/ledger.js';
import { readIssuerCert, type Authority } from '../ca/authority.js';
import { issueAndRecord, RenewalOvertaken, writeIssuedSetIfActive } from '../ca/issuance.js';
import { DEFAULT_THRESHOLD, intermediateNearsEnd, parseThreshold, planRotation, type PlannedRenewal, type Threshold } from '../ca/rotation-plan.js';
import { claimServices, newClaimOwner, recoverStaleClaims, releaseClaims } from '../ca/renewal.js';
import { runHook } from '../ca/hooks.js';
import { crlRefreshReason, currentCrlValidityMs, publishIntermediateCrls, rootCrlNextUpdate, type PublishOutcome } from '../ca/crl-refresh.js';
import { rollIntermediate, rollPending, type RollOutcome } from '../ca/intermediate-roll.js';
import { intermediatePassphraseSource, openCaForReading, openCaSession, type CaSession } from '../ca/ca-session.js';
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

/** Services claimed and renewed per batch: one claim transaction per batch, not per service. */
const CLAIM_BATCH = 100;

interface Renewed {
  service: string;
  oldSerial: string;
  newSerial: string;
  notAfter: string;
  setDir: string;
  expired: boolean;
  clamped: boolean;
  fromCsr: boolean;
  interrupted: boolean;
  hook?: { ok: boolean; error?: string };
}

interface Skipped {
  service: string;
  reason: string;
}

interface Failed {
  service: string;
  error: string;
}

export async function runRotate(opts: RotateOptions, ctx: CommandContext): Promise<void> {
  // Every flag is checked before anything is opened.
  const threshold = parseThreshold(opts.renewBefore ?? DEFAULT_THRESHOLD);
  const named = [...new Set(opts.services.map(assertServiceName))];
  if (opts.exec !== undefined && opts.exec.trim() === '') throw new UsageError('--exec needs a command', 'e.g. --exec "systemctl reload nginx"');
  if (opts.dryRun) return dryRun(opts, named, threshold, ctx);

  let rootPassphrase: string | undefined;
  const session = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  try {
    if (opts.intermediate) {
      rootPassphrase =
        (await findSecret({ what: 'passphrase for the root key', file: opts.rootPassphraseFile, fileFlag: '--root-passphrase-file', envVar: 'SVCCA_ROOT_PASSPHRASE', env: ctx.env })) ??
        session.passphrase;
    }
    await assertKnownServices(session.ledger, named);
    await rotate(session, opts, named, threshold, rootPassphrase, ctx);
  } finally {
    session.close();
  }
}

async function assertKnownServices(ledger: Ledger, named: readonly string[]): Promise<void> {
  for (const name of named) {
    if (!(await ledger.getService(name))) throw new UsageError(`unknown service ${name}`, 'see `svcca list` for the issued services, or issue it with `svcca issue`');
  }
}

async function rotate(s: CaSession, opts: RotateOptions, named: readonly string[], threshold: Threshold, rootPassphrase: string | undefined, ctx: CommandContext): Promise<void> {
  const who = actor();
  const wanted = named.length === 0 ? () => true : (name: string) => named.includes(name);
  let roll: RollOutcome | undefined;
  if (opts.intermediate) {
    roll = await rollIntermediate({
      dir: s.dir,
      config: s.config,
      ledger: s.ledger,
      authority: s.authority,
      passphrase: s.passphrase,
      rootPassphrase: rootPassphrase!,
      crlValidityMs: currentCrlValidityMs(s.dir, s.authority.intermediate, s.config.crlNextUpdateMs),
      actor: who,
      now: Date.now(),
    });
    s.reload();
    ctx.out.line(
      `${roll.resumed ? 'Finished rolling' : 'Rolled'} the intermediate: ${roll.previous.serial} → ${roll.current.serial}, until ${roll.current.notAfter}; the root's CRL was re-signed (#${roll.rootCrlNumber}); the trust bundle is unchanged`,
    );
  }
  const now = Date.now();
  const intermediate = s.authority.intermediate.info;
  if (intermediate.notAfter.getTime() <= now) {
    throw new CaStateError(`the intermediate expired at ${intermediate.notAfter.toISOString()}`, 'roll it with `svcca rotate --intermediate` (needs the root passphrase)');
  }

  const interrupted = await recoverStaleClaims(s.ledger, now, wanted);
  const candidates = (await s.ledger.listRotationCandidates()).filter((c) => wanted(c.service));
  const plan = planRotation(candidates, now, threshold);
  const work: (PlannedRenewal & { interrupted: boolean })[] = plan.due.map((p) => ({ ...p, interrupted: false }));
  const planned = new Set(work.map((w) => w.candidate.service));
  for (const i of interrupted) {
    if (planned.has(i.service)) continue;
    const c = candidates.find((x) => x.service === i.service && x.serial === i.serial);
    if (c) work.push({ candidate: c, expired: c.notAfter <= now, interrupted: true });
  }

  const skipped: Skipped[] = [];
  for (const name of named) {
    if (!candidates.some((c) => c.service === name)) {
      skipped.push({ service: name, reason: 'revoked: rotation stopped; `svcca issue` starts it again with a new key' });
    }
  }

  const renewed: Renewed[] = [];
  const failed: Failed[] = [];
  const owner = newClaimOwner();
  for (let i = 0; i < work.length; i += CLAIM_BATCH) {
    const batch = work.slice(i, i + CLAIM_BATCH);
    const claims = await claimServices(s.ledger, batch.map((w) => w.candidate), owner, Date.now());
    const done: string[] = [];
    for (const item of batch) {
      const claim = claims.get(item.candidate.service);
      if (claim === 'busy') {
        skipped.push({ service: item.candidate.service, reason: 'another svcca rotate is renewing it' });
        continue;
      }
      if (claim !== 'claimed') {
        skipped.push({ service: item.candidate.service, reason: 'already renewed, revoked or re-issued since this run started' });
        continue;
      }
      try {
        const outcome = await renewOne(s, item, threshold, who);
        if (outcome.kind === 'skipped') {
          skipped.push({ service: item.candidate.service, reason: outcome.reason });
          done.push(item.candidate.service);
          continue;
        }
        const r = outcome.renewed;
        done.push(r.service);
        if (opts.exec !== undefined) {
          r.hook = runHook(opts.exec, ctx.env, r.service, r.setDir);
          if (!r.hook.ok) failed.push({ service: r.service, error: `--exec hook ${r.hook.error}` });
        }
        renewed.push(r);
        printRenewed(ctx, r);
      } catch (err) {
        // The claim stays: the next run checks this set against the ledger.
        failed.push({ service: item.candidate.service, error: errorLine(err) });
        ctx.out.warn(`${item.candidate.service}: renewal failed: ${errorLine(err)}`);
      }
    }
    await releaseClaims(s.ledger, done, owner);
  }

  for (const k of skipped) ctx.out.line(`Skipped ${k.service}: ${k.reason}`);

  let crl: (PublishOutcome & { reason: string }) | { error: string } | undefined;
  const crlWhy = await crlRefreshReason(s.dir, s.ledger, s.authority.intermediate, Date.now());
  if (crlWhy) {
    try {
      const { outcome } = await publishIntermediateCrls(s, {
        now: Date.now(),
        validityMs: currentCrlValidityMs(s.dir, s.authority.intermediate, s.config.crlNextUpdateMs),
        why: `rotate: ${crlWhy}`,
        actor: who,
      });
      crl = { ...outcome, reason: crlWhy };
      ctx.out.line(`Republished ${s.dir.file(CA_FILES.crl)} (${crlWhy}): ${outcome.crls.map((c) => `#${c.number}, ${c.entries} entries`).join('; ')}; next update ${outcome.crls[0]?.nextUpdate ?? '-'}`);
      for (const d of outcome.dropped) ctx.out.line(`  dropped the CRL of ${d}: its leaves have all expired`);
    } catch (err) {
      crl = { error: errorLine(err) };
      failed.push({ service: 'crl.pem', error: errorLine(err) });
      ctx.out.warn(`crl.pem: ${errorLine(err)}`);
    }
  }

  const warnings: string[] = [];
  const clamped = renewed.filter((r) => r.clamped).length;
  if (clamped > 0) warnings.push(`${clamped} renewal(s) were cut short at the intermediate's end (${intermediate.notAfter.toISOString()}): run \`svcca rotate --intermediate\``);
  if (intermediateNearsEnd(intermediate.notBefore.getTime(), intermediate.notAfter.getTime(), now)) {
    warnings.push(`the intermediate ends ${intermediate.notAfter.toISOString()} (less than a third of its life left): run \`svcca rotate --intermediate\` (needs the root passphrase)`);
  }
  if (rollPending(s.dir)) warnings.push('an intermediate roll was interrupted: run `svcca rotate --intermediate` again to finish it');
  const rootCrlEnd = rootCrlNextUpdate(s.dir);
  if (rootCrlEnd && rootCrlEnd.getTime() < intermediate.notAfter.getTime()) {
    warnings.push(`the root's CRL ends ${rootCrlEnd.toISOString()}, before the intermediate: run \`svcca rotate --intermediate\` to re-sign it`);
  }
  for (const w of warnings) ctx.out.warn(w);

  const nextDue = plan.nextDueAt === undefined ? '' : `; next due ${new Date(plan.nextDueAt).toISOString()}`;
  ctx.out.line(`rotate: ${renewed.length} renewed, ${skipped.length} skipped, ${failed.length} failed, ${plan.notDue} not due${nextDue}`);
  for (const f of failed) ctx.out.warn(`failed: ${f.service}: ${f.error}`);
  ctx.out.result({
    dryRun: false,
    threshold: threshold.text,
    roll: roll ?? null,
    renewed,
    skipped,
    failed,
    notDue: plan.notDue,
    nextDueAt: plan.nextDueAt === undefined ? null : new Date(plan.nextDueAt).toISOString(),
    crl: crl ?? null,
    intermediate: { serial: intermediate.serialHex, notAfter: intermediate.notAfter.toISOString() },
    warnings,
  });
  ctx.exitCode = failed.length > 0 ? ExitCode.partial : warnings.length > 0 ? ExitCode.attention : ExitCode.ok;
}

type RenewOutcome = { kind: 'renewed'; renewed: Renewed } | { kind: 'skipped'; reason: string };

async function renewOne(s: CaSession, item: PlannedRenewal & { interrupted: boolean }, threshold: Threshold, who: string): Promise<RenewOutcome> {
  const { ledger } = s;
  const authority: Authority = s.authority;
  const record = await ledger.getCertificate(item.candidate.serial);
  if (!record) throw new CaStateError(`the ledger has no certificate ${item.candidate.serial}`, 'run `svcca issue` for this service');
  let csrSpkiDer: Buffer | undefined;
  if (record.fromCsr) {
    if (await ledger.isKeyCompromised(record.spkiSha256)) {
      return { kind: 'skipped', reason: `its CSR key was revoked for keyCompromise and is never signed again; its owner must make a new key and run \`svcca issue ${record.service} --csr NEW.csr\`` };
    }
    csrSpkiDer = parseCertificate(decodeCertificates(record.certPem, 'the ledger certificate')[0]!).spkiDer;
  }
  const why = item.interrupted ? 'renewed again: an interrupted run lost the key' : item.expired ? 'renewed after it had expired' : `renewed (${threshold.text} threshold)`;
  let issued;
  try {
    issued = await issueAndRecord(authority, ledger, {
      service: record.service,
      ttlMs: record.ttlMs,
      dnsNames: record.dnsNames,
      ips: record.ips,
      setDir: record.setDir,
      ...(csrSpkiDer ? { csrSpkiDer } : {}),
      notAfterCap: authority.intermediate.info.notAfter.getTime(),
      kind: 'renew',
      actor: who,
      why,
      renewsSerial: record.serial,
    });
  } catch (err) {
    if (err instanceof RenewalOvertaken) return { kind: 'skipped', reason: err.message };
    throw err;
  }
  // Under the ledger's lock and only while still active: a concurrent `issue` that
  // superseded this renewal writes its own set, and ours must not overwrite it.
  await writeIssuedSetIfActive(authority, ledger, issued.record, issued.key);
  return {
    kind: 'renewed',
    renewed: {
      service: record.service,
      oldSerial: record.serial,
      newSerial: issued.record.serial,
      notAfter: new Date(issued.record.notAfter).toISOString(),
      setDir: record.setDir,
      expired: item.expired,
      clamped: issued.clamped,
      fromCsr: record.fromCsr,
      interrupted: item.interrupted,
    },
  };
}

function printRenewed(ctx: CommandContext, r: Renewed): void {
  const notes: string[] = [];
  if (r.expired) notes.push('it had expired');
  if (r.clamped) notes.push("cut short: ends with the intermediate");
  if (r.fromCsr) notes.push('re-signed the same public key (CSR)');
  if (r.interrupted) notes.push('an interrupted run had not written its set');
  if (r.hook) notes.push(r.hook.ok ? 'hook ok' : `hook FAILED: ${r.hook.error}`);
  ctx.out.line(`Renewed ${r.service}  ${r.oldSerial} → ${r.newSerial}  until ${r.notAfter}${notes.length ? `  (${notes.join('; ')})` : ''}`);
}

/** --dry-run: the plan only, from the ledger; needs no passphrase and changes nothing. */
async function dryRun(opts: RotateOptions, named: readonly string[], threshold: Threshold, ctx: CommandContext): Promise<void> {
  const ca = openCaForReading(ctx.global.dir);
  const { dir, ledger } = ca;
  try {
    await assertKnownServices(ledger, named);
    const now = Date.now();
    const wanted = named.length === 0 ? () => true : (name: string) => named.includes(name);
    const candidates = (await ledger.listRotationCandidates()).filter((c) => wanted(c.service));
    const plan = planRotation(candidates, now, threshold);
    const intermediate = readIssuerCert(dir, CA_FILES.intermediateCert).info;
    if (opts.intermediate) ctx.out.line(`Would roll the intermediate ${intermediate.serialHex} (ends ${intermediate.notAfter.toISOString()})`);
    for (const p of plan.due) ctx.out.line(describeDue(p.candidate, p.expired, now, intermediate.notAfter.getTime()));
    const crlWhy = await crlRefreshReason(dir, ledger, readIssuerCert(dir, CA_FILES.intermediateCert), now);
    if (crlWhy) ctx.out.line(`Would republish crl.pem (${crlWhy})`);
    const nearsEnd = intermediateNearsEnd(intermediate.notBefore.getTime(), intermediate.notAfter.getTime(), now);
    if (nearsEnd) ctx.out.warn(`the intermediate ends ${intermediate.notAfter.toISOString()}: run \`svcca rotate --intermediate\``);
    ctx.out.line(`rotate --dry-run: ${plan.due.length} due, ${plan.notDue} not due; nothing was changed`);
    ctx.out.result({
      dryRun: true,
      threshold: threshold.text,
      due: plan.due.map((p) => ({ service: p.candidate.service, serial: p.candidate.serial, notAfter: new Date(p.candidate.notAfter).toISOString(), expired: p.expired, fromCsr: p.candidate.fromCsr })),
      notDue: plan.notDue,
      nextDueAt: plan.nextDueAt === undefined ? null : new Date(plan.nextDueAt).toISOString(),
      crlDue: crlWhy ?? null,
      intermediate: { serial: intermediate.serialHex, notAfter: intermediate.notAfter.toISOString(), nearsEnd },
    });
  } finally {
    ca.close();
  }
}

function describeDue(c: RotationCandidate, expired: boolean, now: number, intermediateEnd: number): string {
  const left = c.notAfter - now;
  const when = expired ? `expired ${formatDuration(-left)} ago` : `${formatDuration(left)} left`;
  const clamp = now + (c.notAfter - c.notBefore) > intermediateEnd ? '; would be cut short at the intermediate\'s end' : '';
  return `Would renew ${c.service}  ${c.serial}  (${when}${c.fromCsr ? '; same public key, from a CSR' : ''}${clamp})`;
}

/**
 * A rotation run (`svcca rotate`), as a report for the command to print: with
 * `rollIntermediate` the intermediate is rolled first; then every due certificate is
 * renewed (new key, same names and TTL, clamped to the intermediate's end), work a killed
 * run left is finished, crl.pem is republished when due, and what needs attention is
 * listed as warnings.
 *
 * Certificates signed from a CSR are renewed by re-signing the same public key (the CA
 * never had the private key); a key revoked for keyCompromise is never signed again, so
 * such a service is skipped with the command its owner should run.
 */
import { SILENT, type Progress } from '../progress.js';
import { CaStateError, ExitCode, UsageError, errorLine, type ExitCodeValue } from '../../common/errors.js';
import { decodeCertificates } from '../../common/pem.js';
import { parseCertificate, type CertInfo } from '../../common/x509.js';
import { CA_FILES } from '../store/ca-dir.js';
import type { Ledger, RotationCandidate } from '../store/ledger.js';
import { readIssuerCert } from './authority.js';
import { issueAndRecord, RenewalOvertaken, writeIssuedSetIfActive } from './issuance.js';
import { intermediateNearsEnd, planRotation, type PlannedRenewal, type RotationPlan, type Threshold } from './rotation-plan.js';
import { claimServices, newClaimOwner, recoverStaleClaims, releaseClaims, type Interrupted } from './renewal.js';
import { runHook, type HookResult } from './hooks.js';
import { crlRefreshReason, currentCrlValidityMs, publishIntermediateCrls, rootCrlNextUpdate, type PublishOutcome } from './crl-refresh.js';
import { rollIntermediate, rollPending, type RollOutcome } from './intermediate-roll.js';
import type { CaSession, ReadOnlyCa } from './ca-session.js';

export interface RotationRequest {
  /** Only these (already validated) services; every one when empty. */
  readonly services: readonly string[];
  readonly threshold: Threshold;
  /** Run after each renewed set, with SVCCA_SERVICE and SVCCA_SET_DIR. */
  readonly exec?: string;
  /** The environment hooks inherit (minus every passphrase variable). */
  readonly env: NodeJS.ProcessEnv;
  /** Roll the intermediate first, with the root key opened by this passphrase. */
  readonly roll?: { readonly rootPassphrase: string };
  readonly actor: string;
  /** Told how many renewals the run has, once it knows; updated after each. */
  readonly progress?: (total: number) => Progress;
}

/** One renewal, as `--json` shows it. */
export interface Renewed {
  service: string;
  oldSerial: string;
  newSerial: string;
  notAfter: string;
  setDir: string;
  expired: boolean;
  clamped: boolean;
  fromCsr: boolean;
  interrupted: boolean;
  hook?: HookResult;
}

export interface Skipped {
  readonly service: string;
  readonly reason: string;
}

export interface Failed {
  readonly service: string;
  readonly error: string;
}

export type CrlRefresh = (PublishOutcome & { reason: string }) | { error: string };

export interface RotationReport {
  readonly roll: RollOutcome | undefined;
  readonly renewed: readonly Renewed[];
  readonly skipped: readonly Skipped[];
  /** Everything that failed: renewals, hooks and the CRL, each named. */
  readonly failed: readonly Failed[];
  /** The renewals among `failed` that threw (a hook's failure is told with its renewal). */
  readonly renewalErrors: readonly Failed[];
  readonly plan: RotationPlan;
  /** Set when crl.pem was due. */
  readonly crl: CrlRefresh | undefined;
  readonly intermediate: CertInfo;
  readonly warnings: readonly string[];
  /** 2 when anything failed, else 4 when a warning needs attention, else 0. */
  readonly exitCode: ExitCodeValue;
}

/** Services claimed and renewed per batch: one claim transaction per batch, not per service. */
const CLAIM_BATCH = 100;

type Work = PlannedRenewal & { interrupted: boolean };

export async function assertKnownServices(ledger: Ledger, named: readonly string[]): Promise<void> {
  for (const name of named) {
    if (!(await ledger.getService(name)))
      throw new UsageError(`unknown service ${name}`, 'see `svcca list` for the issued services, or issue it with `svcca issue`');
  }
}

export async function runRotation(s: CaSession, req: RotationRequest): Promise<RotationReport> {
  await assertKnownServices(s.ledger, req.services);
  const roll = req.roll ? await rollFirst(s, req.roll.rootPassphrase, req.actor) : undefined;
  const now = Date.now();
  const intermediate = s.authority.intermediate.info;
  if (intermediate.notAfter.getTime() <= now) {
    throw new CaStateError(
      `the intermediate expired at ${intermediate.notAfter.toISOString()}`,
      'roll it with `svcca rotate --intermediate` (needs the root passphrase)',
    );
  }
  const wanted = wantedBy(req.services);
  const interrupted = await recoverStaleClaims(s.ledger, now, wanted);
  const { candidates, selfRenewing } = splitCandidates(await s.ledger.listRotationCandidates(), wanted);
  const plan = planRotation(candidates, now, req.threshold);
  const work = withInterrupted(plan, candidates, interrupted, now);
  const skipped: Skipped[] = req.services
    .filter((name) => !candidates.some((c) => c.service === name))
    .map((service) => ({
      service,
      reason: selfRenewing.has(service)
        ? 'its owner renews it through `svcca serve` (`svcca issue` hands it back to rotate)'
        : 'revoked: rotation stopped; `svcca issue` starts it again with a new key',
    }));
  const progress = req.progress?.(work.length) ?? SILENT;
  let renewals: Renewals;
  try {
    renewals = await renewAll(s, work, req, progress);
  } finally {
    progress.stop();
  }
  skipped.push(...renewals.skipped);
  const failed: Failed[] = [...renewals.failed];
  const crl = await refreshCrl(s, req.actor);
  if (crl && 'error' in crl) failed.push({ service: 'crl.pem', error: crl.error });
  const warnings = attentionWarnings(s, renewals.renewed, now);
  return {
    roll,
    renewed: renewals.renewed,
    skipped,
    failed,
    renewalErrors: renewals.errors,
    plan,
    crl,
    intermediate,
    warnings,
    exitCode: failed.length > 0 ? ExitCode.partial : warnings.length > 0 ? ExitCode.attention : ExitCode.ok,
  };
}

/**
 * The candidates rotate renews, and the services left out because their owner renews
 * them over the network: re-signing those here would supersede the certificate the owner
 * holds, and its next renewal would be refused.
 */
function splitCandidates(
  all: readonly RotationCandidate[],
  wanted: (service: string) => boolean,
): { candidates: RotationCandidate[]; selfRenewing: Set<string> } {
  const candidates: RotationCandidate[] = [];
  const selfRenewing = new Set<string>();
  for (const c of all) {
    if (!wanted(c.service)) continue;
    if (c.ownerRenews) selfRenewing.add(c.service);
    else candidates.push(c);
  }
  return { candidates, selfRenewing };
}

function wantedBy(named: readonly string[]): (service: string) => boolean {
  return named.length === 0 ? () => true : (name) => named.includes(name);
}

async function rollFirst(s: CaSession, rootPassphrase: string, actor: string): Promise<RollOutcome> {
  const outcome = await rollIntermediate({
    dir: s.dir,
    config: s.config,
    ledger: s.ledger,
    authority: s.authority,
    passphrase: s.passphrase,
    rootPassphrase,
    crlValidityMs: currentCrlValidityMs(s.dir, s.authority.intermediate, s.config.crlNextUpdateMs),
    actor,
    now: Date.now(),
  });
  s.reload();
  return outcome;
}

/** The due renewals, then the sets an interrupted run left behind (not already due). */
function withInterrupted(
  plan: RotationPlan,
  candidates: readonly RotationCandidate[],
  interrupted: readonly Interrupted[],
  now: number,
): Work[] {
  const work: Work[] = plan.due.map((p) => ({ ...p, interrupted: false }));
  const planned = new Set(work.map((w) => w.candidate.service));
  for (const i of interrupted) {
    if (planned.has(i.service)) continue;
    const c = candidates.find((x) => x.service === i.service && x.serial === i.serial);
    if (c) work.push({ candidate: c, expired: c.notAfter <= now, interrupted: true });
  }
  return work;
}

interface Renewals {
  renewed: Renewed[];
  skipped: Skipped[];
  failed: Failed[];
  errors: Failed[];
}

async function renewAll(s: CaSession, work: readonly Work[], req: RotationRequest, progress: Progress): Promise<Renewals> {
  const out: Renewals = { renewed: [], skipped: [], failed: [], errors: [] };
  let finished = 0;
  const owner = newClaimOwner();
  for (let i = 0; i < work.length; i += CLAIM_BATCH) {
    const batch = work.slice(i, i + CLAIM_BATCH);
    const claims = await claimServices(
      s.ledger,
      batch.map((w) => w.candidate),
      owner,
      Date.now(),
    );
    const done: string[] = [];
    for (const item of batch) {
      const service = item.candidate.service;
      progress.update(finished++, service);
      const claim = claims.get(service);
      if (claim !== 'claimed') {
        out.skipped.push({
          service,
          reason: claim === 'busy' ? 'another svcca rotate is renewing it' : 'already renewed, revoked or re-issued since this run started',
        });
        continue;
      }
      try {
        const outcome = await renewOne(s, item, req);
        done.push(service);
        if (outcome.kind === 'skipped') {
          out.skipped.push({ service, reason: outcome.reason });
          continue;
        }
        const r = outcome.renewed;
        if (req.exec !== undefined) {
          r.hook = runHook(req.exec, req.env, r.service, r.setDir);
          if (!r.hook.ok) out.failed.push({ service, error: `--exec hook ${r.hook.error}` });
        }
        out.renewed.push(r);
      } catch (err) {
        // The claim stays: the next run checks this set against the ledger.
        const failure = { service, error: errorLine(err) };
        out.failed.push(failure);
        out.errors.push(failure);
      }
    }
    await releaseClaims(s.ledger, done, owner);
  }
  progress.update(finished);
  return out;
}

type RenewOutcome = { kind: 'renewed'; renewed: Renewed } | { kind: 'skipped'; reason: string };

async function renewOne(s: CaSession, item: Work, req: RotationRequest): Promise<RenewOutcome> {
  const { ledger, authority } = s;
  const record = await ledger.getCertificate(item.candidate.serial);
  if (!record) throw new CaStateError(`the ledger has no certificate ${item.candidate.serial}`, 'run `svcca issue` for this service');
  let csrSpkiDer: Buffer | undefined;
  if (record.fromCsr) {
    if (await ledger.isKeyCompromised(record.spkiSha256)) {
      return {
        kind: 'skipped',
        reason: `its CSR key was revoked for keyCompromise and is never signed again; its owner must make a new key and run \`svcca issue ${record.service} --csr NEW.csr\``,
      };
    }
    csrSpkiDer = parseCertificate(decodeCertificates(record.certPem, 'the ledger certificate')[0]!).spkiDer;
  }
  const why = item.interrupted
    ? 'renewed again: an interrupted run lost the key'
    : item.expired
      ? 'renewed after it had expired'
      : `renewed (${req.threshold.text} threshold)`;
  let issued: Awaited<ReturnType<typeof issueAndRecord>>;
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
      actor: req.actor,
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

/** Republishes crl.pem when it is due; a failure is reported, not thrown (the renewals stand). */
export async function refreshCrl(s: CaSession, actor: string): Promise<CrlRefresh | undefined> {
  const reason = await crlRefreshReason(s.dir, s.ledger, s.authority.intermediate, Date.now());
  if (!reason) return undefined;
  try {
    const { outcome } = await publishIntermediateCrls(s, {
      now: Date.now(),
      validityMs: currentCrlValidityMs(s.dir, s.authority.intermediate, s.config.crlNextUpdateMs),
      why: `rotate: ${reason}`,
      actor,
    });
    return { ...outcome, reason };
  } catch (err) {
    return { error: errorLine(err) };
  }
}

function attentionWarnings(s: CaSession, renewed: readonly Renewed[], now: number): string[] {
  const intermediate = s.authority.intermediate.info;
  const warnings: string[] = [];
  const clamped = renewed.filter((r) => r.clamped).length;
  if (clamped > 0)
    warnings.push(
      `${clamped} renewal(s) were cut short at the intermediate's end (${intermediate.notAfter.toISOString()}): run \`svcca rotate --intermediate\``,
    );
  if (intermediateNearsEnd(intermediate.notBefore.getTime(), intermediate.notAfter.getTime(), now)) {
    warnings.push(
      `the intermediate ends ${intermediate.notAfter.toISOString()} (less than a third of its life left): run \`svcca rotate --intermediate\` (needs the root passphrase)`,
    );
  }
  if (rollPending(s.dir)) warnings.push('an intermediate roll was interrupted: run `svcca rotate --intermediate` again to finish it');
  const rootCrlEnd = rootCrlNextUpdate(s.dir);
  if (rootCrlEnd && rootCrlEnd.getTime() < intermediate.notAfter.getTime()) {
    warnings.push(
      `the root's CRL ends ${rootCrlEnd.toISOString()}, before the intermediate: run \`svcca rotate --intermediate\` to re-sign it`,
    );
  }
  return warnings;
}

export interface DryRunReport {
  readonly plan: RotationPlan;
  readonly intermediate: CertInfo;
  readonly nearsEnd: boolean;
  /** Why crl.pem would be republished, if it would. */
  readonly crlDue: string | undefined;
  readonly now: number;
}

/** `--dry-run`: the plan only, from the ledger; needs no key and changes nothing. */
export async function planRotationRun(ca: ReadOnlyCa, services: readonly string[], threshold: Threshold): Promise<DryRunReport> {
  await assertKnownServices(ca.ledger, services);
  const now = Date.now();
  const wanted = wantedBy(services);
  const { candidates } = splitCandidates(await ca.ledger.listRotationCandidates(), wanted);
  const plan = planRotation(candidates, now, threshold);
  const current = readIssuerCert(ca.dir, CA_FILES.intermediateCert);
  const crlDue = await crlRefreshReason(ca.dir, ca.ledger, current, now);
  const intermediate = current.info;
  return {
    plan,
    intermediate,
    nearsEnd: intermediateNearsEnd(intermediate.notBefore.getTime(), intermediate.notAfter.getTime(), now),
    crlDue,
    now,
  };
}

/**
 * What `rotate` renews, as pure functions of the ledger's records, the time and the
 * threshold, so the rules can be tested with tables and no CA.
 */
import { UsageError } from '../../common/errors.js';
import { parseDurationMs } from '../../common/duration.js';
import type { RotationCandidate } from '../store/ledger.js';

export type Threshold =
  /** Renew when less than `fraction` of the certificate's lifetime is left. */
  | { readonly kind: 'fraction'; readonly fraction: number; readonly text: string }
  /** Renew when less than `ms` is left. */
  | { readonly kind: 'duration'; readonly ms: number; readonly text: string };

export const DEFAULT_THRESHOLD = '33%';

const PERCENT = /^(\d{1,3}(?:\.\d+)?)%$/;

/** Parses `--renew-before`: `33%` (a share of the lifetime, 0 < P <= 100) or `8h`. */
export function parseThreshold(text: string): Threshold {
  const value = text.trim();
  const pct = PERCENT.exec(value);
  if (pct) {
    const p = Number(pct[1]);
    if (!(p > 0) || p > 100) throw new UsageError(`--renew-before ${value}: a share must be more than 0% and at most 100%`, 'use e.g. 33% (100% renews every certificate now)');
    return { kind: 'fraction', fraction: p / 100, text: value };
  }
  const ms = parseDurationMs(value);
  if (ms !== undefined && ms > 0) return { kind: 'duration', ms, text: value };
  throw new UsageError(`--renew-before ${JSON.stringify(text)} is not a threshold`, 'give a share of the lifetime like 33% or a duration like 8h');
}

/** True when the certificate has less than the threshold left (an expired one always is). */
export function isDue(c: Pick<RotationCandidate, 'notBefore' | 'notAfter'>, now: number, t: Threshold): boolean {
  const left = c.notAfter - now;
  if (left <= 0) return true;
  if (t.kind === 'duration') return left < t.ms;
  return left < (c.notAfter - c.notBefore) * t.fraction;
}

/** When the certificate becomes due (ms). */
export function dueAt(c: Pick<RotationCandidate, 'notBefore' | 'notAfter'>, t: Threshold): number {
  if (t.kind === 'duration') return c.notAfter - t.ms;
  return c.notAfter - (c.notAfter - c.notBefore) * t.fraction;
}

export interface PlannedRenewal {
  readonly candidate: RotationCandidate;
  /** It had already expired (the CA host was down, or cron stopped). */
  readonly expired: boolean;
}

export interface RotationPlan {
  readonly due: readonly PlannedRenewal[];
  readonly notDue: number;
  /** The earliest time a certificate not due now becomes due. */
  readonly nextDueAt: number | undefined;
}

/** Splits the candidates (already filtered to the services asked for) into due and not. */
export function planRotation(candidates: readonly RotationCandidate[], now: number, t: Threshold): RotationPlan {
  const due: PlannedRenewal[] = [];
  let notDue = 0;
  let nextDueAt: number | undefined;
  for (const c of candidates) {
    if (isDue(c, now, t)) {
      due.push({ candidate: c, expired: c.notAfter <= now });
    } else {
      notDue++;
      const at = dueAt(c, t);
      if (nextDueAt === undefined || at < nextDueAt) nextDueAt = at;
    }
  }
  return { due, notDue, nextDueAt };
}

/** The intermediate needs rolling when less than a third of its life is left. */
export const INTERMEDIATE_WARN_FRACTION = 1 / 3;

export function intermediateNearsEnd(notBefore: number, notAfter: number, now: number): boolean {
  return notAfter - now < (notAfter - notBefore) * INTERMEDIATE_WARN_FRACTION;
}

/**
 * What `rotate` renews, as pure functions of the ledger's records, the time and the
 * threshold, so the rules can be tested with tables and no CA.
 */
import type { RotationCandidate } from '../store/ledger.js';

export { DEFAULT_THRESHOLD, dueAt, isDue, parseThreshold, type Threshold } from '../../common/renewal-threshold.js';
import { dueAt, isDue, type Threshold } from '../../common/renewal-threshold.js';

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

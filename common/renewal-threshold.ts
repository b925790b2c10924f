/**
 * When a certificate is due for renewal: `--renew-before` of `svcca rotate` and
 * `svcca renew`, and the sidecar's `identity.renew.before`. Pure functions of the
 * certificate's validity, the time and the threshold.
 */
import { UsageError } from './errors.js';
import { parseDurationMs } from './duration.js';

/** The validity a threshold is measured against (ms). */
export interface Validity {
  readonly notBefore: number;
  readonly notAfter: number;
}

export type Threshold =
  /** Renew when less than `fraction` of the certificate's lifetime is left. */
  | { readonly kind: 'fraction'; readonly fraction: number; readonly text: string }
  /** Renew when less than `ms` is left. */
  | { readonly kind: 'duration'; readonly ms: number; readonly text: string };

export const DEFAULT_THRESHOLD = '33%';

const PERCENT = /^(\d{1,3}(?:\.\d+)?)%$/;

/** Parses a threshold: `33%` (a share of the lifetime, 0 < P <= 100) or `8h`; `label` names the flag or key in errors. */
export function parseThreshold(text: string, label = '--renew-before'): Threshold {
  const value = text.trim();
  const pct = PERCENT.exec(value);
  if (pct) {
    const p = Number(pct[1]);
    if (!(p > 0) || p > 100)
      throw new UsageError(
        `${label} ${value}: a share must be more than 0% and at most 100%`,
        'use e.g. 33% (100% renews every certificate now)',
      );
    return { kind: 'fraction', fraction: p / 100, text: value };
  }
  const ms = parseDurationMs(value);
  if (ms !== undefined && ms > 0) return { kind: 'duration', ms, text: value };
  throw new UsageError(
    `${label} ${JSON.stringify(text)} is not a threshold`,
    'give a share of the lifetime like 33% or a duration like 8h',
  );
}

/** True when the certificate has less than the threshold left (an expired one always is). */
export function isDue(c: Validity, now: number, t: Threshold): boolean {
  const left = c.notAfter - now;
  if (left <= 0) return true;
  if (t.kind === 'duration') return left < t.ms;
  return left < (c.notAfter - c.notBefore) * t.fraction;
}

/** When the certificate becomes due (ms). */
export function dueAt(c: Validity, t: Threshold): number {
  if (t.kind === 'duration') return c.notAfter - t.ms;
  return c.notAfter - (c.notAfter - c.notBefore) * t.fraction;
}

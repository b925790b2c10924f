/**
 * Durations as users write them: `90s`, `15m`, `24h`, `30d`, `1h30m`.
 */
import { UsageError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^(?:\d+(?:ms|s|m|h|d|w))+$/;

/** Milliseconds in `text`, or undefined when it is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const value = text.trim();
  if (!DURATION.test(value)) return undefined;
  let total = 0;
  for (const match of value.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) {
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

/** Parses a positive duration for `flag`, or throws a UsageError naming it. */
export function requireDurationMs(flag: string, text: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined)
    throw new UsageError(`${flag}: ${JSON.stringify(text)} is not a duration`, 'write it like 90s, 15m, 24h, 30d or 1h30m');
  if (ms <= 0) throw new UsageError(`${flag}: the duration must be greater than zero`, 'write it like 15m, 24h or 30d');
  return ms;
}

/** A short human form: `24h`, `1h30m`, `30d`. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  // Days only from three days up: "24h" and "48h" read better than "1d" and "2d".
  const units =
    rest >= 3 * 86_400
      ? ([
          ['d', 86_400],
          ['h', 3_600],
          ['m', 60],
          ['s', 1],
        ] as const)
      : ([
          ['h', 3_600],
          ['m', 60],
          ['s', 1],
        ] as const);
  for (const [unit, size] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || '0s';
}

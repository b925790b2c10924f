/**
 * Durations as users type them (`--ttl`, `--expiring`, `--renew-before`): what parses,
 * to how many milliseconds, and what is refused with a line naming the flag.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, parseDurationMs, requireDurationMs } from '../../../common/duration.js';
import { UsageError } from '../../../common/errors.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

describe('parseDurationMs: accepted', () => {
  const cases: { name: string; input: string; want: number }[] = [
    { name: 'milliseconds', input: '250ms', want: 250 },
    { name: 'seconds', input: '90s', want: 90 * S },
    { name: 'minutes', input: '15m', want: 15 * M },
    { name: 'hours', input: '24h', want: 24 * H },
    { name: 'days', input: '30d', want: 30 * D },
    { name: 'weeks', input: '2w', want: 14 * D },
    { name: 'compound', input: '1h30m', want: 90 * M },
    { name: 'compound, every unit', input: '1w1d1h1m1s1ms', want: 7 * D + D + H + M + S + 1 },
    { name: 'same unit twice adds up', input: '1h1h', want: 2 * H },
    { name: 'leading zeros', input: '007m', want: 7 * M },
    { name: 'zero parses (refused later by requireDurationMs)', input: '0s', want: 0 },
    { name: 'surrounding spaces trimmed', input: ' 5m ', want: 5 * M },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(parseDurationMs(c.input), c.want));
  }
});

describe('parseDurationMs: refused', () => {
  const cases: { name: string; input: string }[] = [
    { name: 'empty', input: '' },
    { name: 'only spaces', input: '   ' },
    { name: 'bare number', input: '24' },
    { name: 'bare zero', input: '0' },
    { name: 'negative', input: '-1h' },
    { name: 'explicit plus', input: '+1h' },
    { name: 'fraction', input: '1.5h' },
    { name: 'exponent', input: '1e3s' },
    { name: 'unknown unit', input: '3y' },
    { name: 'upper-case unit', input: '24H' },
    { name: 'unit spelt out', input: '24hours' },
    { name: 'space inside', input: '1h 30m' },
    { name: 'unit first', input: 'h24' },
    { name: 'unit alone', input: 'h' },
    { name: 'trailing garbage', input: '24hx' },
    { name: 'hex', input: '0x10s' },
    { name: 'non-ASCII digits', input: '٢٤h' },
    { name: 'a percentage', input: '33%' },
    { name: 'overflows a safe integer', input: `${'9'.repeat(30)}w` },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(parseDurationMs(c.input), undefined, JSON.stringify(c.input)));
  }
});

describe('requireDurationMs', () => {
  it('returns the milliseconds of a positive duration', () => {
    assert.equal(requireDurationMs('--ttl', '24h'), 24 * H);
  });
  const refused: { name: string; input: string; want: RegExp }[] = [
    { name: 'not a duration', input: 'soon', want: /--ttl: "soon" is not a duration/ },
    { name: 'zero', input: '0s', want: /--ttl: the duration must be greater than zero/ },
    { name: 'zero in a compound', input: '0h0m', want: /greater than zero/ },
    { name: 'negative', input: '-5m', want: /is not a duration/ },
  ];
  for (const c of refused) {
    it(`refuses ${c.name} with one line naming the flag and a hint`, () => {
      assert.throws(
        () => requireDurationMs('--ttl', c.input),
        (err: unknown) => err instanceof UsageError && c.want.test(err.message) && err.hint.length > 0 && !err.line.includes('\n'),
      );
    });
  }
});

describe('formatDuration', () => {
  const cases: { ms: number; want: string }[] = [
    { ms: 24 * H, want: '24h' },
    { ms: 48 * H, want: '48h' },
    { ms: 3 * D, want: '3d' },
    { ms: 30 * D, want: '30d' },
    { ms: 90 * M, want: '1h30m' },
    { ms: 45 * S, want: '45s' },
    { ms: D + H + M + S, want: '25h1m1s' },
    { ms: 3 * D + H + M + S, want: '3d1h1m1s' },
    { ms: 0, want: '0s' },
    { ms: -5, want: '0s' },
    { ms: 400, want: '0s' },
  ];
  for (const c of cases) {
    it(`${c.ms} ms is ${c.want}`, () => assert.equal(formatDuration(c.ms), c.want));
  }
  it('round-trips through parseDurationMs', () => {
    for (const ms of [S, 59 * S, M, H + S, 3 * D + 7 * H, 30 * D]) assert.equal(parseDurationMs(formatDuration(ms)), ms);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SvccaError } from '../../../../common/errors.js';
import { intermediateNearsEnd, isDue, parseThreshold, planRotation, type Threshold } from '../../../../cli/ca/rotation-plan.js';
import type { RotationCandidate } from '../../../../cli/store/ledger.js';

const H = 3_600_000;
const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);

/** A 24 h certificate (plus the one-minute back-date) with `leftMs` to go at NOW. */
function cert(service: string, leftMs: number, lifetimeMs = 24 * H, fromCsr = false): RotationCandidate {
  const notAfter = NOW + leftMs;
  return {
    service,
    serial: `${service}-serial`,
    notBefore: notAfter - lifetimeMs - 60_000,
    notAfter,
    fromCsr,
    issuerKeyId: 'ab',
    ownerRenews: false,
  };
}

describe('parseThreshold', () => {
  const good: { name: string; input: string; want: Threshold }[] = [
    { name: 'default share', input: '33%', want: { kind: 'fraction', fraction: 0.33, text: '33%' } },
    { name: 'all of the lifetime', input: '100%', want: { kind: 'fraction', fraction: 1, text: '100%' } },
    { name: 'fractional percent', input: '12.5%', want: { kind: 'fraction', fraction: 0.125, text: '12.5%' } },
    { name: 'hours', input: '8h', want: { kind: 'duration', ms: 8 * H, text: '8h' } },
    { name: 'compound duration', input: '1h30m', want: { kind: 'duration', ms: 1.5 * H, text: '1h30m' } },
    { name: 'surrounding spaces', input: ' 50% ', want: { kind: 'fraction', fraction: 0.5, text: '50%' } },
  ];
  for (const c of good) it(`accepts ${c.name}`, () => assert.deepEqual(parseThreshold(c.input), c.want));

  const bad: { name: string; input: string; mentions: RegExp }[] = [
    { name: 'a word', input: 'abc', mentions: /not a threshold/ },
    { name: 'a negative share', input: '-5%', mentions: /not a threshold/ },
    { name: 'zero share', input: '0%', mentions: /more than 0%/ },
    { name: 'over 100%', input: '150%', mentions: /at most 100%/ },
    { name: 'zero duration', input: '0h', mentions: /not a threshold/ },
    { name: 'a bare number', input: '33', mentions: /not a threshold/ },
    { name: 'empty', input: '', mentions: /not a threshold/ },
    { name: 'percent then junk', input: '33%x', mentions: /not a threshold/ },
  ];
  for (const c of bad) {
    it(`refuses ${c.name} with one line naming the flag`, () => {
      assert.throws(
        () => parseThreshold(c.input),
        (err: unknown) =>
          err instanceof SvccaError &&
          err.exitCode === 1 &&
          c.mentions.test(err.message) &&
          err.line.includes('--renew-before') &&
          !err.line.includes('\n'),
      );
    });
  }
});

describe('isDue', () => {
  const t33 = parseThreshold('33%');
  const t8h = parseThreshold('8h');
  const cases: { name: string; c: RotationCandidate; t: Threshold; want: boolean }[] = [
    { name: 'fresh certificate, 33%', c: cert('a', 20 * H), t: t33, want: false },
    { name: 'just over a third left', c: cert('a', 8.1 * H), t: t33, want: false },
    { name: 'under a third left', c: cert('a', 7.5 * H), t: t33, want: true },
    { name: 'expired a minute ago', c: cert('a', -60_000), t: t33, want: true },
    { name: 'expired exactly now', c: cert('a', 0), t: t33, want: true },
    { name: 'expired days ago, duration threshold', c: cert('a', -72 * H), t: t8h, want: true },
    { name: '9h left, 8h threshold', c: cert('a', 9 * H), t: t8h, want: false },
    { name: '7h59m left, 8h threshold', c: cert('a', 8 * H - 60_000), t: t8h, want: true },
    { name: '100% renews a brand-new certificate', c: cert('a', 24 * H), t: parseThreshold('100%'), want: true },
    { name: 'a 30-day certificate with 9 days left, 33%', c: cert('a', 9 * 24 * H, 30 * 24 * H), t: t33, want: true },
    { name: 'a 30-day certificate with 11 days left, 33%', c: cert('a', 11 * 24 * H, 30 * 24 * H), t: t33, want: false },
  ];
  for (const c of cases) it(c.name, () => assert.equal(isDue(c.c, NOW, c.t), c.want));
});

describe('planRotation', () => {
  it('splits due from not due, flags the expired, and finds the next due time', () => {
    const plan = planRotation(
      [cert('fresh', 20 * H), cert('due', 2 * H), cert('gone', -H), cert('later', 10 * H)],
      NOW,
      parseThreshold('33%'),
    );
    assert.deepEqual(
      plan.due.map((d) => [d.candidate.service, d.expired]),
      [
        ['due', false],
        ['gone', true],
      ],
    );
    assert.equal(plan.notDue, 2);
    // 'later' becomes due when 33% of 24h1m is left: 10h - (24h1m*0.67) after NOW... i.e. at notAfter - 0.33 * lifetime.
    const later = cert('later', 10 * H);
    assert.equal(plan.nextDueAt, later.notAfter - (later.notAfter - later.notBefore) * 0.33);
  });
  it('nothing due: an empty plan with a next due time', () => {
    const plan = planRotation([cert('a', 20 * H)], NOW, parseThreshold('8h'));
    assert.equal(plan.due.length, 0);
    assert.equal(plan.nextDueAt, NOW + 12 * H);
  });
  it('no certificates at all', () => {
    assert.deepEqual(planRotation([], NOW, parseThreshold('33%')), { due: [], notDue: 0, nextDueAt: undefined });
  });
});

describe('intermediateNearsEnd', () => {
  const Y = 365 * 24 * H;
  const cases: { name: string; left: number; want: boolean }[] = [
    { name: 'new intermediate', left: Y, want: false },
    { name: 'half its life left', left: Y / 2, want: false },
    { name: 'just under a third left', left: Y / 3 - H, want: true },
    { name: 'a day left', left: 24 * H, want: true },
  ];
  for (const c of cases) it(c.name, () => assert.equal(intermediateNearsEnd(NOW + c.left - Y, NOW + c.left, NOW), c.want));
});

/**
 * The issuing rules of `svcca issue` (cli/ca/issuance.ts): the lifetime, the service
 * name against set files, and where the credential set goes. Real folders, no CA.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../../../common/errors.js';
import { assertSetSafeServiceName, assertWholeSecondTtl, chooseSetDir, chooseTtlMs } from '../../../../cli/ca/issuance.js';
import { CaDir } from '../../../../cli/store/ca-dir.js';

const H = 3_600_000;
const D = 24 * H;
const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const CONFIG = { defaultTtlMs: 24 * H, maxTtlMs: 30 * D };

describe('chooseTtlMs', () => {
  const cases: { name: string; requested: number | undefined; intermediateEnd: number; want: number | RegExp }[] = [
    { name: 'no --ttl: the CA default', requested: undefined, intermediateEnd: NOW + 365 * D, want: 24 * H },
    { name: 'a --ttl under the maximum', requested: 2 * H, intermediateEnd: NOW + 365 * D, want: 2 * H },
    { name: 'exactly the maximum', requested: 30 * D, intermediateEnd: NOW + 365 * D, want: 30 * D },
    {
      name: 'past the maximum',
      requested: 31 * D,
      intermediateEnd: NOW + 365 * D,
      want: /^--ttl 31d is longer than this CA's maximum of 30d$/,
    },
    { name: 'ending exactly with the intermediate', requested: 2 * H, intermediateEnd: NOW + 2 * H, want: 2 * H },
    {
      name: 'outliving the intermediate',
      requested: 2 * H,
      intermediateEnd: NOW + H,
      want: /^--ttl 2h would outlive the intermediate, which ends 2026-11-25T13:00:00\.000Z$/,
    },
    {
      name: 'the default outliving the intermediate',
      requested: undefined,
      intermediateEnd: NOW + H,
      want: /^--ttl 24h would outlive the intermediate/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      if (typeof c.want === 'number') assert.equal(chooseTtlMs(c.requested, CONFIG, c.intermediateEnd, NOW), c.want);
      else
        assert.throws(
          () => chooseTtlMs(c.requested, CONFIG, c.intermediateEnd, NOW),
          (err: unknown) => err instanceof UsageError && (c.want as RegExp).test(err.message) && err.hint.length > 0,
        );
    });
  }
});

describe('assertWholeSecondTtl', () => {
  const cases: { name: string; ms: number; ok: boolean }[] = [
    { name: 'one second', ms: 1000, ok: true },
    { name: 'a day', ms: D, ok: true },
    { name: 'half a second', ms: 500, ok: false },
    { name: 'a second and a half', ms: 1500, ok: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      if (c.ok) assertWholeSecondTtl(`${c.ms}ms`, c.ms);
      else
        assert.throws(
          () => assertWholeSecondTtl(`${c.ms}ms`, c.ms),
          (err: unknown) => err instanceof UsageError && err.message === `--ttl ${c.ms}ms: certificate lifetimes count whole seconds`,
        );
    });
  }
});

describe('assertSetSafeServiceName', () => {
  const cases: { name: string; service: string; clash?: string }[] = [
    { name: 'a plain name', service: 'api' },
    { name: 'a path', service: 'ns/prod/api' },
    { name: 'a first segment named like a file is a folder of its own', service: 'tls.key' },
    { name: 'a later segment named tls.key', service: 'team/tls.key', clash: 'tls.key' },
    { name: 'a later segment named ca.crt', service: 'team/x/ca.crt', clash: 'ca.crt' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      if (!c.clash) assertSetSafeServiceName(c.service);
      else
        assert.throws(
          () => assertSetSafeServiceName(c.service),
          new RegExp(`a segment named ${c.clash.replace('.', '\\.')} would collide with the files of a credential set`),
        );
    });
  }
});

describe('chooseSetDir', () => {
  let root: string;
  let ca: CaDir;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'svcca-issuance-'));
    ca = new CaDir(join(root, 'ca'));
    mkdirSync(ca.path);
    // An existing set: a tls.crt (or tls.key, or ..data) is what marks a folder as one.
    const set = join(root, 'sets', 'billing');
    mkdirSync(set, { recursive: true });
    writeFileSync(join(set, 'tls.crt'), '');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const ledger: Record<string, readonly string[]> = {};
  const servicesAt = async (dir: string) => ledger[dir] ?? [];

  const cases: {
    name: string;
    service: string;
    out?: (root: string) => string;
    previous?: (root: string) => string;
    others?: (root: string) => Record<string, string[]>;
    want: RegExp | ((root: string) => string);
  }[] = [
    { name: 'default: issued/<service> in the CA directory', service: 'api', want: (r) => join(r, 'ca', 'issued', 'api') },
    { name: 'a service path nests', service: 'ns/prod/api', want: (r) => join(r, 'ca', 'issued', 'ns', 'prod', 'api') },
    {
      name: 'no --out: where the set is now',
      service: 'api',
      previous: (r) => join(r, 'elsewhere', 'api'),
      want: (r) => join(r, 'elsewhere', 'api'),
    },
    {
      name: '--out wins over where the set is now',
      service: 'api',
      out: (r) => join(r, 'new'),
      previous: (r) => join(r, 'old'),
      want: (r) => join(r, 'new'),
    },
    {
      name: '--out inside issued/ is allowed',
      service: 'api',
      out: (r) => join(r, 'ca', 'issued', 'custom'),
      want: (r) => join(r, 'ca', 'issued', 'custom'),
    },
    { name: '--out the CA directory', service: 'api', out: (r) => join(r, 'ca'), want: /is the CA directory or inside it/ },
    {
      name: '--out inside the CA directory, outside issued/',
      service: 'api',
      out: (r) => join(r, 'ca', 'mine'),
      want: /mine is the CA directory or inside it/,
    },
    { name: '--out holding the CA directory', service: 'api', out: (r) => r, want: /holds the CA directory/ },
    {
      name: "--out another service's folder",
      service: 'api',
      out: (r) => join(r, 'shared'),
      others: (r) => ({ [join(r, 'shared')]: ['web'] }),
      want: /holds the credential set of web; give each service a folder of its own/,
    },
    {
      name: '--out its own folder again',
      service: 'api',
      out: (r) => join(r, 'mine'),
      others: (r) => ({ [join(r, 'mine')]: ['api'] }),
      want: (r) => join(r, 'mine'),
    },
    {
      name: '--out inside another set',
      service: 'api',
      out: (r) => join(r, 'sets', 'billing', 'api'),
      want: /it would lie inside the credential set in .*billing/,
    },
    {
      name: '--out around another set',
      service: 'api',
      out: (r) => join(r, 'sets'),
      want: /it would hold the credential set in .*billing/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      for (const k of Object.keys(ledger)) delete ledger[k];
      Object.assign(ledger, c.others?.(root) ?? {});
      const req = {
        service: c.service,
        ...(c.out ? { out: c.out(root) } : {}),
        ...(c.previous ? { previousSetDir: c.previous(root) } : {}),
        servicesAt,
      };
      const want = typeof c.want === 'function' ? c.want(root) : c.want;
      if (typeof want === 'string') assert.equal(await chooseSetDir(ca, req), want);
      else await assert.rejects(chooseSetDir(ca, req), (err: unknown) => err instanceof UsageError && want.test(err.line));
    });
  }
});

import { before, beforeEach, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetrics, type Metrics } from '../../../../sidecar/metrics.js';
import { parseConfig } from '../../../../sidecar/config/schema.js';
import { createLogger } from '../../../../sidecar/logging.js';
import { SnapshotStore, type ReloadTrigger } from '../../../../sidecar/reload/store.js';
import {
  createIntermediate,
  createRootCa,
  crlPemFile,
  issueSvid,
  makeCrlDer,
  writeSetDir,
  type IssuedCert,
  type Signer,
} from '../../../helpers/attacker-ca.js';

const PAYMENT = 'spiffe://example.org/payment-service';
const DAY = 86_400_000;
const POLICY = 'services:\n  payment-service:\n    allow: [order-service]\n';

interface Ctx {
  readonly dir: string;
  readonly set: string;
  readonly crl: string;
  readonly policy: string;
  readonly store: SnapshotStore;
  readonly metrics: Metrics;
  readonly lines: Record<string, unknown>[];
}

describe('SnapshotStore.reload (content hash, validate, swap per kind)', () => {
  let root: Signer;
  let inter: Signer;
  let otherInter: Signer;
  const certs: Record<string, IssuedCert> = {};
  let ctx: Ctx;

  before(async () => {
    root = await createRootCa('test root');
    inter = await createIntermediate(root, { permittedUriHost: 'example.org' });
    otherInter = await createIntermediate(await createRootCa('other root'), { permittedUriHost: 'example.org' });
    const now = Date.now();
    certs.first = await issueSvid(inter, PAYMENT);
    certs.second = await issueSvid(inter, PAYMENT);
    certs.expired = await issueSvid(inter, PAYMENT, { notBefore: new Date(now - 2 * DAY), notAfter: new Date(now - DAY) });
    certs.future = await issueSvid(inter, PAYMENT, { notBefore: new Date(now + DAY), notAfter: new Date(now + 2 * DAY) });
    certs.order = await issueSvid(inter, 'spiffe://example.org/order-service');
    certs.foreign = await issueSvid(otherInter, PAYMENT);
  });

  const crlText = (n: bigint, serials: string[] = [], opts: { corrupt?: boolean } = {}) =>
    crlPemFile(
      [makeCrlDer(root, { crlNumber: n }), makeCrlDer(inter, { crlNumber: n, serials, corruptSignature: opts.corrupt ?? false })],
      [inter],
    );

  beforeEach(() => {
    const dir = mkdtempSync(join(tmpdir(), 'svcca-reload-'));
    const set = writeSetDir(join(dir, 'set'), certs.first!, root.certPem);
    const crl = join(dir, 'crl.pem');
    writeFileSync(crl, crlText(2n));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, POLICY);
    const config = parseConfig(
      `identity:\n  dir: ${set}\n  crl: ${crl}\npolicy: ${policy}\ninbound:\n  listen: 127.0.0.1:0\n  forward: 127.0.0.1:1\n`,
      join(dir, 'sidecar.yaml'),
    );
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const metrics = createMetrics({ defaultMetrics: false });
    ctx = { dir, set, crl, policy, store: SnapshotStore.open(config, logger, metrics), metrics, lines };
  });
  afterEach(() => rmSync(ctx.dir, { recursive: true, force: true }));

  const writePair = (c: IssuedCert, key: IssuedCert = c) => {
    writeFileSync(join(ctx.set, 'tls.crt'), c.chainPem);
    writeFileSync(join(ctx.set, 'tls.key'), key.keyPem);
  };
  const count = async (kind: string, result: string) => {
    const m = (await ctx.metrics.reloads.get()).values.find((v) => v.labels.kind === kind && v.labels.result === result);
    return m?.value ?? 0;
  };
  const refusals = () => ctx.lines.filter((l) => l.event === 'reload' && l.result === 'failure');

  const identityRefusals: { name: string; change: () => void; want: string }[] = [
    { name: 'a key that does not match', change: () => writePair(certs.second!, certs.first!), want: 'key-mismatch' },
    { name: 'an expired certificate', change: () => writePair(certs.expired!), want: 'expired' },
    { name: 'a certificate not yet valid', change: () => writePair(certs.future!), want: 'not-yet-valid' },
    { name: 'another SPIFFE ID', change: () => writePair(certs.order!), want: 'different-identity' },
    {
      name: 'garbage PEM',
      change: () => writeFileSync(join(ctx.set, 'tls.crt'), '-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n'),
      want: 'unparsable',
    },
    { name: 'a certificate from another CA', change: () => writePair(certs.foreign!), want: 'untrusted-chain' },
    { name: 'a missing key', change: () => unlinkSync(join(ctx.set, 'tls.key')), want: 'unreadable' },
  ];
  for (const t of identityRefusals) {
    it(`refuses ${t.name} and keeps the pair in force`, async () => {
      const before = ctx.store.current;
      t.change();
      const out = ctx.store.reload('watch');
      assert.equal(out.changed, false);
      assert.deepEqual(
        out.refused.map((r) => [r.kind, r.code]),
        [['identity', t.want]],
      );
      assert.equal(ctx.store.current, before);
      assert.equal(refusals().length, 1);
      assert.equal(refusals()[0]!.refusal, t.want);
      assert.equal(await count('identity', 'refused'), 1);
    });
  }

  it('does nothing when nothing changed, even if the files were touched', async () => {
    const before = ctx.store.current;
    const t = new Date(Date.now() + 5_000);
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) utimesSync(join(ctx.set, f), t, t);
    writeFileSync(ctx.policy, POLICY);
    const out = ctx.store.reload('periodic');
    assert.equal(out.changed, false);
    assert.equal(ctx.store.current, before);
    for (const k of ['identity', 'crl', 'policy']) assert.equal(await count(k, 'unchanged'), 1, k);
  });

  it('applies a new pair for the same identity and updates the expiry gauge', async () => {
    const gen = ctx.store.current.generation;
    writePair(certs.second!);
    const out = ctx.store.reload('watch');
    assert.deepEqual(out.applied, ['identity']);
    assert.equal(ctx.store.current.generation, gen + 1);
    assert.equal(ctx.store.current.identity.leaf.serialHex, certs.second!.serialHex);
    assert.equal((await ctx.metrics.certExpiry.get()).values[0]!.value, ctx.store.current.identity.leaf.notAfter.getTime() / 1000);
    assert.equal(await count('identity', 'applied'), 1);
  });

  it('logs a torn pair once, stays quiet while it lasts, says it again on SIGHUP, then applies the whole pair', async () => {
    writeFileSync(join(ctx.set, 'tls.crt'), certs.second!.chainPem);
    const triggers: ReloadTrigger[] = ['watch', 'poll', 'periodic'];
    for (const t of triggers) ctx.store.reload(t);
    assert.equal(refusals().length, 1);
    ctx.store.reload('signal');
    assert.equal(refusals().length, 2);
    writeFileSync(join(ctx.set, 'tls.key'), certs.second!.keyPem);
    assert.deepEqual(ctx.store.reload('watch').applied, ['identity']);
    assert.equal(ctx.store.current.identity.leaf.serialHex, certs.second!.serialHex);
  });

  it('applies a revocation that arrives while the identity is torn', () => {
    writeFileSync(join(ctx.set, 'tls.crt'), certs.second!.chainPem);
    writeFileSync(ctx.crl, crlText(3n, ['abcdef']));
    const out = ctx.store.reload('watch');
    assert.deepEqual(out.applied, ['crl']);
    assert.deepEqual(
      out.refused.map((r) => r.code),
      ['key-mismatch'],
    );
    assert.ok(ctx.store.current.crl!.set.revoked.has('abcdef'));
    assert.equal(ctx.store.current.identity.leaf.serialHex, certs.first!.serialHex);
  });

  const otherRefusals: { name: string; change: () => void; kind: string; want: string }[] = [
    { name: 'a CRL older than the one in force', change: () => writeFileSync(ctx.crl, crlText(1n)), kind: 'crl', want: 'crl-rollback' },
    {
      name: 'a CRL whose signature does not verify',
      change: () => writeFileSync(ctx.crl, crlText(3n, [], { corrupt: true })),
      kind: 'crl',
      want: 'crl-invalid',
    },
    {
      name: 'a policy with a misspelt key',
      change: () => writeFileSync(ctx.policy, 'services:\n  payment-service:\n    alow: [x]\n'),
      kind: 'policy',
      want: 'policy-invalid',
    },
    { name: 'a policy that is not YAML', change: () => writeFileSync(ctx.policy, 'services: [\n'), kind: 'policy', want: 'policy-invalid' },
  ];
  for (const t of otherRefusals) {
    it(`refuses ${t.name}`, async () => {
      const before = ctx.store.current;
      t.change();
      const out = ctx.store.reload('watch');
      assert.deepEqual(
        out.refused.map((r) => [r.kind, r.code]),
        [[t.kind, t.want]],
      );
      assert.equal(ctx.store.current, before);
      assert.equal(await count(t.kind, 'refused'), 1);
    });
  }

  it('applies a newer CRL and a valid policy change', async () => {
    writeFileSync(ctx.crl, crlText(3n, ['abcdef']));
    writeFileSync(ctx.policy, 'services:\n  payment-service:\n    allow: [inventory-service]\n');
    const out = ctx.store.reload('watch');
    assert.deepEqual(out.applied, ['crl', 'policy']);
    assert.ok(ctx.store.current.crl!.set.revoked.has('abcdef'));
    assert.equal(await count('crl', 'applied'), 1);
    assert.equal(await count('policy', 'applied'), 1);
    assert.equal(await count('identity', 'unchanged'), 1);
  });
});

/**
 * Several `svcca` processes at once. 20 `rotate`s over the same 20 due services: each
 * service is renewed exactly once (claims), every set matches the ledger, every run exits 0.
 * 20 `revoke`s at once: all succeed and crl.pem ends up listing every one of them, because
 * it is written under the ledger's lock and never moves backwards.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { makeCa, spawnSvcca, type TestCa } from '../helpers/cli.js';
import { allCrlSerials, readLedger, readSet, sleep } from './cli-rotate-helpers.js';

const N = 20;

async function runAll(args: string[][]): Promise<{ status: number | null; stderr: string }[]> {
  return Promise.all(
    args.map(async (a) => {
      const child = spawnSvcca(a);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.resume();
      const [status] = (await once(child, 'exit')) as [number | null];
      return { status, stderr };
    }),
  );
}

describe(`${N} svcca processes at once`, () => {
  let ca: TestCa;
  const sets = new Map<string, string>();
  before(() => {
    ca = makeCa();
    for (let i = 0; i < N; i++) sets.set(`svc-${i}`, ca.issue(`svc-${i}`, ['--ttl', '60s']));
  });
  after(() => ca.cleanup());

  it(`${N} rotates renew each due service exactly once`, { timeout: 120_000 }, async () => {
    // Due when less than 50 s is left: the old certificates in ~10 s, their renewals not
    // for another 10 s, so a run that starts late finds nothing new to renew twice.
    const newest = Math.max(...[...sets.values()].map((d) => Date.parse(new X509Certificate(readSet(d).leafPem).validTo)));
    await sleep(Math.max(0, newest - 50_000 - Date.now()) + 500);
    const results = await runAll(Array.from({ length: N }, () => ['rotate', '--renew-before', '50s', '--dir', ca.dir]));
    for (const r of results) assert.equal(r.status, 0, r.stderr);
    const ledger = readLedger(ca);
    for (const [service, dir] of sets) {
      const renewals = ledger.events.filter((e) => e.kind === 'renew' && e.service === service).length;
      assert.equal(renewals, 1, `${service} was renewed ${renewals} times`);
      assert.equal(readSet(dir).serial, ledger.active.get(service)!.serial);
      assert.equal(readSet(dir).keyMatches, true);
      assert.equal(ledger.active.get(service)!.claim, null);
    }
    assert.equal(ledger.integrity, 'ok');
  });

  it(`${N} revokes at once all land in crl.pem`, { timeout: 120_000 }, async () => {
    const targets = [...sets.keys()];
    const results = await runAll(targets.map((s) => ['revoke', s, '--dir', ca.dir]));
    for (const r of results) assert.equal(r.status, 0, r.stderr);
    const ledger = readLedger(ca);
    const listed = allCrlSerials(ca);
    const now = Date.now();
    const revoked = ledger.certs.filter((c) => c.status === 'revoked' && c.notAfter > now);
    assert.ok(revoked.length >= N);
    for (const c of revoked) assert.ok(listed.has(c.serial), `${c.serial} (${c.service}) is missing from crl.pem`);
  });
});

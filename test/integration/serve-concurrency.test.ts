/**
 * `svcca serve` sharing its ledger with the CLI (issue 16): a renewal racing a
 * `svcca revoke` of the same service never leaves a usable certificate (every certificate
 * of the service ends revoked and on the CRL), and serve renewals, a cron `rotate` and
 * `revoke`s all at once leave a consistent ledger whose sets match it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { allCrlSerials, readLedger, readSet, verifyWithCrl } from './cli-rotate-helpers.js';
import { startServeProcess, svccaClient, type RunningServe } from './serve-harness.js';

describe('svcca serve with the CLI on one ledger', () => {
  let ca: TestCa;
  let serve: RunningServe;
  const sets = new Map<string, string>();
  const cli = (args: string[]) => svccaClient([...args, '--dir', ca.dir]);

  before(async () => {
    ca = makeCa();
    for (let i = 0; i < 6; i++) sets.set(`race-${i}`, ca.issue(`race-${i}`));
    for (const s of ['cron-1', 'cron-2', 'cron-gone', 'self-1', 'self-2', 'self-gone']) sets.set(s, ca.issue(s));
    serve = await startServeProcess(ca, ['--rate-limit', '600']);
  });
  after(async () => {
    await serve?.stop();
    ca?.cleanup();
  });

  it('a renewal racing a revoke never yields a usable certificate', { timeout: 120_000 }, async (t) => {
    const races = [...sets.keys()].filter((s) => s.startsWith('race-'));
    const results = await Promise.all(
      races.map(async (service) => {
        const [renew, revoke] = await Promise.all([
          svccaClient(['renew', '--ca', serve.url, '--dir', sets.get(service)!, '--force']),
          cli(['revoke', service]),
        ]);
        return { service, renew, revoke };
      }),
    );
    const crl = allCrlSerials(ca);
    const ledger = readLedger(ca);
    let renewedFirst = 0;
    for (const { service, renew, revoke } of results) {
      assert.equal(revoke.status, 0, revoke.stderr);
      assert.ok(
        renew.status === 0 || (renew.status === 2 && /403 revoked/.test(renew.stderr)),
        `${service}: ${renew.status} ${renew.stderr}`,
      );
      if (renew.status === 0) renewedFirst++;
      for (const c of ledger.certs.filter((x) => x.service === service)) {
        assert.equal(c.status, 'revoked', `${service}: ${c.serial} is ${c.status}`);
        assert.ok(crl.has(c.serial), `${service}: ${c.serial} is not on the CRL`);
      }
      // Whatever the set holds now, a CRL-checking client refuses it.
      assert.notEqual(verifyWithCrl(ca, sets.get(service)!, '-crl_check').status, 0, `${service}'s set still verifies`);
    }
    // Both orders are legal; say which happened (the race is the point, not its winner).
    t.diagnostic(`${renewedFirst} of ${races.length} renewals committed before their revoke`);
  });

  it('serve renewals, cron rotate and revokes at once leave the ledger and every set consistent', { timeout: 120_000 }, async () => {
    const renew = (s: string) => svccaClient(['renew', '--ca', serve.url, '--dir', sets.get(s)!, '--force']);
    const [r1, r2, rGone, rotate, revokeCron, revokeSelf] = await Promise.all([
      renew('self-1'),
      renew('self-2'),
      renew('self-gone'),
      cli(['rotate', 'cron-1', 'cron-2', 'cron-gone', '--renew-before', '100%']),
      cli(['revoke', 'cron-gone']),
      cli(['revoke', 'self-gone']),
    ]);
    for (const r of [r1, r2, rotate, revokeCron, revokeSelf]) assert.equal(r.status, 0, r.stderr);
    assert.ok(rGone.status === 0 || rGone.status === 2, rGone.stderr);
    const ledger = readLedger(ca);
    assert.equal(ledger.integrity, 'ok');
    const crl = allCrlSerials(ca);
    for (const service of ['cron-1', 'cron-2', 'self-1', 'self-2']) {
      const active = ledger.certs.filter((c) => c.service === service && c.status === 'active');
      assert.equal(active.length, 1, `${service} has ${active.length} active certificates`);
      assert.equal(ledger.active.get(service)!.serial, active[0]!.serial);
      assert.equal(readSet(sets.get(service)!).serial, active[0]!.serial, `${service}'s set is not the ledger's active certificate`);
      assert.equal(readSet(sets.get(service)!).keyMatches, true);
      assert.equal(verifyWithCrl(ca, sets.get(service)!, '-crl_check').status, 0);
      assert.equal(ledger.active.get(service)!.claim, null);
    }
    for (const service of ['cron-gone', 'self-gone']) {
      for (const c of ledger.certs.filter((x) => x.service === service)) {
        assert.equal(c.status, 'revoked', `${service}: ${c.serial} is ${c.status}`);
        assert.ok(crl.has(c.serial));
      }
    }
  });
});

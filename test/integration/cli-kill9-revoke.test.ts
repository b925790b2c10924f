/**
 * `kill -9` at random moments during `svcca revoke`, 50 times: the ledger stays sound, and
 * every revocation the ledger holds reaches crl.pem by the next `rotate` or `crl` (they
 * alternate), while crl.pem never lists a certificate the ledger does not hold revoked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { once } from 'node:events';
import { makeCa, spawnSvcca, type TestCa } from '../helpers/cli.js';
import { allCrlSerials, killDelay, readLedger, sleep, timeRun } from './cli-rotate-helpers.js';

const TRIES = 50;

describe('kill -9 during svcca revoke', () => {
  let ca: TestCa;
  before(() => {
    ca = makeCa();
    for (const s of ['a', 'b', 'c', 'd', 'e']) ca.issue(s);
    // Ten rotations give 55 certificates, all unexpired, to revoke one by one.
    for (let i = 0; i < 10; i++) assert.equal(ca.svcca(['rotate', '--renew-before', '100%']).status, 0);
  });
  after(() => ca.cleanup());

  it(`${TRIES} tries: a revocation in the ledger always reaches crl.pem by the next rotate or crl`, { timeout: 180_000 }, async () => {
    const serials = readLedger(ca).certs.map((c) => c.serial);
    assert.ok(serials.length > TRIES);
    // One uninterrupted revoke (of a certificate the loop does not use) sets the kill window.
    let runMs = await timeRun(['revoke', '--serial', serials[TRIES]!, '--reason', 'superseded', '--dir', ca.dir]);
    let interrupted = 0;
    for (let i = 0; i < TRIES; i++) {
      const started = Date.now();
      const child = spawnSvcca(['revoke', '--serial', serials[i]!, '--reason', 'keyCompromise', '--dir', ca.dir]);
      const exited = once(child, 'exit');
      const delay = killDelay(runMs);
      const finished = await Promise.race([exited.then(() => true), sleep(delay).then(() => false)]);
      if (!finished) {
        child.kill('SIGKILL');
        await exited;
        interrupted++;
      } else {
        // The window follows the fastest whole run seen: one timing taken during a pause
        // of the machine would otherwise put every kill after the end.
        runMs = Math.min(runMs, Date.now() - started);
      }
      assert.equal(readLedger(ca).integrity, 'ok');
      const next = i % 2 === 0 ? ca.svcca(['crl']) : ca.svcca(['rotate', '--renew-before', '1s']);
      assert.equal(next.status, 0, `try ${i}: ${next.stderr}`);
      const ledger = readLedger(ca);
      const listed = allCrlSerials(ca);
      const now = Date.now();
      for (const c of ledger.certs) {
        if (c.status === 'revoked' && c.notAfter > now)
          assert.ok(listed.has(c.serial), `try ${i}: ${c.serial} is revoked in the ledger but not in crl.pem`);
      }
      for (const s of listed) assert.ok(ledger.revoked.has(s), `try ${i}: crl.pem lists ${s}, which the ledger does not hold revoked`);
    }
    assert.ok(interrupted >= TRIES / 4, `only ${interrupted} of ${TRIES} runs were interrupted (a full run took ${runMs} ms)`);
  });
});

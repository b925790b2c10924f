/**
 * The sidecar with `svcca serve` (issue 16): `identity.renew` renews its own set while it
 * serves traffic, with no failed request; an https:// `identity.crl` is fetched with
 * ETags and verified like a file: a revocation arrives, an older CRL (a rollback) is
 * refused, and with the CA down the last good CRL stays in force.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { readLedger } from './cli-rotate-helpers.js';
import {
  credsFromDir,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  adminGet,
  type Creds,
  type RunningSidecar,
} from './sidecar-harness.js';
import { startServeProcess, svccaClient, type RunningServe } from './serve-harness.js';

const GREETING = 'hello payment\n';

describe('sidecar renewing itself and fetching its CRL from svcca serve', () => {
  let ca: TestCa;
  let serve: RunningServe;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let order: Creds;
  let inventory: Creds;
  let payment: string;

  const call = async (creds: Creds): Promise<boolean> =>
    (await tlsExchange(sidecar.inbound!, creds, { payload: 'ping\n' })).data === `${GREETING}ping\n`;

  before(async () => {
    ca = makeCa();
    // A short lifetime, renewed when 6 s are left: a renewal every couple of seconds.
    payment = ca.issue('payment-service', ['--ttl', '9s']);
    order = credsFromDir(ca.issue('order-service'));
    inventory = credsFromDir(ca.issue('inventory-service'));
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service, inventory-service]\n');
    serve = await startServeProcess(ca, ['--rate-limit', '600']);
    echo = await startEchoService('payment');
    const yaml = [
      'identity:',
      `  dir: ${payment}`,
      `  crl: ${serve.url}/v1/crl.pem`,
      '  crlInterval: 1s',
      '  renew:',
      `    ca: ${serve.url}`,
      '    before: 6s',
      `policy: ${policy}`,
      'inbound:',
      '  listen: 127.0.0.1:0',
      `  forward: ${echo.address}`,
      'admin:',
      '  listen: 127.0.0.1:0',
      '',
    ].join('\n');
    sidecar = await startSidecarProcess(ca.root, yaml);
  });
  after(async () => {
    await sidecar?.stop();
    await serve?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  it('renews its own certificate while serving traffic, with 0 failed requests', { timeout: 60_000 }, async (t) => {
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const clients = Array.from({ length: 3 }, async (_, i) => {
      while (!stop) {
        if (await call(order)) ok++;
        else failures.push(`client ${i} request ${ok}`);
      }
    });
    const renewals = () => sidecar.lines.filter((l) => l.event === 'renew' && l.result === 'success');
    await sidecar.waitForLine(() => renewals().length >= 2, 30_000);
    const second = renewals()[1]!;
    // New handshakes land on the renewed certificate too.
    await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === second.serial, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(clients);
    t.diagnostic(`${ok} requests across ${renewals().length} renewals`);
    assert.deepEqual(failures, []);
    assert.ok(ok > 20, `only ${ok} requests went through`);
    const ledger = readLedger(ca);
    assert.equal(ledger.active.get('payment-service')!.serial, renewals().at(-1)!.serial);
    assert.ok(ledger.events.filter((e) => e.kind === 'renew' && e.service === 'payment-service').length >= 2);
    const metrics = (await adminGet(sidecar.admin!, '/metrics')).body;
    assert.match(metrics, /svcca_sidecar_renewals_total\{result="renewed"\} [2-9]/);
    assert.equal((await adminGet(sidecar.admin!, '/readyz')).status, 200);
  });

  it('takes a revocation from the https CRL, refuses a rollback to an older CRL, and keeps the last good one with the CA down', {
    timeout: 60_000,
  }, async () => {
    assert.equal(await call(order), true);
    const older = join(ca.root, 'crl-before-revoke.pem');
    copyFileSync(join(ca.dir, 'crl.pem'), older);
    const revoke = await svccaClient(['revoke', 'order-service', '--dir', ca.dir, '--json']);
    assert.equal(revoke.status, 0, revoke.stderr);
    await sidecar.waitForLine(
      (l) => l.event === 'reload' && l.result === 'success' && Array.isArray(l.applied) && (l.applied as string[]).includes('crl'),
      15_000,
    );
    assert.equal(await call(order), false, 'the revoked caller is refused');
    // The server has seen that CRL in the ledger: it follows the ledger's CRLs (docs/ha.md),
    // and would otherwise put it back over the older file copied in below.
    const number = (JSON.parse(revoke.stdout) as { crl: { crls: { number: string }[] } }).crl.crls[0]!.number;
    await serve.waitForLine((l) => l.event === 'crl' && Array.isArray(l.crls) && (l.crls as string[]).includes(number));

    // The CA serves an older crl.pem (restored from a backup, or replayed): refused.
    copyFileSync(older, join(ca.dir, 'crl.pem'));
    await sidecar.waitForLine((l) => l.event === 'reload' && l.refusal === 'crl-rollback', 15_000);
    assert.equal(await call(order), false, 'still refused after the rollback attempt');

    // The CA goes away: fetches fail, the last good CRL stays in force.
    await serve.stop();
    await sidecar.waitForLine((l) => l.event === 'crl-fetch' && l.result === 'failure', 15_000);
    assert.equal(await call(order), false, 'still refused with the CA down');
    assert.equal(await call(inventory), true, 'an allowed caller still gets through');
    const metrics = (await adminGet(sidecar.admin!, '/metrics')).body;
    assert.match(metrics, /svcca_sidecar_crl_fetches_total\{result="failed"\} [1-9]/);
  });
});

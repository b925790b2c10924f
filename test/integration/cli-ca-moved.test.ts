/**
 * A CA directory restored from backup at another path still finds the sets that live
 * inside it: the ledger stores them relative to the CA directory.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { renameSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { makeCa, runSvcca, cleanEnv, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';

const cas: TestCa[] = [];
after(() => {
  for (const c of cas) c.cleanup();
});

test('after moving ca-data, rotate renews the sets at their new place and export reads them', () => {
  const ca = makeCa();
  cas.push(ca);
  assert.equal(ca.svcca(['issue', 'order-service']).status, 0); // default set: <ca>/issued/order-service
  const moved = join(ca.root, 'restored-ca');
  renameSync(ca.dir, moved);
  const env = cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, SVCCA_P12_PASSWORD: 'pw' });

  const rotate = runSvcca(['rotate', '--renew-before', '100%', '--dir', moved], { env });
  assert.equal(rotate.status, 0, rotate.stderr);
  const setCert = join(moved, 'issued', 'order-service', 'tls.crt');
  const serial = new X509Certificate(readFileSync(setCert)).serialNumber.toLowerCase().replace(/^0+/, '');
  const list = JSON.parse(runSvcca(['list', '--json', '--dir', moved], { env }).stdout) as {
    serial: string;
    status: string;
    setDir: string;
  }[];
  const active = list.find((r) => r.status === 'active');
  assert.equal(active?.serial, serial, 'the renewed certificate was written into the moved set');
  assert.equal(active?.setDir, join(moved, 'issued', 'order-service'));
  assert.equal(existsSync(join(ca.dir, 'issued')), false, 'nothing was written at the old path');

  const p12 = join(ca.root, 'o.p12');
  const exp = runSvcca(['export', 'order-service', '--p12', p12, '--dir', moved], { env });
  assert.equal(exp.status, 0, exp.stderr);
});

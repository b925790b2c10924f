/**
 * `svcca serve` on a PostgreSQL ledger that goes away and comes back (issue 17): renewals
 * are refused with 503 and a JSON error (nothing issued, the client's set untouched),
 * crl.pem and ca.crt are still served from the last good state, /readyz fails, and it all
 * works again once the database is back, with no restart.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, tempDir, type TestCa } from '../helpers/cli.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { curl, curlRenew, opensslCsr, startServeProcess, svccaClient, type RunningServe } from './serve-harness.js';
import { cleanEnv, TEST_PASSPHRASE } from '../helpers/cli.js';

let pg: PgServer;
let ca: TestCa;
let serve: RunningServe;
let set: string;
let scratch: string;

before(async () => {
  pg = await startPostgres();
  ca = makeCa({ ledger: await pg.createDatabase('serve_down'), env: pg.env });
  set = ca.issue('api');
  scratch = tempDir('svcca-serve-pg-');
  serve = await startServeProcess(ca, [], pg.env);
});
after(async () => {
  await serve?.stop();
  await pg?.destroy();
  ca?.cleanup();
});

const serialOf = (dir: string) => readFileSync(join(dir, 'tls.crt'), 'utf8');
const readyz = async () => (await fetch(`${serve.admin}/readyz`)).status;

describe('svcca serve with its PostgreSQL ledger down', () => {
  it('renews while the database is up', async () => {
    const res = await svccaClient(['renew', '--ca', serve.url, '--dir', set, '--force'], cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }));
    assert.equal(res.status, 0, res.stderr);
    assert.equal(await readyz(), 200);
  });

  it('answers 503 ledger-unavailable while it is down, keeps serving ca.crt and crl.pem, and is not ready', async () => {
    await pg.stop();
    const before = serialOf(set);
    const { csrPem } = await opensslCsr(scratch, 'down');
    const answer = await curlRenew(serve, scratch, csrPem, set);
    assert.equal(answer.status, 503, answer.body);
    assert.equal(answer.json?.error, 'ledger-unavailable');
    const client = await svccaClient(
      ['renew', '--ca', serve.url, '--dir', set, '--force'],
      cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }),
    );
    assert.equal(client.status, 2, client.stdout);
    assert.equal(serialOf(set), before, 'a refused renewal leaves the set as it was');
    assert.equal((await curl(`${serve.url}/v1/ca.crt`, [])).status, 200);
    assert.equal((await curl(`${serve.url}/v1/crl.pem`, [])).status, 200);
    assert.equal(await readyz(), 503);
    const line = await serve.waitForLine((l) => l.event === 'error' && /unreachable/.test(String(l.reason)));
    assert.match(String(line.reason), /ledger database .* is unreachable/);
  });

  it('recovers by itself when the database is back', async () => {
    await pg.start();
    let res = await svccaClient(['renew', '--ca', serve.url, '--dir', set, '--force'], cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }));
    // The pool may hand out one connection the restart broke before it notices: one retry.
    if (res.status !== 0)
      res = await svccaClient(['renew', '--ca', serve.url, '--dir', set, '--force'], cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }));
    assert.equal(res.status, 0, res.stderr);
    assert.equal(await readyz(), 200);
  });
});

/**
 * A CA directory or credential set this user may not read is said to be exactly that,
 * not "not a CA directory" or "does not exist" (ca-data/ is 0700: a sidecar run as
 * another user pointed inside it hits this). Runs the real binaries as `nobody`, so it
 * needs root to switch users.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SIDECAR_BIN, SVCCA_BIN, makeCa, run, runSvcca, type TestCa } from '../helpers/cli.js';

const asRoot = process.getuid?.() === 0;
const canSwitch = asRoot && run('runuser', ['-u', 'nobody', '--', process.execPath, SVCCA_BIN, '--version']).status === 0;

describe('files this user may not read', { skip: canSwitch ? false : 'needs root and runuser to run as nobody' }, () => {
  let ca: TestCa;
  before(() => {
    ca = makeCa();
    chmodSync(ca.root, 0o755); // nobody may reach ca-data/ (0700 itself) and the config below
    assert.equal(runSvcca(['issue', 'payment-service', '--dir', ca.dir]).status, 0);
  });
  after(() => ca?.cleanup());

  const asNobody = (bin: string, args: string[]) => run('runuser', ['-u', 'nobody', '--', process.execPath, bin, ...args]);

  it('svcca on a CA directory owned by another user says so', () => {
    const r = asNobody(SVCCA_BIN, ['list', '--dir', ca.dir]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /^svcca: .*\/ca is not accessible to this user \(uid \d+; the CA directory is 0700, owned by uid 0\); run svcca as the user that ran `svcca init`\n$/,
    );
  });

  it('the sidecar on an identity directory it may not read says so', () => {
    const config = join(ca.root, 'sidecar.yaml');
    writeFileSync(
      config,
      `identity:\n  dir: ${join(ca.dir, 'issued', 'payment-service')}\noutbound:\n  - listen: 127.0.0.1:0\n    connect: 127.0.0.1:9\n    serverId: spiffe://example.org/order-service\n`,
      { mode: 0o644 },
    );
    const r = asNobody(SIDECAR_BIN, ['--check', '--config', config]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /identity directory .*issued\/payment-service is not readable by this user/);
    assert.doesNotMatch(r.stdout + r.stderr, /does not exist/);
  });
});

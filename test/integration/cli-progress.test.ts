/**
 * Progress of a long `svcca rotate` on stderr: drawn on a terminal (util-linux `script`
 * gives the run a pseudo-terminal, as a person's shell does), never in a pipe (cron), never
 * with --json, and never on stdout.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SVCCA_BIN, TEST_PASSPHRASE, cleanEnv, makeCa, run, type TestCa } from '../helpers/cli.js';

const SERVICES = 24;
let ca: TestCa;

before(() => {
  ca = makeCa();
  for (let i = 0; i < SERVICES; i++) {
    const res = ca.svcca(['issue', `svc-${String(i).padStart(2, '0')}`, '--ttl', '2h']);
    assert.equal(res.status, 0, res.stderr);
  }
});
after(() => ca?.cleanup());

/** `svcca rotate …` with stdout and stderr on a pseudo-terminal; what the terminal showed. */
function rotateOnTerminal(extra: readonly string[]) {
  const cmd = [process.execPath, SVCCA_BIN, 'rotate', '--renew-before', '100%', '--dir', ca.dir, ...extra].map((w) => `'${w}'`).join(' ');
  return run('script', ['-qec', cmd, '/dev/null'], {
    env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, TERM: 'xterm' }),
    timeoutMs: 120_000,
  });
}

describe('svcca rotate progress', () => {
  it('is drawn on a terminal, counting every renewal, and erased before the summary', () => {
    const res = rotateOnTerminal([]);
    assert.equal(res.status, 0, res.stdout);
    assert.match(res.stdout, /renewing \[[^\]]*\] 0\/24/);
    assert.match(res.stdout, new RegExp(`renewing \\[[^\\]]*\\] ${SERVICES}/${SERVICES} 100%`));
    assert.match(res.stdout, /Renewed svc-00 /);
  });

  it('is not drawn when stderr is not a terminal (cron, a pipe)', () => {
    const res = ca.svcca(['rotate', '--renew-before', '100%']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /Renewed svc-00 /);
    assert.doesNotMatch(res.stderr + res.stdout, /renewing \[/);
  });

  it('is not drawn with --json, even on a terminal, so the JSON stays whole', () => {
    const res = rotateOnTerminal(['--json']);
    assert.equal(res.status, 0, res.stdout);
    assert.doesNotMatch(res.stdout, /renewing \[/);
    const json = JSON.parse(res.stdout.replace(/\r/g, '')) as { renewed: unknown[] };
    assert.equal(json.renewed.length, SERVICES);
  });

  it('is not drawn with TERM=dumb', () => {
    const cmd = [process.execPath, SVCCA_BIN, 'rotate', '--renew-before', '100%', '--dir', ca.dir].map((w) => `'${w}'`).join(' ');
    const res = run('script', ['-qec', cmd, '/dev/null'], {
      env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, TERM: 'dumb' }),
      timeoutMs: 120_000,
    });
    assert.equal(res.status, 0, res.stdout);
    assert.match(res.stdout, /Renewed svc-00 /);
    assert.doesNotMatch(res.stdout, /renewing \[/);
  });
});

/**
 * `--check` accepts `inbound.mode: http` (it used to refuse it) and does not give the
 * tcp-mode warning about methods/paths rules there; the same policy in a tcp sidecar
 * is still warned about. `inbound.upstreamTimeout` is validated like every duration.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, SIDECAR_BIN, type TestCa } from '../helpers/cli.js';
import { writePolicy } from './sidecar-harness.js';
import { httpSidecarYaml, STOCK_POLICY } from './sidecar-http-harness.js';

function check(config: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [SIDECAR_BIN, '--check', '--config', config], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('svcca-sidecar --check with http mode', () => {
  let ca: TestCa;
  let inventory: string;
  let policy: string;

  before(() => {
    ca = makeCa();
    inventory = ca.issue('inventory-service');
    policy = writePolicy(ca.root, STOCK_POLICY);
  });
  after(() => ca?.cleanup());

  const write = (name: string, body: string): string => {
    const p = join(ca.root, name);
    writeFileSync(p, body);
    return p;
  };

  it('accepts http mode without the tcp-only warning', () => {
    const r = check(
      write(
        'http.yaml',
        httpSidecarYaml({
          setDir: inventory,
          policy,
          forward: '127.0.0.1:8080',
          crl: join(ca.dir, 'crl.pem'),
          extraInbound: '  upstreamTimeout: 5s',
        }),
      ),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /configuration is valid/);
    assert.doesNotMatch(r.stderr, /not implemented|methods\/paths/);
  });

  it('still warns about the methods/paths rule in a tcp sidecar', () => {
    const r = check(
      write(
        'tcp.yaml',
        httpSidecarYaml({ setDir: inventory, policy, forward: '127.0.0.1:8080', crl: join(ca.dir, 'crl.pem') }).replace(
          'mode: http',
          'mode: tcp',
        ),
      ),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: policy: .*notification-service.*methods\/paths/);
  });

  it('refuses a bad upstreamTimeout with the key named', () => {
    const r = check(
      write(
        'bad-timeout.yaml',
        httpSidecarYaml({ setDir: inventory, policy, forward: '127.0.0.1:8080', extraInbound: '  upstreamTimeout: soon' }),
      ),
    );
    assert.equal(r.status, 1);
    assert.match(r.stderr, /inbound\.upstreamTimeout: expected a positive duration, got "soon"/);
  });
});

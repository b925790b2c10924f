/**
 * `svcca policy check` and `svcca policy graph` through the built CLI (dist/bin/svcca.mjs):
 * stdout, stderr and exit codes exactly as a user or a script sees them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

const CLI = fileURLToPath(new URL('../../bin/svcca.mjs', import.meta.url));

const POLICY = `services:
  payment-service:
    allow: [order-service]
  inventory-service:
    allow:
      - order-service
      - from: notification-service     # http mode only: method/path rules
        methods: [GET]
        paths: [/stock, /stock/*]
`;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function svcca(...args: string[]): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, SVCCA_DIR: undefined },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertOneLineError(r: Run, want: RegExp): void {
  assert.equal(r.status, 1, `exit 1, got ${r.status}; stderr: ${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.match(lines[0]!, want);
}

describe('svcca policy (built CLI)', () => {
  let dir: string;
  let policy: string;
  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'svcca-cli-policy-'));
    policy = write('policy.yaml', POLICY);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const checks: { name: string; input: string[]; want: { status: number; stdout: string } }[] = [
    {
      name: 'tcp allow exits 0',
      input: ['order-service', 'payment-service'],
      want: { status: 0, stdout: 'allow: services.payment-service.allow[0] (order-service)\n' },
    },
    {
      name: 'tcp deny exits 3',
      input: ['notification-service', 'payment-service'],
      want: { status: 3, stdout: 'deny: no rule in services.payment-service allows notification-service\n' },
    },
    {
      name: 'an http-only rule denies in tcp mode',
      input: ['notification-service', 'inventory-service'],
      want: {
        status: 3,
        stdout:
          'deny: services.inventory-service allows notification-service only with methods/paths, which allow http-mode requests and nothing in tcp mode\n',
      },
    },
    {
      name: 'http allow by prefix',
      input: ['notification-service', 'inventory-service', '--method', 'GET', '--path', '/stock/42'],
      want: {
        status: 0,
        stdout: 'allow: services.inventory-service.allow[1] (from: notification-service, methods: [GET], paths: [/stock, /stock/*])\n',
      },
    },
    {
      name: 'http deny after normalization',
      input: ['notification-service', 'inventory-service', '--method', 'GET', '--path', '/stock/%2e%2e/admin'],
      want: {
        status: 3,
        stdout:
          'deny: no rule in services.inventory-service allows notification-service to GET /admin\n(path normalized to /admin, as the sidecar matches and forwards it)\n',
      },
    },
    {
      name: 'a path the sidecar answers 400 to is a deny',
      input: ['notification-service', 'inventory-service', '--method', 'GET', '--path', '/stock%2Fadmin'],
      want: { status: 3, stdout: 'deny: the sidecar answers 400 to this path: encoded "/" (%2F) in the path\n' },
    },
  ];
  for (const { name, input, want } of checks) {
    it(`check: ${name}`, () => {
      const r = svcca('policy', 'check', ...input, '--policy', policy);
      assert.deepEqual({ status: r.status, stdout: r.stdout }, want, r.stderr);
      assert.equal(r.stderr, '');
    });
  }

  it('check --json prints one JSON document', () => {
    const r = svcca('--json', 'policy', 'check', 'order-service', 'payment-service', '--policy', policy);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      decision: 'allow',
      from: 'order-service',
      to: 'payment-service',
      mode: 'tcp',
      rule: 'services.payment-service.allow[0] (order-service)',
      reason: 'services.payment-service.allow[0] (order-service) allows order-service',
    });
  });

  it('check: a misspelt key is exit 1 with one line naming it', () => {
    const bad = write('misspelt.yaml', POLICY.replace('methods:', 'method:'));
    assertOneLineError(
      svcca('policy', 'check', 'notification-service', 'inventory-service', '--policy', bad),
      /misspelt\.yaml: services\.inventory-service\.allow\[1\]\.method: unknown key; did you mean "methods"\?$/,
    );
  });

  it('check: an alias bomb is exit 1 with one line', () => {
    let text = 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n';
    for (let i = 1; i < 10; i++)
      text += `a${i}: &a${i} [${Array(9)
        .fill(`*a${i - 1}`)
        .join(',')}]\n`;
    assertOneLineError(svcca('policy', 'check', 'a', 'b', '--policy', write('bomb.yaml', text)), /bomb\.yaml: Excessive alias count/);
  });

  it('check: deep nesting is exit 1 with one line', () => {
    assertOneLineError(
      svcca('policy', 'check', 'a', 'b', '--policy', write('deep.yaml', `services: ${'['.repeat(100_000)}\n`)),
      /deep\.yaml: line 1, column \d+: nested more than 32 levels deep/,
    );
  });

  it('check: a binary file is exit 1 with one line', () => {
    const path = join(dir, 'binary.yaml');
    writeFileSync(path, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0xff, 0xfe]));
    assertOneLineError(svcca('policy', 'check', 'a', 'b', '--policy', path), /binary\.yaml: is not UTF-8 text/);
  });

  it('check: a missing policy file is exit 1', () => {
    assertOneLineError(
      svcca('policy', 'check', 'a', 'b', '--policy', join(dir, 'nope.yaml')),
      /nope\.yaml: cannot open the policy file \(no such file\)/,
    );
  });

  it('check: --method without --path is a usage error', () => {
    assertOneLineError(svcca('policy', 'check', 'a', 'b', '--policy', policy, '--method', 'GET'), /--method needs --path/);
  });

  it('graph: DOT by default', () => {
    const r = svcca('policy', 'graph', '--policy', policy);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^digraph policy \{\n/);
    assert.match(r.stdout, /"order-service" -> "payment-service";/);
    assert.match(r.stdout, /"notification-service" -> "inventory-service" \[style=dashed, label="http only\\nGET \/stock \/stock\/\*"\];/);
  });

  it('graph: mermaid', () => {
    const r = svcca('policy', 'graph', '--policy', policy, '--format', 'mermaid');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^flowchart LR\n/);
    assert.match(r.stdout, /-\.->\|"http only; GET \/stock \/stock\/\*"\|/);
  });

  it('graph: SVG', () => {
    const r = svcca('policy', 'graph', '--policy', policy, '--format', 'svg');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^<\?xml version="1\.0"/);
    assert.match(r.stdout, /<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(r.stdout, /<\/svg>\n$/);
    assert.equal((r.stdout.match(/<g id="edge\d+" class="edge">/g) ?? []).length, 3, 'one edge per caller → callee pair');
  });

  it('graph: an invalid format is a usage error', () => {
    const r = svcca('policy', 'graph', '--policy', policy, '--format', 'png');
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});

/**
 * `svcca-sidecar --check` refuses each malformed config and policy with the key named,
 * in one line per problem and never a stack trace; start-up refuses the same with one
 * line and exit 1; an expired own certificate fails --check, but at start-up the sidecar
 * runs, refuses every connection, and /readyz fails.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, SIDECAR_BIN, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { issueSvid, loadCaDir, writeSetDir } from '../helpers/attacker-ca.js';
import {
  adminGet,
  credsFromDir,
  linesFromNow,
  refusalFrom,
  sidecarYaml,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
} from './sidecar-harness.js';

function sidecar(args: readonly string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [SIDECAR_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function assertNoStack(text: string): void {
  assert.doesNotMatch(text, /^\s+at .+\(.*:\d+:\d+\)$/m, `a stack trace leaked:\n${text}`);
  assert.doesNotMatch(text, /node:internal|\.js:\d+/);
}

describe('svcca-sidecar --check and start-up refusals', () => {
  let ca: TestCa;
  let payment: string;
  let policy: string;
  let crl: string;

  before(() => {
    ca = makeCa();
    payment = ca.issue('payment-service');
    policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    crl = join(ca.dir, 'crl.pem');
  });
  after(() => ca?.cleanup());

  const write = (name: string, body: string | Buffer): string => {
    const p = join(ca.root, name);
    writeFileSync(p, body);
    return p;
  };
  const good = () => sidecarYaml({ setDir: payment, crl, policy, forward: '127.0.0.1:8080' });

  it('--version prints the version; a misspelt flag gets one line with "did you mean"', () => {
    const v = spawnSync(process.execPath, [SIDECAR_BIN, '--version'], { encoding: 'utf8' });
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
    const typo = spawnSync(process.execPath, [SIDECAR_BIN, '--chek', '--config', 'x.yaml'], { encoding: 'utf8' });
    assert.equal(typo.status, 1);
    assert.equal(typo.stderr.trim().split('\n').length, 1, typo.stderr);
    assert.match(typo.stderr, /unknown argument "--chek"; did you mean --check\? usage: svcca-sidecar --config FILE \[--check\]/);
  });

  it('accepts a good config and says what it checked', () => {
    const r = sidecar(['--check', '--config', write('good.yaml', good())]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /spiffe:\/\/example\.org\/payment-service/);
    assert.match(r.stdout, /configuration is valid/);
  });

  it('says what each outbound does with tunnels', () => {
    const out = (n: number, extra = '') =>
      `  - listen: 127.0.0.1:0\n    connect: inventory.internal:${8443 + n}\n    serverId: spiffe://example.org/inventory-service\n${extra}`;
    const r = sidecar([
      '--check',
      '--config',
      write('tunnels.yaml', `${good()}outbound:\n${out(0)}${out(1, '    tunnel: off\n')}${out(2, '    tunnelConnections: 4\n')}`),
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /outbound\[0\] → inventory\.internal:8443: tunnel auto \(app connections as streams on up to 2 mTLS connections/,
    );
    assert.match(r.stdout, /outbound\[1\] → inventory\.internal:8444: tunnel off \(one mTLS connection per app connection\)/);
    assert.match(r.stdout, /outbound\[2\] → inventory\.internal:8445: tunnel auto \(app connections as streams on up to 4 /);
  });

  const bad: { name: string; body: () => string; want: RegExp }[] = [
    {
      name: 'a forward without host',
      body: () => good().replace('forward: 127.0.0.1:8080', 'forward: "8080"'),
      want: /inbound\.forward: expected host:port or unix:\/path, got "8080"/,
    },
    {
      name: 'a misspelt key',
      body: () => good().replace('  forward:', '  foward:'),
      want: /inbound\.foward: unknown key; did you mean forward\?/,
    },
    { name: 'an unknown top-level key', body: () => `${good()}extra: 1\n`, want: /extra: unknown key/ },
    { name: 'a bad mode', body: () => `${good()}  mode: udp\n`, want: /inbound\.mode: expected tcp or http, got "udp"/ },
    {
      name: 'a bad duration',
      body: () => `${good()}  handshakeTimeout: soon\n`,
      want: /inbound\.handshakeTimeout: expected a positive duration/,
    },
    {
      name: 'a bad maxConnections',
      body: () => `${good()}  maxConnections: -5\n`,
      want: /inbound\.maxConnections: expected a whole number/,
    },
    {
      name: 'a port out of range',
      body: () => good().replace('127.0.0.1:0', '127.0.0.1:70000'),
      want: /inbound\.listen: port 70000 is out of range/,
    },
    {
      name: 'a relative unix path',
      body: () => good().replace('forward: 127.0.0.1:8080', 'forward: unix:run/app.sock'),
      want: /inbound\.forward: expected unix:\/absolute\/path/,
    },
    {
      name: 'a missing identity',
      body: () => 'inbound:\n  listen: 127.0.0.1:0\n  forward: 127.0.0.1:1\npolicy: p.yaml\n',
      want: /identity: missing/,
    },
    {
      name: 'an inbound without policy',
      body: () => sidecarYaml({ setDir: payment, crl, forward: '127.0.0.1:8080' }),
      want: /policy: missing/,
    },
    {
      name: 'an outbound serverId that is not a SPIFFE ID',
      body: () => `${good()}outbound:\n  - listen: 127.0.0.1:0\n    connect: a:1\n    serverId: payment-service\n`,
      want: /outbound\[0\]\.serverId: "payment-service" is not a SPIFFE ID/,
    },
    {
      name: 'an outbound connect to a unix socket',
      body: () => `${good()}outbound:\n  - listen: 127.0.0.1:0\n    connect: unix:/x.sock\n    serverId: spiffe://example.org/a\n`,
      want: /outbound\[0\]\.connect: expected host:port/,
    },
    {
      name: 'a bad outbound tunnel mode',
      body: () => `${good()}outbound:\n  - listen: 127.0.0.1:0\n    connect: a:1\n    serverId: spiffe://example.org/a\n    tunnel: on\n`,
      want: /outbound\[0\]\.tunnel: expected auto or off, got "on"; write tunnel: auto/,
    },
    { name: 'a bad log level', body: () => `${good()}log:\n  level: loud\n`, want: /log\.level: expected one of/ },
    {
      name: 'a missing identity dir',
      body: () => good().replace(payment, join(ca.root, 'nope')),
      want: /identity\.dir: .*nope does not exist/,
    },
    {
      name: 'a missing CRL file',
      body: () => good().replace(crl, join(ca.root, 'nope.pem')),
      want: /identity\.crl: .*nope\.pem does not exist/,
    },
    {
      name: 'a missing policy file',
      body: () => good().replace(policy, join(ca.root, 'nope-policy.yaml')),
      want: /policy: .*nope-policy\.yaml/,
    },
    { name: 'YAML syntax errors', body: () => 'identity:\n  dir: [unclosed\n', want: /line \d+, column \d+/ },
    { name: 'a duplicate key', body: () => `${good()}identity:\n  dir: /x\n`, want: /line \d+.*[Dd]uplicate|unique/ },
    {
      name: 'an alias bomb',
      body: () =>
        `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n`,
      want: /alias|anchors/i,
    },
    { name: 'thousands of nested levels', body: () => `identity: ${'['.repeat(5000)}${']'.repeat(5000)}\n`, want: /nested more than/ },
    {
      name: 'a megabyte-long value',
      body: () => `${good()}policy: ${'a'.repeat(1024 * 1024)}\n`,
      want: /bytes; a config is at most \d+ bytes/,
    },
    { name: 'binary bytes', body: () => `identity:\n  dir: /x\u0000\u0001\n`, want: /contains the character U\+0000/ },
  ];
  for (const { name, body, want } of bad) {
    it(`--check refuses ${name}, naming the key`, () => {
      const r = sidecar(['--check', '--config', write(`bad-${name.replace(/\W+/g, '-')}.yaml`, body())]);
      assert.equal(r.status, 1, `exit 1 expected; stdout: ${r.stdout}`);
      assert.match(r.stderr, want);
      assertNoStack(r.stderr);
    });
  }

  it('--check refuses a malformed policy (a misspelt methods), naming the key', () => {
    const p = writePolicy(
      ca.root,
      'services:\n  payment-service:\n    allow:\n      - from: order-service\n        method: [GET]\n',
      'bad-policy.yaml',
    );
    const r = sidecar([
      '--check',
      '--config',
      write('bad-policy-config.yaml', sidecarYaml({ setDir: payment, crl, policy: p, forward: '127.0.0.1:8080' })),
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /services\.payment-service\.allow\[0\]\.method/);
    assertNoStack(r.stderr);
  });

  it('--check warns about a methods/paths rule in a tcp sidecar and a service missing from the policy', () => {
    const p = writePolicy(
      ca.root,
      'services:\n  payment-service:\n    allow:\n      - from: order-service\n        methods: [GET]\n',
      'http-rule.yaml',
    );
    const r = sidecar([
      '--check',
      '--config',
      write('http-rule.yaml.cfg', sidecarYaml({ setDir: payment, crl, policy: p, forward: '127.0.0.1:8080' })),
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: policy: .*order-service/);
  });

  it('start-up refuses an invalid config with one line and exit 1', () => {
    const r = sidecar(['--config', write('start-bad.yaml', good().replace('forward: 127.0.0.1:8080', 'forward: "8080"'))]);
    assert.equal(r.status, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /inbound\.forward: expected host:port or unix:\/path, got "8080"/);
    assert.equal(r.stdout, '');
  });

  it('start-up refuses a mismatched key and certificate with one line', () => {
    const order = ca.issue('order-service');
    const mixed = join(ca.root, 'mixed');
    writeSetDir(
      mixed,
      { chainPem: readFileSync(join(payment, 'tls.crt'), 'utf8'), keyPem: readFileSync(join(order, 'tls.key'), 'utf8') } as never,
      readFileSync(join(payment, 'ca.crt'), 'utf8'),
    );
    const r = sidecar(['--config', write('mixed.yaml', sidecarYaml({ setDir: mixed, crl, policy, forward: '127.0.0.1:8080' }))]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /tls\.key does not belong to the certificate/);
  });

  it('an expired own certificate: --check fails; start-up runs, refuses callers, /readyz fails', async () => {
    const { intermediate } = loadCaDir(ca.dir, TEST_PASSPHRASE);
    const expired = await issueSvid(intermediate, 'spiffe://example.org/payment-service', {
      notBefore: new Date(Date.now() - 2 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const dir = writeSetDir(join(ca.root, 'expired-set'), expired, readFileSync(join(ca.dir, 'ca.crt'), 'utf8'));
    const config = write(
      'expired.yaml',
      sidecarYaml({ setDir: dir, crl, policy, forward: '127.0.0.1:8080', extra: 'admin:\n  listen: 127.0.0.1:0' }),
    );
    const checked = sidecar(['--check', '--config', config]);
    assert.equal(checked.status, 1);
    assert.match(checked.stderr, /expired/);

    const running = await startSidecarProcess(ca.root, readFileSync(config, 'utf8'), 'expired-run.yaml');
    try {
      assert.ok(running.lines.some((l) => l.level === 'error' && l.event === 'identity'));
      const ready = await adminGet(running.admin!, '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.body, /expired/);
      const health = await adminGet(running.admin!, '/healthz');
      assert.equal(health.status, 200);
      const creds = credsFromDir(ca.issue('order-service'));
      const fresh = linesFromNow(running);
      const r = await tlsExchange(running.inbound!, creds, { payload: 'x\n' });
      assert.equal(r.data, '');
      assert.equal((await running.waitForLine(fresh(refusalFrom(r.localPort)))).reason, 'own-certificate-invalid');
    } finally {
      await running.stop();
    }
  });
});

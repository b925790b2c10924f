/**
 * `svcca init`, checked by tools nobody here wrote: file modes, `openssl pkey -passin`
 * on both encrypted keys, `openssl x509 -text` on the root and intermediate (pathlen:0,
 * key identifiers, a critical name constraint permitting exactly URI:<td>), `openssl crl`
 * and `openssl verify -x509_strict`; an existing CA is never touched and bad input
 * creates nothing.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_PASSPHRASE, cleanEnv, run, runSvcca, tempDir, writeSecretFile } from '../helpers/cli.js';

const scratch = tempDir('svcca-init-');
after(() => run('rm', ['-rf', scratch]));
let counter = 0;
const newDir = () => join(scratch, `ca-${counter++}`);

function init(dir: string, args: string[], env: Record<string, string | undefined> = { SVCCA_PASSPHRASE: TEST_PASSPHRASE }) {
  return runSvcca(['init', '--dir', dir, ...args], { env: cleanEnv(env) });
}

function opensslText(file: string, kind: 'x509' | 'crl'): string {
  const res = run('openssl', [kind, '-in', file, '-noout', '-text']);
  assert.equal(res.status, 0, res.stderr);
  return res.stdout;
}

function pkeyOpens(file: string, pass: string): boolean {
  return run('openssl', ['pkey', '-in', file, '-passin', `pass:${pass}`, '-noout']).status === 0;
}

const KEY_TEXT: Record<string, RegExp> = {
  'ecdsa-p256': /Public-Key: \(256 bit\)[\s\S]*NIST CURVE: P-256/,
  'ecdsa-p384': /Public-Key: \(384 bit\)[\s\S]*NIST CURVE: P-384/,
  'rsa-2048': /Public-Key: \(2048 bit\)/,
  'rsa-3072': /Public-Key: \(3072 bit\)/,
};

for (const keyType of ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'] as const) {
  describe(`init --key-type ${keyType}`, () => {
    const dir = newDir();
    const res = init(dir, ['--trust-domain', 'example.org', '--key-type', keyType]);

    it('succeeds and says where the CA is', () => {
      assert.equal(res.status, 0, res.stderr);
      assert.equal(res.stderr, '');
      assert.match(res.stdout, /Created a CA for trust domain example\.org/);
    });

    it('writes every CA file, keys 0600 and the directory 0700', () => {
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      for (const f of ['root.crt', 'root.key', 'intermediate.crt', 'intermediate.key', 'ca.crt', 'crl.pem', 'ledger.db', 'config']) {
        assert.ok(existsSync(join(dir, f)), `${f} exists`);
      }
      for (const f of ['root.key', 'intermediate.key', 'config', 'ledger.db'])
        assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} is 0600`);
      assert.deepEqual(
        readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.endsWith('-wal') || f.endsWith('-shm')),
        [],
        'no temp files left',
      );
    });

    it('encrypts both keys as PKCS#8 that openssl pkey -passin opens with the passphrase only', () => {
      for (const f of ['root.key', 'intermediate.key']) {
        assert.match(
          readFileSync(join(dir, f), 'utf8'),
          new RegExp(`^-----BEGIN ENCRYPTED ${'PRIVATE'} KEY-----`) /* spelled apart: no key-looking literal in the repo */,
        );
        assert.ok(pkeyOpens(join(dir, f), TEST_PASSPHRASE), `${f} opens with the passphrase`);
        assert.ok(!pkeyOpens(join(dir, f), 'wrong'), `${f} does not open with a wrong one`);
      }
      const text = run('openssl', [
        'pkey',
        '-in',
        join(dir, 'intermediate.key'),
        '-passin',
        `pass:${TEST_PASSPHRASE}`,
        '-noout',
        '-text',
      ]).stdout;
      assert.match(
        text,
        keyType.startsWith('rsa')
          ? new RegExp(`Private-Key: \\(${keyType.slice(4)} bit`)
          : new RegExp(`Private-Key: \\(${keyType.slice(7)} bit`),
      );
    });

    it('makes a 10-year self-signed root with keyCertSign and cRLSign', () => {
      const text = opensslText(join(dir, 'root.crt'), 'x509');
      assert.match(text, KEY_TEXT[keyType]!);
      assert.match(text, /X509v3 Basic Constraints: critical\s+CA:TRUE\s/);
      assert.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\s/);
      assert.match(text, /X509v3 Subject Key Identifier/);
      const cert = new X509Certificate(readFileSync(join(dir, 'root.crt')));
      assert.ok(cert.ca);
      assert.equal(cert.subject, cert.issuer);
      assert.ok(cert.verify(cert.publicKey), 'self-signed');
      const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365 * 86_400_000);
      assert.ok(years > 9.9 && years < 10.1, `root lasts ${years} years`);
      assert.equal(readFileSync(join(dir, 'ca.crt'), 'utf8'), readFileSync(join(dir, 'root.crt'), 'utf8'), 'the trust bundle is the root');
    });

    it('makes a 1-year intermediate: pathlen:0, key identifiers, a critical name constraint permitting exactly URI:example.org', () => {
      const text = opensslText(join(dir, 'intermediate.crt'), 'x509');
      assert.match(text, KEY_TEXT[keyType]!);
      assert.match(text, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0\s/);
      assert.match(text, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\s/);
      assert.match(text, /X509v3 Subject Key Identifier/);
      assert.match(text, /X509v3 Authority Key Identifier/);
      const nc =
        /X509v3 Name Constraints: (critical)?\s+([\s\S]*?)\n\s{12}X509v3|X509v3 Name Constraints: (critical)?\s+([\s\S]*?)\n {4}Signature/.exec(
          text,
        );
      assert.ok(nc, text);
      assert.equal(nc[1] ?? nc[3], 'critical');
      const body = (nc[2] ?? nc[4]!).trim().split(/\n\s*/);
      assert.deepEqual(body, ['Permitted:', 'URI:example.org'], 'exactly one permitted URI subtree, no leading dot, no excluded subtrees');
      const root = new X509Certificate(readFileSync(join(dir, 'root.crt')));
      const int = new X509Certificate(readFileSync(join(dir, 'intermediate.crt')));
      assert.ok(int.ca);
      assert.ok(int.checkIssued(root) && int.verify(root.publicKey), 'signed by the root');
      const days = (Date.parse(int.validTo) - Date.parse(int.validFrom)) / 86_400_000;
      assert.ok(days > 364 && days < 367, `intermediate lasts ${days} days`);
      const rootSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(opensslText(join(dir, 'root.crt'), 'x509'))![1];
      assert.ok(text.includes(rootSki!), "the intermediate's AKI is the root's SKI");
    });

    it('the intermediate passes openssl verify -x509_strict against the root', () => {
      const res = run('openssl', ['verify', '-x509_strict', '-CAfile', join(dir, 'root.crt'), join(dir, 'intermediate.crt')]);
      assert.equal(res.status, 0, res.stderr + res.stdout);
    });

    it('writes a crl.pem that openssl crl reads and verifies against the root', () => {
      const text = opensslText(join(dir, 'crl.pem'), 'crl');
      assert.match(text, /No Revoked Certificates/);
      assert.match(text, /X509v3 CRL Number/);
      assert.match(text, /X509v3 Authority Key Identifier/);
      const verify = run('openssl', ['crl', '-in', join(dir, 'crl.pem'), '-CAfile', join(dir, 'root.crt'), '-noout']);
      assert.equal(verify.status, 0, verify.stderr);
      assert.match(verify.stderr + verify.stdout, /verify OK/);
      const pem = readFileSync(join(dir, 'crl.pem'), 'utf8');
      assert.equal(pem.match(/-----BEGIN X509 CRL-----/g)?.length, 2, "the root's CRL and the intermediate's");
      assert.ok(pem.includes(readFileSync(join(dir, 'intermediate.crt'), 'utf8').trim()), 'followed by the intermediate certificate');
    });

    it('refuses to touch the existing CA, changing nothing', () => {
      const before = readdirSync(dir).map((f) => [f, readFileSync(join(dir, f)).toString('base64')]);
      const again = init(dir, ['--trust-domain', 'other.org', '--key-type', keyType]);
      assert.equal(again.status, 1);
      assert.match(again.stderr, /^svcca: a CA already exists at .*; .*\n$/);
      const afterFiles = readdirSync(dir).map((f) => [f, readFileSync(join(dir, f)).toString('base64')]);
      assert.deepEqual(afterFiles, before);
    });
  });
}

describe('init into an empty folder made beforehand', () => {
  it('makes it 0700 whatever mode it had', () => {
    const dir = newDir();
    mkdirSync(dir, { mode: 0o777 });
    chmodSync(dir, 0o777);
    const r = init(dir, ['--trust-domain', 'example.org']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((statSync(dir).mode & 0o777).toString(8), '700');
  });
});

describe('init passphrases', () => {
  it('takes the root passphrase from --root-passphrase-file, one trailing newline stripped', () => {
    const dir = newDir();
    const intFile = writeSecretFile(scratch, `int-${counter}`, 'int-secret\n');
    const rootFile = writeSecretFile(scratch, `root-${counter}`, 'root-secret\n');
    const res = init(dir, ['--trust-domain', 'example.org', '--passphrase-file', intFile, '--root-passphrase-file', rootFile], {});
    assert.equal(res.status, 0, res.stderr);
    assert.ok(pkeyOpens(join(dir, 'root.key'), 'root-secret'));
    assert.ok(!pkeyOpens(join(dir, 'root.key'), 'int-secret'));
    assert.ok(pkeyOpens(join(dir, 'intermediate.key'), 'int-secret'));
    assert.ok(!pkeyOpens(join(dir, 'intermediate.key'), 'root-secret'));
    // issue needs only the intermediate's passphrase
    const issue = runSvcca(['issue', 'api', '--dir', dir, '--passphrase-file', intFile], { env: cleanEnv() });
    assert.equal(issue.status, 0, issue.stderr);
  });

  it('takes the root passphrase from SVCCA_ROOT_PASSPHRASE', () => {
    const dir = newDir();
    const res = init(dir, ['--trust-domain', 'example.org'], { SVCCA_PASSPHRASE: 'int-env', SVCCA_ROOT_PASSPHRASE: 'root-env' });
    assert.equal(res.status, 0, res.stderr);
    assert.ok(pkeyOpens(join(dir, 'root.key'), 'root-env'));
    assert.ok(pkeyOpens(join(dir, 'intermediate.key'), 'int-env'));
    assert.ok(!pkeyOpens(join(dir, 'root.key'), 'int-env'));
  });

  it("defaults the root passphrase to the intermediate's", () => {
    const dir = newDir();
    const res = init(dir, ['--trust-domain', 'example.org'], { SVCCA_PASSPHRASE: 'shared' });
    assert.equal(res.status, 0, res.stderr);
    assert.ok(pkeyOpens(join(dir, 'root.key'), 'shared'));
    assert.ok(pkeyOpens(join(dir, 'intermediate.key'), 'shared'));
  });

  it('strips exactly one trailing newline (CRLF counts as one), keeping the rest', () => {
    const dir = newDir();
    const intFile = writeSecretFile(scratch, `int2-${counter}`, 'two newlines\n\n');
    const rootFile = writeSecretFile(scratch, `root2-${counter}`, ' spaced \r\n');
    const res = init(dir, ['--trust-domain', 'example.org', '--passphrase-file', intFile, '--root-passphrase-file', rootFile], {});
    assert.equal(res.status, 0, res.stderr);
    const open = (f: string, passphrase: string) => {
      try {
        createPrivateKey({ key: readFileSync(join(dir, f)), format: 'pem', passphrase });
        return true;
      } catch {
        return false;
      }
    };
    assert.ok(open('intermediate.key', 'two newlines\n'));
    assert.ok(!open('intermediate.key', 'two newlines'));
    assert.ok(open('root.key', ' spaced '));
    assert.ok(!open('root.key', ' spaced \r'));
  });

  it('a file flag wins over the environment', () => {
    const dir = newDir();
    const intFile = writeSecretFile(scratch, `int3-${counter}`, 'from-file');
    const res = init(dir, ['--trust-domain', 'example.org', '--passphrase-file', intFile], { SVCCA_PASSPHRASE: 'from-env' });
    assert.equal(res.status, 0, res.stderr);
    assert.ok(pkeyOpens(join(dir, 'intermediate.key'), 'from-file'));
  });

  it('prints the result as JSON with --json', () => {
    const dir = newDir();
    const res = init(dir, ['--trust-domain', 'example.org', '--key-type', 'ecdsa-p384', '--json']);
    assert.equal(res.status, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as { trustDomain: string; keyType: string; intermediate: { serial: string; notAfter: string } };
    assert.equal(doc.trustDomain, 'example.org');
    assert.equal(doc.keyType, 'ecdsa-p384');
    assert.match(doc.intermediate.serial, /^[0-9a-f]+$/);
    assert.ok(Date.parse(doc.intermediate.notAfter) > Date.now());
  });
});

describe('init refuses bad input and creates nothing', () => {
  const missing = join(scratch, 'missing-passphrase-file');
  const cases: { name: string; args: string[]; env?: Record<string, string | undefined>; want: RegExp }[] = [
    { name: 'invalid trust domain', args: ['--trust-domain', 'Example.org'], want: /invalid trust domain/ },
    { name: 'trust domain with a port', args: ['--trust-domain', 'example.org:443'], want: /invalid trust domain/ },
    { name: 'trust domain as a SPIFFE ID', args: ['--trust-domain', 'spiffe://example.org'], want: /invalid trust domain/ },
    { name: 'empty trust domain', args: ['--trust-domain', ''], want: /invalid trust domain/ },
    {
      name: 'unknown key type',
      args: ['--trust-domain', 'example.org', '--key-type', 'ed25519'],
      want: /unknown key type "ed25519"; use one of ecdsa-p256/,
    },
    { name: 'missing --trust-domain', args: [], want: /--trust-domain/ },
    {
      name: 'no passphrase and no terminal',
      args: ['--trust-domain', 'example.org'],
      env: {},
      want: /no passphrase for the intermediate key given; use --passphrase-file/,
    },
    {
      name: 'missing passphrase file',
      args: ['--trust-domain', 'example.org', '--passphrase-file', missing],
      env: {},
      want: /--passphrase-file .* does not exist/,
    },
    {
      name: 'missing root passphrase file',
      args: ['--trust-domain', 'example.org', '--root-passphrase-file', missing],
      want: /--root-passphrase-file .* does not exist/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const dir = newDir();
      const res = init(dir, c.args, c.env ?? { SVCCA_PASSPHRASE: TEST_PASSPHRASE });
      assert.equal(res.status, 1);
      assert.match(res.stderr, c.want);
      assert.equal(res.stderr.split('\n').filter(Boolean).length, 1, res.stderr);
      assert.equal(existsSync(dir), false, 'no CA directory was created');
    });
  }
});

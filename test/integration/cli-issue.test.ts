/**
 * `svcca issue`: every field of the X509-SVID profile in the contract, read back by two
 * parsers nobody here wrote (Node's X509Certificate and @peculiar/x509) and accepted by
 * `openssl verify -x509_strict`; the credential set, re-issue, --csr, the TTL limits and
 * --json.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, run, type TestCa, opensslEcCsr } from '../helpers/cli.js';

const OID_SAN = '2.5.29.17';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

interface IssueJson {
  service: string;
  spiffeId: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  setDir: string;
  files: { cert: string; key: string | null; ca: string };
  fromCsr: boolean;
  supersedes: string | null;
}

function issueJson(ca: TestCa, args: string[]): IssueJson {
  const res = ca.svcca(['issue', ...args, '--json']);
  assert.equal(res.status, 0, res.stderr);
  return JSON.parse(res.stdout) as IssueJson;
}

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
}

function leafOf(setDir: string): { node: X509Certificate; peculiar: x509.X509Certificate; chain: string[] } {
  const chain = pemBlocks(readFileSync(join(setDir, 'tls.crt'), 'utf8'));
  return { node: new X509Certificate(chain[0]!), peculiar: new x509.X509Certificate(chain[0]!), chain };
}

function opensslVerify(ca: TestCa, certFile: string) {
  return run('openssl', [
    'verify',
    '-x509_strict',
    '-purpose',
    'sslclient',
    '-CAfile',
    join(ca.dir, 'root.crt'),
    '-untrusted',
    join(ca.dir, 'intermediate.crt'),
    certFile,
  ]);
}

function opensslText(file: string): string {
  return run('openssl', ['x509', '-in', file, '-noout', '-text']).stdout;
}

function keyDetails(key: { asymmetricKeyType?: string; asymmetricKeyDetails?: { namedCurve?: string; modulusLength?: number } }): string {
  const d = key.asymmetricKeyDetails ?? {};
  return key.asymmetricKeyType === 'ec' ? `ec ${d.namedCurve}` : `${key.asymmetricKeyType} ${d.modulusLength}`;
}

const EXPECTED_KEY: Record<string, string> = {
  'ecdsa-p256': 'ec prime256v1',
  'ecdsa-p384': 'ec secp384r1',
  'rsa-2048': 'rsa 2048',
  'rsa-3072': 'rsa 3072',
};

for (const keyType of ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072'] as const) {
  describe(`the X509-SVID profile (${keyType} CA)`, () => {
    let ca: TestCa;
    let issued: IssueJson;
    let started = 0;
    let finished = 0;
    before(() => {
      ca = makeCa({ keyType });
      started = Date.now();
      issued = issueJson(ca, ['order-service', '--ttl', '2h', '--out', join(ca.root, 'order')]);
      finished = Date.now();
    });
    after(() => ca.cleanup());

    it('openssl verify -x509_strict accepts the leaf through the intermediate to the root', () => {
      const res = opensslVerify(ca, issued.files.cert);
      assert.equal(res.status, 0, res.stdout + res.stderr);
      assert.match(res.stdout, /: OK/);
    });

    it('has exactly one URI SAN, the SPIFFE ID, and nothing else by default', () => {
      const { node, peculiar } = leafOf(issued.setDir);
      assert.equal(issued.spiffeId, 'spiffe://example.org/order-service');
      assert.equal(node.subjectAltName, 'URI:spiffe://example.org/order-service');
      const san = peculiar.getExtension(x509.SubjectAlternativeNameExtension)!;
      assert.deepEqual(
        san.names.items.map((n) => [n.type, n.value]),
        [['url', 'spiffe://example.org/order-service']],
      );
      assert.equal(san.critical, false, 'not critical while the subject has a CN');
    });

    it('is CA:FALSE, key usage digitalSignature only (critical), EKU serverAuth + clientAuth', () => {
      const { node, peculiar } = leafOf(issued.setDir);
      assert.equal(node.ca, false);
      const bc = peculiar.getExtension(x509.BasicConstraintsExtension)!;
      assert.equal(bc.ca, false);
      const ku = peculiar.getExtension(x509.KeyUsagesExtension)!;
      assert.equal(ku.critical, true);
      assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
      const eku = peculiar.getExtension(x509.ExtendedKeyUsageExtension)!;
      assert.deepEqual([...eku.usages].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
      assert.deepEqual([...(node.keyUsage ?? [])].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
      const text = opensslText(issued.files.cert);
      assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature\s/);
      assert.match(text, /X509v3 Extended Key Usage: \s*TLS Web Server Authentication, TLS Web Client Authentication\s/);
    });

    it('has a 16-byte positive serial, the one printed and recorded', () => {
      const { node, peculiar } = leafOf(issued.setDir);
      const serial = peculiar.serialNumber.toLowerCase();
      assert.equal(serial.length, 32, `serial ${serial} is 16 bytes in DER`);
      assert.ok(parseInt(serial.slice(0, 2), 16) < 0x80, 'top bit cleared: positive');
      assert.equal(node.serialNumber.toLowerCase().replace(/^0+/, ''), issued.serial);
      assert.equal(issued.serial, serial.replace(/^0+/, ''));
    });

    it('has CN = the service, an AKI equal to the intermediate SKI, and a SKI', () => {
      const { node, peculiar } = leafOf(issued.setDir);
      assert.equal(node.subject, 'CN=order-service');
      const intermediate = new x509.X509Certificate(readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8'));
      const ski = intermediate.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
      assert.equal(peculiar.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId, ski);
      assert.ok(peculiar.getExtension(x509.SubjectKeyIdentifierExtension));
      assert.equal(node.issuer, new X509Certificate(readFileSync(join(ca.dir, 'intermediate.crt'))).subject);
      assert.equal(peculiar.getExtensions(OID_SAN).length, 1, 'one SAN extension');
    });

    it('starts one minute in the past and lasts the TTL', () => {
      const { peculiar } = leafOf(issued.setDir);
      const nb = peculiar.notBefore.getTime();
      const na = peculiar.notAfter.getTime();
      // Whole seconds: notBefore is floor(now) - 60 s with now within [started, finished].
      assert.ok(
        nb >= Math.floor(started / 1000) * 1000 - 60_000 && nb <= finished - 59_000,
        `notBefore ${peculiar.notBefore.toISOString()} is ~1 min before issuing`,
      );
      assert.equal(na - nb, 2 * 3_600_000 + 60_000);
      assert.equal(new Date(na).toISOString(), issued.notAfter);
    });

    it("gives the leaf the CA's key type, and tls.key is its private key (0600)", () => {
      const { node } = leafOf(issued.setDir);
      const caKey = new X509Certificate(readFileSync(join(ca.dir, 'intermediate.crt'))).publicKey;
      assert.equal(keyDetails(caKey), EXPECTED_KEY[keyType]);
      assert.equal(keyDetails(node.publicKey), EXPECTED_KEY[keyType]);
      const key = createPrivateKey(readFileSync(join(issued.setDir, 'tls.key')));
      assert.ok(node.checkPrivateKey(key), 'tls.key matches tls.crt');
      assert.equal(statSync(join(issued.setDir, 'tls.key')).mode & 0o777, 0o600);
      assert.match(
        readFileSync(join(issued.setDir, 'tls.key'), 'utf8'),
        new RegExp(`^-----BEGIN ${'PRIVATE'} KEY-----`) /* spelled apart: no key-looking literal in the repo */,
      );
    });

    it('writes tls.crt as leaf then intermediate, and ca.crt as the root', () => {
      const { chain } = leafOf(issued.setDir);
      assert.equal(chain.length, 2);
      assert.equal(chain[1]!.trim(), readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8').trim());
      assert.equal(readFileSync(join(issued.setDir, 'ca.crt'), 'utf8'), readFileSync(join(ca.dir, 'root.crt'), 'utf8'));
    });
  });
}

describe('svcca issue on one CA', () => {
  let ca: TestCa;
  before(() => {
    ca = makeCa();
  });
  after(() => ca.cleanup());

  it('prints the SPIFFE ID, serial, not-after and where the files went', () => {
    const res = ca.svcca(['issue', 'printer']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /^Issued spiffe:\/\/example\.org\/printer$/m);
    assert.match(res.stdout, /serial\s+[0-9a-f]{32}/);
    assert.match(res.stdout, /not after\s+\d{4}-\d\d-\d\dT/);
    assert.ok(res.stdout.includes(join(ca.dir, 'issued', 'printer', 'tls.crt')), res.stdout);
  });

  it('keeps CN up to 64 characters; above, no CN and a critical SAN', () => {
    const at64 = 'a'.repeat(64);
    const at65 = 'b'.repeat(65);
    const s64 = issueJson(ca, [at64, '--out', join(ca.root, 'cn64')]);
    const s65 = issueJson(ca, [at65, '--out', join(ca.root, 'cn65')]);
    const l64 = leafOf(s64.setDir);
    const l65 = leafOf(s65.setDir);
    assert.equal(l64.node.subject, `CN=${at64}`);
    assert.equal(l64.peculiar.getExtension(x509.SubjectAlternativeNameExtension)!.critical, false);
    assert.ok(l65.node.subject === undefined || l65.node.subject === '', `no subject attributes at all: ${l65.node.subject}`);
    assert.equal(l65.peculiar.subjectName.toJSON().length, 0, 'an empty subject DN');
    assert.equal(l64.peculiar.subjectName.getField('CN')[0], at64);
    assert.equal(
      l65.peculiar.getExtension(x509.SubjectAlternativeNameExtension)!.critical,
      true,
      'RFC 5280: SAN critical with an empty subject',
    );
    assert.equal(l65.node.subjectAltName, `URI:spiffe://example.org/${at65}`);
    for (const s of [s64, s65]) {
      const v = opensslVerify(ca, s.files.cert);
      assert.equal(v.status, 0, v.stdout + v.stderr);
    }
  });

  it('adds --dns and --ip SANs after the URI (deduplicated, DNS lower-cased)', () => {
    const s = issueJson(ca, [
      'web',
      '--dns',
      'web.internal',
      '--dns',
      'WEB.example.org',
      '--dns',
      'web.internal',
      '--ip',
      '10.0.0.7',
      '--ip',
      '2001:db8::1',
      '--out',
      join(ca.root, 'web'),
    ]);
    const { peculiar, node } = leafOf(s.setDir);
    const names = peculiar.getExtension(x509.SubjectAlternativeNameExtension)!.names.items.map((n) => [n.type, n.value]);
    assert.deepEqual(names, [
      ['url', 'spiffe://example.org/web'],
      ['dns', 'web.internal'],
      ['dns', 'web.example.org'],
      ['ip', '10.0.0.7'],
      ['ip', '2001:db8::1'],
    ]);
    assert.equal(names.filter(([t]) => t === 'url').length, 1, 'still exactly one URI SAN');
    assert.equal(node.checkHost('web.internal'), 'web.internal');
    assert.equal(node.checkIP('10.0.0.7'), '10.0.0.7');
    const v = opensslVerify(ca, s.files.cert);
    assert.equal(v.status, 0, v.stdout + v.stderr);
  });

  it('makes nested folders for a service path', () => {
    const res = ca.svcca(['issue', 'ns/prod/api']);
    assert.equal(res.status, 0, res.stderr);
    const setDir = join(ca.dir, 'issued', 'ns', 'prod', 'api');
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) assert.ok(lstatSync(join(setDir, f)).isSymbolicLink(), `${f} in the nested set`);
    assert.equal(leafOf(setDir).node.subjectAltName, 'URI:spiffe://example.org/ns/prod/api');
    assert.equal(leafOf(setDir).node.subject, 'CN=ns/prod/api');
  });

  it('refuses a set inside another set, or around one (a folder given out for one would expose the other key)', () => {
    assert.equal(ca.svcca(['issue', 'team']).status, 0);
    const inner = ca.svcca(['issue', 'team/billing-admin']);
    assert.equal(inner.status, 1);
    assert.match(
      inner.stderr,
      /^svcca: the credential set of team\/billing-admin cannot go in .*issued\/team\/billing-admin: it would lie inside the credential set in .*issued\/team, .*; issue it with --out into a folder of its own\n$/,
    );
    assert.equal(existsSync(join(ca.dir, 'issued', 'team', 'billing-admin')), false, 'nothing made');
    const elsewhere = ca.svcca(['issue', 'team/billing-admin', '--out', join(ca.root, 'billing-admin')]);
    assert.equal(elsewhere.status, 0, elsewhere.stderr);
    // The other way round: ns/prod/api was issued above, so ns/prod may not wrap it.
    const outer = ca.svcca(['issue', 'ns/prod']);
    assert.equal(outer.status, 1);
    assert.match(outer.stderr, /it would hold the credential set in .*issued\/ns\/prod\/api/);
    // Re-issuing a set in place is not nesting.
    assert.equal(ca.svcca(['issue', 'team']).status, 0);
  });

  it('re-issue supersedes: new serial, ..data swapped, old folder and key gone', () => {
    const out = join(ca.root, 'rotating');
    const first = issueJson(ca, ['rotating', '--out', out]);
    const firstFolder = readlinkSync(join(out, '..data'));
    const firstKey = readFileSync(join(out, 'tls.key'), 'utf8');
    const second = issueJson(ca, ['rotating']);
    assert.equal(second.setDir, out, 'without --out the set stays where it was');
    assert.equal(second.supersedes, first.serial);
    assert.notEqual(second.serial, first.serial);
    const secondFolder = readlinkSync(join(out, '..data'));
    assert.notEqual(secondFolder, firstFolder, '..data points at a new folder');
    assert.equal(existsSync(join(out, firstFolder)), false, 'the old folder is removed');
    assert.deepEqual(
      readdirSync(out).filter((e) => e.startsWith('..') && e !== '..data'),
      [secondFolder],
    );
    assert.notEqual(readFileSync(join(out, 'tls.key'), 'utf8'), firstKey, 'a fresh key');
    const { node, chain } = leafOf(out);
    assert.equal(node.serialNumber.toLowerCase().replace(/^0+/, ''), second.serial);
    assert.ok(
      !chain.some((pem) => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+/, '') === first.serial),
      'the old certificate is gone from the set',
    );
    assert.ok(node.checkPrivateKey(createPrivateKey(readFileSync(join(out, 'tls.key')))));
  });

  it('re-issue with a new --out moves the set there and removes the old one', () => {
    const a = join(ca.root, 'move-a');
    const b = join(ca.root, 'move-b');
    issueJson(ca, ['mover', '--out', a]);
    writeFileSync(join(a, 'notes.txt'), 'the user keeps this');
    const moved = issueJson(ca, ['mover', '--out', b]);
    assert.equal(moved.setDir, b);
    assert.ok(leafOf(b).node.checkPrivateKey(createPrivateKey(readFileSync(join(b, 'tls.key')))));
    assert.deepEqual(readdirSync(a), ['notes.txt'], 'no old key, link or folder left in the old place; other files kept');
    const again = issueJson(ca, ['mover']);
    assert.equal(again.setDir, b, 'the next re-issue follows the set');
  });

  describe('--csr', () => {
    let csrDir: string;
    before(() => {
      csrDir = join(ca.root, 'csr');
      run('mkdir', ['-p', csrDir]);
      const res = opensslEcCsr(join(csrDir, 'owner.key'), join(csrDir, 'req.csr'), '/CN=admin/O=evil', [
        '-addext',
        'subjectAltName=URI:spiffe://example.org/admin,URI:spiffe://evil.org/x,DNS:evil.example.com',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
      ]);
      assert.equal(res.status, 0, res.stderr);
    });

    it('signs only the public key: names come from the command, never from the CSR', () => {
      const out = join(csrDir, 'set');
      const s = issueJson(ca, ['billing', '--csr', join(csrDir, 'req.csr'), '--dns', 'billing.internal', '--out', out]);
      assert.equal(s.fromCsr, true);
      const { node, peculiar } = leafOf(out);
      assert.equal(node.subject, 'CN=billing');
      assert.equal(node.subjectAltName, 'URI:spiffe://example.org/billing, DNS:billing.internal');
      assert.equal(node.ca, false);
      assert.equal(peculiar.getExtension(x509.KeyUsagesExtension)!.usages, x509.KeyUsageFlags.digitalSignature);
      const ownerKey = createPrivateKey(readFileSync(join(csrDir, 'owner.key')));
      assert.ok(node.checkPrivateKey(ownerKey), "the certificate carries the CSR owner's key");
      assert.deepEqual(
        createPublicKey(ownerKey).export({ type: 'spki', format: 'der' }),
        node.publicKey.export({ type: 'spki', format: 'der' }),
      );
      const v = opensslVerify(ca, join(out, 'tls.crt'));
      assert.equal(v.status, 0, v.stdout + v.stderr);
    });

    it('leaves the private key with its owner: no tls.key in the set', () => {
      const out = join(csrDir, 'set');
      assert.equal(existsSync(join(out, 'tls.key')), false);
      assert.equal(readdirSync(join(out, readlinkSync(join(out, '..data')))).includes('tls.key'), false);
      const res = ca.svcca(['issue', 'billing2', '--csr', join(csrDir, 'req.csr'), '--out', join(csrDir, 'set2')]);
      assert.equal(res.status, 0, res.stderr);
      assert.match(res.stdout, /the private key stays with its owner/);
      assert.doesNotMatch(res.stdout, /tls\.key/);
    });
  });

  describe('--ttl limits', () => {
    it('refuses a TTL above the 30-day maximum with a hint, issuing nothing', () => {
      const res = ca.svcca(['issue', 'too-long', '--ttl', '31d']);
      assert.equal(res.status, 1);
      assert.match(res.stderr, /^svcca: --ttl 31d is longer than this CA's maximum of 30d; use --ttl 30d or less/);
      assert.equal(existsSync(join(ca.dir, 'issued', 'too-long')), false);
    });

    it('accepts exactly the maximum', () => {
      const s = issueJson(ca, ['thirty', '--ttl', '30d', '--out', join(ca.root, 'thirty')]);
      const { peculiar } = leafOf(s.setDir);
      assert.equal(peculiar.notAfter.getTime() - peculiar.notBefore.getTime(), 30 * 86_400_000 + 60_000);
    });

    it("refuses a TTL past the intermediate's end (maximum raised in the config) with a hint to roll it", () => {
      const other = makeCa();
      try {
        const configPath = join(other.dir, 'config');
        const config = JSON.parse(readFileSync(configPath, 'utf8')) as { maxTtlMs: number };
        config.maxTtlMs = 800 * 86_400_000;
        writeFileSync(configPath, JSON.stringify(config));
        const res = other.svcca(['issue', 'forever', '--ttl', '400d']);
        assert.equal(res.status, 1);
        assert.match(
          res.stderr,
          /^svcca: --ttl 400d would outlive the intermediate, which ends \S+; roll the intermediate with `svcca rotate --intermediate`/,
        );
        assert.equal(res.stderr.trim().split('\n').length, 1);
        assert.equal(existsSync(join(other.dir, 'issued', 'forever')), false, 'never silently shortened: nothing issued');
        const ok = other.svcca(['issue', 'forever', '--ttl', '300d']);
        assert.equal(ok.status, 0, `a TTL inside the intermediate is fine: ${ok.stderr}`);
      } finally {
        other.cleanup();
      }
    });
  });

  it('--json prints one JSON document and nothing else', () => {
    const res = ca.svcca(['issue', 'jsonsvc', '--json']);
    assert.equal(res.status, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as IssueJson;
    assert.equal(doc.service, 'jsonsvc');
    assert.equal(doc.spiffeId, 'spiffe://example.org/jsonsvc');
    assert.match(doc.serial, /^[0-9a-f]{32}$/);
    assert.equal(doc.fromCsr, false);
    assert.equal(doc.supersedes, null);
    assert.equal(doc.setDir, join(ca.dir, 'issued', 'jsonsvc'));
    assert.deepEqual(doc.files, { cert: join(doc.setDir, 'tls.crt'), key: join(doc.setDir, 'tls.key'), ca: join(doc.setDir, 'ca.crt') });
    assert.ok(Date.parse(doc.notAfter) - Date.parse(doc.notBefore) === 24 * 3_600_000 + 60_000, 'default TTL 24h');
    assert.equal(leafOf(doc.setDir).node.serialNumber.toLowerCase().replace(/^0+/, ''), doc.serial);
  });
});

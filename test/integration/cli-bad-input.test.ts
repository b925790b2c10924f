/**
 * Every bad input of issue 4: exit code 1, exactly one line on stderr (what is wrong
 * and, on the same line, what to do), no stack trace, and nothing written: the CA
 * directory (ledger.db included) is byte-for-byte unchanged and no file appears.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_PASSPHRASE, cleanEnv, makeCa, run, runSvcca, type TestCa } from '../helpers/cli.js';

/** Every path under `root` with its content hash, link target or directory mode. */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir).sort()) {
      const path = join(dir, entry);
      const st = lstatSync(path);
      if (st.isSymbolicLink()) out.set(path, `link ${readlinkSync(path)}`);
      else if (st.isDirectory()) {
        out.set(path, `dir ${(st.mode & 0o7777).toString(8)}`);
        walk(path);
      } else out.set(path, `file ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`);
    }
  };
  walk(root);
  return out;
}

function diff(before: Map<string, string>, after: Map<string, string>): string[] {
  const changes: string[] = [];
  for (const [path, what] of before) {
    if (!after.has(path)) changes.push(`removed ${path}`);
    else if (after.get(path) !== what) changes.push(`changed ${path}`);
  }
  for (const path of after.keys()) if (!before.has(path)) changes.push(`created ${path}`);
  return changes;
}

interface Paths {
  readonly ca: string;
  readonly root: string;
  readonly in: string;
}

interface Case {
  readonly name: string;
  readonly args: (p: Paths) => string[];
  readonly want: RegExp;
  /** Environment on top of a clean one; the test passphrase unless given. */
  readonly env?: Record<string, string | undefined>;
  /** Run from the scratch root without --dir (the default ./ca-data). */
  readonly noDir?: boolean;
}

const issue = (p: Paths, ...rest: string[]) => ['issue', ...rest, '--dir', p.ca];

const CASES: Case[] = [
  // the CLI parser's own errors, folded into one line with its suggestion
  {
    name: 'unknown command',
    args: (p) => ['isue', 'api', '--dir', p.ca],
    want: /unknown command 'isue' \(Did you mean issue\?\); see `svcca --help`/,
  },
  { name: 'unknown command, nothing close', args: (p) => ['frobnicate', '--dir', p.ca], want: /unknown command 'frobnicate'/ },
  {
    name: 'unknown flag',
    args: (p) => ['issue', 'api', '--dri', p.ca],
    noDir: true,
    want: /unknown option '--dri' \(Did you mean --dir\?\)/,
  },
  {
    name: 'unknown flag on init',
    args: (p) => ['init', '--trust-domain', 'example.org', '--key-tpye', 'rsa-2048', '--dir', join(p.root, 'new-ca')],
    want: /unknown option '--key-tpye' \(Did you mean --key-type\?\)/,
  },
  { name: 'missing service argument', args: (p) => ['issue', '--dir', p.ca], want: /missing required argument 'service'/ },
  { name: 'flag without its value', args: (p) => issue(p, 'api', '--ttl'), want: /option '--ttl <duration>' argument missing/ },

  // init
  {
    name: 'unknown key type',
    args: (p) => ['init', '--trust-domain', 'example.org', '--key-type', 'ed25519', '--dir', join(p.root, 'new-ca')],
    want: /unknown key type "ed25519"; use one of/,
  },
  {
    name: 'invalid trust domain (upper case)',
    args: (p) => ['init', '--trust-domain', 'Example.org', '--dir', join(p.root, 'new-ca')],
    want: /invalid trust domain "Example.org"/,
  },
  {
    name: 'invalid trust domain (port)',
    args: (p) => ['init', '--trust-domain', 'example.org:8443', '--dir', join(p.root, 'new-ca')],
    want: /invalid trust domain/,
  },
  {
    name: 'invalid trust domain (scheme)',
    args: (p) => ['init', '--trust-domain', 'spiffe://example.org', '--dir', join(p.root, 'new-ca')],
    want: /invalid trust domain/,
  },
  { name: 'init over an existing CA', args: (p) => ['init', '--trust-domain', 'example.org', '--dir', p.ca], want: /a CA already exists/ },
  {
    name: 'init with --dir pointing at a file',
    args: (p) => ['init', '--trust-domain', 'example.org', '--dir', join(p.in, 'plain-file')],
    want: /is a file/,
  },

  // service names
  { name: 'service name with upper case', args: (p) => issue(p, 'Api'), want: /invalid service name "Api"/ },
  { name: 'service name with an empty segment', args: (p) => issue(p, 'ns//api'), want: /empty path segment/ },
  { name: 'service name with a trailing slash', args: (p) => issue(p, 'api/'), want: /empty path segment/ },
  { name: 'service name with a ".." segment', args: (p) => issue(p, 'ns/../../etc'), want: /"\.\." path segment/ },
  { name: 'service name "."', args: (p) => issue(p, '.'), want: /"\." path segment/ },
  { name: 'service name percent-encoded', args: (p) => issue(p, 'ns%2fapi'), want: /invalid service name/ },
  { name: 'service name as a SPIFFE ID', args: (p) => issue(p, 'spiffe://example.org/api'), want: /invalid service name/ },
  { name: 'service name of 129 characters', args: (p) => issue(p, 'a'.repeat(129)), want: /129 characters long; the limit is 128/ },
  { name: 'service name with a newline', args: (p) => issue(p, 'api\nx'), want: /invalid service name "api\\nx"/ },

  // --dns / --ip
  { name: '--dns with a comma', args: (p) => issue(p, 'api', '--dns', 'a.org,b.org'), want: /--dns "a.org,b.org" is not a DNS name/ },
  { name: '--dns with a space', args: (p) => issue(p, 'api', '--dns', 'a.org b.org'), want: /--dns .* is not a DNS name/ },
  { name: '--dns with a control character', args: (p) => issue(p, 'api', '--dns', 'a\u0001.org'), want: /control character/ },
  {
    name: '--dns that looks like a URI',
    args: (p) => issue(p, 'api', '--dns', 'URI:spiffe://example.org/admin'),
    want: /looks like a URI/,
  },
  {
    name: '--ip that is not an address',
    args: (p) => issue(p, 'api', '--ip', '10.0.0.256'),
    want: /--ip "10.0.0.256" is not an IP address/,
  },
  { name: '--ip with a zone', args: (p) => issue(p, 'api', '--ip', 'fe80::1%eth0'), want: /is not an IP address/ },
  { name: '--ip as CIDR', args: (p) => issue(p, 'api', '--ip', '10.0.0.0/8'), want: /is not an IP address/ },

  // --ttl
  { name: '--ttl not a duration', args: (p) => issue(p, 'api', '--ttl', 'soon'), want: /--ttl: "soon" is not a duration/ },
  { name: '--ttl zero', args: (p) => issue(p, 'api', '--ttl', '0s'), want: /greater than zero/ },
  { name: '--ttl bare zero', args: (p) => issue(p, 'api', '--ttl', '0'), want: /is not a duration/ },
  { name: '--ttl negative', args: (p) => issue(p, 'api', '--ttl=-1h'), want: /is not a duration/ },
  { name: '--ttl too long', args: (p) => issue(p, 'api', '--ttl', '31d'), want: /longer than this CA's maximum of 30d/ },
  { name: '--ttl far too long', args: (p) => issue(p, 'api', '--ttl', '5000w'), want: /longer than this CA's maximum/ },

  // --csr
  { name: 'CSR missing', args: (p) => issue(p, 'api', '--csr', join(p.in, 'nope.csr')), want: /--csr .*nope\.csr does not exist/ },
  { name: 'CSR garbage text', args: (p) => issue(p, 'api', '--csr', join(p.in, 'garbage.csr')), want: /--csr .* holds no PEM CSR/ },
  {
    name: 'CSR garbage inside a PEM block',
    args: (p) => issue(p, 'api', '--csr', join(p.in, 'garbage-pem.csr')),
    want: /--csr .* is not a valid certificate signing request/,
  },
  { name: 'CSR empty file', args: (p) => issue(p, 'api', '--csr', join(p.in, 'empty')), want: /--csr .* holds no PEM CSR/ },
  {
    name: 'CSR is a certificate',
    args: (p) => issue(p, 'api', '--csr', join(p.ca, 'root.crt')),
    want: /--csr .* holds a certificate, not a CSR/,
  },
  {
    name: 'CSR is a private key',
    args: (p) => issue(p, 'api', '--csr', join(p.in, 'owner.key')),
    want: /--csr .* holds a PRIVATE KEY, not a CSR/,
  },
  {
    name: 'CSR with a bad signature (one byte tampered)',
    args: (p) => issue(p, 'api', '--csr', join(p.in, 'tampered.csr')),
    want: /--csr .* has an invalid signature/,
  },
  {
    name: 'CSR with an unsupported key (Ed25519)',
    args: (p) => issue(p, 'api', '--csr', join(p.in, 'ed25519.csr')),
    want: /--csr .* uses an unsupported key \(ED25519\)/,
  },
  {
    name: 'CSR with an unsupported key (RSA 1024)',
    args: (p) => issue(p, 'api', '--csr', join(p.in, 'rsa1024.csr')),
    want: /--csr .* uses an unsupported key \(RSA 1024\)/,
  },
  { name: 'CSR is a directory', args: (p) => issue(p, 'api', '--csr', p.in), want: /--csr .* cannot be read \(EISDIR\)/ },

  // inspect
  { name: 'inspect a missing file', args: (p) => ['inspect', join(p.in, 'nope.pem'), '--dir', p.ca], want: /nope\.pem does not exist/ },
  { name: 'inspect an empty file', args: (p) => ['inspect', join(p.in, 'empty'), '--dir', p.ca], want: /is empty/ },
  { name: 'inspect a garbage file', args: (p) => ['inspect', join(p.in, 'garbage.csr'), '--dir', p.ca], want: /is not a PEM certificate/ },
  { name: 'inspect a PEM block of garbage', args: (p) => ['inspect', join(p.in, 'garbage-cert.pem'), '--dir', p.ca], want: /./ },
  {
    name: 'inspect an unknown service',
    args: (p) => ['inspect', 'never-issued', '--dir', p.ca],
    want: /no file and no issued service named never-issued/,
  },

  // the CA directory
  {
    name: 'missing CA dir',
    args: (p) => ['issue', 'api', '--dir', join(p.root, 'no-such-ca')],
    want: /no CA at .*no-such-ca; run `svcca init/,
  },
  { name: 'missing default ./ca-data', args: () => ['issue', 'api'], noDir: true, want: /no CA at .*ca-data/ },
  {
    name: 'missing CA dir from SVCCA_DIR',
    args: () => ['issue', 'api'],
    noDir: true,
    env: { SVCCA_DIR: 'env-ca', SVCCA_PASSPHRASE: TEST_PASSPHRASE },
    want: /no CA at .*env-ca/,
  },
  { name: 'foreign CA dir', args: (p) => ['issue', 'api', '--dir', join(p.root, 'foreign')], want: /is not an svcca CA directory/ },
  {
    name: '--dir pointing at a file',
    args: (p) => ['issue', 'api', '--dir', join(p.in, 'plain-file')],
    want: /is a file, not a CA directory/,
  },
  { name: 'list on a missing CA dir', args: (p) => ['list', '--dir', join(p.root, 'no-such-ca')], want: /no CA at/ },
  { name: 'list on --dir pointing at a file', args: (p) => ['list', '--dir', join(p.in, 'plain-file')], want: /is a file/ },
  {
    name: 'malformed --expiring',
    args: (p) => ['list', '--expiring', 'soon', '--dir', p.ca],
    want: /--expiring: "soon" is not a duration/,
  },
  { name: 'negative --expiring', args: (p) => ['list', '--expiring=-6h', '--dir', p.ca], want: /--expiring/ },

  // secrets
  {
    name: 'wrong passphrase (env)',
    args: (p) => issue(p, 'api'),
    env: { SVCCA_PASSPHRASE: 'not-the-passphrase' },
    want: /wrong passphrase for the intermediate key/,
  },
  {
    name: 'wrong passphrase (file)',
    args: (p) => issue(p, 'api', '--passphrase-file', join(p.in, 'wrong.pass')),
    env: {},
    want: /wrong passphrase for the intermediate key/,
  },
  {
    name: 'no passphrase and no terminal',
    args: (p) => issue(p, 'api'),
    env: {},
    want: /no passphrase for the intermediate key given; use --passphrase-file FILE or set SVCCA_PASSPHRASE/,
  },
  {
    name: 'missing passphrase file',
    args: (p) => issue(p, 'api', '--passphrase-file', join(p.in, 'nope.pass')),
    want: /--passphrase-file .* does not exist/,
  },
  {
    name: 'passphrase file is a directory',
    args: (p) => issue(p, 'api', '--passphrase-file', p.in),
    want: /--passphrase-file .* is a directory/,
  },
  {
    name: 'empty passphrase file',
    args: (p) => issue(p, 'api', '--passphrase-file', join(p.in, 'empty')),
    want: /--passphrase-file .* is empty/,
  },
  {
    name: 'unreadable p12 password file',
    args: (p) => ['export', 'existing', '--p12', join(p.root, 'out.p12'), '--password-file', join(p.in, 'nope.pass'), '--dir', p.ca],
    want: /--password-file .* does not exist/,
  },
  {
    name: 'p12 password file is a directory',
    args: (p) => ['export', 'existing', '--p12', join(p.root, 'out.p12'), '--password-file', p.in, '--dir', p.ca],
    want: /--password-file .* is a directory/,
  },

  // --out
  {
    name: '--out pointing at a file',
    args: (p) => issue(p, 'api', '--out', join(p.in, 'plain-file')),
    want: /--out .* is not a directory/,
  },
  {
    name: '--out below a file',
    args: (p) => issue(p, 'api', '--out', join(p.in, 'plain-file', 'sub')),
    want: /--out .* lies below a file/,
  },
  // mkdirSync({ recursive: true }) loops forever where mkdir answers ENOENT (inside /proc).
  {
    name: '--out inside /proc',
    args: (p) => issue(p, 'api', '--out', '/proc/svcca-no-such/set'),
    want: /cannot create the directory \/proc\/svcca-no-such/,
  },
  { name: '--out the CA directory itself', args: (p) => issue(p, 'api', '--out', p.ca), want: /--out .* is the CA directory or inside it/ },
  {
    name: '--out inside the CA directory, outside issued/',
    args: (p) => issue(p, 'api', '--out', join(p.ca, 'mine')),
    want: /--out .*mine is the CA directory or inside it/,
  },
  { name: '--out holding the CA directory', args: (p) => issue(p, 'api', '--out', p.root), want: /--out .* holds the CA directory/ },
  {
    name: "--out another service's set folder",
    args: (p) => issue(p, 'api', '--out', join(p.root, 'sets', 'existing')),
    want: /--out .*sets\/existing holds the credential set of existing; give each service a folder of its own/,
  },
  {
    name: 'a sub-second --ttl',
    args: (p) => issue(p, 'api', '--ttl', '500ms'),
    want: /--ttl 500ms: certificate lifetimes count whole seconds; use 1s or more/,
  },
  {
    name: 'a --ttl with a fraction of a second',
    args: (p) => issue(p, 'api', '--ttl', '1500ms'),
    want: /--ttl 1500ms: certificate lifetimes count whole seconds/,
  },
  {
    name: 'a service path segment named like a set file',
    args: (p) => issue(p, 'existing/tls.key'),
    want: /a segment named tls\.key would collide with the files of a credential set/,
  },
  {
    name: 'init --dir inside /proc',
    args: () => ['init', '--trust-domain', 'example.org', '--dir', '/proc/svcca-no-such/ca'],
    want: /cannot create the directory \/proc\/svcca-no-such/,
  },
  {
    name: 'init --dir below a file',
    args: (p) => ['init', '--trust-domain', 'example.org', '--dir', join(p.in, 'plain-file', 'ca')],
    want: /--dir .* lies below a file, not a directory/,
  },
];

describe('bad input: exit 1, one line, nothing written', () => {
  let ca: TestCa;
  let paths: Paths;
  before(() => {
    ca = makeCa();
    ca.issue('existing');
    const inputs = join(ca.root, 'inputs');
    paths = { ca: ca.dir, root: ca.root, in: inputs };
    mkdirSync(inputs);
    mkdirSync(join(ca.root, 'foreign'));
    writeFileSync(join(ca.root, 'foreign', 'notes.txt'), 'not a CA');
    writeFileSync(join(inputs, 'plain-file'), 'just a file');
    writeFileSync(join(inputs, 'empty'), '');
    writeFileSync(join(inputs, 'garbage.csr'), 'this is not a CSR at all\n');
    writeFileSync(
      join(inputs, 'garbage-pem.csr'),
      `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from('0123456789abcdef'.repeat(8)).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
    );
    writeFileSync(
      join(inputs, 'garbage-cert.pem'),
      `-----BEGIN CERTIFICATE-----\n${Buffer.from('garbage'.repeat(20)).toString('base64')}\n-----END CERTIFICATE-----\n`,
    );
    writeFileSync(join(inputs, 'wrong.pass'), 'wrong\n');
    const req = (out: string, keyArgs: string[], keyOut = join(inputs, `${out}.key`)) => {
      const res = run('openssl', [
        'req',
        '-new',
        ...keyArgs,
        '-nodes',
        '-keyout',
        keyOut,
        '-subj',
        '/CN=bogus-name',
        '-out',
        join(inputs, out),
      ]);
      assert.equal(res.status, 0, res.stderr);
    };
    req('good.csr', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], join(inputs, 'owner.key'));
    req('ed25519.csr', ['-newkey', 'ed25519']);
    req('rsa1024.csr', ['-newkey', 'rsa:1024']);
    // One byte of the signed request info changed: still a well-formed CSR, wrong signature.
    const der = Buffer.from(readFileSync(join(inputs, 'good.csr'), 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('bogus-name'));
    assert.ok(at > 0);
    der[at] = 'B'.charCodeAt(0);
    writeFileSync(
      join(inputs, 'tampered.csr'),
      `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`,
    );
    const check = run('openssl', ['req', '-in', join(inputs, 'tampered.csr'), '-noout', '-verify']);
    assert.match(check.stdout + check.stderr, /verify failure/, 'openssl agrees the tampered CSR is bad');
    // the good CSR itself is accepted: the refusals below are about the damage only
    const ok = ca.svcca(['issue', 'from-csr', '--csr', join(inputs, 'good.csr'), '--out', join(ca.root, 'from-csr')]);
    assert.equal(ok.status, 0, ok.stderr);
    chmodSync(join(inputs, 'owner.key'), 0o600);
  });
  after(() => ca.cleanup());

  it('covers a distinct name per row', () => {
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length);
  });

  for (const c of CASES) {
    it(c.name, () => {
      const before = snapshot(paths.root);
      const args = c.args(paths);
      const res = runSvcca(args, { env: cleanEnv(c.env ?? { SVCCA_PASSPHRASE: TEST_PASSPHRASE }), cwd: paths.root });
      const after = snapshot(paths.root);
      assert.equal(res.status, 1, `exit code (stderr: ${res.stderr})`);
      assert.match(res.stderr, /^svcca: [^\n]+\n$/, `exactly one line on stderr: ${JSON.stringify(res.stderr)}`);
      assert.doesNotMatch(res.stderr, /\bat .*:\d+:\d+|\bat (async )?\w+ \(|node:internal|\.js:\d+/, 'no stack trace');
      assert.match(res.stderr, /; ./, 'what to do, on the same line');
      assert.match(res.stderr, c.want);
      assert.equal(res.stdout, '', 'nothing on stdout');
      assert.deepEqual(diff(before, after), [], 'no file written, changed or removed');
    });
  }
});

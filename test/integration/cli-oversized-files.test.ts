/**
 * Every file svcca reads is capped (security issue: a 100 MB base64 "CSR" took 16 s and
 * 3.2 GB of RSS before its error). An oversized file is refused from its size alone: one
 * line naming the file, its size and the limit, exit 1, nothing written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { existsSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, runSvcca, cleanEnv, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { FILE_CAPS } from '../../common/capped-file.js';

const HUNDRED_MB = 100 * 1024 * 1024;

/** A sparse file of `size` bytes: nothing is written to disk, but fstat says 100 MB. */
function sparseFile(path: string, size: number): string {
  writeFileSync(path, '');
  truncateSync(path, size);
  return path;
}

function assertRefused(res: { status: number; stdout: string; stderr: string }, want: RegExp): void {
  assert.equal(res.status, 1, `exit code (stderr: ${res.stderr})`);
  assert.match(res.stderr, /^svcca: [^\n]+\n$/, `exactly one line on stderr: ${JSON.stringify(res.stderr)}`);
  assert.doesNotMatch(res.stderr, /\bat .*:\d+:\d+|node:internal/, 'no stack trace');
  assert.match(res.stderr, want);
  assert.equal(res.stdout, '');
}

describe('oversized input files are refused before they are read', () => {
  let ca: TestCa;
  before(() => {
    ca = makeCa();
  });
  after(() => ca.cleanup());

  it('a 100 MB --csr: one line with its size and the 64 KiB limit, exit 1, nothing issued', () => {
    const csr = sparseFile(join(ca.root, 'huge.csr'), HUNDRED_MB);
    const res = ca.svcca(['issue', 'api', '--csr', csr, '--out', join(ca.root, 'api')]);
    assertRefused(
      res,
      new RegExp(`--csr ${csr}: is larger than ${FILE_CAPS.csr.maxBytes} bytes, the limit for a CSR \\(it is ${HUNDRED_MB} bytes\\); `),
    );
    assert.equal(existsSync(join(ca.root, 'api')), false, 'no credential set written');
    assert.doesNotMatch(ca.svcca(['list', '--json']).stdout, /"api"/, 'nothing recorded in the ledger');
  });

  it('a 100 MB --passphrase-file: refused the same way', () => {
    const pass = sparseFile(join(ca.root, 'huge.pass'), HUNDRED_MB);
    const res = runSvcca(['issue', 'api', '--passphrase-file', pass, '--dir', ca.dir], { env: cleanEnv() });
    assertRefused(
      res,
      new RegExp(
        `--passphrase-file ${pass}: is larger than ${FILE_CAPS.secret.maxBytes} bytes, the limit for a passphrase or password file \\(it is ${HUNDRED_MB} bytes\\)`,
      ),
    );
  });

  it('a --password-file for export: refused the same way', () => {
    ca.issue('exported');
    const pass = sparseFile(join(ca.root, 'huge-p12.pass'), HUNDRED_MB);
    const p12 = join(ca.root, 'out.p12');
    const res = ca.svcca(['export', 'exported', '--p12', p12, '--password-file', pass]);
    assertRefused(res, new RegExp(`--password-file ${pass}: is larger than ${FILE_CAPS.secret.maxBytes} bytes`));
    assert.equal(existsSync(p12), false);
  });

  it('inspect of a file past the CRL limit: refused, naming the file', () => {
    const pem = sparseFile(join(ca.root, 'huge.pem'), FILE_CAPS.crl.maxBytes + 1);
    const res = runSvcca(['inspect', pem, '--dir', ca.dir], { env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }) });
    assertRefused(res, new RegExp(`${pem}: is larger than ${FILE_CAPS.crl.maxBytes} bytes, the limit for a CRL file`));
  });

  it('a --policy file past 1 MiB: refused, naming the file', () => {
    const policy = sparseFile(join(ca.root, 'huge.yaml'), HUNDRED_MB);
    const res = runSvcca(['policy', 'check', 'a', 'b', '--policy', policy]);
    assertRefused(res, new RegExp(`${policy}: is larger than 1048576 bytes, the limit for a policy \\(it is ${HUNDRED_MB} bytes\\)`));
  });

  it('an oversized key in the CA directory: refused as such, not as "missing"', () => {
    const copy = makeCa();
    try {
      sparseFile(join(copy.dir, 'intermediate.key'), HUNDRED_MB);
      const before = readdirSync(copy.dir).sort();
      const res = copy.svcca(['issue', 'api', '--out', join(copy.root, 'api')]);
      assertRefused(
        res,
        /intermediate\.key: is larger than 65536 bytes, the limit for a private key file \(it is 104857600 bytes\); restore it from your backup/,
      );
      assert.deepEqual(readdirSync(copy.dir).sort(), before);
    } finally {
      copy.cleanup();
    }
  });
});

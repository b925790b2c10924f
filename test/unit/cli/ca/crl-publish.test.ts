import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildCrlDer } from '../../../../cli/ca/crl-writer.js';
import { summarizeCrl } from '../../../../cli/ca/crl-publish.js';
import { SvccaError } from '../../../../common/errors.js';

/** A throwaway self-signed issuer made by openssl, so the writer has a Name to copy. */
function issuer(): { der: Buffer; key: KeyObject } {
  const dir = mkdtempSync(join(tmpdir(), 'crl-summary-'));
  try {
    const keyPath = join(dir, 'k.pem');
    const certPath = join(dir, 'c.pem');
    const res = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-subj',
      '/CN=test issuer',
      '-days',
      '1',
    ]);
    assert.equal(res.status, 0, String(res.stderr));
    return { der: Buffer.from(new X509Certificate(readFileSync(certPath)).raw), key: createPrivateKey(readFileSync(keyPath)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('summarizeCrl', () => {
  const { der, key } = issuer();
  const base = { issuerDer: der, issuerKeyId: '0a0b0c', issuerKey: key, keyType: 'ecdsa-p256' as const };
  const cases: { name: string; number: bigint; entries: number }[] = [
    { name: 'an empty CRL', number: 1n, entries: 0 },
    { name: 'a few entries', number: 7n, entries: 3 },
    { name: 'a large number and 2,000 entries', number: 2n ** 70n, entries: 2000 },
  ];
  for (const c of cases) {
    it(`reads back ${c.name}`, () => {
      const thisUpdate = new Date(Date.UTC(2026, 10, 25, 12, 0, 0));
      const nextUpdate = new Date(Date.UTC(2026, 10, 26, 12, 0, 0));
      const crl = buildCrlDer({
        ...base,
        number: c.number,
        thisUpdate,
        nextUpdate,
        entries: Array.from({ length: c.entries }, (_, i) => ({
          serial: (0x4000 + i).toString(16),
          revokedAt: thisUpdate,
          reasonCode: i % 2 ? 1 : 0,
        })),
      });
      const s = summarizeCrl(crl);
      assert.deepEqual(s, { authorityKeyId: '0a0b0c', number: c.number, thisUpdate, nextUpdate, entries: c.entries });
    });
  }
  it('a generalized time after 2049 reads back', () => {
    const thisUpdate = new Date(Date.UTC(2051, 0, 2, 3, 4, 5));
    const s = summarizeCrl(buildCrlDer({ ...base, number: 1n, thisUpdate, nextUpdate: thisUpdate, entries: [] }));
    assert.equal(s.thisUpdate.getTime(), thisUpdate.getTime());
  });
  it('garbage is one clear error', () => {
    assert.throws(
      () => summarizeCrl(Buffer.from('not a crl')),
      (err: unknown) => err instanceof SvccaError && /cannot be read/.test(err.message),
    );
  });
});

describe('buildCrlDer progress', () => {
  it('tells its progress every 2,000 entries, and the CRL it signs is the same as without it', () => {
    const { der, key } = issuer();
    const thisUpdate = new Date(Date.UTC(2026, 10, 25, 12, 0, 0));
    const params = {
      issuerDer: der,
      issuerKeyId: '0a0b0c',
      issuerKey: key,
      keyType: 'ecdsa-p256' as const,
      number: 5n,
      thisUpdate,
      nextUpdate: new Date(thisUpdate.getTime() + 86_400_000),
      entries: Array.from({ length: 5_000 }, (_, i) => ({ serial: (i + 1).toString(16), revokedAt: thisUpdate })),
    };
    const told: number[] = [];
    const withProgress = summarizeCrl(buildCrlDer({ ...params, onEntries: (done) => told.push(done) }));
    assert.deepEqual(told, [0, 2_000, 4_000]);
    assert.equal(withProgress.entries, 5_000);
    assert.equal(summarizeCrl(buildCrlDer(params)).entries, 5_000);
  });
});

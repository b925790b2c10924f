import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { crlRollbackProblem, crlSetExpired, loadCrlPem } from '../../../common/crl.js';
import { InputError } from '../../../common/errors.js';
import { encodePem } from '../../../common/pem.js';
import { createIntermediate, createRootCa, crlPemFile, issueSvid, makeCrlDer, type Signer } from '../../helpers/attacker-ca.js';

describe('loadCrlPem (common/crl.ts)', () => {
  let root: Signer;
  let inter: Signer;
  let otherRoot: Signer;
  let otherInter: Signer;
  before(async () => {
    root = await createRootCa('test root');
    inter = await createIntermediate(root, { cn: 'test intermediate', permittedUriHost: 'example.org' });
    otherRoot = await createRootCa('other root');
    otherInter = await createIntermediate(otherRoot, { cn: 'test intermediate' });
  });

  it('reads the contract layout: root CRL, intermediate CRL, then the intermediate', async () => {
    const leaf = await issueSvid(inter, 'spiffe://example.org/a');
    const pem = crlPemFile(
      [makeCrlDer(root, { crlNumber: 1n }), makeCrlDer(inter, { serials: [leaf.serialHex, 'ff00'], crlNumber: 7n })],
      [inter],
    );
    const set = loadCrlPem(pem, [root.certDer]);
    assert.equal(set.crls.length, 2);
    assert.equal(set.crls[1]!.crlNumber, 7n);
    assert.equal(set.crls[1]!.revokedCount, 2);
    assert.ok(set.revoked.has(leaf.serialHex));
    assert.ok(set.revoked.has('ff00'));
    assert.equal(crlSetExpired(set), false);
  });

  it('reports an expired CRL but keeps its entries', () => {
    const past = new Date(Date.now() - 3_600_000);
    const pem = crlPemFile(
      [makeCrlDer(inter, { serials: ['abcd'], thisUpdate: new Date(Date.now() - 7_200_000), nextUpdate: past })],
      [inter],
    );
    const set = loadCrlPem(pem, [root.certDer]);
    assert.equal(crlSetExpired(set), true);
    assert.ok(set.revoked.has('abcd'));
  });

  const refusals: { name: string; build: () => { pem: string; roots: Buffer[] }; want: RegExp }[] = [
    {
      name: 'a corrupted signature',
      build: () => ({ pem: crlPemFile([makeCrlDer(inter, { corruptSignature: true })], [inter]), roots: [root.certDer] }),
      want: /signature does not verify/,
    },
    {
      name: 'a CRL from another CA with the same issuer name',
      build: () => ({ pem: crlPemFile([makeCrlDer(otherInter)], [inter]), roots: [root.certDer] }),
      want: /signature does not verify|neither in ca.crt/,
    },
    {
      name: 'an intermediate that does not chain to ca.crt',
      build: () => ({ pem: crlPemFile([makeCrlDer(otherInter)], [otherInter]), roots: [root.certDer] }),
      want: /does not chain to ca.crt/,
    },
    {
      name: 'a CRL whose issuer is missing',
      build: () => ({ pem: crlPemFile([makeCrlDer(inter)], []), roots: [root.certDer] }),
      want: /neither in ca.crt/,
    },
    { name: 'no CRL at all', build: () => ({ pem: inter.certPem, roots: [root.certDer] }), want: /holds no X509 CRL block/ },
    {
      name: 'a private key block',
      build: () => ({
        pem: `${crlPemFile([makeCrlDer(root)], [])}${encodePem('PRIVATE KEY', Buffer.from([1, 2, 3]))}`,
        roots: [root.certDer],
      }),
      want: /"PRIVATE KEY" block/,
    },
    {
      name: 'garbage DER',
      build: () => ({ pem: encodePem('X509 CRL', Buffer.from('30820000deadbeef', 'hex')), roots: [root.certDer] }),
      want: /malformed/,
    },
    {
      name: 'truncated DER',
      build: () => ({ pem: encodePem('X509 CRL', makeCrlDer(root).subarray(0, 40)), roots: [root.certDer] }),
      want: /malformed/,
    },
  ];
  for (const { name, build, want } of refusals) {
    it(`refuses ${name}`, () => {
      const { pem, roots } = build();
      assert.throws(
        () => loadCrlPem(pem, roots),
        (err: unknown) => err instanceof InputError && want.test(err.message),
      );
    });
  }

  it('reads and verifies 100,000 entries', () => {
    const serials: bigint[] = [];
    for (let i = 1; i <= 100_000; i++) serials.push((BigInt(i) << 64n) | 0x1234n);
    const pem = crlPemFile([makeCrlDer(root), makeCrlDer(inter, { serials, crlNumber: 9n })], [inter]);
    const set = loadCrlPem(pem, [root.certDer]);
    assert.equal(set.revoked.size, 100_000);
    // serialToHex's form: whole bytes, so an odd-length value keeps its leading zero nibble.
    const hex = ((77_777n << 64n) | 0x1234n).toString(16);
    assert.ok(set.revoked.has(hex.length % 2 ? `0${hex}` : hex));
  });

  it('notices a CRL number going backwards (a replayed old file)', () => {
    const current = loadCrlPem(crlPemFile([makeCrlDer(inter, { crlNumber: 5n })], [inter]), [root.certDer]);
    const older = loadCrlPem(crlPemFile([makeCrlDer(inter, { crlNumber: 4n })], [inter]), [root.certDer]);
    const newer = loadCrlPem(crlPemFile([makeCrlDer(inter, { crlNumber: 6n })], [inter]), [root.certDer]);
    assert.match(crlRollbackProblem(current, older) ?? '', /lower than 5/);
    assert.equal(crlRollbackProblem(current, newer), undefined);
  });
});

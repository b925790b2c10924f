import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { buildCsrPem } from '../../../common/csr-builder.js';
import { generateKey, KEY_TYPES } from '../../../common/keys.js';
import { csrKeyFromPem, csrPublicKeyFromPem } from '../../../cli/ca/csr.js';

describe('the CSR the clients send', () => {
  for (const type of KEY_TYPES) {
    it(`${type}: the CA's CSR reader verifies it and reads back the same public key`, async () => {
      const key = generateKey(type);
      const spki = await csrPublicKeyFromPem(buildCsrPem(key, 'payment-service'), 'the CSR');
      assert.deepEqual(spki, createPublicKey(key).export({ type: 'spki', format: 'der' }));
    });

    it(`${type}: the reader names the key type it found`, async () => {
      const read = await csrKeyFromPem(buildCsrPem(generateKey(type), 'payment-service'), 'the CSR');
      assert.equal(read.keyType, type);
    });
  }

  for (const type of ['ecdsa-p256', 'ecdsa-p384'] as const) {
    // EC keys are imported from their coordinates (cli/ca/csr.ts importSpki): the import
    // must still refuse a point that is not on the curve, before any signature check.
    it(`${type}: a CSR whose public point is off the curve is refused as an unreadable key`, async () => {
      const pem = buildCsrPem(generateKey(type), 'x');
      const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
      const point = der.indexOf(Buffer.from([0x00, 0x04]), 20) + 1; // the BIT STRING's 04||x||y
      der[point + 10] ^= 0x01; // in x: (x', y) is then on the curve with negligible chance
      const altered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      await assert.rejects(csrKeyFromPem(altered, 'the CSR'), /the CSR has a public key that cannot be read/);
    });
  }

  it('a CSR whose signature was altered is refused', async () => {
    const pem = buildCsrPem(generateKey('ecdsa-p256'), 'x');
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    der[der.length - 3] ^= 0x01;
    const altered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(csrPublicKeyFromPem(altered, 'the CSR'), /the CSR (has an invalid signature|is not a valid)/);
  });
});

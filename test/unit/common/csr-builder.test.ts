import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { buildCsrPem } from '../../../common/csr-builder.js';
import { generateKey, KEY_TYPES } from '../../../common/keys.js';
import { csrPublicKeyFromPem } from '../../../cli/ca/csr.js';

describe('the CSR the clients send', () => {
  for (const type of KEY_TYPES) {
    it(`${type}: the CA's CSR reader verifies it and reads back the same public key`, async () => {
      const key = generateKey(type);
      const spki = await csrPublicKeyFromPem(buildCsrPem(key, 'payment-service'), 'the CSR');
      assert.deepEqual(spki, createPublicKey(key).export({ type: 'spki', format: 'der' }));
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

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { exportEncryptedKeyPem, openEncryptedKey } from '../../common/keys.js';
import { PassphraseError } from '../../common/errors.js';

describe('openEncryptedKey', () => {
  it('says "wrong passphrase" for every wrong passphrase, including those whose padding happens to check out', () => {
    const pem = exportEncryptedKeyPem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'the right one');
    const rawCodes = new Map<string, number>();
    for (let i = 0; i < 1500; i++) {
      const wrong = `wrong${i}`;
      try {
        createPrivateKey({ key: pem, format: 'pem', passphrase: wrong });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'none';
        rawCodes.set(code, (rawCodes.get(code) ?? 0) + 1);
      }
      assert.throws(() => openEncryptedKey(pem, wrong, 'the intermediate key'), (err: unknown) => err instanceof PassphraseError && /^wrong passphrase for the intermediate key$/.test((err as Error).message), wrong);
    }
    // ~1 in 256 decrypts to valid padding: without such a case this test proves nothing.
    assert.ok([...rawCodes.keys()].some((c) => c !== 'ERR_OSSL_BAD_DECRYPT'), `only ${[...rawCodes.keys()].join(', ')} seen`);
    assert.equal(openEncryptedKey(pem, 'the right one', 'the intermediate key').asymmetricKeyType, 'ec');
  });
});

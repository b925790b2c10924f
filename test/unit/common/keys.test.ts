import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import {
  encryptPrivateKeyDer,
  exportEncryptedKeyPem,
  generateKey,
  KEY_PBKDF2_ITERATIONS,
  KEY_TYPES,
  keyTypeOf,
  openEncryptedKey,
} from '../../../common/keys.js';
import { encodePem } from '../../../common/pem.js';
import { readTlv, children, readIntegerHex } from '../../../common/der-reader.js';
import { PassphraseError } from '../../../common/errors.js';

describe('openEncryptedKey', () => {
  it('says "wrong passphrase" for every wrong passphrase, including those whose padding happens to check out', () => {
    // OpenSSL's default count keeps 3,000 decryptions quick; the format is the same.
    const pem = encodePem(
      'ENCRYPTED PRIVATE KEY',
      encryptPrivateKeyDer(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'the right one', 2048),
    );
    const rawCodes = new Map<string, number>();
    for (let i = 0; i < 1500; i++) {
      const wrong = `wrong${i}`;
      try {
        createPrivateKey({ key: pem, format: 'pem', passphrase: wrong });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'none';
        rawCodes.set(code, (rawCodes.get(code) ?? 0) + 1);
      }
      assert.throws(
        () => openEncryptedKey(pem, wrong, 'the intermediate key'),
        (err: unknown) => err instanceof PassphraseError && /^wrong passphrase for the intermediate key$/.test((err as Error).message),
        wrong,
      );
    }
    // ~1 in 256 decrypts to valid padding: without such a case this test proves nothing.
    assert.ok(
      [...rawCodes.keys()].some((c) => c !== 'ERR_OSSL_BAD_DECRYPT'),
      `only ${[...rawCodes.keys()].join(', ')} seen`,
    );
    assert.equal(openEncryptedKey(pem, 'the right one', 'the intermediate key').asymmetricKeyType, 'ec');
  });

  it(`writes CA keys with ${KEY_PBKDF2_ITERATIONS} PBKDF2 rounds, readable by node:crypto and by openssl pkey`, () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const pem = exportEncryptedKeyPem(key, 'pass phrase é');
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    // EncryptedPrivateKeyInfo → AlgorithmIdentifier → PBES2-params → keyDerivationFunc → PBKDF2-params → iterationCount
    const at = (buf: Buffer, path: number[]) => path.reduce((t, i) => children(buf, t)[i]!, readTlv(buf, 0, buf.length));
    assert.equal(BigInt(`0x${readIntegerHex(der, at(der, [0, 1, 0, 1, 1]))}`), BigInt(KEY_PBKDF2_ITERATIONS));
    const opened = openEncryptedKey(pem, 'pass phrase é', 'the key');
    assert.deepEqual(opened.export({ type: 'pkcs8', format: 'der' }), key.export({ type: 'pkcs8', format: 'der' }));
  });
});

describe('keyTypeOf', () => {
  // Node 20 can deadlock when a generated key's asymmetricKeyDetails is read while the
  // job that made it is collected (common/keys.ts): a key generateKey() made is never asked.
  it('never reads asymmetricKeyDetails of a key generateKey made, and still reads it for any other key', () => {
    for (const type of KEY_TYPES) {
      const key = generateKey(type);
      Object.defineProperty(key, 'asymmetricKeyDetails', {
        get() {
          throw new Error('asymmetricKeyDetails was read');
        },
      });
      assert.equal(keyTypeOf(key), type);
    }
    const parsed = createPrivateKey(generateKey('ecdsa-p384').export({ type: 'pkcs8', format: 'pem' }));
    assert.equal(keyTypeOf(parsed), 'ecdsa-p384');
    const other = generateKeyPairSync('ec', { namedCurve: 'secp521r1' }).privateKey;
    assert.equal(keyTypeOf(other), undefined);
  });
});

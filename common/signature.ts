/**
 * The signature algorithm an issuer's key type signs with, as DER for the
 * certificate/CRL and as node:crypto's digest name.
 */
import { sign as cryptoSign, type KeyObject } from 'node:crypto';
import { bitString, nullValue, oid, seq } from './der.js';
import type { KeyType } from './keys.js';

export function signatureAlgorithm(keyType: KeyType): { der: Buffer; hash: string } {
  switch (keyType) {
    case 'ecdsa-p256':
      return { der: seq(oid('1.2.840.10045.4.3.2')), hash: 'sha256' };
    case 'ecdsa-p384':
      return { der: seq(oid('1.2.840.10045.4.3.3')), hash: 'sha384' };
    case 'rsa-2048':
    case 'rsa-3072':
      return { der: seq(oid('1.2.840.113549.1.1.11'), nullValue()), hash: 'sha256' };
  }
}

/** SEQUENCE { tbs, algorithm, BIT STRING signature }: a signed certificate or CRL. */
export function signTbs(tbs: Buffer, key: KeyObject, keyType: KeyType): Buffer {
  const alg = signatureAlgorithm(keyType);
  // node:crypto signs ECDSA as DER and RSA as PKCS#1 v1.5: what X.509 expects.
  return seq(tbs, alg.der, bitString(cryptoSign(alg.hash, tbs, key)));
}

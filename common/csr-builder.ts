/**
 * A PKCS#10 certificate signing request for a key made here (`svcca renew`,
 * `svcca bootstrap`, the sidecar's `identity.renew`), written as DER directly with the
 * same helpers the CA signs leaves with. The CA reads only its public key: the subject
 * (CN = the service, for people reading it with openssl) is informative.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { explicit, integer, oid, seq, setOf, tlv } from './der.js';
import { encodePem } from './pem.js';
import { keyTypeOf } from './keys.js';
import { signTbs } from './signature.js';
import { UsageError } from './errors.js';

const OID_CN = '2.5.4.3';
const MAX_CN = 64;

/** A signed CSR (PEM) for `key`, with subject CN = `commonName` when it fits X.520's bound. */
export function buildCsrPem(key: KeyObject, commonName: string): string {
  const keyType = keyTypeOf(key);
  if (!keyType) throw new UsageError('the key for the CSR has an unsupported type', 'use ECDSA P-256/P-384 or RSA 2048/3072');
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const subject =
    commonName.length > 0 && commonName.length <= MAX_CN ? seq(setOf(seq(oid(OID_CN), tlv(0x0c, Buffer.from(commonName, 'utf8'))))) : seq();
  // version 0, subject, SubjectPublicKeyInfo, attributes [0] (none)
  const info = seq(integer(0n), subject, spki, explicit(0, Buffer.alloc(0)));
  return encodePem('CERTIFICATE REQUEST', signTbs(info, key, keyType));
}

/**
 * Making the CA's own certificates: the self-signed root (`init`) and an intermediate
 * signed by it (`init` and `rotate --intermediate` both use signIntermediate).
 */
import { webcrypto, type KeyObject } from 'node:crypto';
import { CaStateError } from '../../common/errors.js';
import { encodePem } from '../../common/pem.js';
import { parseCertificate } from '../../common/x509.js';
import { generateKey, signingAlgorithm, toSigningCryptoKey, type KeyType } from '../../common/keys.js';
import {
  BACKDATE_MS,
  INTERMEDIATE_LIFETIME_MS,
  ROOT_LIFETIME_MS,
  intermediateExtensions,
  intermediateSubject,
  randomSerialHex,
  rootExtensions,
  rootSubject,
} from './profiles.js';
import { spkiOf, type IssuerCert } from './authority.js';
import { x509 } from './x509-lib.js';

/** A CA certificate with its (unencrypted, in-memory) key. */
export interface CaKeyPair {
  readonly cert: IssuerCert;
  readonly key: KeyObject;
}

async function publicCryptoKey(key: KeyObject, keyType: KeyType): Promise<CryptoKey> {
  return (await webcrypto.subtle.importKey('spki', spkiOf(key), signingAlgorithm(keyType).importAlg as never, true, [
    'verify',
  ])) as CryptoKey;
}

function issuerCert(raw: ArrayBuffer): IssuerCert {
  const der = Buffer.from(raw);
  return { pem: encodePem('CERTIFICATE', der), info: parseCertificate(der) };
}

/** A new root key and its self-signed certificate, valid ROOT_LIFETIME_MS from `now` (ms). */
export async function selfSignRoot(keyType: KeyType, trustDomain: string, now: number): Promise<CaKeyPair> {
  const key = generateKey(keyType);
  const publicKey = await publicCryptoKey(key, keyType);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: rootSubject(trustDomain),
    issuer: rootSubject(trustDomain),
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + ROOT_LIFETIME_MS),
    publicKey,
    signingKey: await toSigningCryptoKey(key, keyType),
    signingAlgorithm: signingAlgorithm(keyType).signAlg,
    extensions: await rootExtensions(publicKey),
  });
  return { cert: issuerCert(cert.rawData), key };
}

export interface IntermediateRequest {
  readonly root: CaKeyPair;
  readonly keyType: KeyType;
  readonly trustDomain: string;
  /** 1 for the first intermediate, counted up by each roll; shown in its subject. */
  readonly generation: number;
  readonly now: number;
}

/**
 * A new intermediate key and its certificate signed by the root: INTERMEDIATE_LIFETIME_MS,
 * never past the root's end, pathlen 0 and a name constraint on the trust domain.
 */
export async function signIntermediate(req: IntermediateRequest): Promise<CaKeyPair> {
  const { root, keyType, now } = req;
  const rootKeyId = root.cert.info.subjectKeyId;
  if (!rootKeyId) throw new CaStateError('root.crt has no subject key identifier', 'restore it from your backup of the CA directory');
  const key = generateKey(keyType);
  const publicKey = await publicCryptoKey(key, keyType);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: intermediateSubject(req.trustDomain, req.generation),
    issuer: new x509.X509Certificate(new Uint8Array(root.cert.info.der)).subjectName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(now + INTERMEDIATE_LIFETIME_MS, root.cert.info.notAfter.getTime())),
    publicKey,
    signingKey: await toSigningCryptoKey(root.key, keyType),
    signingAlgorithm: signingAlgorithm(keyType).signAlg,
    extensions: await intermediateExtensions(publicKey, rootKeyId, req.trustDomain),
  });
  return { cert: issuerCert(cert.rawData), key };
}

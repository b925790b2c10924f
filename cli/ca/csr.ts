/**
 * Reading a CSR: its signature is checked and only its public key is used. Names
 * always come from the command line, never from the CSR.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { InputError, SvccaError, errnoCode } from '../../common/errors.js';
import { FILE_CAPS, readCappedText } from '../../common/capped-file.js';
import { decodePemBlocks } from '../../common/pem.js';
import { keyTypeOf, describeKey, type KeyType } from '../../common/keys.js';
import { children, DerError, expectTag, rawOf, readOid, readTlv } from '../../common/der-reader.js';
import { SIGNATURE_DIGESTS } from '../../common/crl.js';

export async function readCsrPublicKey(path: string): Promise<Buffer> {
  let text: string;
  try {
    text = readCappedText(path, FILE_CAPS.csr, {
      label: `--csr ${path}`,
      hint: 'a CSR is a few kilobytes of PEM; check that --csr names the request file',
    });
  } catch (err) {
    if (err instanceof SvccaError) throw err;
    const code = errnoCode(err);
    throw new InputError(
      `--csr ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`,
      'give the path of a PEM certificate signing request',
    );
  }
  return csrPublicKeyFromPem(text, `--csr ${path}`);
}

/**
 * The public key (SPKI DER) of a PEM CSR whose signature verifies; `label` starts every
 * error line (`--csr FILE`, `the CSR`). Anything else the CSR says is ignored.
 */
export async function csrPublicKeyFromPem(text: string, label: string): Promise<Buffer> {
  return (await csrKeyFromPem(text, label)).spki;
}

/** A verified CSR's public key: its SPKI DER and key type (what issuance needs). */
export interface CsrKey {
  readonly spki: Buffer;
  readonly keyType: KeyType;
}

/** csrPublicKeyFromPem, with the key type it found (so that issuance need not parse the key again). */
export async function csrKeyFromPem(text: string, label: string): Promise<CsrKey> {
  const blocks = decodePemBlocks(text);
  const csrBlock = blocks.find((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
  if (!csrBlock) {
    const what = blocks.some((b) => b.label === 'CERTIFICATE')
      ? 'a certificate, not a CSR'
      : blocks.length
        ? `a ${blocks[0]!.label}, not a CSR`
        : 'no PEM CSR';
    throw new InputError(`${label} holds ${what}`, 'make one with `openssl req -new -key tls.key -subj /CN=<service> -out req.csr`');
  }
  let parsed: ParsedCsr;
  try {
    parsed = parseCsrDer(csrBlock.der);
  } catch (err) {
    throw new InputError(`${label} is not a valid certificate signing request`, 'make a new CSR with openssl req -new', err);
  }
  const { spki } = parsed;
  let publicKey: KeyObject;
  let type: KeyType | undefined;
  try {
    ({ key: publicKey, type } = importSpki(spki));
  } catch (err) {
    throw new InputError(`${label} has a public key that cannot be read`, 'make a new CSR', err);
  }
  if (!type)
    throw new InputError(`${label} uses an unsupported key (${describeKey(publicKey)})`, 'use an ECDSA P-256/P-384 or RSA 2048/3072 key');
  const digest = SIGNATURE_DIGESTS[parsed.signatureOid];
  if (!digest)
    throw new InputError(
      `${label} is signed with an unsupported algorithm (${parsed.signatureOid})`,
      'sign it with ECDSA or RSA PKCS#1 v1.5 over SHA-2 (openssl req does by default)',
    );
  let valid = false;
  try {
    valid = cryptoVerify(digest, parsed.info, publicKey, parsed.signature);
  } catch {
    valid = false;
  }
  if (!valid)
    throw new InputError(`${label} has an invalid signature`, 'the CSR was altered or damaged; make a new one with the private key');
  return { spki, keyType: type };
}

/**
 * The DER of an uncompressed P-256 or P-384 SubjectPublicKeyInfo before its point: a
 * SEQUENCE of the id-ecPublicKey/curve AlgorithmIdentifier and a BIT STRING of 04||x||y.
 */
const EC_SPKI_PREFIXES = [
  { prefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), crv: 'P-256', size: 32, type: 'ecdsa-p256' },
  { prefix: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'), crv: 'P-384', size: 48, type: 'ecdsa-p384' },
] as const;

/**
 * A public key from SPKI DER, and its type. An uncompressed P-256/P-384 key (every CSR
 * svcca's clients and openssl make) is imported from its coordinates as a JWK: OpenSSL 3.0
 * decodes SPKI DER through its generic decoder set-up, about twice the time, on every
 * renewal `svcca serve` answers. The JWK import still refuses a point off the curve, and
 * the SPKI recorded and certified is the same DER either way. Anything else goes through DER.
 */
function importSpki(spki: Buffer): { key: KeyObject; type: KeyType | undefined } {
  for (const ec of EC_SPKI_PREFIXES) {
    if (spki.length !== ec.prefix.length + 1 + 2 * ec.size) continue;
    if (!spki.subarray(0, ec.prefix.length).equals(ec.prefix) || spki[ec.prefix.length] !== 0x04) continue;
    const point = spki.subarray(ec.prefix.length + 1);
    const key = createPublicKey({
      key: {
        kty: 'EC',
        crv: ec.crv,
        x: point.subarray(0, ec.size).toString('base64url'),
        y: point.subarray(ec.size).toString('base64url'),
      },
      format: 'jwk',
    });
    return { key, type: ec.type };
  }
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  return { key, type: keyTypeOf(key) };
}

interface ParsedCsr {
  /** CertificationRequestInfo, DER: what the signature covers. */
  readonly info: Buffer;
  readonly spki: Buffer;
  readonly signatureOid: string;
  readonly signature: Buffer;
}

/**
 * PKCS#10 (RFC 2986) read with the project's DER reader: a CSR is checked on every
 * renewal `svcca serve` answers, and @peculiar/x509 took about 2 ms a CSR for it.
 */
function parseCsrDer(der: Buffer): ParsedCsr {
  const outer = expectTag(readTlv(der, 0, der.length), 0x30, 'CertificationRequest');
  if (outer.end !== der.length) throw new DerError('trailing bytes after the CSR');
  const [infoTlv, algTlv, sigTlv] = children(der, outer);
  expectTag(infoTlv, 0x30, 'CertificationRequestInfo');
  const alg = children(der, expectTag(algTlv, 0x30, 'signatureAlgorithm'));
  expectTag(sigTlv, 0x03, 'signature');
  if (der[sigTlv!.contentStart] !== 0) throw new DerError('signature BIT STRING has unused bits');
  const fields = children(der, infoTlv!);
  expectTag(fields[0], 0x02, 'version');
  expectTag(fields[1], 0x30, 'subject');
  const spkiTlv = expectTag(fields[2], 0x30, 'subjectPKInfo');
  return {
    info: rawOf(der, infoTlv!),
    spki: rawOf(der, spkiTlv),
    signatureOid: readOid(der, alg[0]!),
    signature: der.subarray(sigTlv!.contentStart + 1, sigTlv!.end),
  };
}

/**
 * Reading a CSR: its signature is checked and only its public key is used. Names
 * always come from the command line, never from the CSR.
 */
import { createPublicKey } from 'node:crypto';
import { InputError, SvccaError, errnoCode } from '../../common/errors.js';
import { FILE_CAPS, readCappedText } from '../../common/capped-file.js';
import { decodePemBlocks } from '../../common/pem.js';
import { keyTypeOf, describeKey } from '../../common/keys.js';
import { x509 } from './x509-lib.js';

export async function readCsrPublicKey(path: string): Promise<Buffer> {
  let text: string;
  try {
    text = readCappedText(path, FILE_CAPS.csr, { label: `--csr ${path}`, hint: 'a CSR is a few kilobytes of PEM; check that --csr names the request file' });
  } catch (err) {
    if (err instanceof SvccaError) throw err;
    const code = errnoCode(err);
    throw new InputError(`--csr ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`, 'give the path of a PEM certificate signing request');
  }
  return csrPublicKeyFromPem(text, `--csr ${path}`);
}

/**
 * The public key (SPKI DER) of a PEM CSR whose signature verifies; `label` starts every
 * error line (`--csr FILE`, `the CSR`). Anything else the CSR says is ignored.
 */
export async function csrPublicKeyFromPem(text: string, label: string): Promise<Buffer> {
  const blocks = decodePemBlocks(text);
  const csrBlock = blocks.find((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
  if (!csrBlock) {
    const what = blocks.some((b) => b.label === 'CERTIFICATE') ? 'a certificate, not a CSR' : blocks.length ? `a ${blocks[0]!.label}, not a CSR` : 'no PEM CSR';
    throw new InputError(`${label} holds ${what}`, 'make one with `openssl req -new -key tls.key -subj /CN=<service> -out req.csr`');
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(new Uint8Array(csrBlock.der));
  } catch (err) {
    throw new InputError(`${label} is not a valid certificate signing request`, 'make a new CSR with openssl req -new', err);
  }
  const spki = Buffer.from(csr.publicKey.rawData);
  let publicKey;
  try {
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new InputError(`${label} has a public key that cannot be read`, 'make a new CSR', err);
  }
  const type = keyTypeOf(publicKey);
  if (!type) throw new InputError(`${label} uses an unsupported key (${describeKey(publicKey)})`, 'use an ECDSA P-256/P-384 or RSA 2048/3072 key');
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw new InputError(`${label} has an invalid signature`, 'the CSR was altered or damaged; make a new one with the private key');
  return spki;
}

/**
 * The sidecar's own identity: the credential set read as one consistent snapshot
 * (`..data` resolved once), checked to be usable — the key opens and matches the leaf,
 * the chain verifies up to a root in `ca.crt`, the leaf is an X509-SVID. Whether it is
 * within its validity is reported, not enforced: an expired certificate must not stop
 * the sidecar (a renewal may be on its way); it serves nothing until a valid one arrives.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { IdentityError, InputError } from '../../common/errors.js';
import { readCredentialSet, type LoadedCredentialSet } from '../../common/credential-set.js';
import { keyMatchesSpki, readPrivateKeyPem } from '../../common/keys.js';
import { decodeCertificates } from '../../common/pem.js';
import { parseSpiffeId } from '../../common/spiffe-id.js';
import { isSignedBy, parseCertificate, type CertInfo } from '../../common/x509.js';
import type { Identity } from '../snapshot.js';

/**
 * Why a credential set was found unusable, as a stable code (the `refusal` field of a
 * refused reload's log line).
 */
export type IdentityProblemCode = 'unreadable' | 'unparsable' | 'key-mismatch' | 'not-svid' | 'untrusted-chain';

/** An unusable credential set: IdentityError (one line for users) plus the code. */
export class IdentityProblem extends IdentityError {
  constructor(
    readonly problem: IdentityProblemCode,
    message: string,
    hint = '',
    cause?: unknown,
  ) {
    super(message, hint, cause);
  }
}

/** sha256 over the three files as read: equal hashes mean nothing to reload. */
export function credentialSetHash(set: { readonly certChainPem: string; readonly caPem: string; readonly keyPem: string }): string {
  return createHash('sha256').update(set.certChainPem).update('\0').update(set.caPem).update('\0').update(set.keyPem).digest('hex');
}

/** Reads and checks the credential set in `dir`; throws IdentityProblem with one line. */
export function loadIdentity(dir: string): Identity {
  let set: LoadedCredentialSet;
  try {
    set = readCredentialSet(dir);
  } catch (err) {
    if (err instanceof IdentityError) throw new IdentityProblem('unreadable', err.message, err.hint, err);
    throw err;
  }
  return identityFromSet(dir, set);
}

/**
 * Checks a credential set already read (so the caller can hash exactly what is judged);
 * throws IdentityProblem. Validity is not checked here (see the module comment).
 */
export function identityFromSet(dir: string, set: LoadedCredentialSet): Identity {
  const what = (name: string) => `${dir}/${name}`;
  let chain: Buffer[];
  let roots: Buffer[];
  try {
    chain = decodeCertificates(set.certChainPem, what('tls.crt'));
    roots = decodeCertificates(set.caPem, what('ca.crt'));
  } catch (err) {
    if (err instanceof InputError) throw new IdentityProblem('unparsable', err.message, err.hint, err);
    throw err;
  }
  let leaf: CertInfo;
  let rootInfos: CertInfo[];
  try {
    leaf = parseCertificate(chain[0]!, what('tls.crt'));
    rootInfos = roots.map((r) => parseCertificate(r, what('ca.crt')));
  } catch (err) {
    if (err instanceof InputError) throw new IdentityProblem('unparsable', err.message, err.hint, err);
    throw err;
  }
  let key: KeyObject;
  try {
    key = readPrivateKeyPem(set.keyPem, what('tls.key'));
  } catch (err) {
    if (err instanceof InputError) throw new IdentityProblem('unparsable', err.message, err.hint, err);
    throw err;
  }
  if (!keyMatchesSpki(key, leaf.spkiDer)) {
    throw new IdentityProblem(
      'key-mismatch',
      `${what('tls.key')} does not belong to the certificate in ${what('tls.crt')}`,
      'reissue the set with `svcca issue`, which writes both together',
    );
  }
  if (leaf.uris.length !== 1) {
    throw new IdentityProblem(
      'not-svid',
      `${what('tls.crt')} has ${leaf.uris.length} URI SANs; an X509-SVID has exactly one`,
      'issue the certificate with `svcca issue <service>`',
    );
  }
  const parsed = parseSpiffeId(leaf.uris[0]!);
  if (!parsed.ok)
    throw new IdentityProblem(
      'not-svid',
      `${what('tls.crt')} carries ${JSON.stringify(leaf.uris[0])}, which is not a SPIFFE ID: ${parsed.reason}`,
      'issue the certificate with `svcca issue <service>`',
    );
  if (leaf.isCA === true)
    throw new IdentityProblem(
      'not-svid',
      `${what('tls.crt')} is a CA certificate, not a service certificate`,
      'issue the certificate with `svcca issue <service>`',
    );
  let top = chain[0]!;
  for (let i = 1; i < chain.length; i++) {
    if (!isSignedBy(top, chain[i]!))
      throw new IdentityProblem(
        'untrusted-chain',
        `${what('tls.crt')}: certificate #${i} is not signed by certificate #${i + 1}`,
        'tls.crt must hold the leaf, then its intermediate, as `svcca issue` writes it',
      );
    top = chain[i]!;
  }
  const anchored = rootInfos.some((r) => Buffer.compare(r.der, top) === 0 || isSignedBy(top, r.der));
  if (!anchored)
    throw new IdentityProblem(
      'untrusted-chain',
      `${what('tls.crt')} does not chain to ${what('ca.crt')}`,
      'the set mixes files from two CAs; reissue it with `svcca issue`',
    );
  const fingerprint = credentialSetHash(set);
  return {
    id: parsed.id,
    leaf,
    chainPem: set.certChainPem,
    keyPem: set.keyPem,
    caPem: set.caPem,
    roots,
    fingerprint,
    sourceDir: set.sourceDir,
  };
}

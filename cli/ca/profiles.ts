/**
 * What the CA certificates contain: the root and the issuing intermediate (pathlen 0,
 * key identifiers, a critical name constraint on the trust domain). The leaf profile
 * lives in leaf-certificate.ts.
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';
import { x509 } from './x509-lib.js';

export const ROOT_LIFETIME_MS = 10 * 365 * 86_400_000;
export const INTERMEDIATE_LIFETIME_MS = 365 * 86_400_000;
export { BACKDATE_MS, MAX_CN_LENGTH, randomSerialHex } from './leaf-certificate.js';
const OID_NAME_CONSTRAINTS = '2.5.29.30';

export function rootSubject(trustDomain: string): x509.JsonName {
  return [{ O: ['svcca'] }, { CN: [`svcca root CA for ${trustDomain}`] }];
}

export function intermediateSubject(trustDomain: string, generation: number): x509.JsonName {
  return [{ O: ['svcca'] }, { CN: [`svcca intermediate CA ${generation} for ${trustDomain}`] }];
}

export function nameConstraintsExtension(trustDomain: string): x509.Extension {
  // Exactly the host, no leading dot: ".example.org" would also admit x.example.org,
  // which is another trust domain.
  const constraints = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: trustDomain }) })]),
  });
  return new x509.Extension(OID_NAME_CONSTRAINTS, true, AsnConvert.serialize(constraints));
}

export async function rootExtensions(publicKey: CryptoKey): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
}

export async function intermediateExtensions(publicKey: CryptoKey, rootKeyId: string, trustDomain: string): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    new x509.AuthorityKeyIdentifierExtension(rootKeyId),
    nameConstraintsExtension(trustDomain),
  ];
}

/**
 * What each certificate svcca makes contains: the root, the issuing intermediate, and
 * the leaf X509-SVID (exactly one URI SAN, CA:FALSE, digitalSignature only, serverAuth +
 * clientAuth, random 16-byte serial, CN only up to 64 characters, notBefore back-dated).
 */
import { randomBytes } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';
import { x509 } from './x509-lib.js';

export const ROOT_LIFETIME_MS = 10 * 365 * 86_400_000;
export const INTERMEDIATE_LIFETIME_MS = 365 * 86_400_000;
/** Leaves start one minute in the past so a peer's slightly slow clock accepts them. */
export const BACKDATE_MS = 60_000;
/** X.520 upper bound for a common name. */
export const MAX_CN_LENGTH = 64;
const OID_NAME_CONSTRAINTS = '2.5.29.30';

/** 16 random bytes, top bit cleared (positive) and the next one set so DER keeps all 16. */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

export function rootSubject(trustDomain: string): x509.JsonName {
  return [{ O: ['svcca'] }, { CN: [`svcca root CA for ${trustDomain}`] }];
}

export function intermediateSubject(trustDomain: string, generation: number): x509.JsonName {
  return [{ O: ['svcca'] }, { CN: [`svcca intermediate CA ${generation} for ${trustDomain}`] }];
}

/** The leaf's subject: CN = service when it fits X.520's bound, otherwise empty. */
export function leafSubject(service: string): x509.JsonName {
  return service.length <= MAX_CN_LENGTH ? [{ CN: [service] }] : [];
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

export interface LeafNames {
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
}

export async function leafExtensions(publicKey: CryptoKey, issuerKeyId: string, names: LeafNames, hasSubject: boolean): Promise<x509.Extension[]> {
  const san: x509.JsonGeneralNames = [
    { type: 'url', value: names.spiffeId },
    ...names.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...names.ips.map((value) => ({ type: 'ip' as const, value })),
  ];
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    // RFC 5280: the SAN is critical when the subject is empty.
    new x509.SubjectAlternativeNameExtension(san, !hasSubject),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    new x509.AuthorityKeyIdentifierExtension(issuerKeyId),
  ];
}

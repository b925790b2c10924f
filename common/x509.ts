/**
 * Certificate parsing from DER with the small reader in der-reader.ts: a few
 * microseconds a certificate and no start-up cost, where the ASN.1 schema libraries
 * cost about 0.3 ms a parse and tens of milliseconds to load. Identity is read from
 * the SAN extension itself, never from a string Node or OpenSSL formatted.
 */
import { createHash, X509Certificate as NodeX509 } from 'node:crypto';
import { InputError } from './errors.js';
import {
  DerError,
  children,
  contentOf,
  expectTag,
  rawOf,
  readExtensions,
  readOid,
  readTime,
  readTlv,
  serialToHex,
  type Tlv,
} from './der-reader.js';

export { serialToHex } from './der-reader.js';

export const KeyUsageBit = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
  encipherOnly: 128,
  decipherOnly: 256,
} as const;

export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const OID_SAN = '2.5.29.17';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SKI = '2.5.29.14';
const OID_AKI = '2.5.29.35';

export interface CertInfo {
  readonly der: Buffer;
  /** Lower-case hex of the serial's unsigned value, no leading zeros. */
  readonly serialHex: string;
  readonly serial: bigint;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subject: string;
  readonly issuer: string;
  /** The subject Name exactly as encoded (what a child's issuer field must hold). */
  readonly subjectDer: Buffer;
  readonly subjectCN: string | undefined;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  /** Count of SAN entries of kinds other than URI, DNS and IP. */
  readonly otherSans: number;
  /** undefined when the certificate has no basicConstraints extension. */
  readonly isCA: boolean | undefined;
  readonly pathLen: number | undefined;
  /** Key usage bits (KeyUsageBit), undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  readonly extKeyUsage: readonly string[] | undefined;
  readonly subjectKeyId: string | undefined;
  readonly authorityKeyId: string | undefined;
  readonly spkiDer: Buffer;
  readonly fingerprintSha256: string;
  readonly extensionOids: readonly string[];
  readonly criticalExtensionOids: readonly string[];
}

/** Normalizes a user-typed serial (`0A:1b`, `0x0a1b`, `0A1B`) to the ledger's form. */
export function normalizeSerialHex(text: string): string | undefined {
  const cleaned = text.trim().toLowerCase().replace(/^0x/, '').replace(/:/g, '');
  if (!/^[0-9a-f]+$/.test(cleaned) || cleaned.length > 42) return undefined;
  return cleaned.replace(/^0+/, '') || '0';
}

const SHORT_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
};

function readDirectoryString(buf: Buffer, t: Tlv): string {
  const bytes = contentOf(buf, t);
  switch (t.tag) {
    case 0x1e: // BMPString
      return Buffer.from(bytes).swap16().toString('utf16le');
    case 0x1c: // UniversalString (UTF-32BE)
      return String.fromCodePoint(...Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readUInt32BE(i * 4)));
    case 0x14: // T61String: read as Latin-1, as OpenSSL does
      return bytes.toString('latin1');
    default: // UTF8String, PrintableString, IA5String, VisibleString, NumericString
      return bytes.toString('utf8');
  }
}

/** `CN=…, O=…` from a Name's DER (a CRL's issuer, say). */
export function nameText(nameDer: Buffer): string {
  return readName(nameDer, readTlv(nameDer, 0, nameDer.length)).text;
}

/** `CN=…, O=…` and the common name, from a Name. */
function readName(buf: Buffer, name: Tlv): { text: string; cn: string | undefined } {
  expectTag(name, 0x30, 'Name');
  const parts: string[] = [];
  let cn: string | undefined;
  for (const rdn of children(buf, name)) {
    expectTag(rdn, 0x31, 'RelativeDistinguishedName');
    for (const atv of children(buf, rdn)) {
      const [type, value] = children(buf, expectTag(atv, 0x30, 'AttributeTypeAndValue'));
      if (!type || !value) throw new DerError('short AttributeTypeAndValue');
      const oid = readOid(buf, type);
      const text = readDirectoryString(buf, value);
      if (oid === '2.5.4.3' && cn === undefined) cn = text;
      parts.push(`${SHORT_NAMES[oid] ?? oid}=${text}`);
    }
  }
  return { text: parts.join(', '), cn };
}

/** RFC 5952 text of an IPv6 address (the longest run of zero groups compressed). */
function ipv6Text(b: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at === -1) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

function ipText(bytes: Buffer): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length === 16) return ipv6Text(bytes);
  throw new DerError('an IP SAN is neither 4 nor 16 bytes');
}

/** Key usage bits from the BIT STRING: bit i (MSB first) becomes 1 << i. */
function readKeyUsage(value: Buffer): number {
  const top = readTlv(value, 0, value.length);
  expectTag(top, 0x03, 'KeyUsage');
  const bytes = contentOf(value, top);
  const unused = bytes[0] ?? 0;
  const bits = (bytes.length - 1) * 8 - unused;
  let n = 0;
  for (let i = 0; i < bits; i++) if (bytes[1 + (i >> 3)]! & (0x80 >> (i & 7))) n |= 1 << i;
  return n;
}

/** Parses one DER certificate; throws InputError naming `what` when it is not one. */
export function parseCertificate(der: Uint8Array, what = 'certificate'): CertInfo {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  try {
    const cert = readTlv(buf, 0, buf.length);
    expectTag(cert, 0x30, 'Certificate');
    if (cert.end !== buf.length) throw new DerError('trailing bytes after the certificate');
    const [tbs] = children(buf, cert);
    const fields = children(buf, expectTag(tbs, 0x30, 'TBSCertificate'));
    let i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version
    const serialT = expectTag(fields[i++], 0x02, 'serialNumber');
    i++; // signature AlgorithmIdentifier
    const issuer = readName(buf, fields[i++]!);
    const validity = children(buf, expectTag(fields[i++], 0x30, 'Validity'));
    const subjectT = fields[i++]!;
    const subject = readName(buf, subjectT);
    const spkiT = expectTag(fields[i++], 0x30, 'SubjectPublicKeyInfo');
    let extensionsT: Tlv | undefined;
    for (; i < fields.length; i++) {
      if (fields[i]!.tag === 0xa3) extensionsT = children(buf, fields[i]!)[0];
    }

    const uris: string[] = [];
    const dnsNames: string[] = [];
    const ips: string[] = [];
    let otherSans = 0;
    let isCA: boolean | undefined;
    let pathLen: number | undefined;
    let keyUsage: number | undefined;
    let extKeyUsage: string[] | undefined;
    let subjectKeyId: string | undefined;
    let authorityKeyId: string | undefined;
    const extensionOids: string[] = [];
    const criticalExtensionOids: string[] = [];
    for (const ext of extensionsT ? readExtensions(buf, extensionsT) : []) {
      extensionOids.push(ext.oid);
      if (ext.critical) criticalExtensionOids.push(ext.oid);
      const v = ext.value;
      const top = () => readTlv(v, 0, v.length);
      switch (ext.oid) {
        case OID_SAN:
          for (const gn of children(v, expectTag(top(), 0x30, 'SubjectAltName'))) {
            const content = contentOf(v, gn);
            if (gn.tag === 0x86) uris.push(content.toString('latin1'));
            else if (gn.tag === 0x82) dnsNames.push(content.toString('latin1'));
            else if (gn.tag === 0x87) ips.push(ipText(content));
            else otherSans++;
          }
          break;
        case OID_BASIC_CONSTRAINTS: {
          const parts = children(v, expectTag(top(), 0x30, 'BasicConstraints'));
          let k = 0;
          isCA = false;
          if (parts[k]?.tag === 0x01) isCA = v[parts[k++]!.contentStart] !== 0;
          if (parts[k]?.tag === 0x02) pathLen = Number(BigInt(`0x${contentOf(v, parts[k]!).toString('hex') || '0'}`));
          break;
        }
        case OID_KEY_USAGE:
          keyUsage = readKeyUsage(v);
          break;
        case OID_EXT_KEY_USAGE:
          extKeyUsage = children(v, expectTag(top(), 0x30, 'ExtKeyUsage')).map((t) => readOid(v, t));
          break;
        case OID_SKI:
          subjectKeyId = contentOf(v, expectTag(top(), 0x04, 'SubjectKeyIdentifier')).toString('hex');
          break;
        case OID_AKI: {
          const keyId = children(v, expectTag(top(), 0x30, 'AuthorityKeyIdentifier')).find((t) => t.tag === 0x80);
          if (keyId) authorityKeyId = contentOf(v, keyId).toString('hex');
          break;
        }
        default:
          break;
      }
    }
    const serialHex = serialToHex(contentOf(buf, serialT));
    return {
      der: Buffer.from(buf),
      serialHex,
      serial: BigInt(`0x${serialHex}`),
      notBefore: readTime(buf, validity[0]!),
      notAfter: readTime(buf, validity[1]!),
      subject: subject.text,
      issuer: issuer.text,
      subjectDer: Buffer.from(rawOf(buf, subjectT)),
      subjectCN: subject.cn,
      uris,
      dnsNames,
      ips,
      otherSans,
      isCA,
      pathLen,
      keyUsage,
      extKeyUsage,
      subjectKeyId,
      authorityKeyId,
      spkiDer: Buffer.from(rawOf(buf, spkiT)),
      fingerprintSha256: createHash('sha256').update(buf).digest('hex'),
      extensionOids,
      criticalExtensionOids,
    };
  } catch (err) {
    if (err instanceof DerError || err instanceof RangeError || err instanceof TypeError) {
      throw new InputError(`${what} is not a valid X.509 certificate`, 'check that the file holds a PEM certificate', err);
    }
    throw err;
  }
}

/** `AB:CD:...` form used by openssl and browsers. */
export function colonHex(hex: string): string {
  return (hex.match(/.{1,2}/g) ?? []).join(':').toUpperCase();
}

/** True when `child` carries a valid signature by `issuer`'s key and names it as issuer. */
export function isSignedBy(childDer: Uint8Array, issuerDer: Uint8Array): boolean {
  try {
    const child = new NodeX509(Buffer.from(childDer));
    const issuer = new NodeX509(Buffer.from(issuerDer));
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

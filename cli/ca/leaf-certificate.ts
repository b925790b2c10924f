/**
 * The leaf X509-SVID, written as DER directly: exactly one URI SAN (the SPIFFE ID),
 * optional DNS and IP SANs, CA:FALSE, keyUsage digitalSignature (critical) and nothing
 * else, serverAuth + clientAuth, a random positive 16-byte serial, CN = the service up to
 * 64 characters, notBefore back-dated, subject and authority key identifiers.
 *
 * Written by hand rather than with @peculiar/x509 because loading that library and its
 * ASN.1 schemas costs more start-up time than everything else `svcca issue` does; root
 * and intermediate (made once, by init and rotate --intermediate) still use it.
 */
import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { explicit, integer, octetString, oid, seq, setOf, tlv, time } from '../../common/der.js';
import { contentOf, children, readTlv } from '../../common/der-reader.js';
import type { KeyType } from '../../common/keys.js';
import { signTbs, signatureAlgorithm } from '../../common/signature.js';

/** Leaves start one minute in the past so a peer's slightly slow clock accepts them. */
export const BACKDATE_MS = 60_000;
/** X.520 upper bound for a common name. */
export const MAX_CN_LENGTH = 64;

const OID = {
  cn: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  san: '2.5.29.17',
  ski: '2.5.29.14',
  aki: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
};

/** 16 random bytes, top bit cleared (positive) and the next one set so DER keeps all 16. */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

export interface LeafNames {
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
}

export interface LeafParams extends LeafNames {
  readonly service: string;
  readonly serialHex: string;
  /** SubjectPublicKeyInfo DER of the key being certified. */
  readonly spkiDer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The issuer's subject Name, exactly as encoded in its certificate. */
  readonly issuerNameDer: Buffer;
  readonly issuerKeyId: string;
  readonly issuerKey: KeyObject;
  readonly issuerKeyType: KeyType;
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), Buffer.from([0x01, 0x01, 0xff]), octetString(value)) : seq(oid(id), octetString(value));
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // Expand "::" and any embedded IPv4 tail into eight 16-bit groups.
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(parseInt(g, 16), i * 2);
  });
  return out;
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's value. */
export function subjectKeyIdOf(spkiDer: Buffer): Buffer {
  const spki = readTlv(spkiDer, 0, spkiDer.length);
  const [, publicKey] = children(spkiDer, spki);
  return createHash('sha1').update(contentOf(spkiDer, publicKey!).subarray(1)).digest();
}

export function leafSubjectDer(service: string): Buffer {
  if (service.length > MAX_CN_LENGTH) return seq();
  return seq(setOf(seq(oid(OID.cn), tlv(0x0c, Buffer.from(service, 'utf8')))));
}

export function buildLeafDer(p: LeafParams): Buffer {
  const hasSubject = p.service.length <= MAX_CN_LENGTH;
  const san = seq(
    tlv(0x86, Buffer.from(p.spiffeId, 'latin1')),
    ...p.dnsNames.map((n) => tlv(0x82, Buffer.from(n, 'latin1'))),
    ...p.ips.map((ip) => tlv(0x87, ipBytes(ip))),
  );
  const extensions = seq(
    extension(OID.basicConstraints, true, seq()),
    // BIT STRING, 7 unused bits, only bit 0 (digitalSignature) set.
    extension(OID.keyUsage, true, Buffer.from([0x03, 0x02, 0x07, 0x80])),
    extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
    // RFC 5280: the SAN is critical when the subject is empty.
    extension(OID.san, !hasSubject, san),
    extension(OID.ski, false, octetString(subjectKeyIdOf(p.spkiDer))),
    extension(OID.aki, false, seq(tlv(0x80, Buffer.from(p.issuerKeyId, 'hex')))),
  );
  const tbs = seq(
    explicit(0, integer(2n)),
    integer(Buffer.from(p.serialHex, 'hex')),
    signatureAlgorithm(p.issuerKeyType).der,
    p.issuerNameDer,
    seq(time(p.notBefore), time(p.notAfter)),
    leafSubjectDer(p.service),
    p.spkiDer,
    explicit(3, extensions),
  );
  return signTbs(tbs, p.issuerKey, p.issuerKeyType);
}

/**
 * Builds and signs one CRL (RFC 5280 §5) with the DER writer: version 2, the issuer's
 * exact subject bytes, thisUpdate/nextUpdate, entries with their reason codes, and the
 * CRL number and authority key identifier extensions.
 */
import { sign as cryptoSign, type KeyObject } from 'node:crypto';
import { parseCertificate } from '../../common/x509.js';
import { signatureAlgorithm } from './signature.js';
import { bitString, enumerated, explicit, integer, nullValue, octetString, oid, seq, time, tlv } from '../../common/der.js';
import { encodePem } from '../../common/pem.js';
import type { KeyType } from '../../common/keys.js';

export const CRL_PEM_LABEL = 'X509 CRL';
const OID_CRL_NUMBER = '2.5.29.20';
const OID_AKI = '2.5.29.35';
const OID_REASON = '2.5.29.21';

export interface CrlEntry {
  /** Lower-case hex serial. */
  readonly serial: string;
  readonly revokedAt: Date;
  /** RFC 5280 CRLReason code; omitted for unspecified. */
  readonly reasonCode?: number;
}

export interface CrlParams {
  readonly issuerDer: Buffer;
  readonly issuerKeyId: string;
  readonly issuerKey: KeyObject;
  readonly keyType: KeyType;
  readonly number: bigint;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly entries: readonly CrlEntry[];
}

export function buildCrlDer(p: CrlParams): Buffer {
  const alg = signatureAlgorithm(p.keyType);
  const entries = p.entries.map((e) => {
    const parts = [integer(Buffer.from(e.serial.length % 2 ? `0${e.serial}` : e.serial, 'hex')), time(e.revokedAt)];
    if (e.reasonCode !== undefined && e.reasonCode !== 0) {
      parts.push(seq(seq(oid(OID_REASON), octetString(enumerated(e.reasonCode)))));
    }
    return seq(...parts);
  });
  const extensions = explicit(
    0,
    seq(
      seq(oid(OID_AKI), octetString(seq(tlv(0x80, Buffer.from(p.issuerKeyId, 'hex'))))),
      seq(oid(OID_CRL_NUMBER), octetString(integer(p.number))),
    ),
  );
  const tbsParts = [integer(1n), alg.der, parseCertificate(p.issuerDer).subjectDer, time(p.thisUpdate), time(p.nextUpdate)];
  if (entries.length > 0) tbsParts.push(seq(...entries));
  tbsParts.push(extensions);
  const tbs = seq(...tbsParts);
  const signature = cryptoSign(alg.hash, tbs, p.issuerKey);
  return seq(tbs, alg.der, bitString(signature));
}

export function crlToPem(der: Buffer): string {
  return encodePem(CRL_PEM_LABEL, der);
}

/**
 * Builds and signs one CRL (RFC 5280 §5) with the DER writer: version 2, the issuer's
 * exact subject bytes, thisUpdate/nextUpdate, entries with their reason codes, and the
 * CRL number and authority key identifier extensions.
 */
import { sign as cryptoSign, type KeyObject } from 'node:crypto';
import { parseCertificate } from '../../common/x509.js';
import { signatureAlgorithm } from '../../common/signature.js';
import { bitString, enumerated, explicit, integer, octetString, oid, seq, time, tlv } from '../../common/der.js';
import { OID_AUTHORITY_KEY_ID, OID_CRL_NUMBER, OID_REASON_CODE } from '../../common/crl.js';
import type { KeyType } from '../../common/keys.js';

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
  /** Told every few thousand entries (a CRL of 100,000 takes seconds). */
  readonly onEntries?: (done: number) => void;
}

const PROGRESS_EVERY = 2_000;

export function buildCrlDer(p: CrlParams): Buffer {
  const alg = signatureAlgorithm(p.keyType);
  const entries = p.entries.map((e, i) => {
    if (p.onEntries && i % PROGRESS_EVERY === 0) p.onEntries(i);
    const parts = [integer(Buffer.from(e.serial.length % 2 ? `0${e.serial}` : e.serial, 'hex')), time(e.revokedAt)];
    if (e.reasonCode !== undefined && e.reasonCode !== 0) {
      parts.push(seq(seq(oid(OID_REASON_CODE), octetString(enumerated(e.reasonCode)))));
    }
    return seq(...parts);
  });
  const extensions = explicit(
    0,
    seq(
      seq(oid(OID_AUTHORITY_KEY_ID), octetString(seq(tlv(0x80, Buffer.from(p.issuerKeyId, 'hex'))))),
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

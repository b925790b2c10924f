/**
 * Reads the few fields of a CRL the CA needs to decide whether to republish: who signed
 * it (authority key identifier), its number and its validity. A small DER walk that
 * skips the entry list by its length, so a 100,000-entry CRL costs nothing to summarize.
 * Signatures are not checked here: the CA only reads CRLs it wrote itself.
 */
import { InputError } from '../../common/errors.js';

export interface CrlSummary {
  /** Authority key identifier (hex), undefined when absent. */
  readonly authorityKeyId: string | undefined;
  readonly number: bigint | undefined;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly entries: number;
}

interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly end: number;
  readonly next: number;
}

function readTlv(buf: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new Error('truncated DER');
  const tag = buf[pos]!;
  let len = buf[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new Error('truncated DER');
  return { tag, start, end, next: end };
}

function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let pos = parent.start; pos < parent.end; ) {
    const t = readTlv(buf, pos, parent.end);
    out.push(t);
    pos = t.next;
  }
  return out;
}

function parseTime(buf: Buffer, t: Tlv): Date {
  const s = buf.subarray(t.start, t.end).toString('ascii');
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) throw new Error('bad time');
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

function oidHex(buf: Buffer, t: Tlv): string {
  return buf.subarray(t.start, t.end).toString('hex');
}

const OID_CRL_NUMBER_HEX = '551d14'; // 2.5.29.20
const OID_AKI_HEX = '551d23'; // 2.5.29.35

/** Summarizes one DER CRL; throws InputError when it is not one. */
export function summarizeCrl(der: Buffer): CrlSummary {
  try {
    const outer = readTlv(der, 0, der.length);
    const tbs = readTlv(der, outer.start, outer.end);
    const parts = children(der, tbs);
    let i = 0;
    if (parts[i]?.tag === 0x02) i++; // version
    i += 2; // signature algorithm, issuer
    const thisUpdate = parseTime(der, parts[i++]!);
    let nextUpdate: Date | undefined;
    if (parts[i] && (parts[i]!.tag === 0x17 || parts[i]!.tag === 0x18)) nextUpdate = parseTime(der, parts[i++]!);
    let entries = 0;
    if (parts[i]?.tag === 0x30) entries = children(der, parts[i++]!).length;
    let authorityKeyId: string | undefined;
    let number: bigint | undefined;
    const extsWrapper = parts[i];
    if (extsWrapper?.tag === 0xa0) {
      const exts = readTlv(der, extsWrapper.start, extsWrapper.end);
      for (const ext of children(der, exts)) {
        const fields = children(der, ext);
        const id = oidHex(der, fields[0]!);
        const value = fields[fields.length - 1]!; // OCTET STRING (after an optional critical flag)
        const inner = readTlv(der, value.start, value.end);
        if (id === OID_CRL_NUMBER_HEX) {
          number = BigInt(`0x${der.subarray(inner.start, inner.end).toString('hex') || '0'}`);
        } else if (id === OID_AKI_HEX) {
          const keyId = children(der, inner).find((c) => c.tag === 0x80);
          if (keyId) authorityKeyId = der.subarray(keyId.start, keyId.end).toString('hex');
        }
      }
    }
    return { authorityKeyId, number, thisUpdate, nextUpdate, entries };
  } catch (err) {
    throw new InputError('crl.pem holds a CRL that cannot be read', 'run `svcca crl` to write a fresh one', err);
  }
}

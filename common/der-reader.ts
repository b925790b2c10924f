/**
 * A minimal DER reader over Buffer: definite lengths only (DER forbids the others),
 * every length bounds-checked against its container. The one DER reader: common/x509.ts
 * and common/crl.ts parse with it (the CA reads its own CRLs through common/crl.ts), and
 * cli/ca/leaf-certificate.ts finds a public key's bits with it. It loads in no time,
 * where the ASN.1 schema libraries cost tens of milliseconds of start-up for every
 * `svcca` command.
 */
/** Lower-case hex of an unsigned integer's bytes, no leading zeros ('0' for zero). */
export function serialToHex(bytes: ArrayBuffer | Uint8Array): string {
  const hex = Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes))
    .toString('hex')
    .replace(/^(00)+/, '');
  return hex === '' ? '0' : hex;
}

export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just past the content. */
  readonly end: number;
}

export class DerError extends Error {}

/** The bytes of a TLV, tag and length included. */
export function rawOf(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.start, t.end);
}

export function contentOf(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.contentStart, t.end);
}

export function readTlv(buf: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new DerError('truncated');
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not used in certificates or CRLs');
  let len = buf[pos + 1]!;
  let p = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length encoding');
    if (p + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    p += n;
  }
  if (p + len > limit) throw new DerError('content runs past its container');
  return { tag, start: pos, contentStart: p, end: p + len };
}

export function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let p = parent.contentStart;
  while (p < parent.end) {
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.end;
  }
  return out;
}

export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}`);
  return t;
}

export function readOid(buf: Buffer, t: Tlv): string {
  expectTag(t, 0x06, 'OID');
  const bytes = buf.subarray(t.contentStart, t.end);
  if (bytes.length === 0) throw new DerError('empty OID');
  const parts: number[] = [];
  let value = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    value = value * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      if (parts.length === 0) {
        const first = value < 80 ? Math.floor(value / 40) : 2;
        parts.push(first, value - first * 40);
      } else parts.push(value);
      value = 0;
    }
  }
  return parts.join('.');
}

/** Lower-case hex, no leading zeros: serialToHex's form, so both sides compare equal. */
export function readIntegerHex(buf: Buffer, t: Tlv): string {
  expectTag(t, 0x02, 'INTEGER');
  const bytes = buf.subarray(t.contentStart, t.end);
  if (bytes.length === 0) throw new DerError('empty INTEGER');
  // Serials and CRL numbers are positive; a negative one (a broken CA) is read as its
  // bytes, like serialToHex does for certificates.
  return serialToHex(bytes);
}

export function readTime(buf: Buffer, t: Tlv): Date {
  const s = buf.toString('latin1', t.contentStart, t.end);
  let m: RegExpExecArray | null;
  if (t.tag === 0x17) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new DerError('bad UTCTime');
    const yy = Number(m[1]);
    return new Date(Date.UTC(yy >= 50 ? 1900 + yy : 2000 + yy, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  if (t.tag === 0x18) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(s);
    if (!m) throw new DerError('bad GeneralizedTime');
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  throw new DerError('expected a time');
}

export interface Extension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Buffer;
}

export function readExtensions(buf: Buffer, seq: Tlv): Extension[] {
  expectTag(seq, 0x30, 'Extensions');
  return children(buf, seq).map((ext) => {
    const parts = children(buf, expectTag(ext, 0x30, 'Extension'));
    const oid = readOid(buf, parts[0]!);
    let i = 1;
    let critical = false;
    if (parts[i]?.tag === 0x01) {
      critical = buf[parts[i]!.contentStart] !== 0;
      i++;
    }
    const octets = expectTag(parts[i], 0x04, 'extnValue');
    return { oid, critical, value: buf.subarray(octets.contentStart, octets.end) };
  });
}

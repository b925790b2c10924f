/**
 * A minimal DER writer over Buffer: enough for CRLs, whose entry lists can reach
 * 100,000 items where @peculiar/x509's generator is quadratic (FACTS).
 */
export function tlv(tag: number, content: Buffer): Buffer {
  const len = content.length;
  let header: Buffer;
  if (len < 0x80) header = Buffer.from([tag, len]);
  else {
    const bytes: number[] = [];
    for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}

export const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
export const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 | n, content);
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const nullValue = (): Buffer => Buffer.from([0x05, 0x00]);
export const bitString = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));

/** A non-negative INTEGER from a bigint or big-endian unsigned bytes. */
export function integer(value: bigint | Buffer): Buffer {
  let bytes: Buffer;
  if (typeof value === 'bigint') {
    const hex = value.toString(16);
    bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  } else bytes = value;
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0 && (bytes[i + 1]! & 0x80) === 0) i++;
  bytes = bytes.subarray(i);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
}

export const enumerated = (n: number): Buffer => tlv(0x0a, Buffer.from([n]));

/**
 * Encoded OIDs by dotted text. The set in use is small and fixed (algorithms, extensions,
 * name attributes), and a certificate or a CRL entry encodes the same ones each time.
 * Callers only concatenate the result, never write into it.
 */
const encodedOids = new Map<string, Buffer>();

export function oid(dotted: string): Buffer {
  let encoded = encodedOids.get(dotted);
  if (!encoded) {
    encoded = encodeOid(dotted);
    encodedOids.set(dotted, encoded);
  }
  return encoded;
}

function encodeOid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack: number[] = [];
    let v = p;
    do {
      stack.unshift(v & 0x7f);
      v = Math.floor(v / 128);
    } while (v > 0);
    for (let i = 0; i < stack.length - 1; i++) stack[i]! |= 0x80;
    out.push(...stack);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5). */
export function time(date: Date): Buffer {
  const iso = date.toISOString();
  const y = date.getUTCFullYear();
  const body = `${iso.slice(2, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(body, 'ascii'));
  return tlv(0x18, Buffer.from(`${iso.slice(0, 2)}${body}`, 'ascii'));
}

/** SET OF with DER's canonical (sorted) order. */
export function setOf(...items: Buffer[]): Buffer {
  return tlv(0x31, Buffer.concat([...items].sort(Buffer.compare)));
}

export function bmpString(text: string): Buffer {
  const utf16be = Buffer.from(text, 'utf16le').swap16();
  return tlv(0x1e, utf16be);
}

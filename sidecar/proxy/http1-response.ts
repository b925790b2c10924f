/**
 * The local service's HTTP/1.1 responses, read strictly: the status line and header
 * fields, how the body is delimited, and a chunked-body decoder. Pure, so every framing
 * rule is tested on its own (test/unit/sidecar/proxy/http1-response.test.ts).
 *
 * Strict, because the body's end decides where the next response on a kept-alive
 * connection begins: a response whose framing could be read two ways (two
 * Content-Lengths, Content-Length beside Transfer-Encoding, a coding other than
 * chunked, a folded or bare-LF header line) is refused — the caller gets a 502 and the
 * connection is closed — rather than passed on under a guess.
 */

/** How the body of a response ends. */
export type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** Until the service closes the connection (HTTP/1.0 style); the connection is not reused. */
  | { readonly kind: 'close' };

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  /** name, value, name, value … as sent. */
  readonly rawHeaders: string[];
  readonly framing: Framing;
  /** The service lets the connection carry another request after this response. */
  readonly keepAlive: boolean;
  /** `Keep-Alive: timeout=N` in ms, when the service sent one. */
  readonly keepAliveTimeoutMs: number | undefined;
}

/** Bytes a response head may take (Node's default `maxHeaderSize`). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Header fields a response head may carry (Node's client keeps 2,000). */
const MAX_HEADER_FIELDS = 2000;

export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible characters, obs-text, space and tab; no CR, LF or NUL. */
export const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

/**
 * Parses a response head: `text` is the latin1 text up to, not including, the blank line
 * that ends it. `method` is the request's (a HEAD response has no body).
 */
export function parseResponseHead(text: string, method: string): ResponseHead | { readonly error: string } {
  const lines = text.split('\r\n');
  const status = STATUS_LINE.exec(lines[0]!);
  if (!status) return { error: 'the status line is not HTTP/1.x with a three-digit status' };
  const minor = status[1]!;
  const code = Number(status[2]);
  if (lines.length - 1 > MAX_HEADER_FIELDS) return { error: `more than ${MAX_HEADER_FIELDS} header fields` };
  const rawHeaders: string[] = [];
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let connection = '';
  let keepAliveTimeoutMs: number | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    // A line starting with white space folds onto the previous one (obs-fold): refused,
    // as is a bare LF inside the head (the split on CRLF left it in a line).
    if (colon <= 0) return { error: 'a header line without a field name' };
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return { error: 'a header field name with characters a token cannot hold' };
    const value = trimOws(line, colon + 1);
    if (!FIELD_VALUE.test(value)) return { error: `the value of ${name} holds a control character` };
    rawHeaders.push(name, value);
    // Only the four names read here are lower-cased (by their lengths, 10, 14 and 17).
    const lower = name.length === 10 || name.length === 14 || name.length === 17 ? name.toLowerCase() : '';
    if (lower === 'content-length') {
      if (contentLength !== undefined) return { error: 'more than one Content-Length' };
      contentLength = value;
    } else if (lower === 'transfer-encoding') {
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
    } else if (lower === 'connection') {
      connection += `,${value.toLowerCase()}`;
    } else if (lower === 'keep-alive') {
      const t = /(?:^|[,\s])timeout=(\d{1,6})(?:$|[,\s])/i.exec(value);
      if (t) keepAliveTimeoutMs = Number(t[1]) * 1000;
    }
  }
  if (contentLength !== undefined && transferEncoding !== undefined) return { error: 'both Content-Length and Transfer-Encoding' };
  if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== 'chunked')
    return { error: 'a Transfer-Encoding other than chunked' };
  if (contentLength !== undefined && !/^\d{1,15}$/.test(contentLength)) return { error: 'Content-Length is not a whole number' };

  const tokens = connection === '' ? [] : connection.split(',').map((t) => t.trim());
  const close = tokens.includes('close');
  // HTTP/1.0 keeps the connection only when it says so.
  const persistent = minor === '1' ? !close : tokens.includes('keep-alive') && !close;

  let framing: Framing;
  if (method === 'HEAD' || code === 204 || code === 304 || code < 200) framing = { kind: 'none' };
  else if (transferEncoding !== undefined) framing = { kind: 'chunked' };
  else if (contentLength !== undefined) framing = { kind: 'length', length: Number(contentLength) };
  else framing = { kind: 'close' };
  return {
    status: code,
    reason: status[3] ?? '',
    rawHeaders,
    framing,
    keepAlive: persistent && framing.kind !== 'close',
    keepAliveTimeoutMs,
  };
}

/** `line` from `start`, without the optional white space (spaces, tabs) at either end. */
function trimOws(line: string, start: number): string {
  let end = line.length;
  while (start < end && (line.charCodeAt(start) === 0x20 || line.charCodeAt(start) === 0x09)) start++;
  while (end > start && (line.charCodeAt(end - 1) === 0x20 || line.charCodeAt(end - 1) === 0x09)) end--;
  return line.slice(start, end);
}

const Chunk = { Size: 0, Extension: 1, SizeLf: 2, Data: 3, DataCr: 4, DataLf: 5, Trailer: 6, TrailerLf: 7, Done: 8 } as const;
type Chunk = (typeof Chunk)[keyof typeof Chunk];

/** Hex digits a chunk size may have: 2^52 and more is no body this sidecar passes on. */
const MAX_SIZE_DIGITS = 13;
/** Bytes the trailer section may take; the trailers themselves are not passed on. */
const MAX_TRAILER_BYTES = 16 * 1024;

/**
 * Decodes a chunked body as it arrives. `push` hands each run of body bytes to `onData`
 * (slices of the input, not copies) and says how many input bytes it used: all of them
 * until the last chunk and its trailer section end, then the count up to that end.
 */
export class ChunkedDecoder {
  #state: Chunk = Chunk.Size;
  #digits = 0;
  #left = 0;
  #lineBytes = 0;
  #trailerBytes = 0;

  get done(): boolean {
    return this.#state === Chunk.Done;
  }

  /** Returns the bytes consumed, or an error for a body that is not valid chunked framing. */
  push(data: Buffer, onData: (slice: Buffer) => void): number | { readonly error: string } {
    let i = 0;
    while (i < data.length && this.#state !== Chunk.Done) {
      const b = data[i]!;
      switch (this.#state) {
        case Chunk.Size: {
          const v = hexValue(b);
          if (v >= 0) {
            if (++this.#digits > MAX_SIZE_DIGITS) return { error: 'a chunk size too large' };
            this.#left = this.#left * 16 + v;
          } else if (this.#digits === 0) return { error: 'a chunk size that is not hexadecimal' };
          else if (b === 0x0d) this.#state = Chunk.SizeLf;
          else if (b === 0x3b /* ; */) this.#state = Chunk.Extension;
          else return { error: 'a chunk size followed by neither CRLF nor an extension' };
          i++;
          break;
        }
        case Chunk.Extension:
          if (b === 0x0d) this.#state = Chunk.SizeLf;
          else if (b !== 0x09 && (b < 0x20 || b === 0x7f)) return { error: 'a control character in a chunk extension' };
          else if (++this.#lineBytes > MAX_TRAILER_BYTES) return { error: 'a chunk extension too long' };
          i++;
          break;
        case Chunk.SizeLf:
          if (b !== 0x0a) return { error: 'a chunk size line not ended by CRLF' };
          i++;
          this.#digits = 0;
          this.#lineBytes = 0;
          this.#state = this.#left === 0 ? Chunk.Trailer : Chunk.Data;
          break;
        case Chunk.Data: {
          const n = Math.min(this.#left, data.length - i);
          onData(data.subarray(i, i + n));
          this.#left -= n;
          i += n;
          if (this.#left === 0) this.#state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (b !== 0x0d) return { error: 'chunk data longer than its size' };
          this.#state = Chunk.DataLf;
          i++;
          break;
        case Chunk.DataLf:
          if (b !== 0x0a) return { error: 'chunk data not ended by CRLF' };
          this.#state = Chunk.Size;
          i++;
          break;
        case Chunk.Trailer:
          // Trailer fields are read past, one line at a time, up to the empty line.
          if (b === 0x0d) this.#state = Chunk.TrailerLf;
          else if (b === 0x0a || (b !== 0x09 && (b < 0x20 || b === 0x7f))) return { error: 'a control character in a trailer' };
          else {
            this.#lineBytes++;
            if (++this.#trailerBytes > MAX_TRAILER_BYTES) return { error: 'a trailer section too large' };
          }
          i++;
          break;
        case Chunk.TrailerLf:
          if (b !== 0x0a) return { error: 'a trailer line not ended by CRLF' };
          i++;
          if (this.#lineBytes === 0) this.#state = Chunk.Done;
          else {
            this.#lineBytes = 0;
            this.#state = Chunk.Trailer;
          }
          break;
      }
    }
    return i;
  }
}

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  return -1;
}

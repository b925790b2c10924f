/**
 * A raw HTTP/2 client for the abuse tests (not a test file itself): it writes frames as
 * given over an mTLS connection that negotiated ALPN h2 — including the ones a real client
 * library refuses to send (a reset storm, endless CONTINUATION, a zero window) — and reads
 * the frames the server sends back. Header blocks are HPACK literals without indexing and
 * without Huffman coding (RFC 7541 §6.2.2), which every decoder must accept.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { splitHostPort, type Creds } from './sidecar-harness.js';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const SETTING = { MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4 } as const;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

function hpackInt(value: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A header block of literal fields (never indexed, no Huffman). */
export function headerBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([0x00]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v);
  }
  return Buffer.concat(parts);
}

export function settings(pairs: readonly (readonly [number, number])[] = []): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, value], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, p);
}

export function rstStream(stream: number, code = 8): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, stream, p);
}

export function ping(n: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(n >>> 0, 4);
  return frame(FRAME.PING, 0, 0, p);
}

/** A GET request's fields. */
export function getFields(authority: string, path: string): [string, string][] {
  return [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':authority', authority],
    [':path', path],
  ];
}

export class RawH2 {
  readonly frames: Frame[] = [];
  #buf = Buffer.alloc(0);
  #closed = false;
  #waiters: (() => void)[] = [];

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        const f = {
          type: this.#buf[3]!,
          flags: this.#buf[4]!,
          stream: this.#buf.readUInt32BE(5) & 0x7fffffff,
          payload: this.#buf.subarray(9, 9 + len),
        };
        this.#buf = this.#buf.subarray(9 + len);
        // Acknowledge the server's SETTINGS, as a conforming client does.
        if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && !socket.destroyed) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        this.frames.push(f);
      }
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      this.wake();
    });
  }

  /** Connects with ALPN h2, sends the preface and `initial` SETTINGS. */
  static open(address: string, creds: Required<Creds>, initial: readonly (readonly [number, number])[] = []): Promise<RawH2> {
    const [host, port] = splitHostPort(address);
    return new Promise((resolve, reject) => {
      const s = tlsConnect({
        host,
        port,
        cert: creds.cert,
        key: creds.key,
        ca: creds.ca,
        checkServerIdentity: () => undefined,
        ALPNProtocols: ['h2'],
      });
      s.once('secureConnect', () => {
        if (s.alpnProtocol !== 'h2') return reject(new Error(`ALPN selected ${String(s.alpnProtocol)}, not h2`));
        s.write(Buffer.concat([PREFACE, settings(initial)]));
        resolve(new RawH2(s));
      });
      s.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(data: Buffer): boolean {
    return this.socket.destroyed ? false : this.socket.write(data);
  }

  /** The GOAWAY's error code, once one arrived. */
  goawayCode(): number | undefined {
    const g = this.frames.find((f) => f.type === FRAME.GOAWAY);
    return g ? g.payload.readUInt32BE(4) : undefined;
  }

  /** Resolves with the first frame matching `pred` (or undefined once the connection closed). */
  async waitFor(pred: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(pred);
      if (f) return f;
      if (this.#closed) return undefined;
      if (Date.now() > deadline)
        throw new Error(`no such frame within ${timeoutMs} ms; got types ${this.frames.map((x) => x.type).join(',')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves once the server ended the connection. */
  async waitClosed(timeoutMs = 15_000): Promise<void> {
    await this.waitFor(() => false, timeoutMs).catch(() => {
      throw new Error(`the connection stayed open; frames: ${this.frames.map((x) => x.type).join(',')}`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

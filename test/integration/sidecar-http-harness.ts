/**
 * Shared pieces of the http-mode integration tests (not a test file itself): a local
 * service that records exactly what reached it, and HTTP clients over mTLS — Node's https,
 * and a raw one that writes the request bytes as given (odd targets, duplicate and
 * underscore headers, two requests on one connection).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { splitHostPort, type Creds } from './sidecar-harness.js';

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
  readonly bodyBytes: number;
  readonly bodySha256: string;
  readonly upgrade: boolean;
}

export interface RecordingBackend {
  readonly server: Server;
  readonly address: string;
  /** Every request (and upgrade request) that reached the service, in order. */
  readonly received: Received[];
  /** TCP connections the service accepted (the sidecar's pool reuses them). */
  connections(): number;
  close(): Promise<void>;
}

/** Deterministic bytes for the streamed download: byte i is i*31 mod 251. */
export function patternBytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31) % 251;
  return b;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * The local service. By query: `?echo` streams the request body back, `?big=N` streams N
 * pattern bytes, `?slow` never answers; otherwise `ok <method> <url>`. An Upgrade request is
 * answered 101 and then echoes bytes.
 */
export async function startRecordingBackend(): Promise<RecordingBackend> {
  const received: Received[] = [];
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createServer((req: IncomingMessage, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    if (query.has('echo')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      req.pipe(res);
      req.on('end', () =>
        received.push({
          method: req.method!,
          url: req.url!,
          rawHeaders: req.rawHeaders,
          bodyBytes: bytes,
          bodySha256: hash.digest('hex'),
          upgrade: false,
        }),
      );
      return;
    }
    req.on('data', (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    req.on('end', () => {
      received.push({
        method: req.method!,
        url: req.url!,
        rawHeaders: req.rawHeaders,
        bodyBytes: bytes,
        bodySha256: hash.digest('hex'),
        upgrade: false,
      });
      if (query.has('slow')) return; // never answers
      if (query.has('big')) {
        const total = Number(query.get('big'));
        const data = patternBytes(total);
        res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked: streamed
        let at = 0;
        const pump = () => {
          while (at < total) {
            const chunk = data.subarray(at, Math.min(at + 65536, total));
            at += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      res.end(`ok ${req.method} ${req.url}\n`);
    });
  });
  server.on('connection', (s: Socket) => {
    count++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    received.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, bodyBytes: 0, bodySha256: '', upgrade: true });
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    if (head.length > 0) socket.write(head);
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address() as { port: number };
  return {
    server,
    address: `127.0.0.1:${a.port}`,
    received,
    connections: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Values of every header whose name, lower-cased with `_` read as `-`, is `name`. */
export function headerValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase().replace(/_/g, '-') === name) out.push(rawHeaders[i + 1]!);
  }
  return out;
}

/** What the XFCC of a request from `setDir`'s certificate must read, computed from its tls.crt. */
export function expectedXfcc(selfUri: string, setDir: string, callerUri: string): string {
  const der = new X509Certificate(readFileSync(join(setDir, 'tls.crt'))).raw;
  return `By=${selfUri};Hash=${sha256(der)};URI=${callerUri}`;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** One request with Node's https client (fresh connection), body streamed from `body`. */
export function httpsCall(
  address: string,
  creds: Required<Creds>,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer },
): Promise<HttpResponse> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host,
        port,
        method: opts.method ?? 'GET',
        path: opts.path,
        headers: opts.headers ?? {},
        cert: creds.cert,
        key: creds.key,
        ca: creds.ca,
        checkServerIdentity: () => undefined,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('timed out')));
    if (opts.body) {
      // Written in pieces so that it is streamed, not one buffer.
      let at = 0;
      const pump = () => {
        while (at < opts.body!.length) {
          const chunk = opts.body!.subarray(at, at + 65536);
          at += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    } else req.end();
  });
}

/**
 * A raw HTTP/1.1 client over one mTLS connection: `send` writes bytes as given and
 * resolves with the next response (Content-Length, chunked or close-delimited).
 */
export class RawHttpConnection {
  readonly socket: TLSSocket;
  #buf = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | undefined;

  private constructor(socket: TLSSocket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  static open(address: string, creds: Required<Creds>): Promise<RawHttpConnection> {
    const [host, port] = splitHostPort(address);
    return new Promise((resolve, reject) => {
      const s = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
      s.once('secureConnect', () => resolve(new RawHttpConnection(s)));
      s.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes received and not yet read as part of a response. */
  get buffered(): Buffer {
    return this.#buf;
  }

  get localPort(): number | undefined {
    return this.socket.localPort;
  }

  write(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Writes `request` and reads one response. */
  async send(request: string): Promise<HttpResponse> {
    this.socket.write(request);
    return this.readResponse();
  }

  /** Raw bytes received so far that are not part of a parsed response. */
  async readBytes(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.#buf.length < n) {
      if (this.#closed || Date.now() > deadline) throw new Error(`connection ended after ${this.#buf.length} of ${n} bytes`);
      await this.wait(deadline);
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  async readResponse(timeoutMs = 15_000): Promise<HttpResponse> {
    const deadline = Date.now() + timeoutMs;
    let headEnd = this.#buf.indexOf('\r\n\r\n');
    while (headEnd === -1) {
      if (this.#closed || Date.now() > deadline)
        throw new Error(`no response (closed: ${this.#closed}); got ${JSON.stringify(this.#buf.toString('latin1').slice(0, 200))}`);
      await this.wait(deadline);
      headEnd = this.#buf.indexOf('\r\n\r\n');
    }
    const head = this.#buf.subarray(0, headEnd).toString('latin1').split('\r\n');
    this.#buf = this.#buf.subarray(headEnd + 4);
    const status = Number(head[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      const k = line.slice(0, i).trim().toLowerCase();
      headers[k] = headers[k] !== undefined ? `${headers[k]}, ${line.slice(i + 1).trim()}` : line.slice(i + 1).trim();
    }
    if (status === 101) return { status, headers, body: Buffer.alloc(0) };
    let body: Buffer;
    if (headers['content-length'] !== undefined) body = await this.readBytes(Number(headers['content-length']), deadline - Date.now());
    else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      for (;;) {
        let nl = this.#buf.indexOf('\r\n');
        while (nl === -1) {
          if (this.#closed) throw new Error('connection ended inside a chunked body');
          await this.wait(deadline);
          nl = this.#buf.indexOf('\r\n');
        }
        const size = parseInt(this.#buf.subarray(0, nl).toString('latin1'), 16);
        this.#buf = this.#buf.subarray(nl + 2);
        const chunk = await this.readBytes(size + 2, deadline - Date.now());
        if (size === 0) break;
        parts.push(chunk.subarray(0, size));
      }
      body = Buffer.concat(parts);
    } else {
      while (!this.#closed) await this.wait(deadline);
      body = this.#buf;
      this.#buf = Buffer.alloc(0);
    }
    return { status, headers, body };
  }

  /** Resolves once the server closed the connection (or rejects after `timeoutMs`). */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#closed) {
      if (Date.now() > deadline) throw new Error('the connection stayed open');
      await this.wait(deadline);
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private wait(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(
        () => {
          this.#wake = undefined;
          resolve();
        },
        Math.max(1, Math.min(250, deadline - Date.now())),
      );
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = undefined;
        resolve();
      };
    });
  }
}

/** One raw request on a fresh connection, which is then closed. */
export async function rawCall(
  address: string,
  creds: Required<Creds>,
  request: string,
): Promise<HttpResponse & { localPort: number | undefined }> {
  const c = await RawHttpConnection.open(address, creds);
  const localPort = c.localPort;
  try {
    return { ...(await c.send(request)), localPort };
  } finally {
    c.close();
  }
}

/** `GET <target>` with Host and Connection: close, plus `extra` header lines. */
export function getRequest(target: string, extra: readonly string[] = [], method = 'GET'): string {
  return [`${method} ${target} HTTP/1.1`, 'Host: inventory.internal', ...extra, '', ''].join('\r\n');
}

/** The http-mode sidecar config body (inbound.mode: http). */
export function httpSidecarYaml(opts: {
  setDir: string;
  policy: string;
  forward: string;
  crl?: string;
  extraInbound?: string;
  extra?: string;
}): string {
  const lines = ['identity:', `  dir: ${opts.setDir}`];
  if (opts.crl) lines.push(`  crl: ${opts.crl}`);
  lines.push(`policy: ${opts.policy}`, 'inbound:', '  listen: 127.0.0.1:0', `  forward: ${opts.forward}`, '  mode: http');
  if (opts.extraInbound) lines.push(opts.extraInbound);
  if (opts.extra) lines.push(opts.extra);
  return `${lines.join('\n')}\n`;
}

/** The mesh policy used by most http tests. */
export const STOCK_POLICY = `services:
  inventory-service:
    allow:
      - order-service
      - from: notification-service
        methods: [GET]
        paths: [/stock, /stock/*]
`;

/**
 * http mode's HTTP/1.1 client to the local service, for requests from HTTP/1.1 callers:
 * a keep-alive pool of plain connections whose reads all land in one shared buffer.
 *
 * Why not node:http's client: it was most of http mode's cost. Measured on this machine
 * (bench/README.md, "http mode's upstream client"), the same sidecar with this client
 * instead of `http.request` + `Agent` spent about half the CPU per keep-alive request and
 * per megabyte of a download. node:http allocates a 64 KiB buffer per socket read and then
 * copies each body piece into another (its parser's `onBody` gets a copy), so a download
 * made two allocations per 64 KiB and V8 ran a full GC every ~60 ms on the external
 * memory alone; per request it built a ClientRequest, an IncomingMessage and the Agent's
 * bookkeeping.
 *
 * Body bytes are handed on as slices of the shared buffer, flagged `shared`: the consumer
 * may write them to a TLS socket that takes them synchronously (http-inbound.ts decides
 * when) and must copy them otherwise, before the next read overwrites them.
 *
 * Upgrades and HTTP/2 callers still use node:http (upstream-pool.ts): a WebSocket leaves
 * the pool for good, and HTTP/2 needs the response's trailers.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Address } from '../config/schema.js';
import { NO_DELAY } from '../net/socket.js';
import { writeAfterIo } from '../net/write-after-io.js';
import { ChunkedDecoder, FIELD_VALUE, MAX_HEAD_BYTES, parseResponseHead, TOKEN, type ResponseHead } from './http1-response.js';

/** One read's worth, as Node's own default. One thread reads into it, one socket at a time. */
const SHARED = Buffer.allocUnsafe(64 * 1024);
/** Idle connections kept (as the Agent's maxFreeSockets). */
const MAX_FREE = 256;
/** A kept connection is retired this long before the service's announced Keep-Alive
 *  timeout, as Node's Agent does, so a request rarely meets a connection being closed. */
const KEEP_ALIVE_MARGIN_MS = 1000;

export interface Http1Request {
  readonly method: string;
  /** Normalized path plus `?query`: what the policy allowed. */
  readonly path: string;
  /** Flat name/value list (upstreamRequestHeaders), Host included. */
  readonly headers: readonly string[];
  /** The caller's body, already de-framed by the server side; absent for a bodyless request. */
  readonly body?: { readonly stream: Readable; readonly chunked: boolean } | undefined;
  /** Until the response head: the service's time to answer. */
  readonly headTimeoutMs: number;
  /** After the head: silence allowed mid-body. */
  readonly idleTimeoutMs: number;
}

export interface Http1ResponseHandlers {
  /** The response head (interim 1xx heads are read past). May throw: the exchange then fails. */
  head(head: ResponseHead): void;
  /** Body bytes; `shared` slices are overwritten by the next read. false: stop reading until resume(). */
  data(chunk: Buffer, shared: boolean): boolean;
  /**
   * The response is complete. `last`: the body's final bytes, when they arrived with the
   * end (a Content-Length body), so that they and the end go out in one write.
   */
  end(last?: { readonly chunk: Buffer; readonly shared: boolean }): void;
  error(err: UpstreamError): void;
}

/** Why an exchange with the local service failed. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    /** The connection had carried an earlier exchange (the service may have closed it meanwhile). */
    readonly reused: boolean,
    /** Nothing of the response had arrived. */
    readonly beforeResponse: boolean,
    readonly timedOut = false,
  ) {
    super(message);
  }
}

export interface Http1Exchange {
  /** Reading stopped by a false from data(): start again. */
  resume(): void;
  /** Abandons the exchange; its connection is closed. */
  destroy(): void;
}

/** A request target Node's client would send: no white space, control characters or non-latin1. */
const REQUEST_TARGET = /^[\x21-\x7e\x80-\xff]+$/;

/**
 * The request head for the local service. Throws on a method, target or header that
 * would not be one well-formed line, as node:http's client did: whatever the caller's
 * parser let through, nothing written here can end a line early or start a second request.
 */
export function requestHead(method: string, path: string, headers: readonly string[]): string {
  if (!TOKEN.test(method)) throw new Error(`the method ${JSON.stringify(method.slice(0, 40))} is not a token`);
  if (!REQUEST_TARGET.test(path)) throw new Error('the request target holds white space or control characters');
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    if (!TOKEN.test(name)) throw new Error(`the header name ${JSON.stringify(name.slice(0, 40))} is not a token`);
    if (!FIELD_VALUE.test(value)) throw new Error(`the value of ${name} holds a control character`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}

export class Http1UpstreamPool {
  readonly #free: UpstreamConnection[] = [];
  #closed = false;

  constructor(readonly address: Address) {}

  /** Throws (before any connection is taken) when the request cannot be written: see requestHead. */
  request(r: Http1Request, handlers: Http1ResponseHandlers): Http1Exchange {
    const head = requestHead(r.method, r.path, r.headers);
    let conn = this.#free.pop();
    while (conn !== undefined && !conn.usable()) {
      conn.socket.destroy();
      conn = this.#free.pop();
    }
    conn ??= new UpstreamConnection(this.address, this);
    return conn.start(r, head, handlers);
  }

  /** A connection done with its exchange and able to carry another. */
  release(conn: UpstreamConnection): void {
    if (this.#closed || this.#free.length >= MAX_FREE) {
      conn.socket.destroy();
      return;
    }
    this.#free.push(conn);
  }

  forget(conn: UpstreamConnection): void {
    const i = this.#free.indexOf(conn);
    if (i >= 0) this.#free.splice(i, 1);
  }

  /** Closes the idle connections (shutdown); busy ones close when their exchange ends. */
  destroy(): void {
    this.#closed = true;
    for (const c of this.#free.splice(0)) c.socket.destroy();
  }
}

/** What request() returns: a class, not closures, as one is made per request. */
class ExchangeHandle implements Http1Exchange {
  constructor(
    readonly conn: UpstreamConnection,
    readonly n: number,
  ) {}

  resume(): void {
    this.conn.resumeExchange(this.n);
  }

  destroy(): void {
    this.conn.abandonExchange(this.n);
  }
}

const Phase = { Idle: 0, Head: 1, Body: 2 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

class UpstreamConnection {
  readonly socket: Socket;
  #phase: Phase = Phase.Idle;
  #exchanges = 0;
  #handlers: Http1ResponseHandlers | undefined;
  #request: Http1Request | undefined;
  /** Bytes of a response head that spans reads (a copy: the shared buffer is reused). */
  #head: Buffer | undefined;
  #framing: ResponseHead['framing'] = { kind: 'none' };
  #keepAlive = false;
  #left = 0;
  #chunked: ChunkedDecoder | undefined;
  #requestDone = false;
  #expiresAt = Number.POSITIVE_INFINITY;
  #paused = false;
  /** Stops forwarding the caller's body (the exchange ended): set while one is being sent. */
  #stopBody: (() => void) | undefined;

  constructor(
    address: Address,
    readonly pool: Http1UpstreamPool,
  ) {
    const onread = { buffer: SHARED, callback: (n: number, buf: Buffer) => this.onRead(buf, n) };
    this.socket =
      address.kind === 'unix'
        ? netConnect({ path: address.path, onread })
        : netConnect({ host: address.host, port: address.port, ...NO_DELAY, onread });
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.message, err.code));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => {
      this.pool.forget(this);
      this.fail('the local service closed the connection', 'ECONNRESET');
    });
    this.socket.on('timeout', () => this.fail('the local service did not answer in time', 'ETIMEDOUT', true));
  }

  /** Idle, open, and not past the service's keep-alive timeout. */
  usable(): boolean {
    return this.#phase === Phase.Idle && !this.socket.destroyed && this.socket.readyState === 'open' && Date.now() < this.#expiresAt;
  }

  start(r: Http1Request, head: string, handlers: Http1ResponseHandlers): Http1Exchange {
    this.#exchanges++;
    this.#phase = Phase.Head;
    this.#handlers = handlers;
    this.#request = r;
    this.#requestDone = false;
    this.socket.setTimeout(r.headTimeoutMs);
    if (r.body) this.sendBody(head, r.body);
    else {
      writeAfterIo(this.socket, head, 'latin1');
      this.#requestDone = true;
    }
    if (this.#paused) this.resume();
    return new ExchangeHandle(this, this.#exchanges);
  }

  /** resume() of exchange number `n`, if it is still the one under way. */
  resumeExchange(n: number): void {
    if (n === this.#exchanges && this.#request !== undefined) this.resume();
  }

  /** destroy() of exchange number `n`, if it is still the one under way. */
  abandonExchange(n: number): void {
    if (n === this.#exchanges && this.#request !== undefined) this.abandon();
  }

  private sendBody(head: string, body: { readonly stream: Readable; readonly chunked: boolean }): void {
    const socket = this.socket;
    socket.cork();
    socket.write(head, 'latin1');
    const { stream, chunked } = body;
    const onData = (chunk: Buffer) => {
      let ok: boolean;
      if (chunked) {
        socket.cork();
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        socket.write(chunk);
        ok = socket.write('\r\n', 'latin1');
        socket.uncork();
      } else ok = socket.write(chunk);
      if (!ok) {
        stream.pause();
        socket.once('drain', onDrain);
      }
    };
    const onDrain = () => stream.resume();
    const detach = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      socket.off('drain', onDrain);
      this.#stopBody = undefined;
    };
    const onEnd = () => {
      detach();
      if (chunked) socket.write('0\r\n\r\n', 'latin1');
      this.#requestDone = true;
      this.maybeRelease();
    };
    // The rest of an abandoned body is read and dropped, so the caller's connection moves on.
    this.#stopBody = () => {
      detach();
      stream.resume();
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    socket.uncork();
  }

  private resume(): void {
    this.#paused = false;
    this.socket.resume();
  }

  private onRead(buf: Buffer, n: number): boolean {
    const handlers = this.#handlers;
    if (handlers === undefined || this.#phase === Phase.Idle) {
      // Bytes nobody asked for: the service is out of step with this connection.
      this.socket.destroy();
      return false;
    }
    let data = buf.subarray(0, n);
    if (this.#phase === Phase.Head) {
      const rest = this.readHead(data);
      if (rest === undefined) return true;
      data = rest;
    }
    const more = this.readBody(data);
    // A response that completed in this read leaves nothing to hold back.
    if (!more && this.#phase === Phase.Body) {
      this.#paused = true;
      return false;
    }
    return true;
  }

  /** Consumes head bytes; returns the bytes after a complete (final) head, or undefined for more. */
  private readHead(data: Buffer): Buffer | undefined {
    for (;;) {
      const all = this.#head ? Buffer.concat([this.#head, data]) : data;
      const end = all.indexOf('\r\n\r\n', 0, 'latin1');
      // A head ended by bare LFs would never show its CRLF CRLF: refused at the first one.
      if (hasBareLf(all, end < 0 ? all.length : end)) {
        this.protocolError('a bare LF in the response head');
        return undefined;
      }
      if ((end < 0 ? all.length : end) > MAX_HEAD_BYTES) {
        this.protocolError(`a response head larger than ${MAX_HEAD_BYTES} bytes`);
        return undefined;
      }
      if (end < 0) {
        // Kept across reads: copied out of the shared buffer.
        this.#head = Buffer.from(all);
        return undefined;
      }
      this.#head = undefined;
      const parsed = parseResponseHead(all.toString('latin1', 0, end), this.#request!.method);
      if ('error' in parsed) {
        this.protocolError(parsed.error);
        return undefined;
      }
      data = all.subarray(end + 4);
      // 100 Continue, 102, 103 Early Hints: read past, the final response follows.
      if (parsed.status < 200) {
        if (parsed.status === 101) {
          this.protocolError('101 Switching Protocols to a request that asked for no upgrade');
          return undefined;
        }
        if (data.length === 0) return undefined;
        continue;
      }
      this.#phase = Phase.Body;
      this.#framing = parsed.framing;
      this.#keepAlive = parsed.keepAlive;
      this.#left = parsed.framing.kind === 'length' ? parsed.framing.length : 0;
      this.#chunked = parsed.framing.kind === 'chunked' ? new ChunkedDecoder() : undefined;
      this.#expiresAt =
        parsed.keepAliveTimeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + parsed.keepAliveTimeoutMs - KEEP_ALIVE_MARGIN_MS;
      this.socket.setTimeout(this.#request!.idleTimeoutMs);
      try {
        this.#handlers!.head(parsed);
      } catch (err) {
        this.protocolError((err as Error).message);
        return undefined;
      }
      return data;
    }
  }

  /** Body bytes to the handlers; false when they asked to stop reading. */
  private readBody(data: Buffer): boolean {
    const handlers = this.#handlers!;
    const shared = data.buffer === SHARED.buffer;
    let more = true;
    switch (this.#framing.kind) {
      case 'none':
        // Bytes after a complete response: the connection is out of step, not reused.
        if (data.length > 0) this.#keepAlive = false;
        this.complete();
        return true;
      case 'length': {
        if (data.length > this.#left) {
          this.#keepAlive = false;
          data = data.subarray(0, this.#left);
        }
        this.#left -= data.length;
        if (this.#left === 0) this.complete(data.length > 0 ? { chunk: data, shared } : undefined);
        else if (data.length > 0) more = handlers.data(data, shared);
        return more;
      }
      case 'chunked': {
        const used = this.#chunked!.push(data, (slice) => {
          if (!handlers.data(slice, shared)) more = false;
        });
        if (typeof used !== 'number') {
          this.protocolError(used.error);
          return true;
        }
        if (this.#chunked!.done) {
          if (used < data.length) this.#keepAlive = false;
          this.complete();
        }
        return more;
      }
      case 'close':
        if (data.length > 0) more = handlers.data(data, shared);
        return more;
    }
  }

  private onEnd(): void {
    if (this.#phase === Phase.Body && this.#framing.kind === 'close') {
      this.#keepAlive = false;
      this.complete();
    }
    this.socket.end();
  }

  /** The response is complete: tell the handlers, then free or close the connection. */
  private complete(last?: { readonly chunk: Buffer; readonly shared: boolean }): void {
    const handlers = this.#handlers!;
    // Answered before the caller's body was all sent (say a 413): the connection is not
    // reused, and what is left of the body is dropped.
    if (!this.#requestDone) {
      this.#keepAlive = false;
      this.#requestDone = true;
      this.#stopBody?.();
    }
    this.#phase = Phase.Idle;
    this.#handlers = undefined;
    this.socket.setTimeout(0);
    handlers.end(last);
    this.maybeRelease();
  }

  private maybeRelease(): void {
    if (this.#phase !== Phase.Idle || this.#handlers !== undefined || !this.#requestDone) return;
    if (this.#request === undefined) return;
    this.#request = undefined;
    if (this.#keepAlive && !this.socket.destroyed && !this.#paused) this.pool.release(this);
    else this.socket.destroy();
  }

  private protocolError(message: string): void {
    this.fail(`the local service sent a response that cannot be passed on (${message})`, 'EPROTO');
  }

  /** Ends the exchange under way, if any, with an error; the connection is not reused. */
  private fail(message: string, code: string | undefined, timedOut = false): void {
    const handlers = this.#handlers;
    const beforeResponse = this.#phase === Phase.Head;
    this.#stopBody?.();
    this.#handlers = undefined;
    this.#phase = Phase.Idle;
    this.#request = undefined;
    this.socket.destroy();
    handlers?.error(new UpstreamError(message, code, this.#exchanges > 1, beforeResponse, timedOut));
  }

  private abandon(): void {
    this.#stopBody?.();
    this.#handlers = undefined;
    this.#request = undefined;
    this.socket.destroy();
  }
}

/** Whether a LF not preceded by CR occurs in the first `limit` bytes. */
function hasBareLf(head: Buffer, limit: number): boolean {
  for (let i = head.indexOf(0x0a); i >= 0 && i < limit; i = head.indexOf(0x0a, i + 1)) {
    if (i === 0 || head[i - 1] !== 0x0d) return true;
  }
  return false;
}

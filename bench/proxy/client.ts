/**
 * The one benchmark client, used unchanged for every target, in its own process.
 * Raw sockets and a minimal HTTP/1.1 reader, so that the client's own cost stays small
 * and identical whatever it talks to.
 *
 * Usage: node dist/bench/proxy/client.js '<ClientJob as JSON>'  → one JSON line on stdout.
 * Exit 1 (with one line on stderr) when the target refuses or breaks the connection.
 *
 * Phases:
 *   probe       one new connection, one GET /small; fails unless 200
 *   keepalive   ONE connection, sequential GET /small for `seconds`: req/s, p50/p90/p99
 *   concurrent  `connections` keep-alive connections, each sequential, for `seconds`
 *   handshake   a new connection per request (GET /small, Connection: close) for `seconds`;
 *               `resume: true` offers the last TLS session ticket each time
 *   download    one connection, GET /big?bytes=N, MB/s from request to last byte
 */
import { readFileSync, writeSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

export interface ClientJob {
  readonly phase: 'probe' | 'keepalive' | 'concurrent' | 'handshake' | 'download';
  readonly host: string;
  readonly port: number;
  /** Absent: plaintext (the direct baseline). */
  readonly tls?: TlsFiles;
  readonly seconds?: number;
  readonly warmupMs?: number;
  readonly connections?: number;
  readonly resume?: boolean;
  readonly bytes?: number;
  /** Hard bound for any phase, so that a stuck target cannot hang the run. */
  readonly timeoutSeconds?: number;
}

export interface ClientResult {
  readonly phase: ClientJob['phase'];
  readonly ok: true;
  readonly count: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Us?: number;
  readonly p90Us?: number;
  readonly p99Us?: number;
  readonly handshakeP50Us?: number;
  readonly resumed?: number;
  readonly protocol?: string;
  readonly bytes?: number;
  readonly mbPerSecond?: number;
}

const SMALL_KEEPALIVE = Buffer.from('GET /small HTTP/1.1\r\nHost: bench\r\nUser-Agent: svcca-bench\r\n\r\n', 'latin1');
const SMALL_CLOSE = Buffer.from('GET /small HTTP/1.1\r\nHost: bench\r\nUser-Agent: svcca-bench\r\nConnection: close\r\n\r\n', 'latin1');
const HEADER_END = Buffer.from('\r\n\r\n', 'latin1');

class BenchError extends Error {}

/** Reads one HTTP/1.x response at a time from a socket; no copies of body bytes. */
class HttpReader {
  #state: 'idle' | 'head' | 'body' = 'idle';
  #head: Buffer | undefined;
  #left = 0;
  #untilEnd = false;
  #status = 0;
  #bytes = 0;
  #resolve: ((r: { status: number; bytes: number }) => void) | undefined;
  #reject: ((e: Error) => void) | undefined;
  #failed: Error | undefined;

  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => {
      if (this.#state === 'body' && this.#untilEnd) this.done();
      else if (this.#state !== 'idle') this.fail(new BenchError('the target closed the connection before the response was complete'));
    });
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => {
      if (this.#state !== 'idle') this.fail(new BenchError('the target closed the connection before the response was complete'));
    });
  }

  request(req: Buffer): Promise<{ status: number; bytes: number }> {
    if (this.#failed) return Promise.reject(this.#failed);
    this.#state = 'head';
    this.#head = undefined;
    this.#bytes = 0;
    this.#untilEnd = false;
    const p = new Promise<{ status: number; bytes: number }>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.socket.write(req);
    return p;
  }

  private onData(d: Buffer): void {
    if (this.#state === 'body') {
      this.#bytes += d.length;
      if (!this.#untilEnd) {
        this.#left -= d.length;
        if (this.#left <= 0) this.done();
      }
      return;
    }
    if (this.#state === 'idle') {
      this.fail(new BenchError(`unexpected ${d.length} bytes between responses`));
      return;
    }
    const buf = this.#head ? Buffer.concat([this.#head, d]) : d;
    const idx = buf.indexOf(HEADER_END);
    if (idx < 0) {
      if (buf.length > 65536) this.fail(new BenchError('response headers larger than 64 KiB'));
      else this.#head = buf;
      return;
    }
    const head = buf.toString('latin1', 0, idx);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (!status) {
      this.fail(new BenchError(`not an HTTP response: ${JSON.stringify(head.slice(0, 60))}`));
      return;
    }
    this.#status = Number(status[1]);
    const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
    const rest = buf.length - idx - 4;
    this.#bytes = rest;
    this.#state = 'body';
    if (cl) {
      this.#left = Number(cl[1]) - rest;
      if (this.#left <= 0) this.done();
    } else this.#untilEnd = true;
  }

  private done(): void {
    this.#state = 'idle';
    const r = this.#resolve;
    this.#resolve = this.#reject = undefined;
    r?.({ status: this.#status, bytes: this.#bytes });
  }

  private fail(e: Error): void {
    this.#failed ??= e;
    const r = this.#reject;
    this.#state = 'idle';
    this.#resolve = this.#reject = undefined;
    r?.(e);
  }
}

interface Opened {
  readonly socket: Socket;
  readonly reader: HttpReader;
  readonly handshakeUs: number;
  readonly reused: boolean;
  readonly protocol: string;
}

class Connector {
  /** Built once: passing cert/key/ca to every tls.connect would rebuild it (and parse
   *  the key) per connection and make the client, not the target, the bottleneck. */
  readonly #tls: SecureContext | undefined;
  /** The newest TLS session ticket received (TLS 1.3 sends them after the handshake). */
  session: Buffer | undefined;

  constructor(private readonly job: ClientJob) {
    this.#tls = job.tls ? createSecureContext({ cert: readFileSync(job.tls.cert), key: readFileSync(job.tls.key), ca: readFileSync(job.tls.ca), minVersion: 'TLSv1.2' }) : undefined;
  }

  open(resume: boolean): Promise<Opened> {
    const t0 = process.hrtime.bigint();
    return new Promise<Opened>((resolve, reject) => {
      let socket: Socket;
      const onError = (e: Error) => {
        socket.destroy();
        reject(e);
      };
      if (!this.#tls) {
        socket = netConnect({ host: this.job.host, port: this.job.port, noDelay: true });
        socket.once('error', onError);
        socket.once('connect', () => {
          socket.off('error', onError);
          resolve({ socket, reader: new HttpReader(socket), handshakeUs: Number(process.hrtime.bigint() - t0) / 1000, reused: false, protocol: 'tcp' });
        });
        return;
      }
      const s: TLSSocket = tlsConnect({
        host: this.job.host,
        port: this.job.port,
        secureContext: this.#tls,
        ...(resume && this.session ? { session: this.session } : {}),
      });
      socket = s;
      s.setNoDelay(true);
      s.on('session', (ticket: Buffer) => {
        this.session = ticket;
      });
      s.once('error', onError);
      s.once('secureConnect', () => {
        s.off('error', onError);
        resolve({ socket: s, reader: new HttpReader(s), handshakeUs: Number(process.hrtime.bigint() - t0) / 1000, reused: s.isSessionReused(), protocol: s.getProtocol() ?? 'tls' });
      });
    });
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

class Samples {
  #a = new Float64Array(1 << 16);
  #n = 0;
  push(v: number): void {
    if (this.#n === this.#a.length) {
      const b = new Float64Array(this.#a.length * 2);
      b.set(this.#a);
      this.#a = b;
    }
    this.#a[this.#n++] = v;
  }
  get length(): number {
    return this.#n;
  }
  sorted(): Float64Array {
    return this.#a.slice(0, this.#n).sort();
  }
}

const nowUs = () => Number(process.hrtime.bigint()) / 1000;

function expectOk(r: { status: number }, what: string): void {
  if (r.status !== 200) throw new BenchError(`${what}: HTTP ${r.status}, expected 200`);
}

/** Sequential requests on one open connection until `until` (µs clock). */
async function loop(c: Opened, until: number, lat: Samples | undefined): Promise<number> {
  let n = 0;
  for (;;) {
    const t = nowUs();
    if (t >= until) return n;
    const r = await c.reader.request(SMALL_KEEPALIVE);
    expectOk(r, 'GET /small');
    lat?.push(nowUs() - t);
    n++;
  }
}

async function runKeepalive(job: ClientJob, connections: number): Promise<ClientResult> {
  const connector = new Connector(job);
  const conns: Opened[] = [];
  try {
    for (let i = 0; i < connections; i++) conns.push(await connector.open(false));
    const warm = nowUs() + (job.warmupMs ?? 200) * 1000;
    await Promise.all(conns.map((c) => loop(c, warm, undefined)));
    const lat = new Samples();
    const start = nowUs();
    const until = start + (job.seconds ?? 2) * 1e6;
    const counts = await Promise.all(conns.map((c) => loop(c, until, lat)));
    const seconds = (nowUs() - start) / 1e6;
    const count = counts.reduce((a, b) => a + b, 0);
    const s = lat.sorted();
    return { phase: job.phase, ok: true, count, seconds, perSecond: count / seconds, p50Us: percentile(s, 50), p90Us: percentile(s, 90), p99Us: percentile(s, 99), protocol: conns[0]!.protocol };
  } finally {
    for (const c of conns) c.socket.destroy();
  }
}

async function oneShot(connector: Connector, resume: boolean): Promise<{ totalUs: number; handshakeUs: number; reused: boolean; protocol: string }> {
  const t0 = nowUs();
  const c = await connector.open(resume);
  try {
    const r = await c.reader.request(SMALL_CLOSE);
    expectOk(r, 'GET /small on a new connection');
    return { totalUs: nowUs() - t0, handshakeUs: c.handshakeUs, reused: c.reused, protocol: c.protocol };
  } finally {
    c.socket.destroy();
  }
}

async function runHandshakes(job: ClientJob): Promise<ClientResult> {
  const connector = new Connector(job);
  const resume = job.resume === true;
  // Warm-up, and (for resumption) the first ticket.
  const warm = nowUs() + (job.warmupMs ?? 200) * 1000;
  let protocol = '';
  do protocol = (await oneShot(connector, resume)).protocol;
  while (nowUs() < warm);
  if (resume && !connector.session) throw new BenchError('the target sent no TLS session ticket');
  const lat = new Samples();
  const hs = new Samples();
  let reused = 0;
  const start = nowUs();
  const until = start + (job.seconds ?? 2) * 1e6;
  while (nowUs() < until) {
    const r = await oneShot(connector, resume);
    lat.push(r.totalUs);
    hs.push(r.handshakeUs);
    if (r.reused) reused++;
  }
  const seconds = (nowUs() - start) / 1e6;
  const s = lat.sorted();
  return {
    phase: job.phase,
    ok: true,
    count: lat.length,
    seconds,
    perSecond: lat.length / seconds,
    p50Us: percentile(s, 50),
    p90Us: percentile(s, 90),
    p99Us: percentile(s, 99),
    handshakeP50Us: percentile(hs.sorted(), 50),
    resumed: reused,
    protocol,
  };
}

async function runDownload(job: ClientJob): Promise<ClientResult> {
  const bytes = job.bytes ?? 200 * 1024 * 1024;
  const c = await new Connector(job).open(false);
  try {
    const t0 = nowUs();
    const r = await c.reader.request(Buffer.from(`GET /big?bytes=${bytes} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n`, 'latin1'));
    expectOk(r, 'GET /big');
    const seconds = (nowUs() - t0) / 1e6;
    if (r.bytes !== bytes) throw new BenchError(`download: received ${r.bytes} bytes, expected ${bytes}`);
    return { phase: job.phase, ok: true, count: 1, seconds, perSecond: 1 / seconds, bytes, mbPerSecond: bytes / 1e6 / seconds, protocol: c.protocol };
  } finally {
    c.socket.destroy();
  }
}

async function run(job: ClientJob): Promise<ClientResult> {
  switch (job.phase) {
    case 'probe': {
      const r = await oneShot(new Connector(job), false);
      return { phase: 'probe', ok: true, count: 1, seconds: r.totalUs / 1e6, perSecond: 1e6 / r.totalUs, protocol: r.protocol };
    }
    case 'keepalive':
      return runKeepalive(job, 1);
    case 'concurrent':
      return runKeepalive(job, job.connections ?? 16);
    case 'handshake':
      return runHandshakes(job);
    case 'download':
      return runDownload(job);
  }
}

function main(): void {
  let job: ClientJob;
  try {
    job = JSON.parse(process.argv[2] ?? '') as ClientJob;
  } catch {
    process.stderr.write("usage: client.js '<job JSON>'\n");
    process.exit(2);
  }
  const limit = setTimeout(() => {
    writeSync(2, `bench client: ${job.phase} did not finish within ${job.timeoutSeconds ?? 60} s\n`);
    process.exit(1);
  }, (job.timeoutSeconds ?? 60) * 1000);
  run(job).then(
    (r) => {
      clearTimeout(limit);
      writeSync(1, `${JSON.stringify(r)}\n`); // sync: exit follows
      process.exit(0);
    },
    (e: unknown) => {
      const msg = e instanceof Error ? ((e as NodeJS.ErrnoException).code ? `${(e as NodeJS.ErrnoException).code}: ${e.message}` : e.message) : String(e);
      writeSync(2, `bench client: ${job.phase} against ${job.host}:${job.port}: ${msg}\n`);
      process.exit(1);
    },
  );
}

main();

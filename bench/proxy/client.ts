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
 *   downloads   `connections` keep-alive connections in parallel, each repeating
 *               GET /big?bytes=N (1 MiB) for `seconds`: MB/s over all of them
 *   ttfb        a new connection per request, one at a time, `samples` of them (bounded by
 *               `seconds`): time from the connection being ready (secureConnect for TLS,
 *               connect for plaintext) to the first response byte, and from the start of the
 *               connect to the first byte
 *   idle        opens `connections` connections (`concurrency` at a time) and leaves them
 *               idle; prints `open <n>` and waits for a line on stdin, then checks that a few of
 *               them still answer, closes them all and prints its result
 *
 * When `cpuPids` is given, the client reads their utime+stime from /proc (and its own) at the
 * start and at the end of the measured window, so warm-up and connection set-up are not
 * charged to the target.
 */
import { readFileSync, writeSync } from 'node:fs';
import { cpuSeconds, ticksPerSecond } from './procfs.js';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

export interface ClientJob {
  readonly phase: 'probe' | 'keepalive' | 'concurrent' | 'handshake' | 'download' | 'downloads' | 'ttfb' | 'idle';
  readonly host: string;
  readonly port: number;
  /** Absent: plaintext (the direct baseline). */
  readonly tls?: TlsFiles;
  readonly seconds?: number;
  readonly warmupMs?: number;
  readonly connections?: number;
  readonly resume?: boolean;
  readonly bytes?: number;
  /** handshake: connections in flight at once (default 1); idle: handshakes in flight. */
  readonly concurrency?: number;
  /** ttfb: how many new connections (the phase also stops after `seconds`). */
  readonly samples?: number;
  /** The target's processes, whose CPU is read from /proc around the measured window. */
  readonly cpuPids?: readonly number[];
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
  /** CPU seconds of `cpuPids` during the measured window (from /proc). */
  readonly targetCpu?: number;
  /** CPU seconds of this client during the measured window (from /proc), and as % of one core. */
  readonly clientCpu?: number;
  readonly clientCpuPct?: number;
  /** ttfb: ready → first byte, and connect start → first byte. */
  readonly ttfbP50Us?: number;
  readonly ttfbP99Us?: number;
  readonly connectTtfbP50Us?: number;
  readonly connectTtfbP99Us?: number;
  /** ttfb: every sample (µs), so that percentiles can be taken over all repetitions. */
  readonly ttfbSamplesUs?: number[];
  readonly connectTtfbSamplesUs?: number[];
  /** idle: connections the target closed while they sat idle; checked ones that answered. */
  readonly closedWhileIdle?: number;
  readonly checkedOk?: number;
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
  /** µs clock of the first byte of the current response. */
  firstByteUs = 0;

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
    if (!this.#head) this.firstByteUs = nowUs();
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
  /** µs clock when the connect began and when the connection was ready (secureConnect / connect). */
  readonly startUs: number;
  readonly readyUs: number;
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
    this.#tls = job.tls
      ? createSecureContext({
          cert: readFileSync(job.tls.cert),
          key: readFileSync(job.tls.key),
          ca: readFileSync(job.tls.ca),
          minVersion: 'TLSv1.2',
        })
      : undefined;
  }

  open(resume: boolean): Promise<Opened> {
    const t0 = process.hrtime.bigint();
    const startUs = Number(t0) / 1000;
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
          const t1 = process.hrtime.bigint();
          resolve({
            socket,
            reader: new HttpReader(socket),
            handshakeUs: Number(t1 - t0) / 1000,
            startUs,
            readyUs: Number(t1) / 1000,
            reused: false,
            protocol: 'tcp',
          });
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
        const t1 = process.hrtime.bigint();
        resolve({
          socket: s,
          reader: new HttpReader(s),
          handshakeUs: Number(t1 - t0) / 1000,
          startUs,
          readyUs: Number(t1) / 1000,
          reused: s.isSessionReused(),
          protocol: s.getProtocol() ?? 'tls',
        });
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

/** The measured window: wall time and /proc CPU of the target's processes and of this client. */
function startWindow(job: ClientJob): () => { seconds: number; targetCpu?: number; clientCpu: number; clientCpuPct: number } {
  ticksPerSecond(); // getconf runs once, outside the window
  const pids = job.cpuPids ?? [];
  const t0 = nowUs();
  const target0 = pids.length ? cpuSeconds(pids) : 0;
  const self0 = cpuSeconds([process.pid]);
  return () => {
    const self1 = cpuSeconds([process.pid]);
    const target1 = pids.length ? cpuSeconds(pids) : 0;
    const seconds = (nowUs() - t0) / 1e6;
    const clientCpu = self1 - self0;
    return { seconds, ...(pids.length ? { targetCpu: target1 - target0 } : {}), clientCpu, clientCpuPct: (100 * clientCpu) / seconds };
  };
}

function expectOk(r: { status: number }, what: string): void {
  if (r.status !== 200) throw new BenchError(`${what}: HTTP ${r.status}, expected 200`);
}

/** Sequential requests on one open connection until `until` (µs clock). */
async function loop(
  c: Opened,
  until: number,
  lat: Samples | undefined,
  req: Buffer = SMALL_KEEPALIVE,
  expectBytes?: number,
): Promise<number> {
  let n = 0;
  for (;;) {
    const t = nowUs();
    if (t >= until) return n;
    const r = await c.reader.request(req);
    expectOk(r, req === SMALL_KEEPALIVE ? 'GET /small' : 'GET /big');
    if (expectBytes !== undefined && r.bytes !== expectBytes) throw new BenchError(`received ${r.bytes} bytes, expected ${expectBytes}`);
    lat?.push(nowUs() - t);
    n++;
  }
}

async function openAll(connector: Connector, n: number): Promise<Opened[]> {
  const conns: Opened[] = [];
  try {
    for (let i = 0; i < n; i++) conns.push(await connector.open(false));
  } catch (e) {
    for (const c of conns) c.socket.destroy();
    throw e;
  }
  return conns;
}

async function runKeepalive(job: ClientJob, connections: number): Promise<ClientResult> {
  const connector = new Connector(job);
  const conns = await openAll(connector, connections);
  try {
    const warm = nowUs() + (job.warmupMs ?? 200) * 1000;
    await Promise.all(conns.map((c) => loop(c, warm, undefined)));
    const lat = new Samples();
    const end = startWindow(job);
    const until = nowUs() + (job.seconds ?? 2) * 1e6;
    const counts = await Promise.all(conns.map((c) => loop(c, until, lat)));
    const w = end();
    const count = counts.reduce((a, b) => a + b, 0);
    const s = lat.sorted();
    return {
      phase: job.phase,
      ok: true,
      count,
      ...w,
      perSecond: count / w.seconds,
      p50Us: percentile(s, 50),
      p90Us: percentile(s, 90),
      p99Us: percentile(s, 99),
      protocol: conns[0]!.protocol,
    };
  } finally {
    for (const c of conns) c.socket.destroy();
  }
}

interface Shot {
  totalUs: number;
  handshakeUs: number;
  /** ready → first response byte, and connect start → first response byte. */
  ttfbUs: number;
  connectTtfbUs: number;
  reused: boolean;
  protocol: string;
}

async function oneShot(connector: Connector, resume: boolean): Promise<Shot> {
  const c = await connector.open(resume);
  try {
    const r = await c.reader.request(SMALL_CLOSE);
    expectOk(r, 'GET /small on a new connection');
    return {
      totalUs: nowUs() - c.startUs,
      handshakeUs: c.handshakeUs,
      ttfbUs: c.reader.firstByteUs - c.readyUs,
      connectTtfbUs: c.reader.firstByteUs - c.startUs,
      reused: c.reused,
      protocol: c.protocol,
    };
  } finally {
    c.socket.destroy();
  }
}

async function runHandshakes(job: ClientJob): Promise<ClientResult> {
  const connector = new Connector(job);
  const resume = job.resume === true;
  const workers = Math.max(1, job.concurrency ?? 1);
  // Warm-up, and (for resumption) the first ticket.
  const warm = nowUs() + (job.warmupMs ?? 200) * 1000;
  let protocol = '';
  do protocol = (await oneShot(connector, resume)).protocol;
  while (nowUs() < warm);
  if (resume && !connector.session) throw new BenchError('the target sent no TLS session ticket');
  const lat = new Samples();
  const hs = new Samples();
  let reused = 0;
  const end = startWindow(job);
  const until = nowUs() + (job.seconds ?? 2) * 1e6;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (nowUs() < until) {
        const r = await oneShot(connector, resume);
        lat.push(r.totalUs);
        hs.push(r.handshakeUs);
        if (r.reused) reused++;
      }
    }),
  );
  const w = end();
  const s = lat.sorted();
  return {
    phase: job.phase,
    ok: true,
    count: lat.length,
    ...w,
    perSecond: lat.length / w.seconds,
    p50Us: percentile(s, 50),
    p90Us: percentile(s, 90),
    p99Us: percentile(s, 99),
    handshakeP50Us: percentile(hs.sorted(), 50),
    resumed: reused,
    protocol,
  };
}

async function runTtfb(job: ClientJob): Promise<ClientResult> {
  const connector = new Connector(job);
  const resume = job.resume === true;
  const warm = nowUs() + (job.warmupMs ?? 200) * 1000;
  let protocol = '';
  do protocol = (await oneShot(connector, resume)).protocol;
  while (nowUs() < warm);
  const ttfb = new Samples();
  const total = new Samples();
  let reused = 0;
  const end = startWindow(job);
  const until = nowUs() + (job.seconds ?? 5) * 1e6;
  const want = job.samples ?? 100;
  while (ttfb.length < want && nowUs() < until) {
    const r = await oneShot(connector, resume);
    ttfb.push(r.ttfbUs);
    total.push(r.connectTtfbUs);
    if (r.reused) reused++;
  }
  const w = end();
  const a = ttfb.sorted();
  const b = total.sorted();
  return {
    phase: job.phase,
    ok: true,
    count: ttfb.length,
    ...w,
    perSecond: ttfb.length / w.seconds,
    ttfbP50Us: percentile(a, 50),
    ttfbP99Us: percentile(a, 99),
    connectTtfbP50Us: percentile(b, 50),
    connectTtfbP99Us: percentile(b, 99),
    ttfbSamplesUs: Array.from(a, Math.round),
    connectTtfbSamplesUs: Array.from(b, Math.round),
    resumed: reused,
    protocol,
  };
}

async function runDownload(job: ClientJob): Promise<ClientResult> {
  const bytes = job.bytes ?? 200 * 1024 * 1024;
  const c = await new Connector(job).open(false);
  try {
    const end = startWindow(job);
    const r = await c.reader.request(Buffer.from(`GET /big?bytes=${bytes} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n`, 'latin1'));
    expectOk(r, 'GET /big');
    const w = end();
    if (r.bytes !== bytes) throw new BenchError(`download: received ${r.bytes} bytes, expected ${bytes}`);
    return {
      phase: job.phase,
      ok: true,
      count: 1,
      ...w,
      perSecond: 1 / w.seconds,
      bytes,
      mbPerSecond: bytes / 1e6 / w.seconds,
      protocol: c.protocol,
    };
  } finally {
    c.socket.destroy();
  }
}

/** `connections` keep-alive connections, each repeating GET /big?bytes=N for `seconds`. */
async function runDownloads(job: ClientJob): Promise<ClientResult> {
  const bytes = job.bytes ?? 1024 * 1024;
  const req = Buffer.from(`GET /big?bytes=${bytes} HTTP/1.1\r\nHost: bench\r\n\r\n`, 'latin1');
  const conns = await openAll(new Connector(job), job.connections ?? 4);
  try {
    await Promise.all(conns.map((c) => loop(c, nowUs() + 1, undefined, req, bytes))); // one each: warm
    const lat = new Samples();
    const end = startWindow(job);
    const until = nowUs() + (job.seconds ?? 2) * 1e6;
    const counts = await Promise.all(conns.map((c) => loop(c, until, lat, req, bytes)));
    const w = end();
    const count = counts.reduce((a, b) => a + b, 0);
    const s = lat.sorted();
    return {
      phase: job.phase,
      ok: true,
      count,
      ...w,
      perSecond: count / w.seconds,
      bytes: count * bytes,
      mbPerSecond: (count * bytes) / 1e6 / w.seconds,
      p50Us: percentile(s, 50),
      p99Us: percentile(s, 99),
      protocol: conns[0]!.protocol,
    };
  } finally {
    for (const c of conns) c.socket.destroy();
  }
}

/** Opens `connections` idle connections, says so, waits for a line on stdin, checks a few, closes. */
async function runIdle(job: ClientJob): Promise<ClientResult> {
  const connector = new Connector(job);
  const n = job.connections ?? 1000;
  const conns: Opened[] = [];
  let closed = 0;
  const t0 = nowUs();
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.max(1, job.concurrency ?? 32) }, async () => {
        while (next < n) {
          next++;
          const c = await connector.open(false);
          c.socket.once('close', () => closed++);
          conns.push(c);
        }
      }),
    );
    const openSeconds = (nowUs() - t0) / 1e6;
    writeSync(1, `open ${conns.length} ${openSeconds.toFixed(2)}\n`);
    await new Promise<void>((resolve) => {
      process.stdin.once('data', () => resolve());
      process.stdin.once('end', () => resolve());
    });
    process.stdin.pause();
    const closedWhileIdle = closed;
    // Every 500th connection must still answer (the target kept it, and forwards on it).
    let checkedOk = 0;
    for (let i = 0; i < conns.length; i += 500) {
      const c = conns[i]!;
      if (c.socket.destroyed) continue;
      const r = await c.reader.request(SMALL_KEEPALIVE).catch(() => undefined);
      if (r?.status === 200) checkedOk++;
    }
    return {
      phase: job.phase,
      ok: true,
      count: conns.length,
      seconds: openSeconds,
      perSecond: conns.length / openSeconds,
      closedWhileIdle,
      checkedOk,
      protocol: conns[0]?.protocol ?? '',
    };
  } finally {
    for (const c of conns) c.socket.destroy();
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
      return runKeepalive(job, job.connections ?? 32);
    case 'handshake':
      return runHandshakes(job);
    case 'download':
      return runDownload(job);
    case 'downloads':
      return runDownloads(job);
    case 'ttfb':
      return runTtfb(job);
    case 'idle':
      return runIdle(job);
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
  const limit = setTimeout(
    () => {
      writeSync(2, `bench client: ${job.phase} did not finish within ${job.timeoutSeconds ?? 60} s\n`);
      process.exit(1);
    },
    (job.timeoutSeconds ?? 60) * 1000,
  );
  run(job).then(
    (r) => {
      clearTimeout(limit);
      writeSync(1, `${JSON.stringify(r)}\n`); // sync: exit follows
      process.exit(0);
    },
    (e: unknown) => {
      const msg =
        e instanceof Error
          ? (e as NodeJS.ErrnoException).code
            ? `${(e as NodeJS.ErrnoException).code}: ${e.message}`
            : e.message
          : String(e);
      writeSync(2, `bench client: ${job.phase} against ${job.host}:${job.port}: ${msg}\n`);
      process.exit(1);
    },
  );
}

main();

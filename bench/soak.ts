/**
 * The soak (issue 12), by hand, never by `make test`: `bash bench/soak.sh`.
 *
 * One svcca tcp sidecar and one svcca http sidecar (SOAK_HTTP=0: tcp only) in front of the
 * bench service, for SOAK_SECONDS (600) under a mixed load from this process:
 *   - keep-alive: 4 connections per sidecar, sequential GET /small, reopened if closed;
 *   - churn: 2 workers per sidecar, a new mTLS connection per GET /small (every other one
 *     offering the last TLS session ticket);
 *   - large transfers: 1 worker per sidecar, GET /big?bytes=8 MiB over a new connection,
 *     byte count checked;
 * and every SOAK_CHANGE_SECONDS (30): a certificate rotation (`svcca rotate bench-server
 * bench-client --renew-before 100%`: both sets swapped through `..data`), and, half a period
 * later, a CRL change (`svcca issue other-N` + `svcca revoke other-N` + `svcca crl`).
 * The client picks up its rotated set for new connections.
 *
 * Every SOAK_SAMPLE_SECONDS (5) it samples each sidecar's open fds (/proc/PID/fd) and VmRSS.
 * It prints a curve (start, warm-up, each minute, end), the value after warm-up
 * (SOAK_WARMUP_SECONDS, 60) and at the end with the % change, the failed requests (must be 0:
 * exit 1 otherwise), and writes the samples to bench/results/soak-<time>.json.
 *
 * Usage: node dist/bench/soak.js --work <tmpdir> [--results bench/results]
 */
import { mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync, writeSync } from 'node:fs';
import { get } from 'node:http';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { memory, processTree } from './proxy/procfs.js';
import { freePort, runCommand, spawnLogged, tail, waitListening, runBenchMain } from './proxy/processes.js';
import { preparePki, startSidecar, type Target } from './proxy/targets.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repo = resolve(here, '..', '..');
const CLI = join(repo, 'dist', 'bin', 'svcca.mjs');
const SIDECAR = join(repo, 'dist', 'bin', 'svcca-sidecar.mjs');
const SERVICE = join(here, 'proxy', 'http-service.js');

const num = (name: string, fallback: number) => {
  const v = Number(process.env[name]);
  return process.env[name] && Number.isFinite(v) && v > 0 ? v : fallback;
};
const DURATION = num('SOAK_SECONDS', 600);
const WARMUP = Math.min(num('SOAK_WARMUP_SECONDS', 60), DURATION / 2);
const CHANGE_EVERY = num('SOAK_CHANGE_SECONDS', 30);
const SAMPLE_EVERY = num('SOAK_SAMPLE_SECONDS', 5);
const HTTP = process.env.SOAK_HTTP !== '0';
const BIG = 8 * 1024 * 1024;

const say = (s: string) => void writeSync(1, `${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};

class SoakFailure extends Error {}

// ---- the load ----------------------------------------------------------------------

interface Counters {
  ok: number;
  failed: number;
  /** keep-alive connections closed by the other side between requests (then reopened). */
  closedBetween: number;
  bytes: number;
  resumed: number;
}
const failures: string[] = [];
const serverSerials = new Set<string>();

/** The client's credential set, re-read (through `..data`, once per change) when it rotates. */
class ClientCreds {
  #context: SecureContext | undefined;
  #seen = '';
  session: Buffer | undefined;
  constructor(private readonly dir: string) {}
  context(): SecureContext {
    const data = realpathSync(join(this.dir, '..data'));
    if (data !== this.#seen || !this.#context) {
      this.#context = createSecureContext({
        cert: readFileSync(join(data, 'tls.crt')),
        key: readFileSync(join(data, 'tls.key')),
        ca: readFileSync(join(data, 'ca.crt')),
      });
      this.#seen = data;
      this.session = undefined;
    }
    return this.#context;
  }
}

function fail(c: Counters, what: string): void {
  c.failed++;
  if (failures.length < 50) failures.push(`${new Date().toISOString()} ${what}`);
}

function open(port: number, creds: ClientCreds, resume: boolean): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      secureContext: creds.context(),
      ...(resume && creds.session ? { session: creds.session } : {}),
    });
    s.setNoDelay(true);
    s.on('session', (t: Buffer) => (creds.session = t));
    s.once('error', reject);
    s.once('secureConnect', () => {
      s.off('error', reject);
      const serial = s.getPeerCertificate()?.serialNumber;
      if (serial) serverSerials.add(serial);
      resolve(s);
    });
  });
}

/** One HTTP/1.1 exchange on `s`: resolves with [status, body bytes]; rejects on close or error. */
function exchange(s: TLSSocket, path: string, close: boolean): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let status = 0;
    let left = -1;
    let got = 0;
    const cleanup = () => {
      s.off('data', onData);
      s.off('close', onClose);
      s.off('error', onError);
    };
    const onData = (d: Buffer) => {
      if (left < 0) {
        head = Buffer.concat([head, d]);
        const i = head.indexOf('\r\n\r\n');
        if (i < 0) return;
        const text = head.toString('latin1', 0, i);
        status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
        left = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
        d = head.subarray(i + 4);
      }
      got += d.length;
      left -= d.length;
      if (left <= 0) {
        cleanup();
        resolve([status, got]);
      }
    };
    const onClose = () => {
      cleanup();
      reject(new Error(`connection closed after ${got} body bytes`));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    s.on('data', onData);
    s.once('close', onClose);
    s.once('error', onError);
    s.write(`GET ${path} HTTP/1.1\r\nHost: soak\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
  });
}

let stopping = false;

async function keepAliveWorker(port: number, creds: ClientCreds, c: Counters, label: string): Promise<void> {
  while (!stopping) {
    let s: TLSSocket;
    try {
      s = await open(port, creds, false);
    } catch (e) {
      fail(c, `${label} keep-alive connect: ${(e as Error).message}`);
      await sleep(100);
      continue;
    }
    let closed = false;
    s.once('close', () => (closed = true));
    while (!stopping && !closed) {
      try {
        const [status, n] = await exchange(s, '/small', false);
        if (status === 200 && n === 64) c.ok++;
        else fail(c, `${label} keep-alive: HTTP ${status}, ${n} bytes`);
      } catch (e) {
        // Closed between requests (nothing in flight would have been lost) is counted apart;
        // a close with a request in flight is a failed request.
        fail(c, `${label} keep-alive request: ${(e as Error).message}`);
        break;
      }
      await sleep(2); // a busy but not saturating caller
    }
    if (closed && !stopping) c.closedBetween++;
    s.destroy();
  }
}

async function churnWorker(port: number, creds: ClientCreds, c: Counters, label: string, path: string, bytes: number): Promise<void> {
  let i = 0;
  while (!stopping) {
    const resume = i++ % 2 === 1;
    try {
      const s = await open(port, creds, resume);
      if (s.isSessionReused()) c.resumed++;
      try {
        const [status, n] = await exchange(s, path, true);
        if (status === 200 && n === bytes) {
          c.ok++;
          c.bytes += n;
        } else fail(c, `${label} ${path}: HTTP ${status}, ${n} bytes of ${bytes}`);
      } finally {
        s.destroy();
      }
    } catch (e) {
      fail(c, `${label} ${path}: ${(e as Error).message}`);
      await sleep(50);
    }
    if (bytes === 64) await sleep(5);
  }
}

// ---- the sidecar's state ---------------------------------------------------------

interface Sample {
  t: number;
  fds: number;
  rssMb: number;
  ok: number;
  failed: number;
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function metricsText(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/metrics', timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('error', () => resolve(''));
    req.on('timeout', () => {
      req.destroy();
      resolve('');
    });
  });
}

function adminPortOf(t: Target, work: string): number {
  const cfg = readFileSync(join(work, `sidecar-${t.id}.yaml`), 'utf8');
  return Number(/admin:\n\s+listen: 127\.0\.0\.1:(\d+)/.exec(cfg)?.[1] ?? 0);
}

const pct = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && a !== 0 ? `${(((b - a) / a) * 100).toFixed(1)} %` : '–');

// ---- main ------------------------------------------------------------------------

async function main(): Promise<void> {
  const work = arg('--work');
  if (!work) throw new SoakFailure('usage: soak.js --work <empty temp dir> [--results <dir>]');
  const resultsDir = resolve(arg('--results') ?? join(repo, 'bench', 'results'));
  say(
    `== soak: ${DURATION} s (warm-up ${WARMUP} s), a rotation and a CRL change every ${CHANGE_EVERY} s, samples every ${SAMPLE_EVERY} s; svcca tcp${HTTP ? ' + svcca http' : ''}`,
  );

  const ca = join(work, 'ca');
  const env = { ...process.env, SVCCA_PASSPHRASE: `soak-${process.pid}-${Date.now()}`, SVCCA_DIR: ca };
  const cli = async (...args: string[]) => {
    const r = await runCommand(process.execPath, [CLI, ...args, '--dir', ca], { timeoutMs: 60_000, env });
    if (r.code !== 0 && r.code !== 4) throw new SoakFailure(`svcca ${args.join(' ')} failed (${r.code}): ${(r.stderr || r.stdout).trim()}`);
    return r;
  };
  await cli('init', '--trust-domain', 'bench.test');
  await cli('issue', 'bench-server', '--ip', '127.0.0.1', '--out', join(work, 'bench-server'));
  await cli('issue', 'bench-client', '--out', join(work, 'bench-client'));
  const policy = join(work, 'policy.yaml');
  writeFileSync(policy, 'services:\n  bench-server:\n    allow: [bench-client]\n');
  const pki = preparePki(work, join(work, 'bench-server'), join(work, 'bench-client'), ca, policy, 'bench.test');
  // The sidecars watch the CA's live crl.pem (preparePki's copy is for the benchmark).
  const livePki = { ...pki, crl: join(ca, 'crl.pem') };

  const servicePort = await freePort();
  const serviceLog = join(work, 'service.log');
  const service = spawnLogged(process.execPath, [SERVICE, String(servicePort)], { log: serviceLog });
  if (!(await waitListening(servicePort, service))) throw new SoakFailure(`the service did not start: ${tail(serviceLog)}`);
  const sidecars: Target[] = [];
  for (const mode of HTTP ? (['tcp', 'http'] as const) : (['tcp'] as const)) {
    const r = await startSidecar(mode, livePki, servicePort, SIDECAR);
    if (!r.ok) throw new SoakFailure(`svcca ${mode}: ${r.reason}`);
    sidecars.push(r.target);
  }

  const creds = new ClientCreds(join(work, 'bench-client'));
  const counters = new Map<string, Counters>();
  const workers: Promise<void>[] = [];
  for (const t of sidecars) {
    const label = t.id;
    const c: Counters = { ok: 0, failed: 0, closedBetween: 0, bytes: 0, resumed: 0 };
    counters.set(label, c);
    for (let i = 0; i < 4; i++) workers.push(keepAliveWorker(t.port, creds, c, label));
    for (let i = 0; i < 2; i++) workers.push(churnWorker(t.port, creds, c, label, '/small', 64));
    workers.push(churnWorker(t.port, creds, c, label, `/big?bytes=${BIG}`, BIG));
  }

  const samples = new Map<string, Sample[]>(sidecars.map((t) => [t.id, []]));
  const t0 = Date.now();
  const elapsed = () => (Date.now() - t0) / 1000;
  const take = () => {
    for (const t of sidecars) {
      const pid = t.child!.pid!;
      const c = counters.get(t.id)!;
      if (t.child!.exitCode !== null || t.child!.signalCode !== null)
        throw new SoakFailure(`${t.id} exited during the soak: ${tail(t.log, 5)}`);
      samples.get(t.id)!.push({ t: elapsed(), fds: fdCount(pid), rssMb: memory(processTree(pid)).rss / 1e6, ok: c.ok, failed: c.failed });
    }
  };
  take();

  let changes = 0;
  let crlChanges = 0;
  let nextChange = CHANGE_EVERY;
  let nextCrl = CHANGE_EVERY / 2;
  let nextSample = SAMPLE_EVERY;
  let lastLine = 0;
  while (elapsed() < DURATION) {
    await sleep(250);
    const now = elapsed();
    if (now >= nextSample) {
      take();
      nextSample += SAMPLE_EVERY;
    }
    if (now >= nextCrl) {
      nextCrl += CHANGE_EVERY;
      const other = `other-${++crlChanges}`;
      await cli('issue', other);
      await cli('revoke', other, '--reason', 'keyCompromise');
      await cli('crl');
    }
    if (now >= nextChange) {
      nextChange += CHANGE_EVERY;
      await cli('rotate', 'bench-server', 'bench-client', '--renew-before', '100%');
      changes++;
    }
    if (now - lastLine >= 60) {
      lastLine = now;
      const parts = sidecars.map((t) => {
        const c = counters.get(t.id)!;
        const last = samples.get(t.id)!.at(-1)!;
        return `${t.id}: ${c.ok} ok, ${c.failed} failed, ${last.fds} fds, ${last.rssMb.toFixed(0)} MB`;
      });
      say(`   ${now.toFixed(0).padStart(4)} s  ${parts.join('; ')}`);
    }
  }
  take();
  stopping = true;
  await Promise.race([Promise.all(workers), sleep(15_000)]);

  // ---- report ----
  say('');
  let totalFailed = 0;
  const report: Record<string, unknown> = {};
  for (const t of sidecars) {
    const list = samples.get(t.id)!;
    const at = (sec: number) => list.reduce((best, x) => (Math.abs(x.t - sec) < Math.abs(best.t - sec) ? x : best), list[0]!);
    const warm = at(WARMUP);
    const end = list.at(-1)!;
    const c = counters.get(t.id)!;
    totalFailed += c.failed;
    const metrics = await metricsText(adminPortOf(t, work));
    const reloads = metrics
      .split('\n')
      .filter((l) => l.startsWith('svcca_sidecar_reloads_total{') && !/result="unchanged"/.test(l))
      .map((l) => l.replace('svcca_sidecar_reloads_total', '').trim())
      .join(', ');
    say(`${t.id} (${t.version}):`);
    say(
      `  requests: ${c.ok} ok, ${c.failed} FAILED${c.failed ? ' ✗' : ''}; keep-alive connections closed by the sidecar between requests: ${c.closedBetween}; resumed handshakes: ${c.resumed}; big-transfer bytes: ${(c.bytes / 1e9).toFixed(2)} GB`,
    );
    say(`  reloads (from /metrics): ${reloads || 'none reported'}`);
    const row = (label: string, x: Sample) =>
      `  ${label.padEnd(14)} ${x.t.toFixed(0).padStart(5)} s  ${String(x.fds).padStart(5)} fds  ${x.rssMb.toFixed(1).padStart(7)} MB RSS  ${String(x.ok).padStart(9)} ok`;
    say(row('start', list[0]!));
    say(row(`warm-up`, warm));
    for (let m = 60; m < end.t - 1; m += 60) if (Math.abs(m - WARMUP) > SAMPLE_EVERY) say(row(`minute ${m / 60}`, at(m)));
    say(row('end', end));
    say(
      `  after warm-up → end: fds ${warm.fds} → ${end.fds} (${pct(warm.fds, end.fds)}), RSS ${warm.rssMb.toFixed(1)} → ${end.rssMb.toFixed(1)} MB (${pct(warm.rssMb, end.rssMb)})`,
    );
    report[t.id] = { version: t.version, counters: c, warmup: warm, end, samples: list, reloads };
  }
  say(
    `changes: ${changes} rotations (server + client sets), ${crlChanges} CRL changes; distinct server certificates seen by the client: ${serverSerials.size}`,
  );
  if (failures.length) {
    say('first failures:');
    for (const f of failures.slice(0, 10)) say(`  ${f}`);
  }
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ benchmark: 'soak', date: new Date().toISOString(), settings: { DURATION, WARMUP, CHANGE_EVERY, SAMPLE_EVERY, HTTP }, changes, crlChanges, serverCertificatesSeen: serverSerials.size, failures, sidecars: report }, null, 2)}\n`,
  );
  say(`results: ${file}`);
  if (totalFailed > 0) throw new SoakFailure(`${totalFailed} failed requests (must be 0)`);
  if (changes > 0 && serverSerials.size < 2) throw new SoakFailure('the sidecars never presented a rotated certificate');
}

runBenchMain(
  'soak',
  main,
  (err) => err instanceof SoakFailure,
  () => (stopping = true),
);

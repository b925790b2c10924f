/**
 * `svcca serve` under load (issue 16; run by hand, never by `make test`):
 *   node dist/bench/serve-renew.js
 * 1. BENCH_SERVE_CLIENTS (100) clients renew their own certificate without pause for
 *    BENCH_SERVE_SECONDS (20): a new key and CSR each time, POST /v1/renew with mTLS. A
 *    renewal must present the certificate it renews, so each one is a new TLS connection
 *    (the previous one's certificate is superseded by the answer).
 * 2. The same clients on keep-alive connections poll GET /v1/crl.pem with If-None-Match.
 * BENCH_SERVE_RATE=200 paces the clients to offer that many renewals per second in all
 * (latency at a given load) instead of renewing as fast as they are answered;
 * BENCH_SERVE_RAMP=5 first raises the rate to it over 5 s, not counted (see RAMP).
 * The server logs at its default level (info: a JSON line per request), as deployed, to a
 * file in the bench's scratch directory; BENCH_SERVE_LOG=FILE keeps a copy of it.
 * The server runs pinned to one core (taskset -c 0) when taskset exists. Prints
 * renewals/s, p50/p99 latency (request sent to answer read, TLS handshake included) and
 * the server's RSS (current and peak).
 *
 * Several replicas on PostgreSQL (issue 17):
 *   node dist/bench/serve-renew.js --ledger postgres --replicas 2 [--renewals 1000]
 * starts a throwaway PostgreSQL (as the tests do), and N `svcca serve` replicas, each on a
 * CA directory of its own (copies of the same key files), not pinned; the clients send
 * their renewals to the replicas in turn. --renewals N takes exactly N renewals instead of
 * renewing for BENCH_SERVE_SECONDS, then checks the ledger: no duplicate serial, one
 * certificate row and one renew event per renewal.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { openCaDir } from '../cli/store/ca-dir.js';
import { openLedger } from '../cli/ca/ca-session.js';
import { startPostgresServer, type PgServer } from '../test/helpers/postgres-server.js';
import { loadAuthority } from '../cli/ca/authority.js';
import { issueAndRecord } from '../cli/ca/issuance.js';
import { caRequest, CA_SERVER_SERVICE, type CaTls } from '../common/ca-client.js';
import { buildCsrPem } from '../common/csr-builder.js';
import { exportKeyPem, generateKey } from '../common/keys.js';

const SVCCA = fileURLToPath(new URL('../bin/svcca.mjs', import.meta.url));
const CLIENTS = Number(process.env.BENCH_SERVE_CLIENTS ?? 100);
const SECONDS = Number(process.env.BENCH_SERVE_SECONDS ?? 20);
/** Offered renewals per second across all clients (open loop); unset: as fast as answered. */
const RATE = process.env.BENCH_SERVE_RATE ? Number(process.env.BENCH_SERVE_RATE) : undefined;
/** The first seconds of renewals, reported apart from the rest (0: not). */
const WARMUP = Number(process.env.BENCH_SERVE_WARMUP ?? 3);
/**
 * C client only: first ramp the offered rate from a tenth of BENCH_SERVE_RATE up to it over
 * this many seconds, not counted (the server's CPU over them is, per renewal), then measure
 * BENCH_SERVE_SECONDS at the full rate: the steady state of a server that was not hit at
 * full rate while its code was still cold. 0: full rate from the first renewal.
 */
const RAMP = Number(process.env.BENCH_SERVE_RAMP ?? 0);
const PASSPHRASE = 'bench-passphrase';
const ARGS = parseArgs({
  options: {
    replicas: { type: 'string', default: '1' },
    ledger: { type: 'string', default: 'sqlite' },
    renewals: { type: 'string' },
    client: { type: 'string', default: 'auto' },
  },
}).values;
const REPLICAS = Number(ARGS.replicas);
const POSTGRES = ARGS.ledger === 'postgres';
/** Exactly this many renewals in all (then the ledger is checked), instead of SECONDS of them. */
const FIXED_RENEWALS = ARGS.renewals === undefined ? undefined : Number(ARGS.renewals);
/** Which load client renews: `c` (bench/renew-client.c), `node`, or `auto` (c when it builds). */
const CLIENT = String(ARGS.client);
if (!Number.isInteger(REPLICAS) || REPLICAS < 1 || !['sqlite', 'postgres'].includes(String(ARGS.ledger)))
  throw new Error('usage: serve-renew.js [--replicas N] [--ledger sqlite|postgres] [--renewals N] [--client auto|c|node]');
if (!['auto', 'c', 'node'].includes(CLIENT)) throw new Error('--client: auto, c or node');
if (REPLICAS > 1 && !POSTGRES) throw new Error('--replicas 2 needs --ledger postgres (replicas share the ledger)');
if (RAMP > 0 && !RATE) throw new Error('BENCH_SERVE_RAMP needs BENCH_SERVE_RATE (the rate to ramp up to)');

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;
}

function summary(name: string, samples: number[], seconds: number, errors: number): string {
  const s = [...samples].sort((a, b) => a - b);
  return `${name.padEnd(34)} ${(samples.length / seconds).toFixed(1).padStart(8)}/s  p50 ${percentile(s, 50).toFixed(1).padStart(6)} ms  p99 ${percentile(s, 99).toFixed(1).padStart(6)} ms  errors ${errors}`;
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function procStatus(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** The address a server logged in its `start` line. */
function startedAt(logPath: string): Promise<URL> {
  return new Promise<URL>((resolve, reject) => {
    const deadline = Date.now() + 15_000;
    const look = () => {
      const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
      const line = text.split('\n').find((l) => l.includes('"event":"start"'));
      if (line) resolve(new URL(`https://${(JSON.parse(line) as { listen: string }).listen}`));
      else if (Date.now() > deadline) reject(new Error(`svcca serve did not start: ${logPath}`));
      else setTimeout(look, 100);
    };
    look();
  });
}

interface Client {
  readonly service: string;
  certPem: string;
  keyPem: string;
}
type Csr = { key: ReturnType<typeof generateKey>; csr: string };
interface Renewals {
  readonly latencies: number[];
  /** When each renewal in `latencies` was sent, in ms from the first. */
  readonly sentAt: number[];
  /** Every renewal's serial, the ramp's included. */
  readonly serials: string[];
  readonly errors: number;
  /** Renewals answered during the ramp (BENCH_SERVE_RAMP), not in `latencies`. */
  readonly warm: number;
  /** The measured seconds, after the ramp. */
  readonly seconds: number;
  /** The client's CPU over the renewals, as a percentage of one core. */
  readonly clientCpuPct: number;
}

/** The clients renew from this process, with svcca's own client code (common/ca-client.ts). */
async function renewWithNode(urls: URL[], caPem: string, serverId: string, clients: Client[], csrs: Csr[]): Promise<Renewals> {
  const clientCpu0 = process.cpuUsage();
  const latencies: number[] = [];
  const sentAt: number[] = [];
  const serials: string[] = [];
  let errors = 0;
  let sent = 0;
  const t0 = performance.now();
  const end = Date.now() + SECONDS * 1000;
  const more = () => (FIXED_RENEWALS === undefined ? Date.now() < end : sent < FIXED_RENEWALS);
  await Promise.all(
    clients.map(async (c, i) => {
      const gapMs = RATE ? (CLIENTS / RATE) * 1000 : 0;
      let next = Date.now() + (gapMs * i) / CLIENTS;
      while (more()) {
        if (RATE) {
          await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
          next += gapMs;
        }
        const target = urls[sent++ % urls.length]!;
        // A CSR names the service, but the CA takes the names from its ledger: any will do.
        const made = csrs.pop();
        const key = made?.key ?? generateKey('ecdsa-p256');
        const csr = made?.csr ?? buildCsrPem(key, c.service);
        const tls: CaTls = { caPem, serverId, certPem: c.certPem, keyPem: c.keyPem };
        const start = performance.now();
        const answer = await caRequest(target, 'POST', '/v1/renew', tls, { body: { csr } }).catch(() => undefined);
        if (answer?.status !== 200) {
          errors++;
          continue;
        }
        latencies.push(performance.now() - start);
        sentAt.push(start - t0);
        const body = JSON.parse(answer.body.toString('utf8')) as { certificate: string; serial: string };
        serials.push(body.serial);
        c.certPem = body.certificate;
        c.keyPem = exportKeyPem(key);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(clientCpu0);
  return { latencies, sentAt, serials, errors, warm: 0, seconds, clientCpuPct: ((cpu.user + cpu.system) / 1e6 / seconds) * 100 };
}

/** bench/renew-client.c built into WORK, or undefined when there is no C compiler or OpenSSL headers. */
function buildCClient(work: string): string | undefined {
  const source = fileURLToPath(new URL('../../bench/renew-client.c', import.meta.url));
  const binary = join(work, 'renew-client');
  const cc = spawnSync('cc', ['-O2', '-o', binary, source, '-lssl', '-lcrypto', '-lpthread', '-lm'], { encoding: 'utf8' });
  if (cc.status === 0) return binary;
  console.log(`(the C client did not build, so the clients are Node's: ${(cc.stderr ?? cc.error?.message ?? '').split('\n')[0]})`);
  return undefined;
}

/**
 * The same renewals from bench/renew-client.c, in its own process on this process's core:
 * the files it reads are written here, its lines read back.
 */
/** The files bench/renew-client.c reads: ca.crt, each client's first chain and key, each renewal's body and key. */
function writeCJobs(work: string, caPem: string, clients: Client[], csrs: Csr[]): string {
  const jobs = join(work, 'jobs');
  mkdirSync(jobs);
  writeFileSync(join(jobs, 'ca.crt'), caPem);
  for (const [i, c] of clients.entries()) writeFileSync(join(jobs, `client-${i}.pem`), c.certPem + c.keyPem);
  for (const [j, { key, csr }] of csrs.entries()) {
    writeFileSync(join(jobs, `job-${j}.body`), JSON.stringify({ csr }));
    writeFileSync(join(jobs, `job-${j}.key`), exportKeyPem(key));
  }
  // Several MB of files just written: on ext4 (data=ordered) the CA's first fsyncs would
  // otherwise wait for their writeback too, a stall of seconds that belongs to the bench.
  spawnSync('sync');
  return jobs;
}

/**
 * The renewals from bench/renew-client.c, in its own process on this process's core.
 * keepChain: the clients keep their first certificates (for the floor server, which signs nothing).
 */
async function renewWithC(binary: string, jobs: string, url: URL, serverId: string, keepChain = false): Promise<Renewals> {
  const caFile = join(jobs, 'ca.crt');
  const child = spawn(binary, [url.hostname, url.port, caFile, serverId, jobs, String(CLIENTS), String(RATE ?? 0), String(SECONDS)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RENEW_CLIENT_KEEP: keepChain ? '1' : '0', RENEW_CLIENT_RAMP: String(RAMP) },
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  const code = await new Promise<number | null>((r) => child.once('close', r));
  if (code !== 0) throw new Error(`bench/renew-client.c exited ${code}`);
  const latencies: number[] = [];
  const sentAt: number[] = [];
  const serials: string[] = [];
  let errors = 0;
  let warm = 0;
  let cpu = NaN;
  let seconds = NaN;
  const reasons = new Map<string, number>();
  const output = Buffer.concat(chunks).toString('utf8');
  // Each renewal's latency and when it was sent, to tell queueing from stalls.
  if (process.env.BENCH_SERVE_TRACE) writeFileSync(`${process.env.BENCH_SERVE_TRACE}${keepChain ? '.floor' : ''}`, output);
  for (const line of output.split('\n')) {
    const [kind, a, b, c] = line.split(' ');
    if (kind === 'warm') {
      warm++;
      serials.push(b!);
    } else if (kind === 'ok') {
      latencies.push(Number(a));
      serials.push(b!);
      sentAt.push(Number(c));
    } else if (kind === 'error') {
      errors++;
      const reason = line.slice('error '.length);
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    } else if (kind === 'cpu') {
      cpu = Number(a);
      seconds = Number(b) - RAMP;
    }
  }
  for (const [reason, n] of reasons) console.log(`C client: ${n} × ${reason}`);
  if (seconds < SECONDS - 1) console.log(`C client: the prepared renewals ran out after ${seconds.toFixed(1)} s`);
  return { latencies, sentAt, serials, errors, warm, seconds, clientCpuPct: (cpu / (seconds + RAMP)) * 100 };
}

/**
 * bench/serve-floor.ts under the same C client, rate and seconds, pinned as the CA server
 * was: what a Node mTLS endpoint costs per new connection and request before any CA work.
 */
async function runFloor(
  binary: string,
  jobs: string,
  floorDir: string,
  pin: string[],
  like: Renewals,
  chain: string,
): Promise<{ renewals: Renewals; cpuPerRequestMs: number }> {
  const answerFile = join(floorDir, 'answer.json');
  // An answer of svcca's shape and size: a client's chain (the client keeps its own).
  writeFileSync(
    answerFile,
    JSON.stringify({
      spiffeId: 'spiffe://bench.example/bench-0',
      serial: like.serials[0] ?? '00',
      notBefore: new Date().toISOString(),
      notAfter: new Date().toISOString(),
      clamped: false,
      certificate: chain,
      ca: readFileSync(join(floorDir, 'ca.crt'), 'utf8'),
    }),
  );
  const script = fileURLToPath(new URL('./serve-floor.js', import.meta.url));
  const server = spawn(pin[0] ?? process.execPath, [...pin.slice(1), ...(pin.length ? [process.execPath] : []), script], {
    env: { ...process.env, SERVE_FLOOR_DIR: floorDir, SERVE_FLOOR_ANSWER: answerFile },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const port = await new Promise<string>((resolve, reject) => {
      server.stdout.once('data', (d: Buffer) => resolve(d.toString('utf8').trim()));
      server.once('exit', (code) => reject(new Error(`bench/serve-floor.ts exited ${code}`)));
    });
    const cpu0 = cpuSeconds(server.pid!);
    const renewals = await renewWithC(binary, jobs, new URL(`https://127.0.0.1:${port}`), 'spiffe://bench.example/bench-floor', true);
    const cpuPerRequestMs = ((cpuSeconds(server.pid!) - cpu0) * 1000) / Math.max(1, renewals.latencies.length + renewals.warm);
    return { renewals, cpuPerRequestMs };
  } finally {
    server.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'svcca-serve-bench-'));
  const caDir = join(work, 'ca');
  let pg: PgServer | undefined;
  const env: NodeJS.ProcessEnv = { ...process.env, SVCCA_PASSPHRASE: PASSPHRASE };
  let ledgerFlags: string[] = [];
  if (POSTGRES) {
    pg = await startPostgresServer();
    Object.assign(process.env, pg.env); // the seeding below opens the ledger in this process
    Object.assign(env, pg.env);
    ledgerFlags = ['--ledger', await pg.createDatabase('bench_serve')];
  }
  const init = spawnSync(process.execPath, [SVCCA, 'init', '--trust-domain', 'bench.example', '--dir', caDir, ...ledgerFlags], {
    env,
    encoding: 'utf8',
  });
  if (init.status !== 0) throw new Error(init.stderr);

  // The clients' first certificates, issued in process (100 CLI runs would take longer than the bench).
  const { dir, config } = openCaDir(caDir);
  const authority = loadAuthority(dir, config, PASSPHRASE);
  const ledger = await openLedger(dir, config);
  const clients: Client[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const service = `bench-${i}`;
    const issued = await issueAndRecord(authority, ledger, {
      service,
      ttlMs: 86_400_000,
      dnsNames: [],
      ips: [],
      setDir: join(work, 'sets', service),
      kind: 'issue',
      actor: 'bench',
      why: 'bench',
    });
    clients.push({ service, certPem: issued.record.certPem + authority.intermediate.pem, keyPem: exportKeyPem(issued.key!) });
  }
  // The floor server's credential set (bench/serve-floor.ts), from the same CA.
  const floorDir = join(work, 'floor');
  const floorSet = await issueAndRecord(authority, ledger, {
    service: 'bench-floor',
    ttlMs: 86_400_000,
    dnsNames: [],
    ips: ['127.0.0.1'],
    setDir: floorDir,
    kind: 'issue',
    actor: 'bench',
    why: 'bench',
  });
  mkdirSync(floorDir, { recursive: true });
  writeFileSync(join(floorDir, 'tls.crt'), floorSet.record.certPem + authority.intermediate.pem);
  writeFileSync(join(floorDir, 'tls.key'), exportKeyPem(floorSet.key!));
  writeFileSync(join(floorDir, 'ca.crt'), readFileSync(join(caDir, 'ca.crt')));
  await ledger.close();

  // SQLite: one server pinned to one core, as issue 16 measured it. PostgreSQL: never
  // pinned, so one replica and two are compared on the same (whole) machine.
  const pin = REPLICAS === 1 && !POSTGRES && spawnSync('taskset', ['--version']).status === 0 ? ['taskset', '-c', '0'] : [];
  const prof = [
    ...(process.env.BENCH_SERVE_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_SERVE_PROF}`] : []),
    // e.g. --trace-gc, which NODE_OPTIONS does not take
    ...(process.env.BENCH_SERVE_NODE_FLAGS ?? '').split(' ').filter(Boolean),
  ];
  // The clients on the other core, every thread of this process (-a): they must not take
  // the server's core, and how busy theirs is is reported.
  if (pin.length) spawnSync('taskset', ['-a', '-pc', '1', String(process.pid)]);
  const servers: ChildProcess[] = [];
  for (let r = 0; r < REPLICAS; r++) {
    // Each replica on a CA directory of its own, as on another host.
    const replicaDir = r === 0 ? caDir : join(work, `ca-${r}`);
    if (r > 0) cpSync(caDir, replicaDir, { recursive: true });
    servers.push(
      spawn(
        pin[0] ?? process.execPath,
        [
          ...pin.slice(1),
          ...(pin.length ? [process.execPath] : []),
          ...prof,
          SVCCA,
          'serve',
          '--listen',
          '127.0.0.1:0',
          '--rate-limit',
          '1000000',
          '--replica',
          `bench-${r}`,
          '--dir',
          replicaDir,
        ],
        // The default log level, as deployed: one JSON line per renewal, to a file.
        { env, stdio: ['ignore', openSync(join(work, `serve-${r}.log`), 'w'), 'inherit'] },
      ),
    );
  }
  const cleanup = async () => {
    // SIGTERM first: the servers drain and exit (and write a --cpu-prof if asked for).
    await Promise.all(
      servers.map(async (server) => {
        const exited = new Promise((r) => server.once('exit', r));
        server.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        server.kill('SIGKILL');
      }),
    );
    await pg?.destroy();
    if (process.env.BENCH_SERVE_LOG) cpSync(join(work, 'serve-0.log'), process.env.BENCH_SERVE_LOG);
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGTERM', () => void cleanup().then(() => process.exit(1)));
  try {
    const urls = await Promise.all(servers.map((_, r) => startedAt(join(work, `serve-${r}.log`))));
    const url = urls[0]!;
    const caPem = readFileSync(join(caDir, 'ca.crt'), 'utf8');
    const serverId = `spiffe://bench.example/${CA_SERVER_SERVICE}`;
    const rssBefore = servers.map((s) => procStatus(s.pid!, 'VmRSS'));
    // The clients' keys and CSRs are made before the clock starts: making them is the
    // workload's cost, not the CA's, and on the one client core it would queue the answers.
    const pending = FIXED_RENEWALS ?? Math.ceil((RATE ?? 300) * (SECONDS + 0.6 * RAMP) * 1.1);
    const csrs: Csr[] = [];
    for (let i = 0; i < pending; i++) {
      const key = generateKey('ecdsa-p256');
      csrs.push({ key, csr: buildCsrPem(key, clients[i % CLIENTS]!.service) });
    }
    const cClient = urls.length === 1 && FIXED_RENEWALS === undefined && CLIENT !== 'node' ? buildCClient(work) : undefined;
    if (RAMP > 0 && !cClient) throw new Error('BENCH_SERVE_RAMP needs the C client (cc and libssl-dev; not with replicas or --renewals)');
    if (CLIENT === 'c' && !cClient)
      throw new Error('--client c: cannot build bench/renew-client.c (needs cc and libssl-dev) or not with replicas/--renewals');
    const cpu0 = servers.map((s) => cpuSeconds(s.pid!));

    // 1. Renewals.
    const jobs = cClient ? writeCJobs(work, caPem, clients, csrs) : undefined;
    const renewals =
      cClient && jobs ? await renewWithC(cClient, jobs, url, serverId) : await renewWithNode(urls, caPem, serverId, clients, csrs);
    const { latencies: renewLatencies, serials, errors: renewErrors, seconds: renewSeconds, clientCpuPct } = renewals;
    const rssAfterRenew = servers.map((s) => procStatus(s.pid!, 'VmRSS'));
    const serverCpu = servers.reduce((sum, s, i) => sum + cpuSeconds(s.pid!) - cpu0[i]!, 0);
    const cpuPerRenewalMs = (serverCpu * 1000) / Math.max(1, renewLatencies.length + renewals.warm);

    // The ledger agrees with what the clients were answered.
    let ledgerCheck = '';
    if (pg) {
      const db = await pg.client('bench_serve');
      try {
        const q = async (sql: string) => Number((await db.query<{ n: string }>(sql)).rows[0]!.n);
        const rows = await q("SELECT count(*) AS n FROM certificates WHERE service LIKE 'bench-%'");
        const events = await q("SELECT count(*) AS n FROM events WHERE kind = 'renew' AND service LIKE 'bench-%'");
        const distinct = new Set(serials).size;
        const ok = distinct === serials.length && rows === CLIENTS + serials.length && events === serials.length;
        ledgerCheck = `ledger check: ${serials.length} renewals answered, ${distinct} distinct serials, ${rows - CLIENTS} renewal rows, ${events} renew events: ${ok ? 'OK' : 'MISMATCH'}`;
        if (!ok) process.exitCode = 1;
      } finally {
        await db.end();
      }
    }

    // 2. Keep-alive CRL polling (the first replica).
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS, ca: caPem, checkServerIdentity: () => undefined });
    const crlLatencies: number[] = [];
    let crlErrors = 0;
    const t1 = performance.now();
    const end2 = Date.now() + Math.min(10, SECONDS) * 1000;
    let etag: string | undefined;
    await Promise.all(
      clients.map(async () => {
        while (Date.now() < end2) {
          const start = performance.now();
          const status = await new Promise<number>((resolve) => {
            const req = request(
              { host: url.hostname, port: url.port, path: '/v1/crl.pem', agent, headers: etag ? { 'if-none-match': etag } : {} },
              (res) => {
                if (typeof res.headers.etag === 'string') etag = res.headers.etag;
                res.resume();
                res.on('end', () => resolve(res.statusCode ?? 0));
              },
            );
            req.on('error', () => resolve(0));
            req.end();
          });
          if (status === 200 || status === 304) crlLatencies.push(performance.now() - start);
          else crlErrors++;
        }
      }),
    );
    const crlSeconds = (performance.now() - t1) / 1000;
    agent.destroy();

    // 3. The floor: the same client and load against a plain node:https mTLS server.
    const floor = cClient && jobs ? await runFloor(cClient, jobs, floorDir, pin, renewals, clients[0]!.certPem) : undefined;

    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(
      `svcca serve bench: ${REPLICAS} replica(s) on ${POSTGRES ? 'PostgreSQL' : 'SQLite'}, ${CLIENTS} clients${RATE ? ` offering ${RATE} renewals/s` : ' renewing as fast as answered'}${FIXED_RENEWALS ? `, ${FIXED_RENEWALS} renewals` : ''}, ${pin.length ? 'server pinned to one core (taskset -c 0)' : 'not pinned'}; load average ${load}`,
    );
    if (renewals.warm > 0)
      console.log(
        `ramp: the rate rose from ${(RATE ?? 0) / 10}/s to ${RATE}/s over ${RAMP} s (${renewals.warm} renewals, not counted below)`,
      );
    console.log(summary(`renew (new key, new mTLS connection)`, renewLatencies, renewSeconds, renewErrors));
    if (WARMUP > 0 && WARMUP < renewSeconds) {
      // A server that has just started runs its JavaScript unoptimised and queues what
      // comes in meanwhile; the steady state is what a CA that has been up for a while gives.
      const steady = renewLatencies.filter((_, i) => renewals.sentAt[i]! >= WARMUP * 1000);
      console.log(summary(`  of them, sent after the first ${WARMUP} s`, steady, renewSeconds - WARMUP, 0));
      console.log(
        summary(
          `  of them, sent in the first ${WARMUP} s`,
          renewLatencies.filter((_, i) => renewals.sentAt[i]! < WARMUP * 1000),
          WARMUP,
          0,
        ),
      );
    }
    console.log(
      `server CPU per renewal (all replicas): ${cpuPerRenewalMs.toFixed(2)} ms (one core's capacity: about ${Math.floor(1000 / cpuPerRenewalMs)} renewals/s)`,
    );
    console.log(
      `client (${cClient ? 'C, OpenSSL: bench/renew-client.c' : 'Node'}) CPU: ${clientCpuPct.toFixed(0)}% of ${pin.length ? 'its own core (taskset -c 1)' : 'one core'} (near 100%: the client, not the server, set the pace)`,
    );
    if (ledgerCheck) console.log(ledgerCheck);
    if (floor) {
      console.log(summary('floor: plain node:https, same load', floor.renewals.latencies, floor.renewals.seconds, floor.renewals.errors));
      console.log(
        summary(
          `  of them, sent after the first ${WARMUP} s`,
          floor.renewals.latencies.filter((_, i) => floor.renewals.sentAt[i]! >= WARMUP * 1000),
          floor.renewals.seconds - WARMUP,
          0,
        ),
      );
      console.log(
        `floor CPU per request: ${floor.cpuPerRequestMs.toFixed(2)} ms; svcca serve ÷ floor: ${(cpuPerRenewalMs / floor.cpuPerRequestMs).toFixed(2)}× (svcca's own work: ${(cpuPerRenewalMs - floor.cpuPerRequestMs).toFixed(2)} ms per renewal)`,
      );
    }
    console.log(summary('GET /v1/crl.pem keep-alive (304s)', crlLatencies, crlSeconds, crlErrors));
    for (const [i, s] of servers.entries()) {
      console.log(
        `server ${i} RSS: ${rssBefore[i]!.toFixed(0)} MB idle, ${rssAfterRenew[i]!.toFixed(0)} MB after renewals, ${procStatus(s.pid!, 'VmRSS').toFixed(0)} MB now, peak ${procStatus(s.pid!, 'VmHWM').toFixed(0)} MB`,
      );
    }
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

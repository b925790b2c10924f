/**
 * `make bench`, the proxy half (issue 12): svcca-sidecar against a plain-Node floor
 * (bench/proxy/plain-node-proxy.ts: node:tls + net.connect + pipe), the direct baseline and
 * the mTLS proxies that happen to be installed, in one run, with one client
 * (bench/proxy/client.ts, in its own process) for every target. Prints a table of medians
 * with ratio columns (the one that matters: svcca ÷ floor) and writes the samples as JSON
 * into bench/results/.
 *
 * Usage: node dist/bench/proxy-bench.js --work <tmpdir> [--results bench/results]
 * Env:   BENCH_REPS (5), BENCH_SECONDS (1, per measurement), BENCH_CONNECTIONS (32),
 *        BENCH_HS_CONCURRENCY (4), BENCH_TTFB_SAMPLES (40 per repetition),
 *        BENCH_DOWNLOAD_MB (200), BENCH_IDLE_CONNS (5000), BENCH_IDLE_TARGETS
 *        (floor,svcca-tcp), BENCH_CRL_ENTRIES (10000), BENCH_POLICY_SERVICES (1000),
 *        BENCH_ONE_CONN (1), BENCH_STIME (0), BENCH_S_SERVER (0)
 *
 * The proxy under test and the service are pinned to CPU 0 and the client to CPU 1
 * (taskset) when there are two CPUs. Every measurement is bounded in time; targets are
 * visited in a rotating order in each repetition so that a noisy neighbour hurts them all
 * alike; the table shows medians. CPU comes from /proc (utime+stime of the target's process
 * tree, read by the client around its measured window).
 * Exit 1 when a target fails to start or the sidecar refuses the benchmark client.
 */
import { copyFileSync, mkdirSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClientJob, ClientResult } from './proxy/client.js';
import { memory } from './proxy/procfs.js';
import { freePort, runCommand, setUpPinning, spawnLogged, spawnPiped, tail, waitListening, runBenchMain } from './proxy/processes.js';
import { seedRevocations, writeBigPolicy } from './proxy/realistic.js';
import {
  addSample,
  medianOf,
  ratioOf,
  renderClientTable,
  renderTable,
  samplesToJson,
  type RatioColumn,
  type Samples,
} from './proxy/report.js';
import {
  PEERS,
  TARGET_LABEL,
  directTarget,
  preparePki,
  startFloor,
  startFloorOutbound,
  startHaproxy,
  startNginx,
  startSServer,
  startSidecar,
  startSidecarOutbound,
  startStunnel,
  type Pki,
  type Started,
  type Target,
  type TargetId,
} from './proxy/targets.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repo = resolve(here, '..', '..');
const CLI = join(repo, 'dist', 'bin', 'svcca.mjs');
const SIDECAR = join(repo, 'dist', 'bin', 'svcca-sidecar.mjs');
const CLIENT = join(here, 'proxy', 'client.js');
const SERVICE = join(here, 'proxy', 'http-service.js');
const FLOOR = join(here, 'proxy', 'plain-node-proxy.js');
const SMALL_BODY = Buffer.from('svcca bench: a small response body of sixty-four bytes, exactly\n');
const TRUST_DOMAIN = 'bench.test';

const envNum = (name: string, fallback: number, min: number, max: number): number => {
  const v = Number(process.env[name]);
  return process.env[name] !== undefined && process.env[name] !== '' && Number.isFinite(v) && v >= min && v <= max ? v : fallback;
};
const REPS = Math.round(envNum('BENCH_REPS', 5, 1, 15));
const SECONDS = envNum('BENCH_SECONDS', 1, 0.5, 10);
const CONNECTIONS = Math.round(envNum('BENCH_CONNECTIONS', 32, 2, 256));
const HS_CONCURRENCY = Math.round(envNum('BENCH_HS_CONCURRENCY', 4, 1, 64));
const TTFB_SAMPLES = Math.round(envNum('BENCH_TTFB_SAMPLES', 40, 5, 10_000));
const DOWNLOAD_MB = Math.round(envNum('BENCH_DOWNLOAD_MB', 200, 10, 2000));
const IDLE_CONNS = Math.round(envNum('BENCH_IDLE_CONNS', 5000, 0, 50_000));
const IDLE_TARGETS = (process.env.BENCH_IDLE_TARGETS ?? 'floor,svcca-tcp')
  .split(',')
  .map((x) => x.trim())
  .filter(Boolean);
const CRL_ENTRIES = Math.round(envNum('BENCH_CRL_ENTRIES', 10_000, 0, 1_000_000));
const POLICY_SERVICES = Math.round(envNum('BENCH_POLICY_SERVICES', 1000, 2, 100_000));
const ONE_CONN = envNum('BENCH_ONE_CONN', 1, 0, 1) === 1;
const STIME = envNum('BENCH_STIME', 0, 0, 1) === 1;
const S_SERVER = envNum('BENCH_S_SERVER', 0, 0, 1) === 1;
const MIB = 1024 * 1024;

class BenchFailure extends Error {}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

// Synchronous: output to a pipe must not be lost when the process exits right after.
const say = (s: string) => void writeSync(1, `${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface BenchPki {
  readonly pki: Pki;
  /** crl.pem with CRL_ENTRIES revoked serials, and the 1,000-service policy. */
  readonly loadCrl: string;
  readonly loadPolicy: string;
}

/** The real CLI makes the certificates: a CA, the server's and the client's sets, a policy. */
async function makePki(work: string): Promise<BenchPki> {
  const ca = join(work, 'ca');
  const passphrase = `bench-${process.pid}-${Date.now()}`;
  const env = { ...process.env, SVCCA_PASSPHRASE: passphrase, SVCCA_DIR: ca };
  const cli = async (what: string, args: string[]) => {
    const r = await runCommand(process.execPath, [CLI, ...args, '--dir', ca], { timeoutMs: 60_000, env });
    if (r.code !== 0) throw new BenchFailure(`svcca ${what} failed: ${(r.stderr || r.stdout).trim()}`);
    return r;
  };
  await cli('init', ['init', '--trust-domain', TRUST_DOMAIN]);
  await cli('issue bench-server', ['issue', 'bench-server', '--ip', '127.0.0.1', '--out', join(work, 'bench-server')]);
  await cli('issue bench-client', ['issue', 'bench-client', '--out', join(work, 'bench-client')]);
  const policy = join(work, 'policy.yaml');
  writeFileSync(policy, 'services:\n  bench-server:\n    allow: [bench-client]\n');
  // preparePki copies crl.pem as init wrote it: what every plain target loads.
  const pki = preparePki(work, join(work, 'bench-server'), join(work, 'bench-client'), ca, policy, TRUST_DOMAIN);

  const t0 = Date.now();
  await seedRevocations(ca, passphrase, TRUST_DOMAIN, CRL_ENTRIES);
  await cli('crl', ['crl']);
  const loadCrl = join(work, 'crl-load.pem');
  copyFileSync(join(ca, 'crl.pem'), loadCrl);
  const loadPolicy = join(work, 'policy-load.yaml');
  writeBigPolicy(loadPolicy, POLICY_SERVICES);
  say(
    `   load variant: ${CRL_ENTRIES} revocations in the ledger + svcca crl, policy of ${POLICY_SERVICES} services (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );
  return { pki, loadCrl, loadPolicy };
}

/** What `svcca-sidecar --check` says about a config: the load variant must really hold 10k serials. */
async function sidecarCheck(t: Target, pki: Pki): Promise<string> {
  const r = await runCommand(process.execPath, [SIDECAR, '--check', '--config', join(pki.dir, `sidecar-${t.id}.yaml`)], {
    timeoutMs: 30_000,
  });
  return (r.stdout + r.stderr)
    .split('\n')
    .filter((l) => /crl|policy/i.test(l))
    .map((l) => l.replace(pki.dir, '…'))
    .join('; ');
}

interface Measured extends ClientResult {}

async function client(t: Target, pki: Pki, job: Omit<ClientJob, 'host' | 'port' | 'tls'>): Promise<Measured> {
  const full: ClientJob = {
    host: '127.0.0.1',
    port: t.port,
    ...(t.tls ? { tls: { cert: pki.client.crt, key: pki.client.key, ca: pki.client.ca } } : {}),
    timeoutSeconds: 60,
    cpuPids: t.pids(),
    ...job,
  };
  const r = await runCommand(process.execPath, [CLIENT, JSON.stringify(full)], { timeoutMs: 90_000, pin: 'client' });
  if (r.code !== 0) {
    const why = r.stderr.trim() || `exit ${r.code}`;
    const svcca = t.id.startsWith('svcca');
    throw new BenchFailure(
      `${TARGET_LABEL[t.id]}: ${job.phase} failed: ${why}` +
        (svcca
          ? `\n  the sidecar refused or broke the benchmark client; its log says:\n  ${tail(t.log, 3).replace(/\n/g, '\n  ')}`
          : `\n  ${t.id} log: ${tail(t.log, 3).replace(/\n/g, '\n  ')}`),
    );
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ClientResult;
}

/** `openssl s_time`: a C client, for handshakes; the rate is taken over the measured wall time. */
async function sTime(t: Target, pki: Pki, reuse: boolean): Promise<number> {
  const secs = Math.max(1, Math.round(SECONDS));
  const r = await runCommand(
    'openssl',
    [
      's_time',
      '-connect',
      `127.0.0.1:${t.port}`,
      '-cert',
      pki.client.crt,
      '-key',
      pki.client.key,
      '-CAfile',
      pki.bundle,
      reuse ? '-reuse' : '-new',
      '-time',
      String(secs),
      '-www',
      '/small',
    ],
    { timeoutMs: (secs + 30) * 1000, pin: 'client' },
  );
  const m = /(\d+) connections in [\d.]+s; .*bytes read (\d+)/.exec(r.stdout);
  if (r.code !== 0 || !m)
    throw new BenchFailure(
      `${TARGET_LABEL[t.id]}: openssl s_time ${reuse ? '-reuse' : '-new'} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ')}`,
    );
  const n = Number(m[1]);
  if (n > 0 && Number(m[2]) === 0)
    throw new BenchFailure(
      `${TARGET_LABEL[t.id]}: openssl s_time read no response bytes (the target refused the client certificate?)\n  ${tail(t.log, 2)}`,
    );
  return n / (r.ms / 1000);
}

type Phase = 'keepalive' | 'concurrent' | 'full' | 'resumed' | 'stime-full' | 'stime-resumed' | 'ttfb' | 'mesh' | 'downloads' | 'download';
const ORDER: Phase[] = [
  'keepalive',
  'concurrent',
  'full',
  'resumed',
  'stime-full',
  'stime-resumed',
  'ttfb',
  'mesh',
  'downloads',
  'download',
];

function phasesFor(id: TargetId): Phase[] {
  const ka: Phase[] = ONE_CONN ? ['keepalive', 'concurrent'] : ['concurrent'];
  const stime: Phase[] = STIME ? ['stime-full', 'stime-resumed'] : [];
  if (id === 'direct') return [...ka, 'full', 'ttfb', 'downloads', 'download'];
  // s_server serves one connection at a time, from files, and closes: handshakes only.
  if (id === 's_server') return ['full', 'resumed', ...stime];
  if (id === 'floor-mesh' || id === 'svcca-mesh') return ['mesh'];
  return [...ka, 'full', 'resumed', ...stime, 'ttfb', 'downloads', 'download'];
}

/** The table column a target's samples go to: a mesh path is shown in its inbound's column. */
const COLUMN: Partial<Record<TargetId, TargetId>> = { 'floor-mesh': 'floor', 'svcca-mesh': 'svcca-tcp' };

const notes: string[] = [];
/** Latency samples of the ttfb phases, pooled over the repetitions: [metric, target] → µs. */
const pooled = new Map<string, number[]>();

async function measure(phase: Phase, t: Target, pki: Pki, s: Samples, record: boolean): Promise<void> {
  const seconds = record ? SECONDS : Math.min(0.5, SECONDS);
  const col = COLUMN[t.id] ?? t.id;
  const put = (k: string, v: number | undefined) => {
    if (record && v !== undefined) addSample(s, k, col, v);
  };
  const perUnit = (cpu: number | undefined, n: number, scale: number) => (cpu === undefined || n === 0 ? undefined : (cpu / n) * scale);
  const pool = (k: string, values: readonly number[] | undefined) => {
    if (!record || !values) return;
    const key = `${k}\t${col}`;
    pooled.set(key, [...(pooled.get(key) ?? []), ...values]);
  };
  switch (phase) {
    case 'keepalive': {
      const r = await client(t, pki, { phase: 'keepalive', seconds });
      put('ka_rps', r.perSecond);
      put('ka_p50', r.p50Us);
      put('ka_p90', r.p90Us);
      put('ka_p99', r.p99Us);
      put('ka_cpu', perUnit(r.targetCpu, r.count, 1e6));
      put('ccpu_ka', r.clientCpuPct);
      return;
    }
    case 'concurrent': {
      const r = await client(t, pki, { phase: 'concurrent', seconds, connections: CONNECTIONS });
      put('conc_rps', r.perSecond);
      put('conc_p50', r.p50Us);
      put('conc_p99', r.p99Us);
      put('conc_cpu', perUnit(r.targetCpu, r.count, 1e6));
      put('ccpu_conc', r.clientCpuPct);
      return;
    }
    case 'full':
    case 'resumed': {
      const resumed = phase === 'resumed';
      const r = await client(t, pki, { phase: 'handshake', seconds, resume: resumed, concurrency: HS_CONCURRENCY });
      const k = resumed ? 'res' : 'full';
      put(`${k}_rate`, r.perSecond);
      put(`${k}_p50`, r.p50Us);
      put(`${k}_cpu`, perUnit(r.targetCpu, r.count, 1e6));
      put(`ccpu_${k}`, r.clientCpuPct);
      if (resumed && record && r.count > 0 && (r.resumed ?? 0) < 0.9 * r.count) {
        notes.push(`${TARGET_LABEL[t.id]}: only ${r.resumed}/${r.count} connections of the resumed phase were resumed`);
      }
      return;
    }
    case 'stime-full':
    case 'stime-resumed': {
      if (!record) return;
      const rate = await sTime(t, pki, phase === 'stime-resumed');
      put(phase === 'stime-full' ? 'stime_full' : 'stime_res', rate);
      return;
    }
    case 'ttfb':
    case 'mesh': {
      const mesh = phase === 'mesh';
      const r = await client(t, pki, { phase: 'ttfb', seconds: Math.max(3, SECONDS * 4), samples: record ? TTFB_SAMPLES : 5 });
      // Through an inbound: from secureConnect (TCP connect for direct) to the first byte.
      // Through a mesh path the app speaks plaintext: from the start of its connect.
      pool(mesh ? 'mesh_ttfb' : 'ttfb', mesh ? r.connectTtfbSamplesUs : r.ttfbSamplesUs);
      put(mesh ? 'mesh_cpu' : 'ttfb_cpu', perUnit(r.targetCpu, r.count, 1e6));
      put(mesh ? 'ccpu_mesh' : 'ccpu_ttfb', r.clientCpuPct);
      return;
    }
    case 'downloads': {
      const r = await client(t, pki, { phase: 'downloads', seconds, connections: 4, bytes: MIB });
      put('dl4_mbps', r.mbPerSecond);
      put('dl4_cpu', perUnit(r.targetCpu, (r.bytes ?? 0) / 1e6, 1e6));
      put('ccpu_dl4', r.clientCpuPct);
      return;
    }
    case 'download': {
      const bytes = (record ? DOWNLOAD_MB : Math.min(20, DOWNLOAD_MB)) * MIB;
      const r = await client(t, pki, { phase: 'download', bytes });
      put('dl_mbps', r.mbPerSecond);
      put('dl_cpu', perUnit(r.targetCpu, bytes / 1e6, 1e6));
      put('ccpu_dl', r.clientCpuPct);
      return;
    }
  }
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * RSS per idle connection: N mTLS connections opened by one client (32 handshakes in
 * flight), left idle; the target's VmRSS before, with them open (2 s after the last one),
 * and 2 s after they closed. A few are checked to still answer before they are closed.
 */
async function idleConnections(t: Target, pki: Pki, n: number): Promise<Record<string, number>> {
  await sleep(500);
  const before = memory(t.pids()).rss;
  const job: ClientJob = {
    phase: 'idle',
    host: '127.0.0.1',
    port: t.port,
    tls: { cert: pki.client.crt, key: pki.client.key, ca: pki.client.ca },
    connections: n,
    concurrency: 32,
    timeoutSeconds: 300,
  };
  const child = spawnPiped(process.execPath, [CLIENT, JSON.stringify(job)], 'client');
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 1)));
  const opened = await Promise.race([
    (async () => {
      while (!/^open (\d+) ([\d.]+)$/m.test(out)) await sleep(100);
      return /^open (\d+) ([\d.]+)$/m.exec(out)!;
    })(),
    exited.then(() => undefined),
  ]);
  if (!opened)
    throw new BenchFailure(
      `${TARGET_LABEL[t.id]}: opening ${n} idle connections failed: ${err.trim() || 'the client exited'}\n  log: ${tail(t.log, 3)}`,
    );
  await sleep(2000);
  const open = memory(t.pids()).rss;
  child.stdin!.end('close\n');
  const code = await exited;
  if (code !== 0) throw new BenchFailure(`${TARGET_LABEL[t.id]}: idle connections: ${err.trim()}`);
  const r = JSON.parse(out.trim().split('\n').pop()!) as ClientResult;
  await sleep(2000);
  const after = memory(t.pids()).rss;
  const count = Number(opened[1]);
  if ((r.closedWhileIdle ?? 0) > 0)
    notes.push(`${TARGET_LABEL[t.id]}: ${r.closedWhileIdle} of ${count} idle connections were closed by the target while idle`);
  return {
    count,
    openSeconds: Number(opened[2]),
    before,
    open,
    after,
    perConnBytes: (open - before) / count,
    closedWhileIdle: r.closedWhileIdle ?? 0,
    checkedOk: r.checkedOk ?? 0,
    checked: Math.ceil(count / 500),
  };
}

async function main(): Promise<void> {
  const work = arg('--work');
  if (!work) throw new BenchFailure('usage: proxy-bench.js --work <empty temp dir> [--results <dir>]');
  const resultsDir = resolve(arg('--results') ?? join(repo, 'bench', 'results'));
  const load0 = loadavg();
  const t0 = Date.now();
  say(
    `== proxy benchmark: ${REPS} repetitions × ${SECONDS} s per measurement; N = ${CONNECTIONS} keep-alive connections; ${HS_CONCURRENCY} handshakes in flight; ${TTFB_SAMPLES} new connections per repetition for time-to-first-byte; ${DOWNLOAD_MB} MB stream; ${IDLE_CONNS} idle connections`,
  );
  say(
    `   ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'}), node ${process.version}, load average ${load0.map((l) => l.toFixed(2)).join(' ')}`,
  );
  const pinNote = await setUpPinning(cpus().length);
  say(`   ${pinNote}`);

  const { pki, loadCrl, loadPolicy } = await makePki(work);
  say('   certificates: svcca init + issue bench-server, bench-client (ECDSA P-256); policy: bench-server allows bench-client');

  const servicePort = await freePort();
  const serviceLog = join(work, 'service.log');
  const service = spawnLogged(process.execPath, [SERVICE, String(servicePort)], { log: serviceLog, pin: 'proxy' });
  if (!(await waitListening(servicePort, service))) throw new BenchFailure(`the local HTTP service did not start: ${tail(serviceLog)}`);

  const targets: Target[] = [directTarget(servicePort, service, serviceLog)];
  const skipped: { id: TargetId; reason: string }[] = [];
  const byId = (id: TargetId) => targets.find((t) => t.id === id);
  const starters: [TargetId, () => Promise<Started>][] = [
    ['floor', () => startFloor(pki, servicePort, FLOOR)],
    ['svcca-tcp', () => startSidecar('tcp', pki, servicePort, SIDECAR)],
    ['svcca-http', () => startSidecar('http', pki, servicePort, SIDECAR)],
    [
      'svcca-tcp-load',
      () =>
        startSidecar('tcp', pki, servicePort, SIDECAR, {
          id: 'svcca-tcp-load',
          crl: loadCrl,
          policy: loadPolicy,
          note: `CRL of ${CRL_ENTRIES} entries, policy of ${POLICY_SERVICES} services`,
        }),
    ],
    ['haproxy', () => startHaproxy(pki, servicePort)],
    ['nginx', () => startNginx(pki, servicePort)],
    ['stunnel', () => startStunnel(pki, servicePort)],
    ...(S_SERVER ? ([['s_server', () => startSServer(pki, SMALL_BODY)]] as [TargetId, () => Promise<Started>][]) : []),
    ['floor-mesh', () => startFloorOutbound(pki, byId('floor')!, FLOOR)],
    ['svcca-mesh', () => startSidecarOutbound(pki, byId('svcca-tcp')!, SIDECAR)],
  ];
  for (const [id, start] of starters) {
    const r = await start();
    if (r.ok) targets.push(r.target);
    else if (r.skipped) skipped.push({ id, reason: r.reason });
    else throw new BenchFailure(`${TARGET_LABEL[id]}: ${r.reason}`);
  }
  for (const t of targets) say(`   target ${TARGET_LABEL[t.id].padEnd(11)} 127.0.0.1:${t.port}  ${t.version}`);
  for (const k of skipped) say(`   skipped ${TARGET_LABEL[k.id].padEnd(12)} ${k.reason}`);
  const loadTarget = byId('svcca-tcp-load');
  if (loadTarget) say(`   tcp+10k CRL --check: ${await sidecarCheck(loadTarget, pki)}`);

  // Each target must answer an mTLS request from the benchmark client before anything is timed.
  for (const t of targets) await client(t, pki, { phase: 'probe' });

  const s: Samples = new Map();
  // Idle memory: started, one request served, settled.
  await sleep(1000);
  for (const t of targets) {
    if (COLUMN[t.id]) continue;
    const pids = t.pids();
    if (pids.length) addSample(s, 'rss_idle', t.id, memory(pids).rss / 1e6);
  }

  say('   warming up (JIT, session caches) ...');
  for (const t of targets)
    for (const p of phasesFor(t.id))
      if (p !== 'keepalive' && p !== 'download' && !p.startsWith('stime')) await measure(p, t, pki, s, false);
  for (let rep = 0; rep < REPS; rep++) {
    const r0 = Date.now();
    for (const phase of ORDER) {
      const rotated = targets.map((_, i) => targets[(i + rep) % targets.length]!);
      for (const t of rotated) if (phasesFor(t.id).includes(phase)) await measure(phase, t, pki, s, true);
    }
    say(`   repetition ${rep + 1}/${REPS} done in ${((Date.now() - r0) / 1000).toFixed(1)} s`);
  }
  for (const [key, values] of pooled) {
    const [k, col] = key.split('\t') as [string, TargetId];
    addSample(s, `${k}_p50`, col, percentile(values, 50));
    addSample(s, `${k}_p99`, col, percentile(values, 99));
    addSample(s, `${k}_n`, col, values.length);
  }
  for (const t of targets) {
    if (COLUMN[t.id]) continue;
    const pids = t.pids();
    if (pids.length) addSample(s, 'rss_peak', t.id, memory(pids).hwm / 1e6);
    // Per repetition: the resumed and full phases of one repetition ran within seconds.
    const res = s.get('res_cpu')?.get(t.id) ?? [];
    const full = s.get('full_cpu')?.get(t.id) ?? [];
    if (res.length === full.length) {
      res.forEach((r, i) => {
        addSample(s, 'res_over_full', t.id, r / full[i]!);
      });
    }
  }

  // Idle connections last, each on a fresh instance (started, probed, settled 1 s): the
  // baseline is then the idle RSS, not a heap full of the load phases' garbage.
  const idle: Record<string, Record<string, number>> = {};
  const starterOf = new Map(starters);
  if (IDLE_CONNS > 0) {
    for (const id of IDLE_TARGETS as TargetId[]) {
      const old = byId(id);
      const start = starterOf.get(id);
      if (!old?.tls || !start) continue;
      await old.stop();
      const fresh = await start();
      if (!fresh.ok) throw new BenchFailure(`${TARGET_LABEL[id]}: restart for the idle-connection test: ${fresh.reason}`);
      try {
        await client(fresh.target, pki, { phase: 'probe' });
        await sleep(1000);
        say(`   ${IDLE_CONNS} idle mTLS connections to a fresh ${TARGET_LABEL[id]} ...`);
        const r = await idleConnections(fresh.target, pki, IDLE_CONNS);
        idle[id] = r;
        addSample(s, 'idle_conn_kb', id, r.perConnBytes! / 1024);
        addSample(s, 'idle_rss', id, r.open! / 1e6);
        addSample(s, 'idle_rss_after', id, r.after! / 1e6);
        if (r.checkedOk! < r.checked!)
          notes.push(`${TARGET_LABEL[id]}: only ${r.checkedOk}/${r.checked} of the checked idle connections still answered GET /small`);
      } finally {
        await fresh.target.stop();
      }
    }
  }
  const load1 = loadavg();

  const columns = targets.filter((t) => !COLUMN[t.id]).map((t) => t.id);
  const has = (id: TargetId) => columns.includes(id);
  const ratios: RatioColumn[] = [];
  if (has('floor')) {
    ratios.push({ label: 'tcp ÷ floor', of: 'svcca-tcp', to: 'floor' });
    if (has('svcca-http')) ratios.push({ label: 'http ÷ floor', of: 'svcca-http', to: 'floor' });
  }
  if (has('svcca-tcp-load')) ratios.push({ label: 'load ÷ tcp', of: 'svcca-tcp-load', to: 'svcca-tcp' });
  ratios.push({ label: 'tcp ÷ direct', of: 'svcca-tcp', to: 'direct' });
  if (columns.some((i) => PEERS.includes(i))) ratios.push({ label: 'tcp ÷ best peer', of: 'svcca-tcp', to: 'best-peer' });
  const labelN = (l: string) => l.replace(/^N /, `${CONNECTIONS} `).replace('idle mTLS conn', `idle mTLS conn (${IDLE_CONNS})`);

  say('');
  say(renderTable(s, columns, ratios, labelN));
  say('');
  say(`Medians of ${REPS} repetitions; "new conn → 1st byte" and "mesh*" percentiles over all ${REPS} × ${TTFB_SAMPLES} samples pooled.`);
  say('Ratio columns are A ÷ B: the median of the per-repetition ratios (A and B measured seconds apart), or of the medians for pooled');
  say('and single readings. On a ↓ row below 1× means A is better; on a ↑ row above 1× means A is better.');
  say("CPU: utime+stime from /proc of the proxy process tree (10 ms ticks) during the client's measured window. RSS summed over the tree.");
  say(
    'mesh*: app → outbound proxy (plaintext) → inbound proxy → service; a new app connection per request. In the "node floor" column: plain-node',
  );
  say(
    '       outbound → node floor; in the "svcca tcp" column: svcca-sidecar outbound (bench-client set) → svcca tcp. CPU is both proxies.',
  );
  say(
    `"ready → 1st byte": from secureConnect (TCP connect for direct) to the first response byte of GET /small, one connection at a time.`,
  );
  say('direct = plaintext to the service: its "full handshake" row is a new TCP connection + GET.');
  say(
    'The floor checks the chain (OpenSSL) and the one URI SAN only; svcca also parses the SVID, checks the CRL and the policy per connection.',
  );

  // Goals from issue 12, against what this run measured.
  say('');
  say('goals (issue 12):');
  const goals: { what: string; ratio: number | null; limit: number }[] = [];
  const goal = (what: string, r: number, limit: number, unit = '×') => {
    goals.push({ what, ratio: Number.isFinite(r) ? r : null, limit });
    say(
      `  ${Number.isFinite(r) ? (r <= limit ? 'met    ' : 'NOT met') : 'n/a    '} ${what}: ${Number.isFinite(r) ? `${r.toFixed(2)}${unit}` : '–'} (goal ≤ ${limit}${unit})`,
    );
  };
  goal('CPU per keep-alive request (32 conns), svcca tcp ÷ floor', ratioOf(s, 'conc_cpu', 'svcca-tcp', 'floor'), 1.0);
  goal('p99 on 32 keep-alive conns, svcca tcp ÷ floor', ratioOf(s, 'conc_p99', 'svcca-tcp', 'floor'), 1.2);
  goal('CPU per MB (4 × 1 MiB), svcca tcp ÷ floor', ratioOf(s, 'dl4_cpu', 'svcca-tcp', 'floor'), 1.0);
  goal('MB/s (4 × 1 MiB), floor ÷ svcca tcp (lower is better)', ratioOf(s, 'dl4_mbps', 'floor', 'svcca-tcp'), 1.0);
  goal('CPU per full handshake, svcca tcp ÷ floor', ratioOf(s, 'full_cpu', 'svcca-tcp', 'floor'), 1.05);
  goal('CPU per resumed ÷ per full handshake, svcca tcp', medianOf(s, 'res_over_full', 'svcca-tcp'), 0.5);
  goal('http mode CPU per keep-alive request (32 conns), ÷ svcca tcp', ratioOf(s, 'conc_cpu', 'svcca-http', 'svcca-tcp'), 2);
  goal('http mode p99 on 32 keep-alive conns, ÷ svcca tcp', ratioOf(s, 'conc_p99', 'svcca-http', 'svcca-tcp'), 2);
  goal('keep-alive req/s, svcca tcp ÷ http mode (lower is better)', ratioOf(s, 'conc_rps', 'svcca-tcp', 'svcca-http'), 2);
  // 48 MiB and 64 MiB, in the MB (10^6 bytes) the table prints.
  goal('RSS idle after start, svcca tcp', medianOf(s, 'rss_idle', 'svcca-tcp'), 50.3, ' MB');
  for (const t of ['svcca-tcp', 'svcca-http', 'svcca-tcp-load'] as const)
    goal(`RSS peak under the bench loads, ${TARGET_LABEL[t]}`, medianOf(s, 'rss_peak', t), 67.1, ' MB');
  goal('mesh new conn → 1st byte p50, svcca ÷ floor', ratioOf(s, 'mesh_ttfb_p50', 'svcca-tcp', 'floor'), 1.2);
  goal('mesh new conn → 1st byte p99, svcca ÷ floor', ratioOf(s, 'mesh_ttfb_p99', 'svcca-tcp', 'floor'), 1.2);
  goal('inbound new conn → 1st byte p50, svcca tcp ÷ floor', ratioOf(s, 'ttfb_p50', 'svcca-tcp', 'floor'), 1.2);
  goal('load variant CPU per request, ÷ svcca tcp', ratioOf(s, 'conc_cpu', 'svcca-tcp-load', 'svcca-tcp'), 1.05);
  goal('load variant CPU per full handshake, ÷ svcca tcp', ratioOf(s, 'full_cpu', 'svcca-tcp-load', 'svcca-tcp'), 1.05);
  goal('load variant req/s, svcca tcp ÷ load (lower is better)', ratioOf(s, 'conc_rps', 'svcca-tcp', 'svcca-tcp-load'), 1.05);

  say('');
  say(renderClientTable(s, columns, labelN));
  say(`(${pinNote}; the client is one Node process: near 100 % it, not the target, sets the pace of that phase)`);

  // The published sidecar costs (../shared/ANCHORS.md), against what this run measured.
  const svcca: TargetId = 'svcca-tcp';
  const added = (k: string) => (medianOf(s, k, svcca) - medianOf(s, k, 'direct')) / 1000;
  const vcpu = medianOf(s, 'conc_cpu', svcca) / 1000;
  say('');
  if (ONE_CONN)
    say(
      `anchors: svcca adds ${added('ka_p50').toFixed(2)} ms at p50, ${added('ka_p90').toFixed(2)} ms at p90, ${added('ka_p99').toFixed(2)} ms at p99 on one connection (Linkerd: < 1 ms p50; Envoy: +2.65 ms p90);`,
    );
  say(
    `         ${vcpu.toFixed(2)} vCPU per 1000 req/s on ${CONNECTIONS} connections (Envoy: 0.35); peak RSS ${medianOf(s, 'rss_peak', svcca).toFixed(0)} MB (Envoy: ~40 MB, Linkerd: 26 MB).`,
  );
  for (const [id, r] of Object.entries(idle)) {
    say(
      `idle: ${TARGET_LABEL[id as TargetId]}: ${r.count} connections opened in ${r.openSeconds!.toFixed(1)} s; RSS ${(r.before! / 1e6).toFixed(0)} → ${(r.open! / 1e6).toFixed(0)} MB open → ${(r.after! / 1e6).toFixed(0)} MB 2 s after closing; ${r.checkedOk}/${r.checked} checked still answered`,
    );
  }
  for (const k of skipped) say(`skipped: ${TARGET_LABEL[k.id]}: ${k.reason}`);
  if (!columns.some((i) => PEERS.includes(i)))
    say('no peer proxy is installed: no "best peer" column (apt-get install haproxy nginx libnginx-mod-stream stunnel4)');
  for (const n of notes) say(`note: ${n}`);
  say(
    `load average: ${load0.map((l) => l.toFixed(2)).join(' ')} at start, ${load1.map((l) => l.toFixed(2)).join(' ')} at end${load1[0]! > cpus().length ? ' (busy machine: treat the numbers with care)' : ''}; ${((Date.now() - t0) / 1000).toFixed(0)} s in all`,
  );

  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = {
    benchmark: 'proxy',
    date: new Date().toISOString(),
    host: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim(),
      node: process.version,
      loadavgStart: load0,
      loadavgEnd: load1,
      pinning: pinNote,
    },
    settings: {
      reps: REPS,
      secondsPerMeasurement: SECONDS,
      connections: CONNECTIONS,
      handshakeConcurrency: HS_CONCURRENCY,
      ttfbSamplesPerRep: TTFB_SAMPLES,
      downloadMB: DOWNLOAD_MB,
      idleConnections: IDLE_CONNS,
      crlEntries: CRL_ENTRIES,
      policyServices: POLICY_SERVICES,
    },
    targets: Object.fromEntries(targets.map((t) => [t.id, { version: t.version, port: t.port, column: COLUMN[t.id] ?? t.id }])),
    skipped: Object.fromEntries(skipped.map((k) => [k.id, k.reason])),
    notes,
    idle,
    metrics: samplesToJson(s),
    ttfbSamplesUs: Object.fromEntries([...pooled].map(([k, v]) => [k.replace('\t', ':'), v])),
    goals,
  };
  const file = join(resultsDir, `proxy-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(resultsDir, 'proxy-latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  say(`results: ${file}`);
}

runBenchMain('proxy bench', main, (err) => err instanceof BenchFailure);

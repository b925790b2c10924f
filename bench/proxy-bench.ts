/**
 * `make bench`, the proxy half: svcca-sidecar against the direct baseline and the mTLS
 * proxies that happen to be installed, in one run, with one client (bench/proxy/client.ts,
 * in its own process) for every target. Prints a table of medians with ratio columns and
 * writes the samples as JSON into bench/results/.
 *
 * Usage: node dist/bench/proxy-bench.js --work <tmpdir> [--results bench/results]
 * Env:   BENCH_REPS (3), BENCH_SECONDS (1.5, per measurement), BENCH_DOWNLOAD_MB (200),
 *        BENCH_CONNECTIONS (16)
 *
 * Every measurement is bounded in time; targets are visited in a rotating order in each
 * repetition so that a noisy neighbour hurts them all alike; the table shows medians.
 * Exit 1 when a target fails to start or the sidecar refuses the benchmark client.
 */
import { mkdirSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClientJob, ClientResult } from './proxy/client.js';
import { cpuSeconds, memory } from './proxy/procfs.js';
import { freePort, killAllNow, runCommand, spawnLogged, stopAll, tail, waitListening } from './proxy/processes.js';
import { addSample, medianOf, renderTable, samplesToJson, type Samples } from './proxy/report.js';
import {
  PEERS,
  TARGET_LABEL,
  directTarget,
  preparePki,
  startHaproxy,
  startNginx,
  startSServer,
  startSidecar,
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
const SMALL_BODY = Buffer.from('svcca bench: a small response body of sixty-four bytes, exactly\n');

const envNum = (name: string, fallback: number, min: number, max: number): number => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v >= min && v <= max ? v : fallback;
};
const REPS = Math.round(envNum('BENCH_REPS', 3, 1, 15));
const SECONDS = envNum('BENCH_SECONDS', 1.5, 0.5, 10);
const DOWNLOAD_MB = Math.round(envNum('BENCH_DOWNLOAD_MB', 200, 10, 2000));
const CONNECTIONS = Math.round(envNum('BENCH_CONNECTIONS', 16, 2, 256));

class BenchFailure extends Error {}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

// Synchronous: output to a pipe must not be lost when the process exits right after.
const say = (s: string) => void writeSync(1, `${s}\n`);

/** The real CLI makes the certificates: a CA, the server's and the client's sets, a policy. */
async function makePki(work: string): Promise<Pki> {
  const ca = join(work, 'ca');
  const env = { ...process.env, SVCCA_PASSPHRASE: `bench-${process.pid}-${Date.now()}`, SVCCA_DIR: ca };
  const steps: [string, string[]][] = [
    ['init', ['init', '--trust-domain', 'bench.test', '--dir', ca]],
    ['issue bench-server', ['issue', 'bench-server', '--dir', ca, '--ip', '127.0.0.1', '--out', join(work, 'bench-server')]],
    ['issue bench-client', ['issue', 'bench-client', '--dir', ca, '--out', join(work, 'bench-client')]],
  ];
  for (const [what, args] of steps) {
    const r = await runCommand(process.execPath, [CLI, ...args], { timeoutMs: 30_000, env });
    if (r.code !== 0) throw new BenchFailure(`svcca ${what} failed: ${(r.stderr || r.stdout).trim()}`);
  }
  const policy = join(work, 'policy.yaml');
  writeFileSync(policy, 'services:\n  bench-server:\n    allow: [bench-client]\n');
  return preparePki(work, join(work, 'bench-server'), join(work, 'bench-client'), ca, policy);
}

interface Measured extends ClientResult {
  /** CPU seconds the target's processes used during the run (undefined for direct). */
  readonly cpu?: number;
}

async function client(t: Target, pki: Pki, job: Omit<ClientJob, 'host' | 'port' | 'tls'>): Promise<Measured> {
  const full: ClientJob = {
    host: '127.0.0.1',
    port: t.port,
    ...(t.tls ? { tls: { cert: pki.client.crt, key: pki.client.key, ca: pki.client.ca } } : {}),
    timeoutSeconds: 60,
    ...job,
  };
  const pids = t.pids();
  const cpu0 = pids.length ? cpuSeconds(pids) : 0;
  const r = await runCommand(process.execPath, [CLIENT, JSON.stringify(full)], { timeoutMs: 90_000 });
  const cpu1 = pids.length ? cpuSeconds(pids) : 0;
  if (r.code !== 0) {
    const why = r.stderr.trim() || `exit ${r.code}`;
    const svcca = t.id.startsWith('svcca');
    throw new BenchFailure(
      `${TARGET_LABEL[t.id]}: ${job.phase} failed: ${why}` +
        (svcca ? `\n  the sidecar refused or broke the benchmark client; its log says:\n  ${tail(t.log, 3).replace(/\n/g, '\n  ')}` : `\n  ${t.id} log: ${tail(t.log, 3).replace(/\n/g, '\n  ')}`),
    );
  }
  const result = JSON.parse(r.stdout.trim().split('\n').pop()!) as ClientResult;
  return pids.length ? { ...result, cpu: cpu1 - cpu0 } : result;
}

/** `openssl s_time`: a C client, for handshakes; the rate is taken over the measured wall time. */
async function sTime(t: Target, pki: Pki, reuse: boolean): Promise<number> {
  const secs = Math.max(1, Math.round(SECONDS));
  const r = await runCommand(
    'openssl',
    ['s_time', '-connect', `127.0.0.1:${t.port}`, '-cert', pki.client.crt, '-key', pki.client.key, '-CAfile', pki.bundle, reuse ? '-reuse' : '-new', '-time', String(secs), '-www', '/small'],
    { timeoutMs: (secs + 30) * 1000 },
  );
  const m = /(\d+) connections in [\d.]+s; .*bytes read (\d+)/.exec(r.stdout);
  if (r.code !== 0 || !m) throw new BenchFailure(`${TARGET_LABEL[t.id]}: openssl s_time ${reuse ? '-reuse' : '-new'} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ')}`);
  const n = Number(m[1]);
  if (n > 0 && Number(m[2]) === 0) throw new BenchFailure(`${TARGET_LABEL[t.id]}: openssl s_time read no response bytes (the target refused the client certificate?)\n  ${tail(t.log, 2)}`);
  return n / (r.ms / 1000);
}

type Phase = 'keepalive' | 'concurrent' | 'full' | 'resumed' | 'stime-full' | 'stime-resumed' | 'download';

function phasesFor(id: TargetId): Phase[] {
  if (id === 'direct') return ['keepalive', 'concurrent', 'full', 'download'];
  // s_server serves one connection at a time, from files, and closes: handshakes only.
  if (id === 's_server') return ['full', 'resumed', 'stime-full', 'stime-resumed'];
  return ['keepalive', 'concurrent', 'full', 'resumed', 'stime-full', 'stime-resumed', 'download'];
}

const notes: string[] = [];

async function measure(phase: Phase, t: Target, pki: Pki, s: Samples, record: boolean): Promise<void> {
  const seconds = record ? SECONDS : Math.min(0.5, SECONDS);
  const put = (k: string, v: number | undefined) => {
    if (record && v !== undefined) addSample(s, k, t.id, v);
  };
  const perUnit = (cpu: number | undefined, n: number, scale: number) => (cpu === undefined || n === 0 ? undefined : (cpu / n) * scale);
  switch (phase) {
    case 'keepalive': {
      const r = await client(t, pki, { phase: 'keepalive', seconds });
      put('ka_rps', r.perSecond);
      put('ka_p50', r.p50Us);
      put('ka_p90', r.p90Us);
      put('ka_p99', r.p99Us);
      put('ka_cpu', perUnit(r.cpu, r.count, 1e6));
      return;
    }
    case 'concurrent': {
      const r = await client(t, pki, { phase: 'concurrent', seconds, connections: CONNECTIONS });
      put('conc_rps', r.perSecond);
      put('conc_p99', r.p99Us);
      put('conc_cpu', perUnit(r.cpu, r.count, 1e6));
      return;
    }
    case 'full':
    case 'resumed': {
      const resumed = phase === 'resumed';
      const r = await client(t, pki, { phase: 'handshake', seconds, resume: resumed });
      const k = resumed ? 'res' : 'full';
      put(`${k}_rate`, r.perSecond);
      put(`${k}_p50`, r.p50Us);
      put(`${k}_cpu`, perUnit(r.cpu, r.count, 1e6));
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
    case 'download': {
      const bytes = (record ? DOWNLOAD_MB : Math.min(20, DOWNLOAD_MB)) * 1024 * 1024;
      const r = await client(t, pki, { phase: 'download', bytes });
      put('dl_mbps', r.mbPerSecond);
      put('dl_cpu', perUnit(r.cpu, bytes, 100 * 1024 * 1024 * 1000));
      return;
    }
  }
}

async function main(): Promise<void> {
  const work = arg('--work');
  if (!work) throw new BenchFailure('usage: proxy-bench.js --work <empty temp dir> [--results <dir>]');
  const resultsDir = resolve(arg('--results') ?? join(repo, 'bench', 'results'));
  const load0 = loadavg();
  say(`== proxy benchmark: ${REPS} repetitions × ${SECONDS} s per measurement, ${CONNECTIONS} connections for the concurrent phase, ${DOWNLOAD_MB} MB download`);
  say(`   ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'}), node ${process.version}, load average ${load0.map((l) => l.toFixed(2)).join(' ')}`);

  const pki = await makePki(work);
  say('   certificates: svcca init + issue bench-server, bench-client (ECDSA P-256); policy: bench-server allows bench-client');

  const servicePort = await freePort();
  const serviceLog = join(work, 'service.log');
  const service = spawnLogged(process.execPath, [SERVICE, String(servicePort)], { log: serviceLog });
  if (!(await waitListening(servicePort, service))) throw new BenchFailure(`the local HTTP service did not start: ${tail(serviceLog)}`);

  const targets: Target[] = [directTarget(servicePort, service, serviceLog)];
  const skipped: { id: TargetId; reason: string }[] = [];
  const starters: [TargetId, () => Promise<Started>][] = [
    ['svcca-tcp', () => startSidecar('tcp', pki, servicePort, SIDECAR)],
    ['svcca-http', () => startSidecar('http', pki, servicePort, SIDECAR)],
    ['haproxy', () => startHaproxy(pki, servicePort)],
    ['nginx', () => startNginx(pki, servicePort)],
    ['stunnel', () => startStunnel(pki, servicePort)],
    ['s_server', () => startSServer(pki, SMALL_BODY)],
  ];
  for (const [id, start] of starters) {
    const r = await start();
    if (r.ok) targets.push(r.target);
    else if (r.skipped) skipped.push({ id, reason: r.reason });
    else throw new BenchFailure(`${TARGET_LABEL[id]}: ${r.reason}`);
  }
  for (const t of targets) say(`   target ${TARGET_LABEL[t.id].padEnd(10)} 127.0.0.1:${t.port}  ${t.version}`);
  for (const k of skipped) say(`   skipped ${TARGET_LABEL[k.id].padEnd(11)} ${k.reason}`);

  // Each target must answer an mTLS request from the benchmark client before anything is timed.
  for (const t of targets) await client(t, pki, { phase: 'probe' });

  const s: Samples = new Map();
  // Idle memory: started, one request served, settled.
  await new Promise((r) => setTimeout(r, 1000));
  for (const t of targets) {
    const pids = t.pids();
    if (pids.length) addSample(s, 'rss_idle', t.id, memory(pids).rss / 1e6);
  }

  const order: Phase[] = ['keepalive', 'concurrent', 'full', 'resumed', 'stime-full', 'stime-resumed', 'download'];
  say('   warming up (JIT, session caches) ...');
  for (const t of targets) for (const p of phasesFor(t.id)) await measure(p, t, pki, s, false);
  for (let rep = 0; rep < REPS; rep++) {
    const t0 = Date.now();
    for (const phase of order) {
      const rotated = targets.map((_, i) => targets[(i + rep) % targets.length]!);
      for (const t of rotated) if (phasesFor(t.id).includes(phase)) await measure(phase, t, pki, s, true);
    }
    say(`   repetition ${rep + 1}/${REPS} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  for (const t of targets) {
    const pids = t.pids();
    if (pids.length) addSample(s, 'rss_peak', t.id, memory(pids).hwm / 1e6);
  }
  const load1 = loadavg();

  const ids = targets.map((t) => t.id);
  const svcca: TargetId = 'svcca-tcp';
  say('');
  say(renderTable(s, ids, svcca));
  say('');
  say(`N = ${CONNECTIONS}. Medians of ${REPS}. CPU from /proc utime+stime of the proxy's processes (10 ms ticks); RSS summed over them.`);
  say('direct = plaintext to the service: its "full handshake" row is a new TCP connection + GET.');
  say('Peers check the chain against ca.crt only; the sidecar also parses the SVID, checks the CRL and the policy per connection.');
  // The published sidecar costs (../shared/ANCHORS.md), against what this run measured.
  const added = (k: string) => (medianOf(s, k, svcca) - medianOf(s, k, 'direct')) / 1000;
  const vcpu = medianOf(s, 'ka_cpu', svcca) / 1000;
  say(
    `anchors: svcca adds ${added('ka_p50').toFixed(2)} ms at p50, ${added('ka_p90').toFixed(2)} ms at p90, ${added('ka_p99').toFixed(2)} ms at p99 (Linkerd: < 1 ms p50; Envoy: +2.65 ms p90);`,
  );
  say(`         ${vcpu.toFixed(2)} vCPU per 1000 req/s on one connection (Envoy: 0.35); peak RSS ${medianOf(s, 'rss_peak', svcca).toFixed(0)} MB (Envoy: ~40 MB, Linkerd: 26 MB).`);
  for (const k of skipped) say(`skipped: ${TARGET_LABEL[k.id]}: ${k.reason}`);
  if (!ids.some((i) => PEERS.includes(i))) say('no peer proxy is installed: the "best peer" column is empty (apt-get install haproxy nginx libnginx-mod-stream stunnel4)');
  for (const n of notes) say(`note: ${n}`);
  say(`load average: ${load0.map((l) => l.toFixed(2)).join(' ')} at start, ${load1.map((l) => l.toFixed(2)).join(' ')} at end${load1[0]! > cpus().length ? ' (busy machine: treat the numbers with care)' : ''}`);

  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = {
    benchmark: 'proxy',
    date: new Date().toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim(), node: process.version, loadavgStart: load0, loadavgEnd: load1 },
    settings: { reps: REPS, secondsPerMeasurement: SECONDS, downloadMB: DOWNLOAD_MB, connections: CONNECTIONS },
    targets: Object.fromEntries(targets.map((t) => [t.id, { version: t.version, port: t.port }])),
    skipped: Object.fromEntries(skipped.map((k) => [k.id, k.reason])),
    notes,
    metrics: samplesToJson(s),
  };
  const file = join(resultsDir, `proxy-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(resultsDir, 'proxy-latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  say(`results: ${file}`);
}

process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    void stopAll().finally(() => process.exit(130));
  });
}

main().then(
  async () => {
    await stopAll();
    process.exit(0);
  },
  async (err: unknown) => {
    await stopAll();
    writeSync(2, `proxy bench: ${err instanceof BenchFailure ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

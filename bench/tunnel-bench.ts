/**
 * The mesh path with and without tunnels (issue 13): app → outbound svcca-sidecar →
 * inbound svcca-sidecar (tcp mode) → HTTP service, three variants in one run —
 * `tunnel: auto`, `tunnel: off`, and the app calling the service directly — and kinds:
 *   (a) a new app connection per request      (req/s; goal: auto ≥ 5× off)
 *   (b) 32 keep-alive app connections         (req/s; goal: auto ≥ 0.8× off)
 *   (c) 4 parallel 1 MiB downloads, repeated  (MB/s;  goal: auto ≥ 0.8× off)
 *   (d) one 256 MiB download on one connection (MB/s; goal: one stream ≥ 0.8× off)
 * CPU per request of each sidecar and of the client, and each sidecar's RSS, are reported.
 *
 * With --slow-reader-mb N (TUNNEL_SLOW_MB), an N MiB download through the tunnel to a
 * reader taking 1 MB/s: the RSS of both sidecars is sampled throughout (back-pressure end
 * to end; the issue's figure is 1 GB, about 17 minutes).
 *
 * Each cell runs --reps times (TUNNEL_REPS, default 3), the variants' order alternating;
 * rates are medians, CPU per unit is over all repetitions, and auto ÷ off is the median of
 * the ratios taken within each repetition.
 *
 * Usage: node dist/bench/tunnel-bench.js [--seconds S] [--reps N] [--slow-reader-mb N]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request, Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { cpuSeconds, memory, processTree } from './proxy/procfs.js';
import {
  binaryNodeFlags,
  freePort,
  runBenchMain,
  runCommand,
  spawnLogged,
  spawnPiped,
  stopChild,
  tail,
  waitListening,
} from './proxy/processes.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'dist/bin/svcca.mjs');
const SIDECAR = join(ROOT, 'dist/bin/svcca-sidecar.mjs');
const SERVICE = join(ROOT, 'dist/bench/proxy/http-service.js');
const TD = 'bench.internal';

class BenchFailure extends Error {}

function arg(name: string, env: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  const raw = i !== -1 ? process.argv[i + 1] : process.env[env];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new BenchFailure(`${name}: expected a number, got ${raw}`);
  return n;
}

interface Proc {
  readonly child: ChildProcess;
  readonly port: number;
  readonly log: string;
  pids(): number[];
}

async function startService(): Promise<Proc> {
  const port = await freePort();
  const child = spawnPiped(process.execPath, [SERVICE, String(port)]);
  child.stdout?.resume();
  if (!(await waitListening(port, child))) throw new BenchFailure('the HTTP service did not start');
  return { child, port, log: '', pids: () => (child.pid ? [child.pid] : []) };
}

async function startSidecar(work: string, name: string, yaml: (port: number) => string): Promise<Proc> {
  const port = await freePort();
  const config = join(work, `${name}.yaml`);
  const log = join(work, `${name}.log`);
  writeFileSync(config, yaml(port));
  // TUNNEL_CPU_PROF=<dir>: a V8 CPU profile of each sidecar, written when it stops.
  const prof = process.env.TUNNEL_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.TUNNEL_CPU_PROF] : [];
  // The V8 flags of the binary's first line, as users run it (`#!/usr/bin/env -S node …`).
  const child = spawnLogged(process.execPath, [...binaryNodeFlags(SIDECAR), ...prof, SIDECAR, '--config', config], { log });
  if (!(await waitListening(port, child))) throw new BenchFailure(`${name} did not start: ${tail(log, 3)}`);
  return { child, port, log, pids: () => (child.pid ? processTree(child.pid) : []) };
}

/** One GET; resolves with the body's length. */
function get(port: number, path: string, agent: Agent | false, onData?: (n: number) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent, headers: agent === false ? { connection: 'close' } : {} }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => {
        n += d.length;
        onData?.(d.length);
      });
      res.on('end', () => resolve(n));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

interface Sample {
  readonly units: number;
  readonly seconds: number;
  readonly cpu: Record<string, number>;
  readonly clientCpu: number;
}

/** Runs `workers` loops of `one` for `seconds`, measuring the CPU of `procs` and of this process. */
async function measure(seconds: number, workers: number, one: () => Promise<number>, procs: Record<string, Proc>): Promise<Sample> {
  const cpu0 = Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, cpuSeconds(p.pids())]));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let units = 0;
  let failed = 0;
  let firstError = '';
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (performance.now() < deadline) {
        try {
          // Not `units += await one()`: that reads `units` before the await, so with
          // concurrent workers each store overwrites the others' (it counted ~1/workers).
          const done = await one();
          units += done;
        } catch (err) {
          failed++;
          firstError ||= (err as Error).message;
        }
      }
    }),
  );
  if (failed > 0) process.stdout.write(`  !! ${failed} requests failed (${firstError})\n`);
  const elapsed = (performance.now() - t0) / 1000;
  const c1 = process.cpuUsage(c0);
  const cpu = Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, cpuSeconds(p.pids()) - cpu0[k]!]));
  return { units, seconds: elapsed, cpu, clientCpu: (c1.user + c1.system) / 1e6 };
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(): Promise<void> {
  const seconds = arg('--seconds', 'TUNNEL_SECONDS', 5);
  const slowMb = arg('--slow-reader-mb', 'TUNNEL_SLOW_MB', 0);
  const reps = Math.max(1, Math.round(arg('--reps', 'TUNNEL_REPS', 3)));
  const work = mkdtempSync(join(tmpdir(), 'svcca-tunnel-bench-'));
  try {
    const ca = join(work, 'ca');
    const env = { ...process.env, SVCCA_PASSPHRASE: `bench-${process.pid}`, SVCCA_DIR: ca };
    for (const args of [
      ['init', '--trust-domain', TD],
      ['issue', 'bench-server', '--out', join(work, 'server')],
      ['issue', 'bench-client', '--out', join(work, 'client')],
    ]) {
      const r = await runCommand(process.execPath, [CLI, ...args, '--dir', ca], { timeoutMs: 60_000, env });
      if (r.code !== 0) throw new BenchFailure(`svcca ${args[0]} failed: ${r.stderr.trim()}`);
    }
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, 'services:\n  bench-server:\n    allow: [bench-client]\n');
    const service = await startService();
    const common = (dir: string) => [
      'identity:',
      `  dir: ${join(work, dir)}`,
      `  crl: ${join(ca, 'crl.pem')}`,
      'log:',
      `  level: ${process.env.TUNNEL_LOG_LEVEL ?? 'warn'}`,
    ];
    const inbound = await startSidecar(work, 'inbound', (port) =>
      [
        ...common('server'),
        `policy: ${policy}`,
        'inbound:',
        `  listen: 127.0.0.1:${port}`,
        `  forward: 127.0.0.1:${service.port}`,
        '',
      ].join('\n'),
    );
    const outbound = (mode: 'auto' | 'off') =>
      startSidecar(work, `outbound-${mode}`, (port) =>
        [
          ...common('client'),
          'outbound:',
          `  - listen: 127.0.0.1:${port}`,
          `    connect: 127.0.0.1:${inbound.port}`,
          `    serverId: spiffe://${TD}/bench-server`,
          `    tunnel: ${mode}`,
          '',
        ].join('\n'),
      );
    const auto = await outbound('auto');
    const off = await outbound('off');
    // --variants auto,off,direct (TUNNEL_VARIANTS): some of them (a CPU profile of one alone).
    const variantsArg = process.argv.includes('--variants')
      ? process.argv[process.argv.indexOf('--variants') + 1]
      : process.env.TUNNEL_VARIANTS;
    const wanted = (variantsArg ?? '').split(',').filter(Boolean);
    const variants = (
      [
        // The service's CPU too: with client, service and both sidecars on two cores, the
        // sum per request is what bounds the rate.
        ['tunnel auto', auto.port, { outbound: auto, inbound, service }],
        ['tunnel off', off.port, { outbound: off, inbound, service }],
        ['direct', service.port, { service }],
      ] as [string, number, Record<string, Proc>][]
    ).filter(([name]) => wanted.length === 0 || wanted.includes(name.replace('tunnel ', '')));
    const kinds: [string, string, number, (port: number, agent: Agent | false) => () => Promise<number>, boolean][] = [
      [
        '(a) new connection per request',
        'req/s',
        Number(process.env.TUNNEL_A_WORKERS ?? 16),
        (port) => async () => {
          await get(port, '/small', false);
          return 1;
        },
        false,
      ],
      [
        '(b) 32 keep-alive connections',
        'req/s',
        32,
        (port, agent) => async () => {
          await get(port, '/small', agent);
          return 1;
        },
        true,
      ],
      ['(c) 4 × 1 MiB downloads', 'MB/s', 4, (port, agent) => async () => (await get(port, '/big?bytes=1048576', agent)) / 1e6, true],
      ['(d) one 256 MiB download', 'MB/s', 1, (port, agent) => async () => (await get(port, '/big?bytes=268435456', agent)) / 1e6, true],
    ];
    const say = (s: string) => process.stdout.write(`${s}\n`);
    say(`tunnel bench: node ${process.version}, ${seconds}s per cell; CPU in ms per request (per MB for downloads)`);
    // --only a,c (TUNNEL_ONLY): just those kinds (--only none: only the slow reader).
    const onlyArg = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : process.env.TUNNEL_ONLY;
    const only = (onlyArg ?? '').split(',').filter(Boolean);
    for (const [kind, unit, workers, make, keepAlive] of kinds) {
      if (only.length > 0 && !only.includes(kind[1]!)) continue;
      say(kind);
      // Repetitions alternate the variants' order (auto, off, direct; then off, auto, …):
      // on a shared 2-core machine a neighbour's burst lands on one cell, and a ratio of
      // two cells measured seconds apart moves with it. Each ratio is taken within one
      // repetition; the median of them is reported, with their range.
      const samples = new Map<string, Sample[]>(variants.map(([name]) => [name, []]));
      for (let rep = 0; rep < reps; rep++) {
        const order =
          rep % 2 === 0 ? variants : [...variants.filter(([n]) => n === 'tunnel off'), ...variants.filter(([n]) => n !== 'tunnel off')];
        for (const [name, port, procs] of order) {
          const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: workers }) : false;
          // Warm-up: connections, tunnels, JIT (the first repetition pays for the JIT).
          await measure(rep === 0 ? Math.min(1, seconds) : Math.min(0.3, seconds), workers, make(port, agent), {});
          samples.get(name)!.push(await measure(seconds, workers, make(port, agent), procs));
          if (agent) agent.destroy();
        }
      }
      for (const [name, , procs] of variants) {
        const runs = samples.get(name)!;
        const rates = runs.map((r) => r.units / r.seconds);
        // CPU per unit over all repetitions together: CPU seconds are counted in 10 ms ticks.
        const units = runs.reduce((n, r) => n + r.units, 0);
        const cpuOf = (k: string) => runs.reduce((n, r) => n + r.cpu[k]!, 0);
        const clientCpu = runs.reduce((n, r) => n + r.clientCpu, 0);
        const seconds = runs.reduce((n, r) => n + r.seconds, 0);
        const per = (c: number) => fmt((c / units) * 1000, 3);
        const mem = Object.entries(procs)
          .filter(([k]) => k !== 'service')
          .map(([k, p]) => `${k} rss ${fmt(memory(p.pids()).rss / 1048576)} MiB`);
        say(
          `  ${name.padEnd(12)} ${fmt(median(rates), unit === 'MB/s' ? 1 : 0).padStart(10)} ${unit}   cpu/unit: ${[...Object.keys(procs).map((k) => `${k} ${per(cpuOf(k))}`), `client ${per(clientCpu)}`].join(', ')} ms   client cpu ${fmt((clientCpu / seconds) * 100)}%   ${mem.join(', ')}`,
        );
      }
      const a = samples.get('tunnel auto');
      const o = samples.get('tunnel off');
      if (a?.length && o?.length) {
        const ratios = a.map((r, i) => r.units / r.seconds / (o[i]!.units / o[i]!.seconds)).sort((x, y) => x - y);
        say(
          `  auto ÷ off = ${fmt(median(ratios), 2)}${reps > 1 ? ` (median of ${reps} repetitions; ${fmt(ratios[0]!, 2)}–${fmt(ratios[ratios.length - 1]!, 2)})` : ''}`,
        );
      }
    }
    if (slowMb > 0) await slowReader(auto, inbound, slowMb, say);
    for (const p of [auto, off, inbound]) await stopChild(p.child);
    await stopChild(service.child);
  } finally {
    // TUNNEL_KEEP=1: keep the work folder (configs, sidecar logs) for a look.
    if (process.env.TUNNEL_KEEP === '1') process.stdout.write(`work folder kept: ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }
}

/** An N MiB download through the tunnel, read at 1 MB/s: the sidecars' RSS throughout. */
async function slowReader(auto: Proc, inbound: Proc, mb: number, say: (s: string) => void): Promise<void> {
  say(`slow reader: ${mb} MiB through tunnel auto, read at 1 MB/s`);
  const peak = { outbound: 0, inbound: 0 };
  const timer = setInterval(() => {
    peak.outbound = Math.max(peak.outbound, memory(auto.pids()).rss);
    peak.inbound = Math.max(peak.inbound, memory(inbound.pids()).rss);
  }, 500);
  const t0 = performance.now();
  const got = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: auto.port, path: `/big?bytes=${mb * 1048576}`, agent: false }, (res) => {
      let n = 0;
      // 64 KiB every 64 ms ≈ 1 MB/s.
      res.on('data', (d: Buffer) => {
        n += d.length;
        res.pause();
        setTimeout(() => res.resume(), (d.length / 1_000_000) * 1000);
      });
      res.on('end', () => resolve(n));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  clearInterval(timer);
  // VmHWM: the peak between samples too (over each process's life: run with --only none
  // for a figure of the slow reader alone).
  const hwm = (p: Proc) => fmt(memory(p.pids()).hwm / 1048576);
  say(
    `  ${fmt(got / 1048576)} MiB in ${fmt((performance.now() - t0) / 1000)} s; peak RSS (sampled every 0.5 s) outbound ${fmt(peak.outbound / 1048576)} MiB, inbound ${fmt(peak.inbound / 1048576)} MiB; VmHWM outbound ${hwm(auto)} MiB, inbound ${hwm(inbound)} MiB`,
  );
}

runBenchMain('tunnel-bench', main, (err) => err instanceof BenchFailure);

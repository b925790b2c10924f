/**
 * Child processes of the benchmark: every one is tracked and killed on exit, signal or
 * failure, so a run leaves nothing behind (run.sh's trap is the second line of defence).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createServer, connect } from 'node:net';

const children = new Set<ChildProcess>();

/**
 * CPU pinning with `taskset -c N` (the command execs, so the pid is the program's): the
 * proxy under test and the service on one core, the load client on the other, so that
 * the client's work does not land in the proxy's CPU time slices and vice versa.
 */
let pinning: { proxy: number; client: number } | undefined;
export async function setUpPinning(cpuCount: number): Promise<string> {
  if (cpuCount < 2) return `not pinned: ${cpuCount} CPU (pinning needs 2)`;
  const taskset = await which('taskset');
  if (!taskset) return 'not pinned: taskset is not installed (util-linux)';
  const probe = await runCommand(taskset, ['-c', '0', 'true'], { timeoutMs: 5000 });
  if (probe.code !== 0) return `not pinned: taskset -c 0 fails here (${probe.stderr.trim().split('\n')[0]})`;
  pinning = { proxy: 0, client: 1 };
  return 'pinned with taskset: proxy under test + local service on CPU 0, load client on CPU 1';
}

/** `cmd args` prefixed with `taskset -c N` for that role, when pinning is on. */
export function pinned(role: 'proxy' | 'client' | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  if (!pinning || !role) return [cmd, [...args]];
  return ['taskset', ['-c', String(pinning[role]), cmd, ...args]];
}

export function spawnLogged(
  cmd: string,
  args: readonly string[],
  opts: { log: string; cwd?: string; pin?: 'proxy' | 'client' },
): ChildProcess {
  const fd = openSync(opts.log, 'a');
  try {
    const [c, a] = pinned(opts.pin, cmd, args);
    const child = spawn(c, a, { cwd: opts.cwd, stdio: ['ignore', fd, fd] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  } finally {
    closeSync(fd);
  }
}

/** Stops one child: SIGTERM, then SIGKILL after `graceMs`. */
export function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

/** Synchronous last resort (process 'exit' handlers cannot wait). */
export function killAllNow(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export function tail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Waits until something accepts on 127.0.0.1:`port`; resolves false if `child` exits
 * first or `timeoutMs` passes.
 */
export async function waitListening(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    if (await canConnect(port)) return child.exitCode === null;
    await sleep(100);
  }
  return false;
}

/** Waits for an exit; resolves with the exit code, or undefined if still running after `ms`. */
export function exitWithin(child: ChildProcess, ms: number): Promise<number | undefined> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(undefined), ms);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code ?? 1);
    });
  });
}

/** A child with pipes on stdin and stdout (the client's idle phase talks to it); tracked. */
export function spawnPiped(cmd: string, args: readonly string[], pin?: 'proxy' | 'client'): ChildProcess {
  const [c, a] = pinned(pin, cmd, args);
  const child = spawn(c, a, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Runs a command to completion with a hard time bound. */
export function runCommand(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs: number; env?: NodeJS.ProcessEnv; cwd?: string; pin?: 'proxy' | 'client' },
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = process.hrtime.bigint();
  [cmd, args] = pinned(opts.pin, cmd, args);
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs, killSignal: 'SIGKILL', env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number'
            ? (err as unknown as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr), ms: Number(process.hrtime.bigint() - t0) / 1e6 });
      },
    );
    children.add(child);
    child.once('exit', () => children.delete(child));
  });
}

/** The path of a command on PATH (also /usr/sbin, where haproxy and nginx live), or undefined. */
export async function which(name: string): Promise<string | undefined> {
  const r = await runCommand('sh', ['-c', `PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin" command -v ${name}`], { timeoutMs: 5000 });
  const p = r.stdout.trim();
  return r.code === 0 && p ? p : undefined;
}

/**
 * Runs a benchmark's main: every child it started is stopped on exit, on a signal (exit
 * 130) and on failure (exit 1, one line; a stack only for an error that is not `expected`).
 */
export function runBenchMain(
  name: string,
  main: () => Promise<void>,
  expected: (err: unknown) => boolean,
  onSignal: () => void = () => undefined,
): void {
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      onSignal();
      void stopAll().finally(() => process.exit(130));
    });
  }
  main().then(
    async () => {
      await stopAll();
      process.exit(0);
    },
    async (err: unknown) => {
      onSignal();
      await stopAll();
      writeSync(
        2,
        `${name}: ${expected(err) ? (err as Error).message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}

/**
 * The node flags of a binary's first line (`#!/usr/bin/env -S node --max-semi-space-size=2`):
 * a benchmark that starts the sidecar as `node svcca-sidecar.mjs` must pass them itself to
 * measure it as users run it (without them its RSS under load is tens of MB higher).
 */
export function binaryNodeFlags(bin: string): string[] {
  return readFileSync(bin, 'utf8')
    .split('\n', 1)[0]!
    .split(/\s+/)
    .filter((w) => w.startsWith('--'));
}

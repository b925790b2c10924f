/**
 * Shared pieces of the `svcca serve` tests (not a test file itself): the real server
 * started by the CLI on port 0 with its JSON log lines, curl against it, CSRs made with
 * openssl, and the CLI's client commands run without blocking this process.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanEnv, spawnSvcca, SVCCA_BIN, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { spawnTracked } from '../helpers/children.js';
import { followJsonLines } from '../helpers/json-lines.js';
import { runAsync } from './sidecar-harness.js';

export interface ServeLine {
  readonly level: string;
  readonly event?: string;
  readonly outcome?: string;
  readonly caller?: string | null;
  readonly address?: string;
  readonly status?: number;
  readonly [key: string]: unknown;
}

export interface RunningServe {
  readonly proc: ChildProcess;
  readonly lines: ServeLine[];
  /** https://127.0.0.1:PORT */
  readonly url: string;
  /** http://127.0.0.1:PORT of the admin listener. */
  readonly admin: string;
  waitForLine(pred: (l: ServeLine) => boolean, timeoutMs?: number): Promise<ServeLine>;
  readonly exited: Promise<number | null>;
  /** What the process wrote to stderr so far (a crash's stack lands here). */
  stderr(): string;
  stop(): Promise<number | null>;
}

export async function startServeProcess(
  ca: TestCa,
  extra: readonly string[] = [],
  env: Record<string, string> = {},
): Promise<RunningServe> {
  const proc = spawnTracked(
    process.execPath,
    [SVCCA_BIN, 'serve', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--dir', ca.dir, ...extra],
    {
      env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const { lines, waitForLine, stderr } = followJsonLines<ServeLine>(proc);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const started = await Promise.race([
    waitForLine((l) => l.event === 'start'),
    exited.then((code) => new Error(`svcca serve exited with ${code}: ${stderr()}`)),
  ]);
  if (started instanceof Error) throw started;
  return {
    proc,
    lines,
    url: `https://${String(started.listen)}`,
    admin: `http://${String(started.admin)}`,
    waitForLine,
    exited,
    stderr,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface CurlAnswer {
  readonly status: number;
  readonly body: string;
  readonly json: { error?: string; message?: string; certificate?: string; serial?: string; [k: string]: unknown } | undefined;
}

/** curl -k (the server's ID is not a host name; these tests are about what it refuses) with `args`. */
export async function curl(url: string, args: readonly string[]): Promise<CurlAnswer> {
  const res = await runAsync('curl', ['-sk', '-o', '-', '-w', '\n%{http_code}', ...args, url]);
  const cut = res.stdout.lastIndexOf('\n');
  const body = res.stdout.slice(0, cut);
  let json: CurlAnswer['json'];
  try {
    json = JSON.parse(body) as CurlAnswer['json'];
  } catch {
    json = undefined;
  }
  return { status: Number(res.stdout.slice(cut + 1)), body, json };
}

/** curl POSTing `{"csr": …}` to /v1/renew with a set's certificate and key (or none). */
export function curlRenew(serve: RunningServe, scratch: string, csrPem: string, setDir?: string): Promise<CurlAnswer> {
  const body = join(scratch, `body-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(body, JSON.stringify({ csr: csrPem }));
  const cert = setDir ? ['--cert', join(setDir, 'tls.crt'), '--key', join(setDir, 'tls.key')] : [];
  return curl(`${serve.url}/v1/renew`, [...cert, '-H', 'content-type: application/json', '--data-binary', `@${body}`]);
}

/** A new P-256 key and a CSR for it made by openssl; `subj`/`san` ask for names the CA must ignore. */
export async function opensslCsr(
  scratch: string,
  name: string,
  opts: { keyPath?: string; subj?: string; san?: string } = {},
): Promise<{ keyPath: string; csrPem: string }> {
  const keyPath = opts.keyPath ?? join(scratch, `${name}.key`);
  if (!opts.keyPath) {
    const k = await runAsync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
    if (k.status !== 0) throw new Error(k.stderr);
  }
  const csr = await runAsync('openssl', [
    'req',
    '-new',
    '-key',
    keyPath,
    '-subj',
    opts.subj ?? `/CN=${name}`,
    ...(opts.san ? ['-addext', `subjectAltName=${opts.san}`] : []),
  ]);
  if (csr.status !== 0) throw new Error(csr.stderr);
  return { keyPath, csrPem: csr.stdout };
}

/** `svcca <args>` (client commands: no --dir added) without blocking this event loop. */
export function svccaClient(
  args: readonly string[],
  env: NodeJS.ProcessEnv = cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }),
): Promise<{ status: number; stdout: string; stderr: string }> {
  const child = spawnSvcca(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr })));
}

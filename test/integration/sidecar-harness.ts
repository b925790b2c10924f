/**
 * Shared pieces of the sidecar integration tests (not a test file itself): running the
 * built `svcca-sidecar` binary with a config, reading its JSON log lines, a small local
 * service to forward to, and TLS clients that report what they got.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before } from 'node:test';
import { SIDECAR_BIN, makeCa, type TestCa } from '../helpers/cli.js';
import { spawnTracked } from '../helpers/children.js';
import { followJsonLines } from '../helpers/json-lines.js';
import { parseCertificate } from '../../common/x509.js';
import { decodeCertificates } from '../../common/pem.js';

export interface LogLine {
  readonly level: string;
  readonly event?: string;
  readonly reason?: string;
  readonly peer?: string;
  readonly address?: string;
  readonly detail?: string;
  readonly msg?: string;
  readonly [key: string]: unknown;
}

export interface RunningSidecar {
  readonly proc: ChildProcess;
  readonly lines: LogLine[];
  readonly stderr: () => string;
  readonly inbound: string | undefined;
  readonly outbound: readonly string[];
  readonly admin: string | undefined;
  /** Resolves with the first line (already logged or future) matching `pred`. */
  waitForLine(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Writes `yaml` to `<dir>/<name>` and starts the sidecar on it; resolves once it logged `started`. */
export async function startSidecarProcess(dir: string, yaml: string, name = 'sidecar.yaml'): Promise<RunningSidecar> {
  const configPath = join(dir, name);
  writeFileSync(configPath, yaml);
  // Run as users run it: the binary itself, so its shebang's V8 flags apply.
  const proc = spawnTracked(SIDECAR_BIN, ['--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { lines, waitForLine, stderr: err } = followJsonLines<LogLine>(proc);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const started = await Promise.race([
    waitForLine((l) => l.event === 'started'),
    exited.then((code) => new Error(`sidecar exited with ${code}: ${err()}`)),
  ]);
  if (started instanceof Error) throw started;
  const inbound = (started.inbound as { listen?: string } | undefined)?.listen;
  const outbound = ((started.outbound as { listen: string }[] | undefined) ?? []).map((o) => o.listen);
  return {
    proc,
    lines,
    stderr: err,
    inbound,
    outbound,
    admin: started.admin as string | undefined,
    waitForLine,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** A config file body. `extra` is appended verbatim (outbound:, admin:, …). */
export function sidecarYaml(opts: {
  setDir: string;
  crl?: string;
  policy?: string;
  listen?: string;
  forward?: string;
  extra?: string;
  inbound?: boolean;
}): string {
  const lines = ['identity:', `  dir: ${opts.setDir}`];
  if (opts.crl) lines.push(`  crl: ${opts.crl}`);
  if (opts.policy) lines.push(`policy: ${opts.policy}`);
  if (opts.inbound !== false) {
    lines.push('inbound:', `  listen: ${opts.listen ?? '127.0.0.1:0'}`, `  forward: ${opts.forward ?? '127.0.0.1:1'}`);
  }
  if (opts.extra) lines.push(opts.extra);
  return `${lines.join('\n')}\n`;
}

/** A port nothing listens on right now (bound, then released). */
export async function unusedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function writePolicy(dir: string, body: string, name = 'policy.yaml'): string {
  const p = join(dir, name);
  writeFileSync(p, body);
  return p;
}

/**
 * A local "service": on connect it writes `hello <name>\n`, then echoes what it receives,
 * and ends its side when the caller ends (half-close both ways).
 */
export async function startEchoService(
  name: string,
  listen: { port?: number; path?: string } = { port: 0 },
): Promise<{ server: Server; address: string; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    count++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.write(`hello ${name}\n`);
    s.pipe(s);
  });
  await new Promise<void>((resolve) =>
    listen.path ? server.listen(listen.path, resolve) : server.listen(listen.port ?? 0, '127.0.0.1', resolve),
  );
  const a = server.address();
  const address = typeof a === 'string' ? `unix:${a}` : `127.0.0.1:${a!.port}`;
  return {
    server,
    address,
    connections: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Creds {
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
}

/** A credential set folder as Node's TLS options. */
export function credsFromDir(dir: string): Required<Creds> {
  return {
    cert: readFileSync(join(dir, 'tls.crt'), 'utf8'),
    key: readFileSync(join(dir, 'tls.key'), 'utf8'),
    ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
  };
}

export function serialOfSet(dir: string): string {
  return parseCertificate(decodeCertificates(readFileSync(join(dir, 'tls.crt'), 'utf8'), 'tls.crt')[0]!).serialHex;
}

export interface TlsResult {
  /** Everything the service side sent back. */
  readonly data: string;
  readonly handshake: boolean;
  readonly reused: boolean;
  readonly session: Buffer | undefined;
  readonly error: string | undefined;
  /** The client's own certificate was offered (Node sends it when configured). */
  readonly localPort: number | undefined;
}

/**
 * Connects with Node's TLS client, sends `payload` and half-closes, then collects what
 * comes back until the connection closes. A refused connection yields no data.
 */
export function tlsExchange(
  address: string,
  creds: Creds,
  opts: { payload?: string; session?: Buffer; maxVersion?: 'TLSv1.2' | 'TLSv1.3'; waitForSession?: boolean } = {},
): Promise<TlsResult> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve) => {
    let data = '';
    let handshake = false;
    let session: Buffer | undefined;
    let error: string | undefined;
    const s: TLSSocket = tlsConnect({
      host,
      port,
      ...(creds.cert ? { cert: creds.cert, key: creds.key } : {}),
      ca: creds.ca,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      ...(opts.session ? { session: opts.session } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
    });
    let localPort: number | undefined;
    let reused = false;
    s.setEncoding('utf8');
    // Read now: after close, localPort is gone.
    s.once('connect', () => (localPort = s.localPort));
    s.on('session', (b: Buffer) => (session = b));
    s.on('secureConnect', () => {
      handshake = true;
      localPort ??= s.localPort;
      reused = s.isSessionReused(); // null after close
      if (opts.payload !== undefined) s.end(opts.payload);
    });
    s.on('data', (d: string) => (data += d));
    s.on('error', (e) => (error = (e as NodeJS.ErrnoException).code ?? e.message));
    s.on('close', () => resolve({ data, handshake, reused, session, error, localPort }));
    s.setTimeout(15_000, () => s.destroy());
  });
}

export function splitHostPort(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}

/** GET on the admin listener. */
export async function adminGet(admin: string, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${admin}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The refusal line for a connection from `localPort` (the address the sidecar logs). */
export function refusalFrom(localPort: number | undefined): (l: LogLine) => boolean {
  return (l) => l.event === 'refused' && typeof l.address === 'string' && l.address.endsWith(`:${localPort}`);
}

/**
 * Narrows a waitForLine predicate to lines logged from now on. Take it before the
 * connection it is about: after hundreds of connections, a new one can get the local port
 * an earlier refused one had, and refusalFrom alone would then match that old line.
 */
export function linesFromNow(sidecar: { readonly lines: readonly LogLine[] }): (pred: (l: LogLine) => boolean) => (l: LogLine) => boolean {
  const earlier = new Set(sidecar.lines);
  return (pred) => (l) => !earlier.has(l) && pred(l);
}

/**
 * Revokes `serials` and republishes `<ca>/crl.pem`: through `svcca revoke --serial` when
 * the CLI has it, else with the test-only signer (the real intermediate's key, a CRL
 * number above the one in force), written atomically like the CLI does.
 */
export async function revokeSerials(
  ca: { dir: string; svcca: (args: readonly string[]) => { status: number; stderr: string } },
  serials: readonly string[],
  passphrase: string,
): Promise<'cli' | 'test-signer'> {
  const first = ca.svcca(['revoke', '--serial', serials[0]!]);
  if (first.status === 0) {
    for (const s of serials.slice(1)) {
      const r = ca.svcca(['revoke', '--serial', s]);
      if (r.status !== 0) throw new Error(`svcca revoke failed: ${r.stderr}`);
    }
    return 'cli';
  }
  if (!/unknown command|unknown.*revoke|too many arguments/i.test(first.stderr)) throw new Error(`svcca revoke failed: ${first.stderr}`);
  const { loadCaDir, makeCrlDer, crlPemFile } = await import('../helpers/attacker-ca.js');
  const { loadCrlPem } = await import('../../common/crl.js');
  const { root, intermediate } = loadCaDir(ca.dir, passphrase);
  const crlPath = join(ca.dir, 'crl.pem');
  const current = loadCrlPem(readFileSync(crlPath, 'utf8'), [root.certDer]);
  const already = [...current.revoked];
  const next = current.crls.reduce((n, c) => (c.crlNumber !== undefined && c.crlNumber >= n ? c.crlNumber + 1n : n), 1n);
  const pem = crlPemFile(
    [makeCrlDer(root, { crlNumber: next }), makeCrlDer(intermediate, { serials: [...already, ...serials], crlNumber: next })],
    [intermediate],
  );
  const tmp = `${crlPath}.tmp-${process.pid}`;
  writeFileSync(tmp, pem);
  const { renameSync } = await import('node:fs');
  renameSync(tmp, crlPath);
  return 'test-signer';
}

/**
 * Runs a command without blocking this process's event loop (the in-process services the
 * sidecar forwards to must keep answering meanwhile; spawnSync would freeze them).
 */
export function runAsync(
  cmd: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; until?: RegExp } = {},
): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawnTracked(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      // A client that keeps its connection open (s_client -quiet) is stopped once it saw enough.
      if (opts.until?.test(stdout)) child.kill('SIGTERM');
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input ?? '');
  });
}

/** The usual cast: a CA, order-service and payment-service, and a policy letting order call payment. */
export interface OrderPayment {
  ca: TestCa;
  order: string;
  payment: string;
  policy: string;
  /** Run in reverse order after the suite (echo services, sidecars). */
  readonly closers: (() => Promise<unknown>)[];
}

/** Registers the suite's before/after hooks for the usual cast and returns it (filled in `before`). */
export function useOrderPayment(): OrderPayment {
  const pair = { closers: [] as (() => Promise<unknown>)[] } as OrderPayment;
  before(() => {
    pair.ca = makeCa();
    pair.order = pair.ca.issue('order-service');
    pair.payment = pair.ca.issue('payment-service');
    pair.policy = writePolicy(pair.ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
  });
  after(async () => {
    for (const c of pair.closers.reverse()) await c();
    pair.ca?.cleanup();
  });
  return pair;
}

/**
 * `promise`, or a rejection naming `step` after `ms`: a step that waits on another
 * process must fail with its name, not hold the test until the runner's timeout.
 */
export function within<T>(step: string, ms: number, promise: Promise<T>, context: () => string = () => ''): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${step}: not within ${ms} ms${context() ? `; ${context()}` : ''}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * HTTP/2 and gRPC through http mode (issue 14), not part of `make test`: over ONE
 * keep-alive connection each,
 * - gRPC unary calls per second and p99, @grpc/grpc-js client → svcca-sidecar (mTLS,
 *   ALPN h2, `upstream: h2c`) → grpc-js server, against the client straight to the server;
 * - HTTP/2 requests per second against HTTP/1.1 through the same http-mode sidecar
 *   (HTTP/1.1 service), HTTP/2 with several streams in flight, HTTP/1.1 one at a time
 *   (what one connection allows);
 * - the sidecar's CPU per request for each (utime+stime of its process, from /proc).
 *
 * Usage: node dist/bench/http2-bench.js [--seconds 5] [--inflight 16]
 * The client and both services run in this process; the sidecar in its own.
 */
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { connect as http2Connect } from 'node:http2';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { cpuSeconds, processTree } from './proxy/procfs.js';
import { freePort, runBenchMain, runCommand, spawnLogged, stopChild, tail, waitListening } from './proxy/processes.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const CLI = join(repo, 'dist', 'bin', 'svcca.mjs');
const SIDECAR = join(repo, 'dist', 'bin', 'svcca-sidecar.mjs');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}
const SECONDS = arg('--seconds', 5);
const INFLIGHT = arg('--inflight', 16);

const bytes = { s: (b: Buffer) => b, d: (b: Buffer) => b };
const SERVICE: grpc.ServiceDefinition = {
  Get: {
    path: '/bench.v1.Bench/Get',
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes.s,
    requestDeserialize: bytes.d,
    responseSerialize: bytes.s,
    responseDeserialize: bytes.d,
  },
};
const Client = grpc.makeGenericClientConstructor(SERVICE, 'Bench');

interface Result {
  readonly label: string;
  readonly requests: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** The sidecar's CPU per request, µs; undefined for the direct path. */
  readonly cpuUs: number | undefined;
}

/** Runs `one` with `inflight` loops for SECONDS; latencies per call. */
async function drive(label: string, inflight: number, one: () => Promise<void>, sidecarPid: number | undefined): Promise<Result> {
  for (let i = 0; i < 200; i++) await one(); // warm-up
  const lat: number[] = [];
  const cpuBefore = sidecarPid ? cpuSeconds(processTree(sidecarPid)) : 0;
  const start = process.hrtime.bigint();
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (Date.now() < end) {
        const t = process.hrtime.bigint();
        await one();
        lat.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }),
  );
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = sidecarPid ? cpuSeconds(processTree(sidecarPid)) - cpuBefore : undefined;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return {
    label,
    requests: lat.length,
    perSecond: lat.length / wall,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    cpuUs: cpu === undefined ? undefined : (cpu * 1e6) / lat.length,
  };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'svcca-h2bench-'));
  try {
    const ca = join(work, 'ca');
    const env = { ...process.env, SVCCA_PASSPHRASE: 'bench-passphrase' };
    const svcca = async (args: string[]) => {
      const r = await runCommand(process.execPath, [CLI, ...args, '--dir', ca], { timeoutMs: 60_000, env });
      if (r.code !== 0) throw new Error(`svcca ${args.join(' ')}: ${r.stderr}`);
    };
    await svcca(['init', '--trust-domain', 'bench.test']);
    await svcca(['issue', 'bench-server', '--out', join(work, 'server')]);
    await svcca(['issue', 'bench-client', '--out', join(work, 'client')]);
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, 'services:\n  bench-server:\n    allow: [bench-client]\n');
    const client = {
      key: readFileSync(join(work, 'client', 'tls.key')),
      cert: readFileSync(join(work, 'client', 'tls.crt')),
      ca: readFileSync(join(work, 'client', 'ca.crt')),
    };

    // The services: a gRPC server (h2c) and an HTTP/1.1 one, 64-byte answers.
    const answer = Buffer.alloc(64, 0x61);
    const server = new grpc.Server();
    server.addService(SERVICE, { Get: (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, answer) });
    const grpcPort = await new Promise<number>((ok, ko) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? ko(e) : ok(p))),
    );
    const http1 = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => res.end(answer));
    });
    await new Promise<void>((ok) => http1.listen(0, '127.0.0.1', ok));
    const httpPort = (http1.address() as { port: number }).port;

    const startSidecar = async (name: string, forward: number, upstream: 'http1' | 'h2c') => {
      const port = await freePort();
      const config = join(work, `${name}.yaml`);
      writeFileSync(
        config,
        [
          `identity:`,
          `  dir: ${join(work, 'server')}`,
          `  crl: ${join(ca, 'crl.pem')}`,
          `policy: ${policy}`,
          'inbound:',
          `  listen: 127.0.0.1:${port}`,
          `  forward: 127.0.0.1:${forward}`,
          '  mode: http',
          `  upstream: ${upstream}`,
          '',
        ].join('\n'),
      );
      const log = join(work, `${name}.log`);
      const child = spawnLogged(process.execPath, [SIDECAR, '--config', config], { log });
      if (!(await waitListening(port, child))) throw new Error(`the sidecar did not start: ${tail(log)}`);
      return { port, child };
    };
    const grpcSidecar = await startSidecar('sidecar-h2c', grpcPort, 'h2c');
    const httpSidecar = await startSidecar('sidecar-http1', httpPort, 'http1');

    const results: Result[] = [];
    const grpcCall = (c: InstanceType<typeof Client>) => () =>
      new Promise<void>((ok, ko) =>
        (c as unknown as Record<string, (b: Buffer, cb: (e: Error | null) => void) => void>).Get!(Buffer.from('x'), (e) =>
          e ? ko(e) : ok(),
        ),
      );
    const direct = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    const viaSidecar = new Client(
      `127.0.0.1:${grpcSidecar.port}`,
      grpc.credentials.createSsl(client.ca, client.key, client.cert, { checkServerIdentity: () => undefined }),
    );
    for (const inflight of [1, INFLIGHT]) {
      results.push(await drive(`gRPC unary, direct (h2c), ${inflight} in flight`, inflight, grpcCall(direct), undefined));
      results.push(
        await drive(
          `gRPC unary, via sidecar (mTLS h2 → h2c), ${inflight} in flight`,
          inflight,
          grpcCall(viaSidecar),
          grpcSidecar.child.pid,
        ),
      );
    }
    direct.close();
    viaSidecar.close();

    // HTTP/2 and HTTP/1.1 through the http1-upstream sidecar, one connection each.
    const session = http2Connect(`https://127.0.0.1:${httpSidecar.port}`, { ...client, checkServerIdentity: () => undefined });
    const h2Get = () =>
      new Promise<void>((ok, ko) => {
        const r = session.request({ ':path': '/x' });
        r.on('error', ko);
        r.resume();
        r.on('end', ok);
      });
    const h1Agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
    const h1Get = () =>
      new Promise<void>((ok, ko) => {
        const r = httpsRequest(
          { host: '127.0.0.1', port: httpSidecar.port, path: '/x', agent: h1Agent, ...client, checkServerIdentity: () => undefined },
          (res) => {
            res.resume();
            res.on('end', ok);
          },
        );
        r.on('error', ko);
        r.end();
      });
    results.push(await drive('HTTP/1.1 via sidecar, 1 connection, 1 in flight', 1, h1Get, httpSidecar.child.pid));
    results.push(await drive('HTTP/2 via sidecar, 1 connection, 1 in flight', 1, h2Get, httpSidecar.child.pid));
    results.push(await drive(`HTTP/2 via sidecar, 1 connection, ${INFLIGHT} in flight`, INFLIGHT, h2Get, httpSidecar.child.pid));
    session.close();
    h1Agent.destroy();

    process.stdout.write(`http2-bench: ${SECONDS}s per row, node ${process.version}\n`);
    process.stdout.write(
      `${'case'.padEnd(62)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'sidecar CPU µs/req'.padStart(19)}\n`,
    );
    for (const r of results) {
      process.stdout.write(
        `${r.label.padEnd(62)} ${r.perSecond.toFixed(0).padStart(8)} ${r.p50Ms.toFixed(2).padStart(8)} ${r.p99Ms.toFixed(2).padStart(8)} ${(r.cpuUs === undefined ? '-' : r.cpuUs.toFixed(0)).padStart(19)}\n`,
      );
    }
    await stopChild(grpcSidecar.child);
    await stopChild(httpSidecar.child);
    server.forceShutdown();
    http1.close();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

runBenchMain('http2-bench', main, () => false);

/**
 * Instructions per keep-alive request inside the proxy process, counted by valgrind's
 * callgrind: the same figure for the same binary and inputs whatever else the machine is
 * doing, where CPU seconds on a shared 2-core machine swing by 2× (issue 12). Run by hand:
 *
 *   make build && node dist/bench/instructions.js [tcp http floor] [--small 400 --large 2000] [--handshakes]
 *
 * With --handshakes every connection is new and carries one request, so the figure is the
 * cost of a full mTLS handshake plus that request (defaults --small 100 --large 400);
 * --resumed does the same with each connection offering the last TLS 1.3 ticket.
 *
 * Each target runs twice under callgrind, serving `small` and then `large` requests (64-byte
 * answers, 8 keep-alive mTLS connections); (I refs large − I refs small) ÷ (large − small) is
 * the cost of one request with start-up and shutdown cancelled out. The proxy runs about 50×
 * slower under valgrind, so a run takes a few minutes. JIT-compiled code is counted like any
 * other; what callgrind cannot give is a per-function split of it (use --cpu-prof for that).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { binaryNodeFlags, freePort, which } from './proxy/processes.js';

const CLI = fileURLToPath(new URL('../bin/svcca.mjs', import.meta.url));
const SIDECAR = fileURLToPath(new URL('../bin/svcca-sidecar.mjs', import.meta.url));
const FLOOR = fileURLToPath(new URL('./proxy/plain-node-proxy.js', import.meta.url));
const CONNECTIONS = 8;
const REQUEST = Buffer.from('GET /small HTTP/1.1\r\nHost: bench-server\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n');
const BODY = Buffer.alloc(64, 97);

type Target = 'tcp' | 'http' | 'floor';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const targets = argv.filter((a): a is Target => a === 'tcp' || a === 'http' || a === 'floor');
const RESUMED = argv.includes('--resumed');
const HANDSHAKES = RESUMED || argv.includes('--handshakes');
const SMALL = flag('small', HANDSHAKES ? 100 : 400);
const LARGE = flag('large', HANDSHAKES ? 400 : 2000);
const UNIT = RESUMED
  ? 'resumed connection (TLS 1.3 ticket + 1 request)'
  : HANDSHAKES
    ? 'new connection (handshake + 1 request)'
    : 'request';

function setUp(work: string): { server: string; client: string } {
  const env = { ...process.env, SVCCA_PASSPHRASE: `instructions-${process.pid}`, SVCCA_DIR: join(work, 'ca') };
  const cli = (args: string[]) => execFileSync(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  cli(['init', '--trust-domain', 'bench.test']);
  cli(['issue', 'bench-server', '--ip', '127.0.0.1', '--out', join(work, 'server')]);
  cli(['issue', 'bench-client', '--out', join(work, 'client')]);
  return { server: join(work, 'server'), client: join(work, 'client') };
}

async function proxyUnderCallgrind(
  target: Target,
  work: string,
  sets: { server: string },
  servicePort: number,
  out: string,
): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const valgrind = ['--tool=callgrind', '--smc-check=all-non-file', `--callgrind-out-file=${out}`, process.execPath];
  let args: string[];
  if (target === 'floor') {
    args = [
      ...valgrind,
      FLOOR,
      'inbound',
      '--listen',
      String(port),
      '--forward',
      String(servicePort),
      '--dir',
      sets.server,
      '--peer-id',
      'spiffe://bench.test/bench-client',
    ];
  } else {
    const policy = join(work, 'policy.yaml');
    writeFileSync(
      policy,
      target === 'http'
        ? 'services:\n  bench-server:\n    allow:\n      - from: bench-client\n        methods: [GET]\n        paths: [/small]\n'
        : 'services:\n  bench-server:\n    allow: [bench-client]\n',
    );
    const config = join(work, `sidecar-${target}.yaml`);
    writeFileSync(
      config,
      `identity:\n  dir: ${sets.server}\n  crl: ${join(work, 'ca', 'crl.pem')}\npolicy: ${policy}\ninbound:\n  listen: 127.0.0.1:${port}\n  forward: 127.0.0.1:${servicePort}\n  mode: ${target}\n  idleTimeout: 10m\n`,
    );
    // The flags the binary's first line gives node.
    args = [...valgrind, ...binaryNodeFlags(SIDECAR), SIDECAR, '--config', config];
  }
  const child = spawn('valgrind', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d;
      if (/"event":"started"|ready \d+/.test(text)) resolve();
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${target} exited (${code}) before it was ready: ${text.slice(-400)}`)));
  });
  return { child, port };
}

async function requests(port: number, client: string, total: number): Promise<number> {
  const creds = {
    cert: readFileSync(join(client, 'tls.crt')),
    key: readFileSync(join(client, 'tls.key')),
    ca: readFileSync(join(client, 'ca.crt')),
  };
  let done = 0;
  // --resumed: every connection offers the last ticket the proxy sent.
  let ticket: Buffer | undefined;
  const one = (share: number) =>
    new Promise<void>((resolve, reject) => {
      const s = connect({
        host: '127.0.0.1',
        port,
        ...creds,
        checkServerIdentity: () => undefined,
        ...(RESUMED && ticket ? { session: ticket } : {}),
      });
      if (RESUMED) s.on('session', (t: Buffer) => (ticket = t));
      let seen = Buffer.alloc(0);
      let mine = 0;
      s.on('error', reject);
      s.once('secureConnect', () => s.write(REQUEST));
      s.on('data', (d: Buffer) => {
        seen = Buffer.concat([seen, d]);
        for (;;) {
          const head = seen.indexOf('\r\n\r\n');
          if (head < 0 || seen.length < head + 4 + BODY.length) break;
          seen = seen.subarray(head + 4 + BODY.length);
          done++;
          if (++mine >= share) {
            s.destroy();
            resolve();
            return;
          }
          s.write(REQUEST);
        }
      });
    });
  if (!HANDSHAKES) {
    await Promise.all(Array.from({ length: CONNECTIONS }, () => one(Math.ceil(total / CONNECTIONS))));
    return done;
  }
  let opened = 0;
  const worker = async () => {
    while (opened < total) {
      opened++;
      await one(1);
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  return done;
}

async function instructionsOf(
  target: Target,
  work: string,
  sets: { server: string; client: string },
  servicePort: number,
  n: number,
): Promise<{ refs: number; served: number }> {
  const out = join(work, `callgrind.${target}.${n}`);
  const { child, port } = await proxyUnderCallgrind(target, work, sets, servicePort, out);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const served = await requests(port, sets.client, n);
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
  const refs = /I\s+refs:\s+([\d,]+)/.exec(stderr)?.[1];
  if (!refs) throw new Error(`callgrind printed no total for ${target}: ${stderr.slice(-300)}`);
  return { refs: Number(refs.replace(/,/g, '')), served };
}

async function main(): Promise<void> {
  if (!(await which('valgrind'))) throw new Error('valgrind is not installed (apt-get install valgrind)');
  const work = mkdtempSync(join(tmpdir(), 'svcca-instructions-'));
  const service = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': BODY.length });
    res.end(BODY);
  });
  service.keepAliveTimeout = 600_000;
  try {
    const sets = setUp(work);
    await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
    const servicePort = (service.address() as { port: number }).port;
    const perRequest: Partial<Record<Target, number>> = {};
    for (const target of targets.length ? targets : (['floor', 'tcp', 'http'] as const)) {
      const small = await instructionsOf(target, work, sets, servicePort, SMALL);
      const large = await instructionsOf(target, work, sets, servicePort, LARGE);
      perRequest[target] = (large.refs - small.refs) / (large.served - small.served);
      console.log(
        `${target.padEnd(6)} ${(perRequest[target]! / 1000).toFixed(0).padStart(7)} K instructions per ${UNIT}  (${small.served} and ${large.served}: ${small.refs} and ${large.refs} in all)`,
      );
    }
    const base = perRequest.floor ?? perRequest.tcp;
    if (base)
      for (const [t, v] of Object.entries(perRequest))
        console.log(`${t.padEnd(6)} ${(v / base).toFixed(2)}× ${perRequest.floor ? 'the floor' : 'tcp mode'}`);
  } finally {
    service.close();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(`instructions: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});

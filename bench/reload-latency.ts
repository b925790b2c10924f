/**
 * Issue 7's reload number (run by hand, never by `make test`): the time from a `..data`
 * swap to the first TLS handshake that is shown the new certificate.
 *
 *   node dist/bench/reload-latency.js
 *
 * Certificates come from the real CLI (`svcca init`, `svcca issue`). Two sets of
 * payment-service are issued into staging folders; each try swaps the live folder's
 * `..data` to the other with the writer `svcca issue`/`rotate` use (writeCredentialSet),
 * so the clock starts at the exact rename rather than at a CLI's process start-up. A
 * probe then makes back-to-back handshakes until one shows the new serial. One more row
 * runs a real `svcca rotate` and times from its spawn, CLI start-up included.
 *
 * Rows: the file watcher (with the default 2 s stat poll behind it); the 2 s stat poll
 * alone; and, with BENCH_RELOAD_HASH=1, the 60 s content-hash check alone (a minute per
 * try). The sidecar runs in this process (startSidecar) so the watcher can be turned off.
 * Knobs: BENCH_RELOAD_TRIES (7).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { writeCredentialSet } from '../common/credential-set.js';
import { decodeCertificates } from '../common/pem.js';
import { parseCertificate } from '../common/x509.js';
import { parseConfig } from '../sidecar/config/schema.js';
import { createLogger } from '../sidecar/logging.js';
import { startSidecar, type SidecarHandle } from '../sidecar/sidecar.js';

const SVCCA = fileURLToPath(new URL('../bin/svcca.mjs', import.meta.url));
const TRIES = Number(process.env.BENCH_RELOAD_TRIES ?? 7);
const PASSPHRASE = 'bench-passphrase';
const env: NodeJS.ProcessEnv = { ...process.env };
for (const k of Object.keys(env)) if (k.startsWith('SVCCA_')) delete env[k];
env.SVCCA_PASSPHRASE = PASSPHRASE;

function svcca(args: string[]): void {
  const r = spawnSync(process.execPath, [SVCCA, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`svcca ${args.join(' ')}: ${r.stderr}`);
}

function svccaAsync(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [SVCCA, ...args], { env, stdio: 'ignore' });
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`svcca ${args.join(' ')} exited ${code}`))));
  });
}

interface SetFiles {
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  readonly serial: string;
}

function readSet(dir: string): SetFiles {
  const r = (n: string) => readFileSync(join(dir, n), 'utf8');
  const certChainPem = r('tls.crt');
  return {
    certChainPem,
    keyPem: r('tls.key'),
    caPem: r('ca.crt'),
    serial: parseCertificate(decodeCertificates(certChainPem, 'tls.crt')[0]!).serialHex,
  };
}

/** One handshake; the serial the server showed. */
function probe(port: number, client: SetFiles): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      cert: client.certChainPem,
      key: client.keyPem,
      ca: client.caPem,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    s.once('secureConnect', () => {
      const c = s.getPeerX509Certificate();
      s.destroy();
      resolve(c ? BigInt(`0x${c.serialNumber}`).toString(16) : '');
    });
    s.once('error', reject);
  });
}

/** Handshakes back to back until one shows `serial`; the time it completed. */
async function firstHandshakeWith(port: number, client: SetFiles, serial: string, limitMs: number): Promise<number> {
  const deadline = performance.now() + limitMs;
  for (;;) {
    const seen = await probe(port, client);
    const t = performance.now();
    if (seen === serial) return t;
    if (t > deadline) throw new Error(`no handshake with serial ${serial} within ${limitMs} ms`);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Row {
  readonly name: string;
  readonly samples: number[];
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'svcca-bench-reload-'));
  const caDir = join(work, 'ca');
  try {
    svcca(['init', '--trust-domain', 'bench.test', '--dir', caDir]);
    const staged = [0, 1].map((i) => {
      const out = join(work, `staged-${i}`);
      svcca(['issue', 'bench-server', '--out', out, '--dir', caDir]);
      return readSet(out);
    });
    // Issued last, so that `svcca rotate` renews into this folder.
    const live = join(work, 'live');
    svcca(['issue', 'bench-server', '--out', live, '--dir', caDir]);
    const clientDir = join(work, 'client');
    svcca(['issue', 'bench-client', '--out', clientDir, '--dir', caDir]);
    const client = readSet(clientDir);
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, 'services:\n  bench-server:\n    allow: [bench-client]\n');

    const rows: Row[] = [];
    const run = async (
      name: string,
      opts: { watch: boolean; statInterval: string; hashInterval?: string; tries: number; limitMs: number; rotate?: boolean },
    ) => {
      const yaml = `identity:\n  dir: ${live}\n  crl: ${join(caDir, 'crl.pem')}\npolicy: ${policy}\ninbound:\n  listen: 127.0.0.1:0\n  forward: 127.0.0.1:9\nreload:\n  interval: ${opts.statInterval}\n  hashInterval: ${opts.hashInterval ?? '60s'}\n`;
      const sidecar: SidecarHandle = await startSidecar(parseConfig(yaml, join(work, 'sidecar.yaml')), {
        logger: createLogger('silent'),
        watch: opts.watch,
      });
      const port = Number(sidecar.addresses.inbound!.split(':').pop());
      const samples: number[] = [];
      try {
        for (let i = 0; i < opts.tries; i++) {
          // A random phase against the timers, as a real update would have.
          await new Promise((r) => setTimeout(r, 300 + Math.random() * 1_000));
          if (opts.rotate) {
            const t0 = performance.now();
            const rotated = svccaAsync(['rotate', 'bench-server', '--renew-before', '100%', '--dir', caDir]);
            await rotated;
            const serial = readSet(live).serial;
            samples.push((await firstHandshakeWith(port, client, serial, opts.limitMs)) - t0);
          } else {
            // Always the other set: swapping in what is already served measures nothing.
            const current = readSet(live).serial;
            const next = staged[0]!.serial === current ? staged[1]! : staged[0]!;
            writeCredentialSet(live, next);
            const t0 = performance.now();
            samples.push((await firstHandshakeWith(port, client, next.serial, opts.limitMs)) - t0);
          }
        }
      } finally {
        await sidecar.shutdown(0);
      }
      rows.push({ name, samples });
      process.stdout.write(`${name}: median ${median(samples).toFixed(0)} ms (${samples.map((s) => s.toFixed(0)).join(', ')})\n`);
    };

    await run('watcher (default: + 2 s stat poll)', { watch: true, statInterval: '2s', tries: TRIES, limitMs: 10_000 });
    await run('watcher only (stat poll off)', { watch: true, statInterval: '7d', tries: TRIES, limitMs: 70_000 });
    await run('2 s stat poll only (no watcher)', { watch: false, statInterval: '2s', tries: TRIES, limitMs: 10_000 });
    await run('svcca rotate, from its spawn (watcher)', {
      watch: true,
      statInterval: '2s',
      tries: Math.min(TRIES, 5),
      limitMs: 10_000,
      rotate: true,
    });
    if (process.env.BENCH_RELOAD_HASH === '1') {
      await run('60 s content-hash check only', { watch: false, statInterval: '7d', hashInterval: '60s', tries: 3, limitMs: 70_000 });
    }

    process.stdout.write('\n| trigger | median ms | tries |\n|---|--:|--:|\n');
    for (const r of rows) process.stdout.write(`| ${r.name} | ${median(r.samples).toFixed(0)} | ${r.samples.length} |\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`reload-latency: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);

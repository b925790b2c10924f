/**
 * Pieces shared by the sidecar-reload-* tests (not a test file itself): which serial a
 * new client is shown, running the real CLI without blocking in-process services, the
 * reload counter read from /metrics, and a wait that polls a condition.
 */
import { connect as tlsConnect } from 'node:tls';
import { spawnSvcca } from '../helpers/cli.js';
import { adminGet, splitHostPort, type Creds } from './sidecar-harness.js';

/** The serial of the certificate a fresh TLS client is shown (CertInfo.serialHex's spelling). */
export function servedSerial(address: string, creds: Creds): Promise<string> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host,
      port,
      cert: creds.cert,
      key: creds.key,
      ca: creds.ca,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    s.once('secureConnect', () => {
      const cert = s.getPeerX509Certificate();
      s.destroy();
      if (!cert) reject(new Error('no server certificate'));
      else resolve(BigInt(`0x${cert.serialNumber}`).toString(16));
    });
    s.once('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
  });
}

/** `svcca <args> --dir <caDir>` in a child process, without freezing this event loop. */
export function svccaAsync(caDir: string, args: readonly string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const child = spawnSvcca([...args, '--dir', caDir]);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr })));
}

/** Renews `service` now: a new key and certificate, swapped in by `..data`. */
export async function rotateNow(caDir: string, service: string): Promise<void> {
  const r = await svccaAsync(caDir, ['rotate', service, '--renew-before', '100%']);
  if (r.status !== 0) throw new Error(`svcca rotate ${service} failed (${r.status}): ${r.stderr}`);
}

/** svcca_sidecar_reloads_total{kind,result} from /metrics (0 when absent). */
export async function reloadCount(admin: string, kind: string, result: string): Promise<number> {
  const { body } = await adminGet(admin, '/metrics');
  const m = new RegExp(`^svcca_sidecar_reloads_total\\{kind="${kind}",result="${result}"\\} (\\S+)$`, 'm').exec(body);
  return m ? Number(m[1]) : 0;
}

/** A gauge's value from /metrics. */
export async function gauge(admin: string, name: string): Promise<number | undefined> {
  const { body } = await adminGet(admin, '/metrics');
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
  return m ? Number(m[1]) : undefined;
}

/** Polls `check` until it returns a value other than undefined (or throws after `timeoutMs`). */
export async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A sidecar config block that leaves only file-system events to notice a change quickly:
 *  the stat poll is off (a week) and the content-hash check runs at its 60 s default. */
export const WATCH_ONLY = 'reload:\n  interval: 7d';

/**
 * What the rotate/revoke/crl tests look at from the outside: a credential set's leaf and
 * whether its key matches, crl.pem split into its blocks, openssl's verdicts, and the
 * ledger read directly (read-only) with better-sqlite3.
 */
import Database from 'better-sqlite3';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { run, spawnSvcca, type RunResult, type TestCa } from '../helpers/cli.js';

export function pemBlocksOf(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----\\n?`, 'g');
  return text.match(re) ?? [];
}

export interface SetState {
  readonly serial: string;
  /** The private key belongs to the leaf (undefined for a CSR set, which has no key). */
  readonly keyMatches: boolean | undefined;
  readonly leafPem: string;
  readonly chain: readonly string[];
}

/** Reads a set the way a consumer would: through `..data`, once. */
export function readSet(setDir: string): SetState {
  const folder = join(setDir, '..data');
  const base = existsSync(folder) ? folder : setDir;
  const chain = pemBlocksOf(readFileSync(join(base, 'tls.crt'), 'utf8'), 'CERTIFICATE');
  const leaf = new X509Certificate(chain[0]!);
  let keyMatches: boolean | undefined;
  if (existsSync(join(base, 'tls.key'))) {
    const pub = createPublicKey(createPrivateKey(readFileSync(join(base, 'tls.key')))).export({ type: 'spki', format: 'der' });
    keyMatches = Buffer.compare(pub, leaf.publicKey.export({ type: 'spki', format: 'der' })) === 0;
  }
  return { serial: leaf.serialNumber.toLowerCase().replace(/^0+/, ''), keyMatches, leafPem: chain[0]!, chain };
}

export interface CrlFile {
  readonly crls: readonly string[];
  readonly certs: readonly string[];
}

export function readCrlFile(ca: TestCa): CrlFile {
  const text = readFileSync(join(ca.dir, 'crl.pem'), 'utf8');
  return { crls: pemBlocksOf(text, 'X509 CRL'), certs: pemBlocksOf(text, 'CERTIFICATE') };
}

export interface CrlText {
  readonly issuer: string;
  readonly number: bigint;
  readonly serials: readonly string[];
  readonly text: string;
}

/** One CRL as openssl reads it. */
export function crlText(ca: TestCa, pem: string, name = 'one.crl'): CrlText {
  const path = join(ca.root, name);
  writeFileSync(path, pem);
  const res = run('openssl', ['crl', '-in', path, '-noout', '-text']);
  if (res.status !== 0) throw new Error(`openssl crl: ${res.stderr}`);
  const issuer = /Issuer: (.*)/.exec(res.stdout)?.[1] ?? '';
  const numberHex = /X509v3 CRL Number:\s*\n\s*([0-9A-Fa-f:]+|\d+)/.exec(res.stdout)?.[1] ?? '0';
  const serials = [...res.stdout.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase().replace(/^0+/, ''));
  return { issuer, number: BigInt(numberHex.includes(':') ? `0x${numberHex.replace(/:/g, '')}` : numberHex), serials, text: res.stdout };
}

/** Every serial any CRL in crl.pem lists. */
export function allCrlSerials(ca: TestCa): Set<string> {
  const out = new Set<string>();
  readCrlFile(ca).crls.forEach((pem, i) => {
    for (const s of crlText(ca, pem, `all-${i}.crl`).serials) out.add(s);
  });
  return out;
}

/** `openssl verify` of a set's leaf against the root, its chain and crl.pem. */
export function verifyWithCrl(ca: TestCa, setDir: string, mode: '-crl_check' | '-crl_check_all'): RunResult {
  const s = readSet(setDir);
  const leaf = join(ca.root, 'verify-leaf.pem');
  const chain = join(ca.root, 'verify-chain.pem');
  writeFileSync(leaf, s.leafPem);
  writeFileSync(chain, s.chain.slice(1).join(''));
  return run('openssl', [
    'verify',
    mode,
    '-CAfile',
    join(ca.dir, 'root.crt'),
    '-untrusted',
    chain,
    '-CRLfile',
    join(ca.dir, 'crl.pem'),
    leaf,
  ]);
}

export function verifyPemWithCrl(ca: TestCa, leafPem: string, intermediatePem: string, mode: '-crl_check' | '-crl_check_all'): RunResult {
  const leaf = join(ca.root, 'verify-leaf.pem');
  const chain = join(ca.root, 'verify-chain.pem');
  writeFileSync(leaf, leafPem);
  writeFileSync(chain, intermediatePem);
  return run('openssl', [
    'verify',
    mode,
    '-CAfile',
    join(ca.dir, 'root.crt'),
    '-untrusted',
    chain,
    '-CRLfile',
    join(ca.dir, 'crl.pem'),
    leaf,
  ]);
}

export interface LedgerView {
  readonly active: Map<string, { serial: string | null; rotation: boolean; claim: string | null }>;
  readonly revoked: Set<string>;
  readonly certs: { serial: string; service: string; status: string; notAfter: number; revocationReason: string | null }[];
  readonly events: { kind: string; service: string | null; serial: string | null }[];
  readonly integrity: string;
}

export function readLedger(ca: TestCa): LedgerView {
  const db = new Database(join(ca.dir, 'ledger.db'), { readonly: true, fileMustExist: true });
  try {
    const integrity = (db.pragma('integrity_check', { simple: true }) as string) ?? '';
    const active = new Map<string, { serial: string | null; rotation: boolean; claim: string | null }>();
    for (const r of db.prepare('SELECT name, active_serial, rotation_enabled, claim_owner FROM services').all() as {
      name: string;
      active_serial: string | null;
      rotation_enabled: number;
      claim_owner: string | null;
    }[]) {
      active.set(r.name, { serial: r.active_serial, rotation: r.rotation_enabled === 1, claim: r.claim_owner });
    }
    const certs = (
      db.prepare('SELECT serial, service, status, not_after, revocation_reason FROM certificates').all() as {
        serial: string;
        service: string;
        status: string;
        not_after: number;
        revocation_reason: string | null;
      }[]
    ).map((r) => ({
      serial: r.serial,
      service: r.service,
      status: r.status,
      notAfter: r.not_after,
      revocationReason: r.revocation_reason,
    }));
    const events = db.prepare('SELECT kind, service, serial FROM events ORDER BY id').all() as {
      kind: string;
      service: string | null;
      serial: string | null;
    }[];
    return { active, revoked: new Set(certs.filter((c) => c.status === 'revoked').map((c) => c.serial)), certs, events, integrity };
  } finally {
    db.close();
  }
}

/** A single line on stderr, no stack trace: what every user error must look like. */
export function isOneLineError(res: RunResult): boolean {
  const lines = res.stderr.trim().split('\n');
  return res.status === 1 && lines.length === 1 && lines[0]!.startsWith('svcca: ') && !/\bat .*:\d+:\d+/.test(res.stderr);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Wall time of one uninterrupted run of `svcca <args>`, to place kill -9 moments inside a
 * run on this machine whatever its speed (a fixed window goes stale when the CLI gets
 * faster: every run then finishes before the kill and the loop proves nothing).
 */
export async function timeRun(args: readonly string[]): Promise<number> {
  const t0 = Date.now();
  const child = spawnSvcca(args);
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`svcca ${args.join(' ')} failed while timing it (exit ${code})`);
  return Date.now() - t0;
}

/** A kill moment in the later part of a run that takes `runMs`: past start-up, where the work is. */
export function killDelay(runMs: number): number {
  return Math.floor(runMs * (0.35 + Math.random() * 0.6));
}

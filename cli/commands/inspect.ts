/**
 * `svcca inspect <file|service>`: a certificate in words — identity, validity, names,
 * key, fingerprints, and whether it chains to the CA (and is revoked, when the CA's
 * ledger is at hand).
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import { decodeCertificates } from '../../common/pem.js';
import { parseCertificate, colonHex, KeyUsageBit, EKU_CLIENT_AUTH, EKU_SERVER_AUTH, isSignedBy, type CertInfo } from '../../common/x509.js';
import { parseSpiffeId, serviceNameProblem } from '../../common/spiffe-id.js';
import { describeKey } from '../../common/keys.js';
import { formatDuration } from '../../common/duration.js';
import { CaStateError, InputError, SvccaError, errnoCode } from '../../common/errors.js';
import { FILE_CAPS, readCappedText } from '../../common/capped-file.js';
import { openCaDir, CA_FILES } from '../store/ca-dir.js';
import { openCaForReading } from '../ca/ca-session.js';
import type { CertificateRecord } from '../store/ledger.js';
import type { CommandContext } from '../context.js';
import { holdsCrl, inspectCrlFile } from './inspect-crl.js';

export interface InspectOptions {
  readonly target: string;
}

interface ChainCheck {
  readonly ok: boolean;
  readonly detail: string;
}

/** A certificate file, a credential set's tls.crt, or a crl.pem (so capped as a CRL file). */
function readPemFile(path: string): string {
  try {
    if (statSync(path).isDirectory()) {
      const crt = join(path, 'tls.crt');
      if (existsSync(crt)) return readCappedText(crt, FILE_CAPS.pemBundle);
      throw new InputError(`${path} is a directory without tls.crt`, 'give a certificate file or a credential-set folder');
    }
    return readCappedText(path, FILE_CAPS.crl);
  } catch (err) {
    if (err instanceof SvccaError) throw err;
    throw new InputError(`${path} cannot be read (${errnoCode(err)})`, 'check the path and its permissions');
  }
}

function describeKeyUsage(bits: number | undefined): string {
  if (bits === undefined) return 'none';
  return Object.entries(KeyUsageBit)
    .filter(([, bit]) => (bits & bit) !== 0)
    .map(([name]) => name)
    .join(', ');
}

function describeEku(oids: readonly string[] | undefined): string {
  if (!oids) return 'none';
  return oids.map((o) => (o === EKU_SERVER_AUTH ? 'serverAuth' : o === EKU_CLIENT_AUTH ? 'clientAuth' : o)).join(', ');
}

/** Leaf → intermediate(s) → a trusted root, with validity at `now`. */
function checkChain(leaf: CertInfo, intermediates: readonly Buffer[], roots: readonly Buffer[], now: Date): ChainCheck {
  const problems: string[] = [];
  if (now < leaf.notBefore) problems.push('not yet valid');
  if (now > leaf.notAfter) problems.push('expired');
  let current = leaf.der;
  for (let depth = 0; depth < 4; depth++) {
    const root = roots.find((r) => isSignedBy(current, r));
    if (root) {
      const rootInfo = parseCertificate(root);
      return problems.length
        ? { ok: false, detail: `${problems.join(', ')} (chains to ${rootInfo.subject})` }
        : { ok: true, detail: `OK, chains to ${rootInfo.subject}` };
    }
    const next = intermediates.find((i) => isSignedBy(current, i));
    if (!next) break;
    const info = parseCertificate(next);
    if (now > info.notAfter) problems.push(`issuer ${info.subject} expired`);
    current = next;
  }
  return { ok: false, detail: `does not chain to the trusted root${problems.length ? `; also ${problems.join(', ')}` : ''}` };
}

interface Target {
  readonly pem: string;
  /** The file, or "ledger (<dir>)" for a service name. */
  readonly source: string;
  readonly isFile: boolean;
  /** The ledger's record, when the target was a service name. */
  readonly record?: CertificateRecord;
}

/** A file's PEM, or a service's active certificate from the ledger. */
async function readTarget(target: string, caDir: string): Promise<Target> {
  if (existsSync(target)) {
    const pem = readPemFile(target);
    if (pem.trim().length === 0) throw new InputError(`${target} is empty`, 'give a PEM certificate file');
    return { pem, source: target, isFile: true };
  }
  if (serviceNameProblem(target) !== undefined || target.includes('.pem') || target.endsWith('.crt')) {
    throw new InputError(`${target} does not exist`, 'give a PEM certificate file, or the name of an issued service');
  }
  const ca = await openCaForReading(caDir);
  let record: CertificateRecord | undefined;
  try {
    const state = await ca.ledger.getService(target);
    record = state?.activeSerial ? await ca.ledger.getCertificate(state.activeSerial) : undefined;
  } finally {
    await ca.close();
  }
  if (!record)
    throw new CaStateError(`no file and no issued service named ${target}`, 'give a PEM file path, or a service from `svcca list`');
  return { pem: record.certPem, source: `ledger (${caDir})`, isFile: false, record };
}

interface Trust {
  readonly roots: Buffer[];
  readonly intermediates: Buffer[];
  /** Where the roots came from; empty when there are none. */
  readonly source: string;
}

/** The CA's root (and intermediate) when a CA directory is at hand, else a ca.crt beside the file. */
function trustFor(target: Target, targetPath: string, caDir: string): Trust {
  try {
    const { dir } = openCaDir(caDir);
    return {
      roots: decodeCertificates(readCappedText(dir.file(CA_FILES.trustBundle), FILE_CAPS.pemBundle), 'ca.crt'),
      intermediates: decodeCertificates(readCappedText(dir.file(CA_FILES.intermediateCert), FILE_CAPS.pemBundle), 'intermediate.crt'),
      source: dir.file(CA_FILES.trustBundle),
    };
  } catch {
    const beside = target.isFile ? join(statSync(targetPath).isDirectory() ? targetPath : dirname(targetPath), 'ca.crt') : '';
    if (beside && existsSync(beside)) {
      try {
        return { roots: decodeCertificates(readCappedText(beside, FILE_CAPS.pemBundle), beside), intermediates: [], source: beside };
      } catch {
        // an unreadable ca.crt beside the file: the chain is not checked
      }
    }
    return { roots: [], intermediates: [], source: '' };
  }
}

/** The ledger's record of a serial, when a CA is at hand (undefined: no CA, or not ours). */
async function ledgerRecord(serialHex: string, caDir: string): Promise<CertificateRecord | undefined> {
  try {
    const ca = await openCaForReading(caDir);
    try {
      return await ca.ledger.getCertificate(serialHex);
    } finally {
      await ca.close();
    }
  } catch {
    return undefined;
  }
}

export async function runInspect(opts: InspectOptions, ctx: CommandContext): Promise<void> {
  const target = await readTarget(opts.target, ctx.global.dir);
  if (target.isFile && holdsCrl(target.pem)) return inspectCrlFile(target.pem, target.source, ctx);
  const ders = decodeCertificates(target.pem, target.source);
  const leaf = parseCertificate(ders[0]!, target.source);
  const now = new Date();
  const trust = trustFor(target, opts.target, ctx.global.dir);
  const chain = trust.roots.length ? checkChain(leaf, [...ders.slice(1), ...trust.intermediates], trust.roots, now) : undefined;
  const inLedger = await ledgerRecord(leaf.serialHex, ctx.global.dir);
  const revoked = inLedger?.status === 'revoked' ? inLedger : undefined;
  printCertificate(
    { leaf, ders, source: target.source, chain, trustSource: trust.source, revoked, known: (target.record ?? inLedger) !== undefined, now },
    ctx,
  );
}

interface Inspected {
  readonly leaf: CertInfo;
  readonly ders: readonly Buffer[];
  readonly source: string;
  readonly chain: ChainCheck | undefined;
  readonly trustSource: string;
  readonly revoked: CertificateRecord | undefined;
  /** The CA's ledger knows this certificate, so "valid" is a revocation check too. */
  readonly known: boolean;
  readonly now: Date;
}

function spiffeIdentity(leaf: CertInfo): { text: string; id: string | null } {
  if (leaf.uris.length === 0) return { text: 'none (no URI SAN)', id: null };
  if (leaf.uris.length > 1) return { text: `INVALID: ${leaf.uris.length} URI SANs (an X509-SVID has exactly one)`, id: null };
  const spiffe = parseSpiffeId(leaf.uris[0]!);
  return spiffe.ok ? { text: spiffe.id.uri, id: spiffe.id.uri } : { text: `INVALID: ${leaf.uris[0]} (${spiffe.reason})`, id: null };
}

function printCertificate({ leaf, ders, source, chain, trustSource, revoked, known, now }: Inspected, ctx: CommandContext): void {
  const identity = spiffeIdentity(leaf);
  const pub = createPublicKey({ key: leaf.spkiDer, format: 'der', type: 'spki' });
  const left = leaf.notAfter.getTime() - now.getTime();
  const sha1 = new NodeX509(leaf.der).fingerprint;
  const status = revoked
    ? `revoked${revoked.revocationReason ? ` (${revoked.revocationReason})` : ''}`
    : left <= 0
      ? 'expired'
      : now < leaf.notBefore
        ? 'not yet valid'
        : 'valid';

  ctx.out.line(`Certificate      ${source}`);
  ctx.out.line(`  SPIFFE ID      ${identity.text}`);
  ctx.out.line(`  Subject        ${leaf.subject || '(empty)'}`);
  ctx.out.line(`  Issuer         ${leaf.issuer}`);
  ctx.out.line(`  Serial         ${leaf.serialHex}`);
  ctx.out.line(`  Not before     ${leaf.notBefore.toISOString()}`);
  ctx.out.line(
    `  Not after      ${leaf.notAfter.toISOString()} (${left > 0 ? `${formatDuration(left)} left` : `expired ${formatDuration(-left)} ago`})`,
  );
  ctx.out.line(`  Status         ${status}${known ? '' : ' (revocation unknown: no CA ledger at hand)'}`);
  if (leaf.dnsNames.length) ctx.out.line(`  DNS names      ${leaf.dnsNames.join(', ')}`);
  if (leaf.ips.length) ctx.out.line(`  IP addresses   ${leaf.ips.join(', ')}`);
  ctx.out.line(`  Key            ${describeKey(pub)}`);
  ctx.out.line(
    `  CA             ${leaf.isCA === undefined ? 'no basic constraints' : leaf.isCA ? `yes${leaf.pathLen !== undefined ? `, pathlen ${leaf.pathLen}` : ''}` : 'no'}`,
  );
  ctx.out.line(`  Key usage      ${describeKeyUsage(leaf.keyUsage)}`);
  ctx.out.line(`  Ext key usage  ${describeEku(leaf.extKeyUsage)}`);
  ctx.out.line(`  SHA-256        ${colonHex(leaf.fingerprintSha256)}`);
  ctx.out.line(`  SHA-1          ${sha1}`);
  ctx.out.line(
    `  Chain          ${chain ? chain.detail : 'not checked (no CA directory and no ca.crt beside the file)'}${trustSource ? ` [trust: ${trustSource}]` : ''}`,
  );
  if (ders.length > 1) ctx.out.line(`  Bundle         ${ders.length} certificates (leaf first)`);

  ctx.out.result({
    source,
    spiffeId: identity.id,
    uris: leaf.uris,
    subject: leaf.subject,
    issuer: leaf.issuer,
    serial: leaf.serialHex,
    notBefore: leaf.notBefore.toISOString(),
    notAfter: leaf.notAfter.toISOString(),
    status,
    dnsNames: leaf.dnsNames,
    ips: leaf.ips,
    key: describeKey(pub),
    isCA: leaf.isCA ?? null,
    keyUsage: describeKeyUsage(leaf.keyUsage).split(', ').filter(Boolean),
    extKeyUsage: describeEku(leaf.extKeyUsage).split(', ').filter(Boolean),
    fingerprints: { sha256: colonHex(leaf.fingerprintSha256), sha1 },
    chain: chain ? { ok: chain.ok, detail: chain.detail, trust: trustSource } : null,
    certificates: ders.length,
  });
}

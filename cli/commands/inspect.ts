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
      return problems.length ? { ok: false, detail: `${problems.join(', ')} (chains to ${rootInfo.subject})` } : { ok: true, detail: `OK, chains to ${rootInfo.subject}` };
    }
    const next = intermediates.find((i) => isSignedBy(current, i));
    if (!next) break;
    const info = parseCertificate(next);
    if (now > info.notAfter) problems.push(`issuer ${info.subject} expired`);
    current = next;
  }
  return { ok: false, detail: `does not chain to the trusted root${problems.length ? `; also ${problems.join(', ')}` : ''}` };
}

export async function runInspect(opts: InspectOptions, ctx: CommandContext): Promise<void> {
  let pem: string;
  let source: string;
  let record: CertificateRecord | undefined;
  const target = opts.target;
  const isFile = existsSync(target);
  if (isFile) {
    pem = readPemFile(target);
    source = target;
    if (pem.trim().length === 0) throw new InputError(`${target} is empty`, 'give a PEM certificate file');
    if (holdsCrl(pem)) return inspectCrlFile(pem, source, ctx);
  } else if (serviceNameProblem(target) === undefined && !target.includes('.pem') && !target.endsWith('.crt')) {
    const ca = openCaForReading(ctx.global.dir);
    try {
      const state = await ca.ledger.getService(target);
      record = state?.activeSerial ? await ca.ledger.getCertificate(state.activeSerial) : undefined;
    } finally {
      ca.close();
    }
    if (!record) throw new CaStateError(`no file and no issued service named ${target}`, 'give a PEM file path, or a service from `svcca list`');
    pem = record.certPem;
    source = `ledger (${ctx.global.dir})`;
  } else {
    throw new InputError(`${target} does not exist`, 'give a PEM certificate file, or the name of an issued service');
  }

  const ders = decodeCertificates(pem, source);
  const leaf = parseCertificate(ders[0]!, source);
  const now = new Date();

  // Trust: the CA's root when a CA directory is at hand, else a ca.crt beside the file.
  let roots: Buffer[] = [];
  let trustSource = '';
  let extraIntermediates: Buffer[] = [];
  try {
    const { dir } = openCaDir(ctx.global.dir);
    roots = decodeCertificates(readCappedText(dir.file(CA_FILES.trustBundle), FILE_CAPS.pemBundle), 'ca.crt');
    extraIntermediates = decodeCertificates(readCappedText(dir.file(CA_FILES.intermediateCert), FILE_CAPS.pemBundle), 'intermediate.crt');
    trustSource = dir.file(CA_FILES.trustBundle);
  } catch {
    const beside = isFile ? join(statSync(target).isDirectory() ? target : dirname(target), 'ca.crt') : '';
    if (beside && existsSync(beside)) {
      try {
        roots = decodeCertificates(readCappedText(beside, FILE_CAPS.pemBundle), beside);
        trustSource = beside;
      } catch {
        roots = [];
      }
    }
  }
  const chain: ChainCheck | undefined = roots.length ? checkChain(leaf, [...ders.slice(1), ...extraIntermediates], roots, now) : undefined;

  let revoked: CertificateRecord | undefined;
  try {
    const ca = openCaForReading(ctx.global.dir);
    try {
      const r = await ca.ledger.getCertificate(leaf.serialHex);
      if (r?.status === 'revoked') revoked = r;
      record ??= r;
    } finally {
      ca.close();
    }
  } catch {
    // no CA at hand: revocation status unknown, said below
  }

  const spiffe = leaf.uris.length === 1 ? parseSpiffeId(leaf.uris[0]!) : undefined;
  const identity =
    leaf.uris.length === 0
      ? 'none (no URI SAN)'
      : leaf.uris.length > 1
        ? `INVALID: ${leaf.uris.length} URI SANs (an X509-SVID has exactly one)`
        : spiffe?.ok
          ? spiffe.id.uri
          : `INVALID: ${leaf.uris[0]} (${spiffe && !spiffe.ok ? spiffe.reason : ''})`;
  const pub = createPublicKey({ key: leaf.spkiDer, format: 'der', type: 'spki' });
  const left = leaf.notAfter.getTime() - now.getTime();
  const sha1 = new NodeX509(leaf.der).fingerprint;
  const status = revoked ? `revoked${revoked.revocationReason ? ` (${revoked.revocationReason})` : ''}` : left <= 0 ? 'expired' : now < leaf.notBefore ? 'not yet valid' : 'valid';

  ctx.out.line(`Certificate      ${source}`);
  ctx.out.line(`  SPIFFE ID      ${identity}`);
  ctx.out.line(`  Subject        ${leaf.subject || '(empty)'}`);
  ctx.out.line(`  Issuer         ${leaf.issuer}`);
  ctx.out.line(`  Serial         ${leaf.serialHex}`);
  ctx.out.line(`  Not before     ${leaf.notBefore.toISOString()}`);
  ctx.out.line(`  Not after      ${leaf.notAfter.toISOString()} (${left > 0 ? `${formatDuration(left)} left` : `expired ${formatDuration(-left)} ago`})`);
  ctx.out.line(`  Status         ${status}${record || revoked ? '' : ' (revocation unknown: no CA ledger at hand)'}`);
  if (leaf.dnsNames.length) ctx.out.line(`  DNS names      ${leaf.dnsNames.join(', ')}`);
  if (leaf.ips.length) ctx.out.line(`  IP addresses   ${leaf.ips.join(', ')}`);
  ctx.out.line(`  Key            ${describeKey(pub)}`);
  ctx.out.line(`  CA             ${leaf.isCA === undefined ? 'no basic constraints' : leaf.isCA ? `yes${leaf.pathLen !== undefined ? `, pathlen ${leaf.pathLen}` : ''}` : 'no'}`);
  ctx.out.line(`  Key usage      ${describeKeyUsage(leaf.keyUsage)}`);
  ctx.out.line(`  Ext key usage  ${describeEku(leaf.extKeyUsage)}`);
  ctx.out.line(`  SHA-256        ${colonHex(leaf.fingerprintSha256)}`);
  ctx.out.line(`  SHA-1          ${sha1}`);
  ctx.out.line(`  Chain          ${chain ? chain.detail : 'not checked (no CA directory and no ca.crt beside the file)'}${trustSource ? ` [trust: ${trustSource}]` : ''}`);
  if (ders.length > 1) ctx.out.line(`  Bundle         ${ders.length} certificates (leaf first)`);

  ctx.out.result({
    source,
    spiffeId: spiffe?.ok ? spiffe.id.uri : null,
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

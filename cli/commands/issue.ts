/**
 * `svcca issue <service>`: a certificate and key (or a signed CSR) written as a
 * credential set and recorded in the ledger. Re-issuing supersedes the active one.
 */
import { resolve } from 'node:path';
import { assertServiceName } from '../../common/spiffe-id.js';
import { assertNotServerService } from '../ca/online-issuance.js';
import { makeDirectories } from '../../common/atomic-file.js';
import { requireDurationMs, formatDuration } from '../../common/duration.js';
import { assertUsableSetDir, removeCredentialSet } from '../../common/credential-set.js';
import { errorLine } from '../../common/errors.js';
import { assertDnsName, assertIp } from '../names.js';
import { intermediatePassphraseSource, openCaSession } from '../ca/ca-session.js';
import {
  assertSetSafeServiceName,
  assertWholeSecondTtl,
  chooseSetDir,
  chooseTtlMs,
  issueAndRecord,
  writeIssuedSetIfActive,
} from '../ca/issuance.js';
import { actor } from '../actor.js';
import type { CertificateRecord } from '../store/ledger.js';
import type { CommandContext } from '../context.js';

export interface IssueOptions {
  readonly service: string;
  readonly ttl?: string;
  readonly dns: readonly string[];
  readonly ip: readonly string[];
  readonly out?: string;
  readonly csr?: string;
  readonly passphraseFile?: string;
}

export async function runIssue(opts: IssueOptions, ctx: CommandContext): Promise<void> {
  const service = assertServiceName(opts.service);
  assertSetSafeServiceName(service);
  assertNotServerService(service);
  const ttlMsFlag = opts.ttl === undefined ? undefined : requireDurationMs('--ttl', opts.ttl);
  if (ttlMsFlag !== undefined) assertWholeSecondTtl(opts.ttl!, ttlMsFlag);
  const dnsNames = [...new Set(opts.dns.map(assertDnsName))];
  const ips = [...new Set(opts.ip.map(assertIp))];
  if (opts.out !== undefined) assertUsableSetDir(opts.out);
  // Loaded only for --csr: CSR parsing needs @peculiar/x509, which plain issuance does not.
  const csrSpkiDer = opts.csr === undefined ? undefined : await (await import('../ca/csr.js')).readCsrPublicKey(opts.csr);

  const ca = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  try {
    const { config, authority, ledger, dir } = ca;
    const ttlMs = chooseTtlMs(ttlMsFlag, config, authority.intermediate.info.notAfter.getTime(), Date.now());
    const previous = await ledger.getService(service);
    const previousRecord = previous?.activeSerial ? await ledger.getCertificate(previous.activeSerial) : undefined;
    // Before the ledger records anything: a folder that cannot be made must not leave an
    // active certificate behind with no set on disk.
    const setDir = await chooseSetDir(dir, {
      service,
      ...(opts.out !== undefined ? { out: opts.out } : {}),
      ...(previousRecord ? { previousSetDir: previousRecord.setDir } : {}),
      servicesAt: (d) => ledger.servicesWithSetDir(d),
    });
    makeDirectories(setDir, 0o755);

    const issued = await issueAndRecord(authority, ledger, {
      service,
      ttlMs,
      dnsNames,
      ips,
      setDir,
      ...(csrSpkiDer ? { csrSpkiDer } : {}),
      kind: 'issue',
      actor: actor(),
      why: csrSpkiDer ? 'issued from a CSR' : 'issued',
    });
    const written = await writeIssuedSetIfActive(authority, ledger, issued.record, issued.key);
    if (!written)
      ctx.out.warn(`another svcca issued ${service} again at the same moment; its newer certificate is the active one and holds ${setDir}`);
    // The set moved to a new --out: the old place must not keep the superseded key.
    if (written && previousRecord && resolve(previousRecord.setDir) !== setDir) {
      try {
        removeCredentialSet(previousRecord.setDir);
      } catch (err) {
        ctx.out.warn(`the previous set in ${previousRecord.setDir} could not be removed (${errorLine(err)}); delete it by hand`);
      }
    }
    printIssued(issued.record, issued.previousSerial, ctx);
  } finally {
    await ca.close();
  }
}

function printIssued(r: CertificateRecord, supersedes: string | null, ctx: CommandContext): void {
  const setDir = r.setDir;
  ctx.out.line(`Issued ${r.spiffeId}`);
  ctx.out.line(`  serial     ${r.serial}`);
  ctx.out.line(`  not after  ${new Date(r.notAfter).toISOString()} (${formatDuration(r.ttlMs)})`);
  ctx.out.line(`  files      ${setDir}/tls.crt${r.fromCsr ? '' : ', tls.key'}, ca.crt`);
  if (supersedes)
    ctx.out.line(`  supersedes ${supersedes} (still valid until it expires; revoke it with svcca revoke --serial if it leaked)`);
  if (r.fromCsr) ctx.out.line('  signed from a CSR: the private key stays with its owner');
  ctx.out.result({
    service: r.service,
    spiffeId: r.spiffeId,
    serial: r.serial,
    notBefore: new Date(r.notBefore).toISOString(),
    notAfter: new Date(r.notAfter).toISOString(),
    dnsNames: r.dnsNames,
    ips: r.ips,
    setDir,
    files: { cert: `${setDir}/tls.crt`, key: r.fromCsr ? null : `${setDir}/tls.key`, ca: `${setDir}/ca.crt` },
    fromCsr: r.fromCsr,
    supersedes,
  });
}

/**
 * `svcca issue <service>`: a certificate and key (or a signed CSR) written as a
 * credential set and recorded in the ledger. Re-issuing supersedes the active one.
 */
import { join, relative, resolve, isAbsolute } from 'node:path';
import { assertServiceName } from '../../common/spiffe-id.js';
import { makeDirectories } from '../../common/atomic-file.js';
import { requireDurationMs, formatDuration } from '../../common/duration.js';
import { assertUsableSetDir, removeCredentialSet, setNestingProblem } from '../../common/credential-set.js';
import { UsageError, errorLine } from '../../common/errors.js';
import { assertDnsName, assertIp } from '../names.js';
import { intermediatePassphraseSource, openCaSession } from '../ca/ca-session.js';
import { CA_FILES } from '../store/ca-dir.js';
import { issueAndRecord, writeIssuedSetIfActive } from '../ca/issuance.js';
import { actor } from '../actor.js';
import type { CommandContext } from '../context.js';

const SET_FILE_NAMES = new Set(['tls.crt', 'tls.key', 'ca.crt']);

/** `inner` is strictly below `outer`. */
function isWithin(outer: string, inner: string): boolean {
  const rel = relative(outer, inner);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

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
  // Sets nest by service path: issued/team/tls.key/ would stand where team's key belongs.
  const clash = service.split('/').slice(1).find((segment) => SET_FILE_NAMES.has(segment));
  if (clash) throw new UsageError(`invalid service name ${JSON.stringify(service)}: a segment named ${clash} would collide with the files of a credential set`, 'choose another name for that segment');
  const ttlMsFlag = opts.ttl === undefined ? undefined : requireDurationMs('--ttl', opts.ttl);
  // X.509 times count whole seconds: 500ms would be a certificate expired on arrival.
  if (ttlMsFlag !== undefined && (ttlMsFlag < 1000 || ttlMsFlag % 1000 !== 0)) {
    throw new UsageError(`--ttl ${opts.ttl}: certificate lifetimes count whole seconds`, 'use 1s or more in whole seconds, e.g. --ttl 24h');
  }
  const dnsNames = [...new Set(opts.dns.map(assertDnsName))];
  const ips = [...new Set(opts.ip.map(assertIp))];
  if (opts.out !== undefined) assertUsableSetDir(opts.out);
  // Loaded only for --csr: CSR parsing needs @peculiar/x509, which plain issuance does not.
  const csrSpkiDer = opts.csr === undefined ? undefined : await (await import('../ca/csr.js')).readCsrPublicKey(opts.csr);

  const ca = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  try {
    const { config, authority, ledger, dir } = ca;
    const ttlMs = ttlMsFlag ?? config.defaultTtlMs;
    if (ttlMs > config.maxTtlMs) {
      throw new UsageError(`--ttl ${formatDuration(ttlMs)} is longer than this CA's maximum of ${formatDuration(config.maxTtlMs)}`, `use --ttl ${formatDuration(config.maxTtlMs)} or less (short certificates that rotate are the point)`);
    }
    const intermediateEnd = authority.intermediate.info.notAfter.getTime();
    if (Date.now() + ttlMs > intermediateEnd) {
      throw new UsageError(
        `--ttl ${formatDuration(ttlMs)} would outlive the intermediate, which ends ${authority.intermediate.info.notAfter.toISOString()}`,
        'roll the intermediate with `svcca rotate --intermediate`, or use a shorter --ttl',
      );
    }
    const previous = await ledger.getService(service);
    const previousRecord = previous?.activeSerial ? await ledger.getCertificate(previous.activeSerial) : undefined;
    const setDir = opts.out !== undefined ? resolve(opts.out) : (previousRecord?.setDir ?? dir.issuedSetDir(service));
    // Before the ledger records anything: a folder that cannot be made must not leave an
    // active certificate behind with no set on disk.
    if (opts.out !== undefined) {
      // The CA directory is not a set folder (a set's cleanup would take ca.crt with it),
      // and two services never share one (each would overwrite the other's key).
      const caDir = resolve(dir.path);
      if (setDir === caDir || (isWithin(caDir, setDir) && !isWithin(join(caDir, CA_FILES.issued), setDir))) {
        throw new UsageError(`--out ${setDir} is the CA directory or inside it (${caDir})`, `write sets outside it, or drop --out to use ${join(caDir, CA_FILES.issued, service)}`);
      }
      if (isWithin(setDir, caDir)) throw new UsageError(`--out ${setDir} holds the CA directory ${caDir}`, 'give the set a folder of its own');
      const others = (await ledger.servicesWithSetDir(setDir)).filter((s) => s !== service);
      if (others.length) throw new UsageError(`--out ${setDir} holds the credential set of ${others.join(', ')}`, 'give each service a folder of its own');
    }
    const nesting = setNestingProblem(setDir);
    if (nesting) {
      throw new UsageError(
        `the credential set of ${service} cannot go in ${setDir}: ${nesting}, and whoever is given one folder would read the other's key`,
        'issue it with --out into a folder of its own',
      );
    }
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
    if (!written) ctx.out.warn(`another svcca issued ${service} again at the same moment; its newer certificate is the active one and holds ${setDir}`);
    // The set moved to a new --out: the old place must not keep the superseded key.
    if (written && previousRecord && resolve(previousRecord.setDir) !== setDir) {
      try {
        removeCredentialSet(previousRecord.setDir);
      } catch (err) {
        ctx.out.warn(`the previous set in ${previousRecord.setDir} could not be removed (${errorLine(err)}); delete it by hand`);
      }
    }
    const r = issued.record;
    ctx.out.line(`Issued ${r.spiffeId}`);
    ctx.out.line(`  serial     ${r.serial}`);
    ctx.out.line(`  not after  ${new Date(r.notAfter).toISOString()} (${formatDuration(r.ttlMs)})`);
    ctx.out.line(`  files      ${setDir}/tls.crt${csrSpkiDer ? '' : ', tls.key'}, ca.crt`);
    if (issued.previousSerial) ctx.out.line(`  supersedes ${issued.previousSerial} (still valid until it expires; revoke it with svcca revoke --serial if it leaked)`);
    if (csrSpkiDer) ctx.out.line('  signed from a CSR: the private key stays with its owner');
    ctx.out.result({
      service,
      spiffeId: r.spiffeId,
      serial: r.serial,
      notBefore: new Date(r.notBefore).toISOString(),
      notAfter: new Date(r.notAfter).toISOString(),
      dnsNames: r.dnsNames,
      ips: r.ips,
      setDir,
      files: { cert: `${setDir}/tls.crt`, key: csrSpkiDer ? null : `${setDir}/tls.key`, ca: `${setDir}/ca.crt` },
      fromCsr: r.fromCsr,
      supersedes: issued.previousSerial,
    });
  } finally {
    ca.close();
  }
}

/**
 * `svcca revoke <service> | --serial HEX [--reason R]`. A service: every unexpired
 * certificate of it (the one a rotation replaced is still valid, and may be the leaked
 * one), and its rotation stops until the next `issue`. A serial: that certificate (and,
 * when it is a service's active one, that service's rotation). The revocation, the CRL
 * numbers that publish it and the event commit in one ledger transaction; crl.pem is
 * rewritten right after (a crash in between is caught by the next rotate or crl).
 */
import { assertServiceName } from '../../common/spiffe-id.js';
import { UsageError } from '../../common/errors.js';
import { normalizeSerialHex } from '../../common/x509.js';
import { CA_FILES } from '../store/ca-dir.js';
import { REVOCATION_REASONS, type CertificateRecord, type Ledger, type RevocationReason } from '../store/ledger.js';
import { currentCrlValidityMs, publishIntermediateCrls } from '../ca/crl-refresh.js';
import { intermediatePassphraseSource, openCaSession } from '../ca/ca-session.js';
import { actor } from '../actor.js';
import type { CommandContext } from '../context.js';

export interface RevokeOptions {
  readonly service?: string;
  readonly serial?: string;
  /** RFC 5280 reason; omitted means unspecified (no reason code in the CRL). */
  readonly reason?: string;
  readonly passphraseFile?: string;
}

function assertReason(text: string | undefined): RevocationReason | undefined {
  if (text === undefined) return undefined;
  if (Object.hasOwn(REVOCATION_REASONS, text)) return text as RevocationReason;
  throw new UsageError(
    `--reason ${JSON.stringify(text)} is not a reason svcca records`,
    `use one of ${Object.keys(REVOCATION_REASONS).join(', ')}`,
  );
}

/** Thrown inside the transaction when there is nothing (left) to revoke: nothing changes. */
async function selectTargets(
  tx: Ledger,
  service: string | undefined,
  serial: string | undefined,
  now: number,
): Promise<CertificateRecord[]> {
  if (serial !== undefined) {
    const found = await tx.getCertificate(serial);
    // Read again under its service's lock: a renewal or revoke of it may just have committed.
    if (found) await tx.lockService(found.service);
    const cert = found && (await tx.getCertificate(serial));
    if (!cert) throw new UsageError(`no certificate with serial ${serial} in this CA`, 'see `svcca list --all` for the serials it issued');
    if (cert.status === 'revoked')
      throw new UsageError(`certificate ${serial} (${cert.service}) is already revoked`, 'nothing to do; see `svcca list --revoked`');
    return [cert];
  }
  // Locked first: a renewal committing meanwhile would leave a certificate this revoke misses.
  await tx.lockService(service!);
  const svc = await tx.getService(service!);
  if (!svc) throw new UsageError(`unknown service ${service}`, 'see `svcca list` for the issued services');
  const all = await tx.listCertificates({ service: service! });
  const live = all.filter((c) => c.status !== 'revoked' && c.notAfter > now);
  if (live.length === 0) {
    const revoked = all.some((c) => c.status === 'revoked');
    throw new UsageError(
      revoked ? `${service} has no unrevoked certificate left: it is already revoked` : `${service} has no unexpired certificate to revoke`,
      revoked ? 'nothing to do; `svcca issue` starts it again with a new key' : 'revoke one by serial with --serial if you must',
    );
  }
  return live;
}

export async function runRevoke(opts: RevokeOptions, ctx: CommandContext): Promise<void> {
  const reason = assertReason(opts.reason);
  if (opts.service !== undefined && opts.serial !== undefined)
    throw new UsageError('give a service or --serial, not both', 'e.g. `svcca revoke order-service` or `svcca revoke --serial 4f2a…`');
  if (opts.service === undefined && opts.serial === undefined)
    throw new UsageError('revoke what? give a service or --serial HEX', 'e.g. `svcca revoke order-service --reason keyCompromise`');
  const service = opts.service === undefined ? undefined : assertServiceName(opts.service);
  let serial: string | undefined;
  if (opts.serial !== undefined) {
    serial = normalizeSerialHex(opts.serial);
    if (serial === undefined)
      throw new UsageError(
        `--serial ${JSON.stringify(opts.serial)} is not a hexadecimal serial`,
        'copy it from `svcca list` (colons and 0x are accepted)',
      );
  }

  const s = await openCaSession(ctx.global.dir, intermediatePassphraseSource(opts.passphraseFile, ctx.env));
  try {
    const who = actor();
    const now = Date.now();
    const { result, outcome } = await publishIntermediateCrls(s, {
      now,
      validityMs: currentCrlValidityMs(s.dir, s.authority.intermediate, s.config.crlNextUpdateMs),
      why: `revoke ${service ?? serial}`,
      actor: who,
      mutate: async (tx) => {
        const targets = await selectTargets(tx, service, serial, now);
        const stopped = new Set<string>();
        for (const cert of targets) {
          await tx.markRevoked(cert.serial, reason, now);
          if (reason === 'keyCompromise') await tx.markKeyCompromised(cert.spkiSha256, now);
          const svc = await tx.getService(cert.service);
          if (service !== undefined || svc?.activeSerial === cert.serial) {
            await tx.setRotation(cert.service, false);
            stopped.add(cert.service);
          }
          await tx.appendEvent({ kind: 'revoke', service: cert.service, serial: cert.serial, actor: who, why: reason ?? 'unspecified' });
        }
        return { targets, stopped: [...stopped] };
      },
    });
    const { targets, stopped } = result!;
    for (const c of targets) {
      ctx.out.line(
        `Revoked ${c.service}  ${c.serial}  (${c.status === 'active' ? 'active' : c.status}, until ${new Date(c.notAfter).toISOString()})${reason ? `  reason ${reason}` : ''}`,
      );
    }
    for (const name of stopped) ctx.out.line(`  rotation of ${name} stopped; \`svcca issue ${name}\` starts it again with a new key`);
    if (reason === 'keyCompromise') ctx.out.line('  the public key is blocked: svcca never signs it again');
    ctx.out.line(`Published ${s.dir.file(CA_FILES.crl)}: ${outcome.crls.map((c) => `#${c.number}, ${c.entries} entries`).join('; ')}`);
    if (!outcome.written) ctx.out.line('  (a newer crl.pem written meanwhile already lists it)');
    ctx.out.result({
      revoked: targets.map((c) => ({
        service: c.service,
        serial: c.serial,
        wasStatus: c.status,
        notAfter: new Date(c.notAfter).toISOString(),
      })),
      reason: reason ?? null,
      rotationStopped: stopped,
      crl: outcome,
    });
  } finally {
    await s.close();
  }
}

/**
 * `svcca export <service> --p12 FILE`: PKCS#12 with the service's current key, leaf
 * and intermediate. The password is never a built-in default (mkcert's "changeit").
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { assertServiceName } from '../../common/spiffe-id.js';
import { closestKey } from '../../common/policy/suggest.js';
import { readCredentialSet } from '../../common/credential-set.js';
import { decodeCertificates } from '../../common/pem.js';
import { keyMatchesSpki, readPrivateKeyPem } from '../../common/keys.js';
import { parseCertificate } from '../../common/x509.js';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { CaStateError, UsageError, errnoCode } from '../../common/errors.js';
import type { CertificateRecord } from '../store/ledger.js';
import { requireSecret } from '../secrets.js';
import { openCaForReading } from '../ca/ca-session.js';
import { buildPkcs12 } from '../ca/pkcs12.js';
import type { CommandContext } from '../context.js';

export interface ExportOptions {
  readonly service: string;
  readonly p12: string;
  readonly passwordFile?: string;
  readonly legacy?: boolean;
}

function assertWritableTarget(path: string): void {
  try {
    if (statSync(path).isDirectory()) throw new UsageError(`--p12 ${path} is a directory`, 'give a file name such as order-service.p12');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  try {
    if (!statSync(resolve(path, '..')).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new UsageError(`--p12 ${path}: its folder does not exist`, 'create the folder first or write elsewhere');
  }
}

export async function runExport(opts: ExportOptions, ctx: CommandContext): Promise<void> {
  const service = assertServiceName(opts.service);
  assertWritableTarget(opts.p12);
  const ca = await openCaForReading(ctx.global.dir);
  let record: CertificateRecord | undefined;
  let near: string | undefined;
  try {
    const state = await ca.ledger.getService(service);
    record = state?.activeSerial ? await ca.ledger.getCertificate(state.activeSerial) : undefined;
    // A typo is likelier than a service nobody issued: offer the issued name it is close to.
    if (!record)
      near = closestKey(
        service,
        (await ca.ledger.listServices()).filter((s) => s.activeSerial).map((s) => s.name),
      );
  } finally {
    await ca.close();
  }
  if (!record) {
    throw new CaStateError(
      `no certificate has been issued for ${service}`,
      near ? `did you mean ${near}? (svcca list shows the issued services)` : `issue one first: svcca issue ${service}`,
    );
  }
  if (record.status === 'revoked')
    throw new CaStateError(`the certificate of ${service} is revoked`, `issue a new one: svcca issue ${service}`);
  if (record.notAfter <= Date.now()) {
    throw new CaStateError(
      `the certificate of ${service} expired at ${new Date(record.notAfter).toISOString()}`,
      `renew it first: svcca rotate ${service} --renew-before 100%`,
    );
  }
  if (record.fromCsr)
    throw new CaStateError(
      `${service} was signed from a CSR, so the CA has no key to export`,
      'build the PKCS#12 where the private key lives (openssl pkcs12 -export)',
    );

  const set = readCredentialSet(record.setDir);
  const certs = decodeCertificates(set.certChainPem, `${record.setDir}/tls.crt`);
  const leaf = parseCertificate(certs[0]!, `${record.setDir}/tls.crt`);
  const key = readPrivateKeyPem(set.keyPem, `${record.setDir}/tls.key`);
  if (!keyMatchesSpki(key, leaf.spkiDer)) {
    throw new CaStateError(`${record.setDir}/tls.key does not match its tls.crt`, `re-issue the service: svcca issue ${service}`);
  }
  if (leaf.serialHex !== record.serial)
    ctx.out.warn(
      `the set in ${record.setDir} holds serial ${leaf.serialHex}, the ledger's active one is ${record.serial}; exporting what the set holds`,
    );

  const password = await requireSecret({
    what: 'password for the PKCS#12 file',
    file: opts.passwordFile,
    fileFlag: '--password-file',
    envVar: 'SVCCA_P12_PASSWORD',
    env: ctx.env,
    confirm: true,
  });
  const pfx = buildPkcs12({ key, certs, password, friendlyName: service, legacy: opts.legacy === true });
  writeFileAtomic(resolve(opts.p12), pfx, 0o600);

  const notAfter = leaf.notAfter.toISOString();
  ctx.out.line(
    `Wrote ${resolve(opts.p12)} (${opts.legacy ? 'legacy 3DES + SHA-1 MAC' : 'AES-256 + SHA-256 MAC'}): key, ${leaf.uris[0] ?? service} (serial ${leaf.serialHex}, until ${notAfter}) and its intermediate`,
  );
  ctx.out.line(`  Java: keytool -list -keystore ${opts.p12} -storetype PKCS12`);
  ctx.out.line(
    `  Re-export after each rotation: the certificate lives ${Math.round((leaf.notAfter.getTime() - leaf.notBefore.getTime()) / 3_600_000)}h.`,
  );
  ctx.out.result({ service, file: resolve(opts.p12), serial: leaf.serialHex, notAfter, legacy: opts.legacy === true, alias: service });
}

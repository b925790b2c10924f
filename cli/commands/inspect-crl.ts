/**
 * `svcca inspect crl.pem`: every CRL in the file, not only the first (which is all
 * `openssl crl -in` reads: the root's, with no entries), each with its revoked serials
 * and, where the CA's ledger is at hand, the service each belonged to.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CRL_PEM_LABEL, loadCrlPem, parseCrlDer } from '../../common/crl.js';
import { FILE_CAPS, readCappedText } from '../../common/capped-file.js';
import { formatDuration } from '../../common/duration.js';
import { InputError, errorLine } from '../../common/errors.js';
import { decodeCertificates, decodePemBlocks } from '../../common/pem.js';
import { nameText } from '../../common/x509.js';
import { CA_FILES, openCaDir } from '../store/ca-dir.js';
import { openCaForReading } from '../ca/ca-session.js';
import type { CommandContext } from '../context.js';

export function holdsCrl(pem: string): boolean {
  return decodePemBlocks(pem).some((b) => b.label === CRL_PEM_LABEL || b.label === 'CRL');
}

export async function inspectCrlFile(pem: string, source: string, ctx: CommandContext): Promise<void> {
  const blocks = decodePemBlocks(pem).filter((b) => b.label === CRL_PEM_LABEL || b.label === 'CRL');
  const crls = blocks.map((b, n) => {
    try {
      return parseCrlDer(b.der);
    } catch (err) {
      throw new InputError(`CRL #${n + 1} in ${source} is malformed: ${errorLine(err)}`, 'publish it again with `svcca crl`', err);
    }
  });

  // Signatures: against the CA's root when a CA directory is at hand, else a ca.crt beside the file.
  let trust: string | undefined;
  let verified: string | undefined;
  try {
    trust = openCaDir(ctx.global.dir).dir.file(CA_FILES.trustBundle);
  } catch {
    const beside = join(dirname(source), 'ca.crt');
    trust = existsSync(beside) ? beside : undefined;
  }
  if (trust) {
    try {
      loadCrlPem(pem, decodeCertificates(readCappedText(trust, FILE_CAPS.pemBundle), trust), source);
      verified = `every signature verifies against ${trust}`;
    } catch (err) {
      verified = `FAILED against ${trust}: ${errorLine(err)}`;
    }
  }

  const services = new Map<string, string>();
  try {
    const ca = await openCaForReading(ctx.global.dir);
    try {
      for (const c of crls)
        for (const serial of c.revoked) {
          const r = await ca.ledger.getCertificate(serial);
          if (r) services.set(serial, r.service);
        }
    } finally {
      await ca.close();
    }
  } catch {
    // no CA at hand: serials only
  }

  const now = Date.now();
  ctx.out.line(`CRL file         ${source}`);
  crls.forEach((c, n) => {
    const next = c.nextUpdate
      ? `${c.nextUpdate.toISOString()} (${c.nextUpdate.getTime() > now ? `in ${formatDuration(c.nextUpdate.getTime() - now)}` : `PASSED ${formatDuration(now - c.nextUpdate.getTime())} ago`})`
      : 'none';
    ctx.out.line(`  CRL #${n + 1}         ${nameText(c.issuerNameDer)}`);
    ctx.out.line(`    Number       ${c.crlNumber ?? 'none'}`);
    ctx.out.line(`    This update  ${c.thisUpdate.toISOString()}`);
    ctx.out.line(`    Next update  ${next}`);
    ctx.out.line(`    Revoked      ${c.revoked.length}`);
    for (const serial of c.revoked) ctx.out.line(`      ${serial}${services.has(serial) ? `  ${services.get(serial)}` : ''}`);
  });
  ctx.out.line(`  Signatures     ${verified ?? 'not checked (no CA directory and no ca.crt beside the file)'}`);

  ctx.out.result({
    source,
    crls: crls.map((c) => ({
      issuer: nameText(c.issuerNameDer),
      number: c.crlNumber === undefined ? null : c.crlNumber.toString(),
      thisUpdate: c.thisUpdate.toISOString(),
      nextUpdate: c.nextUpdate?.toISOString() ?? null,
      revoked: c.revoked.map((serial) => ({ serial, service: services.get(serial) ?? null })),
    })),
    signatures: verified ?? null,
  });
}

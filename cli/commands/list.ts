/**
 * `svcca list`: the certificates the CA issued, as a table or JSON.
 * Default: unexpired certificates that are not revoked (active and superseded).
 */
import { requireDurationMs, formatDuration } from '../../common/duration.js';
import type { CertificateRecord } from '../store/ledger.js';
import { openCaForReading } from '../ca/ca-session.js';
import type { CommandContext } from '../context.js';

export interface ListOptions {
  readonly expiring?: string;
  readonly revoked?: boolean;
  readonly all?: boolean;
}

type DisplayStatus = CertificateRecord['status'] | 'expired';

function displayStatus(r: CertificateRecord, now: number): DisplayStatus {
  if (r.status === 'revoked') return 'revoked';
  return r.notAfter <= now ? 'expired' : r.status;
}

export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

export async function runList(opts: ListOptions, ctx: CommandContext): Promise<void> {
  const expiringMs = opts.expiring === undefined ? undefined : requireDurationMs('--expiring', opts.expiring);
  const ca = await openCaForReading(ctx.global.dir);
  const now = Date.now();
  let records: CertificateRecord[];
  try {
    if (opts.revoked) records = await ca.ledger.listCertificates({ statuses: ['revoked'] });
    else if (expiringMs !== undefined)
      records = await ca.ledger.listCertificates({ statuses: ['active'], notAfterBefore: now + expiringMs });
    else if (opts.all) records = await ca.ledger.listCertificates();
    else records = await ca.ledger.listCertificates({ statuses: ['active', 'superseded'], notAfterAfter: now });
  } finally {
    await ca.close();
  }
  const items = records.map((r) => ({
    service: r.service,
    spiffeId: r.spiffeId,
    serial: r.serial,
    notAfter: new Date(r.notAfter).toISOString(),
    status: displayStatus(r, now),
    ...(r.revocationReason ? { reason: r.revocationReason } : {}),
    fromCsr: r.fromCsr,
    setDir: r.setDir,
  }));
  ctx.out.result(items);
  if (items.length === 0) {
    const what = opts.revoked
      ? 'revoked certificates'
      : expiringMs !== undefined
        ? `active certificates expiring within ${formatDuration(expiringMs)}`
        : 'certificates';
    ctx.out.line(`No ${what}.`);
    return;
  }
  const rows = [['SERVICE', 'SPIFFE ID', 'SERIAL', 'NOT AFTER', 'STATUS']];
  for (const it of items) rows.push([it.service, it.spiffeId, it.serial, it.notAfter, it.status + (it.reason ? ` (${it.reason})` : '')]);
  ctx.out.line(formatTable(rows));
}

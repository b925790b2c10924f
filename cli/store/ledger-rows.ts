/**
 * The certificate row both back ends store (same columns, same JSON-text name lists) and
 * its mapping to a CertificateRecord, so they cannot drift apart.
 */
import { isAbsolute, join, relative } from 'node:path';
import type { BootstrapToken, CertificateRecord, CertificateStatus, LedgerEvent, RevocationReason } from './ledger.js';

export interface CertRow {
  serial: string;
  service: string;
  spiffe_id: string;
  issuer_key_id: string;
  dns_names: string;
  ips: string;
  ttl_ms: number;
  not_before: number;
  not_after: number;
  key_type: string;
  set_dir: string;
  status: string;
  /** SQLite stores 0/1, PostgreSQL a boolean. */
  from_csr: number | boolean;
  spki_sha256: string;
  cert_pem: string;
  issued_at: number;
  revoked_at: number | null;
  revocation_reason: string | null;
  /** Schema 2; SQLite stores 0/1, PostgreSQL a boolean. */
  owner_renews?: number | boolean;
}

/**
 * Set folders inside the CA directory are stored relative to it, so a ca-data/
 * restored from backup at another path (or mounted elsewhere in a container) still
 * finds its sets; folders elsewhere (--out) stay absolute.
 */
export function storedSetDir(base: string, setDir: string): string {
  const rel = relative(base, setDir);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : setDir;
}

export function rowToRecord(base: string, row: CertRow): CertificateRecord {
  return {
    serial: row.serial,
    service: row.service,
    spiffeId: row.spiffe_id,
    issuerKeyId: row.issuer_key_id,
    dnsNames: JSON.parse(row.dns_names) as string[],
    ips: JSON.parse(row.ips) as string[],
    ttlMs: row.ttl_ms,
    notBefore: row.not_before,
    notAfter: row.not_after,
    keyType: row.key_type as CertificateRecord['keyType'],
    setDir: isAbsolute(row.set_dir) ? row.set_dir : join(base, row.set_dir),
    status: row.status as CertificateStatus,
    fromCsr: row.from_csr === 1 || row.from_csr === true,
    spkiSha256: row.spki_sha256,
    certPem: row.cert_pem,
    issuedAt: row.issued_at,
    ...(row.revoked_at === null ? {} : { revokedAt: row.revoked_at }),
    ...(row.revocation_reason === null ? {} : { revocationReason: row.revocation_reason as RevocationReason }),
    ...(row.owner_renews === 1 || row.owner_renews === true ? { ownerRenews: true } : {}),
  };
}

/** A bootstrap_tokens row as both back ends return it. */
export interface TokenRow {
  secret_sha256: string;
  service: string;
  dns_names: string;
  ips: string;
  cert_ttl_ms: number;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
  actor: string;
}

/** The columns of a bootstrap_tokens row, in TOKEN_INSERT_COLUMNS order: what both ledgers insert. */
export const TOKEN_INSERT_COLUMNS =
  'secret_sha256, service, dns_names, ips, cert_ttl_ms, created_at, expires_at, used_at, revoked_at, actor';

export function tokenToRowValues(t: BootstrapToken): unknown[] {
  return [
    t.secretSha256,
    t.service,
    JSON.stringify(t.dnsNames),
    JSON.stringify(t.ips),
    t.certTtlMs,
    t.createdAt,
    t.expiresAt,
    t.usedAt ?? null,
    t.revokedAt ?? null,
    t.actor,
  ];
}

/** The columns of an events row, in EVENT_INSERT_COLUMNS order: what both ledgers append. */
export const EVENT_INSERT_COLUMNS = 'at, kind, service, serial, actor, why';

export function eventToRowValues(e: LedgerEvent): unknown[] {
  return [e.at ?? Date.now(), e.kind, e.service ?? null, e.serial ?? null, e.actor, e.why];
}

export function rowToToken(row: TokenRow): BootstrapToken {
  return {
    secretSha256: row.secret_sha256,
    service: row.service,
    dnsNames: JSON.parse(row.dns_names) as string[],
    ips: JSON.parse(row.ips) as string[],
    certTtlMs: row.cert_ttl_ms,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    ...(row.used_at === null ? {} : { usedAt: row.used_at }),
    ...(row.revoked_at === null ? {} : { revokedAt: row.revoked_at }),
    actor: row.actor,
  };
}

/**
 * The ledger: every certificate the CA issued, revocations, CRL numbers, and an
 * append-only event log. Everything else reaches it through this interface; only
 * cli/ca/ca-session.ts (openLedger: the config's `ledger` URL or ledger.db) and the
 * `svcca ledger` commands know which back end is behind it — SQLite on one CA host
 * (sqlite-ledger.ts) or PostgreSQL shared by several (postgres-ledger.ts).
 * Every method is async for the latter, even though SQLite answers synchronously.
 *
 * How to use it, so both back ends keep the same guarantees:
 * - every change goes through `transaction(fn)`, and inside `fn` only `tx` is used;
 * - a transaction that reads a service to decide what to write takes `tx.lockService`
 *   first (issue, renewal, revoke, writing its set); rotate's claims take it with
 *   `skipLocked`;
 * - a CRL is signed in the transaction that takes its number (`nextCrlNumber`, then
 *   `listRevokedForCrl`), and crl.pem is written under `tx.lockCrls`;
 * - `close()` is awaited.
 */
import { CaStateError } from '../../common/errors.js';
import type { KeyType } from '../../common/keys.js';

/**
 * The ledger's back end cannot be reached now, or gave up a transaction another writer
 * raced (PostgreSQL): nothing was changed, and the same call may succeed later. Commands
 * exit 1 with it; `svcca serve` answers 503 and keeps serving what it has.
 */
export class LedgerUnavailableError extends CaStateError {}

export type CertificateStatus = 'active' | 'superseded' | 'revoked';

export const REVOCATION_REASONS = {
  keyCompromise: 1,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

export interface CertificateRecord {
  /** Lower-case hex, no leading zeros (see common/x509 serialToHex). */
  readonly serial: string;
  readonly service: string;
  readonly spiffeId: string;
  /** Subject key identifier (hex) of the intermediate that signed it. */
  readonly issuerKeyId: string;
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  readonly ttlMs: number;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly keyType: KeyType;
  /** Where its credential set was written. */
  readonly setDir: string;
  readonly status: CertificateStatus;
  readonly fromCsr: boolean;
  /** SHA-256 (hex) of the subject public key info: how a compromised key is recognized. */
  readonly spkiSha256: string;
  readonly certPem: string;
  readonly issuedAt: number;
  readonly revokedAt?: number;
  readonly revocationReason?: RevocationReason;
  /**
   * Issued over the network (`svcca serve`) to an owner who renews it itself: cron
   * `rotate` leaves it alone (it would supersede the certificate its owner renews with).
   * Absent means false.
   */
  readonly ownerRenews?: boolean;
}

export type EventKind = 'init' | 'issue' | 'renew' | 'revoke' | 'roll' | 'crl' | 'token';

export interface LedgerEvent {
  readonly kind: EventKind;
  readonly service?: string;
  readonly serial?: string;
  /** user@host */
  readonly actor: string;
  readonly why: string;
  readonly at?: number;
}

export interface StoredEvent extends Required<Omit<LedgerEvent, 'service' | 'serial'>> {
  readonly id: number;
  readonly service: string | null;
  readonly serial: string | null;
}

export interface ServiceState {
  readonly name: string;
  readonly activeSerial: string | null;
  /** false once revoked: rotation stops until the next `issue`. */
  readonly rotationEnabled: boolean;
}

/** The few fields `rotate` needs to decide what is due, without loading certificates. */
export interface RotationCandidate {
  readonly service: string;
  readonly serial: string;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly fromCsr: boolean;
  readonly issuerKeyId: string;
  /** Its owner renews it through `svcca serve`; rotate skips it (see CertificateRecord.ownerRenews). */
  readonly ownerRenews: boolean;
}

/**
 * A one-time bootstrap token (`svcca token`): only the SHA-256 of its secret is stored.
 * It is good for one `POST /v1/bootstrap` of `service` before `expiresAt`, unless revoked.
 */
export interface BootstrapToken {
  /** SHA-256 (hex) of the secret the holder presents; the primary key. */
  readonly secretSha256: string;
  readonly service: string;
  /** Names and lifetime of the certificate it buys (chosen by `svcca token`). */
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  readonly certTtlMs: number;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly usedAt?: number;
  readonly revokedAt?: number;
  /** user@host that made it. */
  readonly actor: string;
}

/** A renewal claim on a service (see `claimService`). */
export interface ServiceClaim {
  readonly service: string;
  readonly owner: string;
  readonly until: number;
}

export interface CertificateFilter {
  readonly service?: string;
  readonly statuses?: readonly CertificateStatus[];
  /** Only certificates whose notAfter is before this time (ms). */
  readonly notAfterBefore?: number;
  /** Only certificates whose notAfter is after this time (ms), i.e. unexpired at that time. */
  readonly notAfterAfter?: number;
  readonly issuerKeyId?: string;
}

export interface Ledger {
  /** Where the ledger is, for messages: its file, or user@host:port/db (never a password). */
  readonly location: string;

  /**
   * Runs `fn` in one transaction; commits when it resolves, rolls back when it throws.
   * Everything a command changes goes through one of these. A call made inside a running
   * transaction (on `tx` or on this object, in its async context) runs as part of it; a
   * call from another async context of the same process (`svcca serve` handles requests
   * concurrently) never joins it: SqliteLedger queues it, PostgresLedger gives it a
   * transaction of its own on another connection. SQLite's is immediate: it holds the
   * database's write lock throughout. PostgreSQL's is READ COMMITTED: each statement sees
   * what committed before it, and writers of one service or one CRL queue only once they
   * take its lock (`lockService`, `lockCrls`, `nextCrlNumber`), so take the lock before
   * reading what it guards.
   */
  transaction<T>(fn: (tx: Ledger) => Promise<T>): Promise<T>;

  /**
   * Locks the service until the transaction ends: issue, renewal, revoke and writing its
   * set queue on it. Take it before reading the service. With `skipLocked` (rotate's
   * claims) it returns false at once when another transaction holds it, instead of
   * waiting. Only inside `transaction`. SQLite: the transaction already holds the write
   * lock, so always true.
   */
  lockService(name: string, opts?: { skipLocked?: boolean }): Promise<boolean>;
  /** Locks these issuers' CRL state until the transaction ends: crl.pem is written under it. */
  lockCrls(issuerKeyIds: readonly string[]): Promise<void>;

  insertCertificate(record: CertificateRecord): Promise<void>;
  getCertificate(serial: string): Promise<CertificateRecord | undefined>;
  listCertificates(filter?: CertificateFilter): Promise<CertificateRecord[]>;
  countCertificates(): Promise<number>;
  setStatus(serial: string, status: CertificateStatus): Promise<void>;
  markRevoked(serial: string, reason: RevocationReason | undefined, at: number): Promise<void>;
  /**
   * Revocations the CRL of `issuerKeyId` must list (see the CRL retention rule). Their
   * `certPem` is empty: a CRL needs only serial, time and reason.
   */
  listRevokedForCrl(issuerKeyId: string): Promise<CertificateRecord[]>;

  getService(name: string): Promise<ServiceState | undefined>;
  /** Services whose active certificate's set is in `setDir` (an absolute path). */
  servicesWithSetDir(setDir: string): Promise<string[]>;
  /** Makes `serial` the service's active certificate and turns rotation on. */
  setActive(name: string, serial: string): Promise<void>;
  setRotation(name: string, enabled: boolean): Promise<void>;
  listServices(): Promise<ServiceState[]>;
  /**
   * Claims a service for renewal by `owner` until `until` (ms); false when another live
   * claim holds it. A claim of a killed process simply expires.
   */
  claimService(name: string, owner: string, until: number, now: number): Promise<boolean>;
  releaseClaim(name: string, owner: string): Promise<void>;
  /** Every claim currently recorded, live or not: a claim outliving its owner marks unfinished work. */
  listClaims(): Promise<ServiceClaim[]>;
  /** The owner of a service's claim, if any (expired ones included). */
  getClaim(name: string): Promise<ServiceClaim | undefined>;
  /** The active certificate of every service whose rotation is on, slimmed down. */
  listRotationCandidates(): Promise<RotationCandidate[]>;
  /** The latest notAfter (ms) among an issuer's certificates; 0 when it signed none. */
  latestNotAfter(issuerKeyId: string): Promise<number>;
  /** True when an event of `kind` names `serial` (used to tell a committed roll from an abandoned one). */
  hasEvent(kind: EventKind, serial: string): Promise<boolean>;

  isKeyCompromised(spkiSha256: string): Promise<boolean>;
  markKeyCompromised(spkiSha256: string, at: number): Promise<void>;

  /**
   * The next CRL number of an issuer (taken and stored in the caller's transaction, which
   * it locks the issuer's CRL state for: take it before listing what the CRL holds);
   * never below `atLeast`, so a crl.pem restored or written ahead of the ledger is never
   * followed by a CRL with the same number.
   */
  nextCrlNumber(issuerKeyId: string, atLeast?: bigint): Promise<bigint>;
  /** The last CRL number handed out for an issuer, 0 when none. */
  currentCrlNumber(issuerKeyId: string): Promise<bigint>;
  /** The highest revocation time (ms) among the issuer's entries; 0 when none. */
  lastRevocationAt(issuerKeyId: string): Promise<number>;
  /**
   * Records that a CRL numbered `number` and issued at `at` was published for the issuer:
   * entries whose certificate expired before `at` have now been listed after their end
   * and may be dropped from later CRLs. `pem` is the signed CRL itself (schema v3): every
   * `svcca serve` replica serves these very bytes (publishedCrl).
   */
  recordCrlPublished(issuerKeyId: string, number: bigint, at: number, pem?: string): Promise<void>;
  /** The number and time of the last CRL published for the issuer. */
  lastPublishedCrl(issuerKeyId: string): Promise<{ number: bigint; at: number } | undefined>;
  /**
   * The number of the last CRL published for every issuer, in one cheap query: what
   * `svcca serve` polls to notice that another host published (a revoke, a refresh).
   */
  publishedCrlNumbers(): Promise<Map<string, bigint>>;
  /** The last CRL published for the issuer as signed (PEM), when the publisher stored it. */
  publishedCrl(issuerKeyId: string): Promise<{ number: bigint; pem: string } | undefined>;

  // ---- Bootstrap tokens (svcca token / svcca serve's POST /v1/bootstrap), schema v2 ----
  // Transactions nest: an implementation runs a `transaction` called inside another one
  // as part of it (SqliteLedger does), since token use and issuance commit together.

  insertToken(token: BootstrapToken): Promise<void>;
  getToken(secretSha256: string): Promise<BootstrapToken | undefined>;
  /**
   * Marks the token used at `at` if it is still unused, unrevoked and unexpired at `at`;
   * true when this call used it (the one atomic check-and-set that makes it single use).
   */
  useToken(secretSha256: string, at: number): Promise<boolean>;
  /** Revokes every unused, unrevoked token of `service`; returns how many. */
  revokeTokens(service: string, at: number): Promise<number>;

  appendEvent(event: LedgerEvent): Promise<void>;
  listEvents(limit?: number): Promise<StoredEvent[]>;

  /** Closes the file or the connection pool; the ledger is unusable afterwards. */
  close(): Promise<void>;
}

/**
 * The SQLite ledger (better-sqlite3, WAL). Write transactions are BEGIN IMMEDIATE so
 * concurrent `svcca` processes queue on the busy timeout instead of failing with
 * SQLITE_BUSY on a lock upgrade; better-sqlite3's own transaction() refuses async
 * functions, so the interface issues BEGIN/COMMIT itself.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import Database from 'better-sqlite3';
import type { Database as DatabaseType, Statement } from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, fdatasync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { CaStateError } from '../../common/errors.js';
import type {
  BootstrapToken,
  CertificateFilter,
  CertificateRecord,
  CertificateStatus,
  Ledger,
  EventKind,
  LedgerEvent,
  RevocationReason,
  RotationCandidate,
  ServiceClaim,
  ServiceState,
  StoredEvent,
} from './ledger.js';
import {
  EVENT_INSERT_COLUMNS,
  eventToRowValues,
  rowToRecord,
  rowToToken,
  storedSetDir,
  TOKEN_INSERT_COLUMNS,
  tokenToRowValues,
  type CertRow,
  type TokenRow,
} from './ledger-rows.js';
import type { LedgerTable } from './postgres-schema.js';

/** Bumped when the schema changes; `migrate` brings older ledgers forward. */
export const SCHEMA_VERSION = 3;

const SCHEMA_V1 = `
CREATE TABLE certificates (
  serial TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  spiffe_id TEXT NOT NULL,
  issuer_key_id TEXT NOT NULL,
  dns_names TEXT NOT NULL,
  ips TEXT NOT NULL,
  ttl_ms INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  key_type TEXT NOT NULL,
  set_dir TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active','superseded','revoked')),
  from_csr INTEGER NOT NULL,
  spki_sha256 TEXT NOT NULL,
  cert_pem TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  revoked_at INTEGER,
  revocation_reason TEXT,
  listed_after_expiry INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX certificates_service ON certificates(service);
CREATE INDEX certificates_not_after ON certificates(not_after);
CREATE INDEX certificates_revoked ON certificates(issuer_key_id, status, listed_after_expiry);
CREATE TABLE services (
  name TEXT PRIMARY KEY,
  active_serial TEXT,
  rotation_enabled INTEGER NOT NULL DEFAULT 1,
  claim_owner TEXT,
  claim_until INTEGER
);
CREATE TABLE compromised_keys (spki_sha256 TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE crl_state (
  issuer_key_id TEXT PRIMARY KEY,
  next_number TEXT NOT NULL,
  published_number TEXT,
  published_at INTEGER
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  service TEXT,
  serial TEXT,
  actor TEXT NOT NULL,
  why TEXT NOT NULL
);
-- the event log is append-only: refuse edits at the database level too
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
`;

/**
 * v2 (svcca serve): certificates whose owner renews them over the network, and one-time
 * bootstrap tokens stored as the SHA-256 of their secret.
 */
const SCHEMA_V2 = `
ALTER TABLE certificates ADD COLUMN owner_renews INTEGER NOT NULL DEFAULT 0;
CREATE TABLE bootstrap_tokens (
  secret_sha256 TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  dns_names TEXT NOT NULL,
  ips TEXT NOT NULL,
  cert_ttl_ms INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  revoked_at INTEGER,
  actor TEXT NOT NULL
);
CREATE INDEX bootstrap_tokens_service ON bootstrap_tokens(service);
`;

/** v3 (several `svcca serve` replicas): each issuer's last CRL as signed, served as is. */
const SCHEMA_V3 = `ALTER TABLE crl_state ADD COLUMN published_pem TEXT;`;

/** The longest a finished transaction waits for the group's COMMIT while others keep coming. */
const GROUP_COMMIT_MS = 5;

export class SqliteLedger implements Ledger {
  private readonly db: DatabaseType;
  /** The CA directory: relative set folders are resolved against it. */
  private readonly base: string;
  readonly location: string;
  private readonly inTransaction = new AsyncLocalStorage<boolean>();
  private queue: Promise<unknown> = Promise.resolve();
  /** Transactions released into the open outer transaction, waiting for its COMMIT. */
  private batch: { since: number; waiters: { resolve: () => void; reject: (err: unknown) => void }[] } | undefined;
  private commitSoon: NodeJS.Immediate | undefined;
  /** A transaction's function is running (between its SAVEPOINT and RELEASE). */
  private running = false;
  /**
   * Prepared statements by SQL text. Compiling a statement costs more than running these
   * one-row queries, and `svcca serve` runs the same dozen for every renewal (9 % of its
   * CPU per renewal before this cache). The set of texts is fixed by this file.
   */
  private readonly statements = new Map<string, Statement>();
  /**
   * The WAL file, for the fdatasync that makes each group commit durable (see
   * syncCommitsOffThread); undefined while SQLite syncs in COMMIT itself.
   */
  private walFd: number | undefined;
  /** The fdatasyncs under way; close() waits for them before closing walFd. */
  private readonly syncing = new Set<Promise<void>>();

  private constructor(db: DatabaseType, path: string) {
    this.db = db;
    this.location = path;
    this.base = dirname(resolve(path));
  }

  /** Opens (creating with `create`) the ledger at `path`. */
  static open(path: string, opts: { create?: boolean } = {}): SqliteLedger {
    const existed = existsSync(path);
    if (!existed && !opts.create) {
      throw new CaStateError(`the ledger ${path} is missing`, 'restore ledger.db from your backup of the CA directory');
    }
    let db: DatabaseType;
    let journalMode: unknown;
    try {
      db = new Database(path, { timeout: 15_000 });
      journalMode = db.pragma('journal_mode = WAL', { simple: true });
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
    } catch (err) {
      throw new CaStateError(
        `cannot open the ledger ${path}: ${(err as Error).message}`,
        'check that it is an svcca ledger on a local filesystem',
        err,
      );
    }
    if (!existed) chmodSync(path, 0o600);
    const ledger = new SqliteLedger(db, path);
    ledger.migrate(path);
    if (journalMode === 'wal') ledger.syncCommitsOffThread(`${path}-wal`);
    return ledger;
  }

  /**
   * With synchronous = FULL, every COMMIT blocks the event loop on an fsync of the WAL
   * (`svcca serve`'s one thread, once per group commit). Instead SQLite runs with
   * synchronous = NORMAL — commits write the WAL without syncing it; checkpoints still
   * sync the WAL before copying it and the database after — and commitBatch fdatasyncs
   * the WAL on libuv's thread pool after each COMMIT, settling the group's transactions
   * only when that returns. A transaction is therefore answered only once its WAL frames
   * are on disk, as with FULL. The WAL is one file, so any later sync (ours or another
   * process's) covers earlier frames too; every write goes through transaction() (the
   * Ledger contract), so none escapes the sync. When the WAL cannot be opened, FULL stays.
   */
  private syncCommitsOffThread(walPath: string): void {
    try {
      this.walFd = openSync(walPath, 'r');
    } catch {
      return;
    }
    this.db.pragma('synchronous = NORMAL');
  }

  private migrate(path: string): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version === SCHEMA_VERSION) return;
    if (version > SCHEMA_VERSION) {
      throw new CaStateError(
        `the ledger ${path} has schema ${version}, newer than this svcca understands (${SCHEMA_VERSION})`,
        'upgrade svcca',
      );
    }
    // Immediate, so two first runs racing cannot both create the schema.
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const now = this.db.pragma('user_version', { simple: true }) as number;
      if (now === 0) this.db.exec(SCHEMA_V1);
      if (now < 2) this.db.exec(SCHEMA_V2);
      if (now < 3) this.db.exec(SCHEMA_V3);
      if (now < SCHEMA_VERSION) this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
      this.db.exec('COMMIT');
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw new CaStateError(`cannot prepare the ledger ${path}: ${(err as Error).message}`, 'check the file and its permissions', err);
    }
  }

  /**
   * One immediate transaction at a time per ledger object. A call made inside a running
   * transaction (in its async context: a helper handed the ledger rather than `tx`) joins
   * it; a call from anywhere else — another request of `svcca serve` whose code runs while
   * this one awaits — waits its turn instead of slipping into a transaction it does not own.
   *
   * Group commit: each transaction runs as a SAVEPOINT of one outer transaction, and its
   * promise settles only once that outer transaction has committed. The outer one commits
   * as soon as no transaction is running (the next turn of the event loop), or before the
   * next one starts once it is GROUP_COMMIT_MS old. A lone `svcca issue` commits exactly as
   * before; `svcca serve` under load pays one WAL sync for several renewals instead of one
   * each, and that sync runs off the event loop (syncCommitsOffThread). Nothing is
   * answered before its commit is on disk, so a crash loses only transactions nobody was
   * told of.
   */
  async transaction<T>(fn: (tx: Ledger) => Promise<T>): Promise<T> {
    if (this.inTransaction.getStore() === true) return fn(this);
    let endTurn!: () => void;
    const turn = new Promise<void>((resolve) => (endTurn = resolve));
    const previous = this.queue;
    this.queue = turn;
    await previous;
    try {
      return await this.inTransaction.run(true, () => this.runTransaction(fn, endTurn));
    } finally {
      endTurn();
    }
  }

  private async runTransaction<T>(fn: (tx: Ledger) => Promise<T>, endTurn: () => void): Promise<T> {
    if (this.batch && Date.now() - this.batch.since >= GROUP_COMMIT_MS) this.commitBatch();
    if (!this.db.inTransaction) this.db.exec('BEGIN IMMEDIATE');
    this.db.exec('SAVEPOINT svcca_tx');
    this.running = true;
    let result: T;
    try {
      result = await fn(this);
      this.db.exec('RELEASE svcca_tx');
    } catch (err) {
      this.running = false;
      if (this.db.inTransaction) {
        this.db.exec('ROLLBACK TO svcca_tx');
        this.db.exec('RELEASE svcca_tx');
      }
      // Some errors (SQLITE_FULL, SQLITE_IOERR) roll back the whole outer transaction:
      // the others' work in it is gone too, and they are told so by commitBatch.
      this.scheduleCommit();
      throw err;
    }
    this.running = false;
    const committed = new Promise<void>((resolve, reject) => {
      this.batch ??= { since: Date.now(), waiters: [] };
      this.batch.waiters.push({ resolve, reject });
    });
    this.scheduleCommit();
    // The next transaction may run now; this one's caller hears of it after the commit.
    endTurn();
    await committed;
    return result;
  }

  private scheduleCommit(): void {
    this.commitSoon ??= setImmediate(() => {
      this.commitSoon = undefined;
      // A transaction under way commits with the batch: its own end schedules this again.
      if (!this.running) this.commitBatch();
    });
  }

  /** Commits the outer transaction and settles every transaction in it. Only between transactions. */
  private commitBatch(): void {
    if (this.commitSoon) clearImmediate(this.commitSoon);
    this.commitSoon = undefined;
    const waiters = this.batch?.waiters ?? [];
    this.batch = undefined;
    if (!this.db.inTransaction) {
      const lost = new CaStateError(
        `the ledger ${this.location} rolled back a transaction`,
        'run the command again; if it keeps failing, check the disk (full? read-only?)',
      );
      for (const w of waiters) w.reject(lost);
      return;
    }
    try {
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      for (const w of waiters) w.reject(err);
      return;
    }
    if (this.walFd === undefined) {
      for (const w of waiters) w.resolve();
      return;
    }
    const synced = new Promise<void>((resolve) => {
      fdatasync(this.walFd!, (err) => {
        if (!err) for (const w of waiters) w.resolve();
        else {
          const lost = new CaStateError(
            `the ledger ${this.location} could not be synced to disk (${err.code ?? err.message}); what was just recorded may be lost`,
            'check the disk (full? failing?) and run `svcca list` to see what the ledger holds',
            err,
          );
          for (const w of waiters) w.reject(lost);
        }
        resolve();
      });
    });
    this.syncing.add(synced);
    void synced.then(() => this.syncing.delete(synced));
  }

  // BEGIN IMMEDIATE already holds the database's write lock: every writer queues on it.
  async lockService(_name: string, _opts?: { skipLocked?: boolean }): Promise<boolean> {
    this.assertInTransaction('lockService');
    return true;
  }

  async lockCrls(_issuerKeyIds: readonly string[]): Promise<void> {
    this.assertInTransaction('lockCrls');
  }

  private assertInTransaction(what: string): void {
    if (this.inTransaction.getStore() !== true) throw new Error(`${what} outside a ledger transaction`);
  }

  async insertCertificate(r: CertificateRecord): Promise<void> {
    this.prepared(
      `INSERT INTO certificates (serial, service, spiffe_id, issuer_key_id, dns_names, ips, ttl_ms, not_before, not_after,
           key_type, set_dir, status, from_csr, spki_sha256, cert_pem, issued_at, revoked_at, revocation_reason, owner_renews)
         VALUES (@serial, @service, @spiffeId, @issuerKeyId, @dnsNames, @ips, @ttlMs, @notBefore, @notAfter,
           @keyType, @setDir, @status, @fromCsr, @spkiSha256, @certPem, @issuedAt, @revokedAt, @revocationReason, @ownerRenews)`,
    ).run({
      ...r,
      setDir: storedSetDir(this.base, r.setDir),
      dnsNames: JSON.stringify(r.dnsNames),
      ips: JSON.stringify(r.ips),
      fromCsr: r.fromCsr ? 1 : 0,
      revokedAt: r.revokedAt ?? null,
      revocationReason: r.revocationReason ?? null,
      ownerRenews: r.ownerRenews ? 1 : 0,
    });
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const row = this.prepared('SELECT * FROM certificates WHERE serial = ?').get(serial) as CertRow | undefined;
    return row ? rowToRecord(this.base, row) : undefined;
  }

  async listCertificates(filter: CertificateFilter = {}): Promise<CertificateRecord[]> {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (filter.service !== undefined) {
      where.push('service = @service');
      params.service = filter.service;
    }
    if (filter.statuses && filter.statuses.length > 0) {
      where.push(`status IN (${filter.statuses.map((_, i) => `@st${i}`).join(', ')})`);
      for (const [i, s] of filter.statuses.entries()) params[`st${i}`] = s;
    }
    if (filter.notAfterBefore !== undefined) {
      where.push('not_after < @before');
      params.before = filter.notAfterBefore;
    }
    if (filter.notAfterAfter !== undefined) {
      where.push('not_after > @after');
      params.after = filter.notAfterAfter;
    }
    if (filter.issuerKeyId !== undefined) {
      where.push('issuer_key_id = @issuer');
      params.issuer = filter.issuerKeyId;
    }
    const sql = `SELECT * FROM certificates ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY service, issued_at`;
    return (this.prepared(sql).all(params) as CertRow[]).map((row) => rowToRecord(this.base, row));
  }

  async countCertificates(): Promise<number> {
    return (this.prepared('SELECT count(*) AS n FROM certificates').get() as { n: number }).n;
  }

  async setStatus(serial: string, status: CertificateStatus): Promise<void> {
    this.prepared('UPDATE certificates SET status = ? WHERE serial = ?').run(status, serial);
  }

  async markRevoked(serial: string, reason: RevocationReason | undefined, at: number): Promise<void> {
    this.prepared("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ?").run(
      at,
      reason ?? null,
      serial,
    );
  }

  async listRevokedForCrl(issuerKeyId: string): Promise<CertificateRecord[]> {
    const rows = this.db
      // Everything but the certificate PEM: a 100,000-entry CRL need not hold them all in memory.
      .prepare(
        "SELECT serial, service, spiffe_id, issuer_key_id, dns_names, ips, ttl_ms, not_before, not_after, key_type, set_dir, status, from_csr, spki_sha256, '' AS cert_pem, issued_at, revoked_at, revocation_reason FROM certificates WHERE issuer_key_id = ? AND status = 'revoked' AND listed_after_expiry = 0 ORDER BY revoked_at",
      )
      .all(issuerKeyId) as CertRow[];
    return rows.map((row) => rowToRecord(this.base, row));
  }

  async servicesWithSetDir(setDir: string): Promise<string[]> {
    const rows = this.prepared(
      'SELECT DISTINCT s.name AS name FROM services s JOIN certificates c ON c.serial = s.active_serial WHERE c.set_dir = ? OR c.set_dir = ?',
    ).all(storedSetDir(this.base, setDir), setDir) as { name: string }[];
    return rows.map((r) => r.name);
  }

  async getService(name: string): Promise<ServiceState | undefined> {
    const row = this.prepared('SELECT name, active_serial, rotation_enabled FROM services WHERE name = ?').get(name) as
      | { name: string; active_serial: string | null; rotation_enabled: number }
      | undefined;
    return row ? { name: row.name, activeSerial: row.active_serial, rotationEnabled: row.rotation_enabled === 1 } : undefined;
  }

  async setActive(name: string, serial: string): Promise<void> {
    this.prepared(
      `INSERT INTO services (name, active_serial, rotation_enabled) VALUES (?, ?, 1)
         ON CONFLICT(name) DO UPDATE SET active_serial = excluded.active_serial, rotation_enabled = 1`,
    ).run(name, serial);
  }

  async setRotation(name: string, enabled: boolean): Promise<void> {
    this.prepared('UPDATE services SET rotation_enabled = ? WHERE name = ?').run(enabled ? 1 : 0, name);
  }

  async listServices(): Promise<ServiceState[]> {
    const rows = this.prepared('SELECT name, active_serial, rotation_enabled FROM services ORDER BY name').all() as {
      name: string;
      active_serial: string | null;
      rotation_enabled: number;
    }[];
    return rows.map((r) => ({ name: r.name, activeSerial: r.active_serial, rotationEnabled: r.rotation_enabled === 1 }));
  }

  async claimService(name: string, owner: string, until: number, now: number): Promise<boolean> {
    const res = this.prepared(
      'UPDATE services SET claim_owner = ?, claim_until = ? WHERE name = ? AND (claim_owner IS NULL OR claim_until < ? OR claim_owner = ?)',
    ).run(owner, until, name, now, owner);
    return res.changes === 1;
  }

  async releaseClaim(name: string, owner: string): Promise<void> {
    this.prepared('UPDATE services SET claim_owner = NULL, claim_until = NULL WHERE name = ? AND claim_owner = ?').run(name, owner);
  }

  async listClaims(): Promise<ServiceClaim[]> {
    const rows = this.prepared('SELECT name, claim_owner, claim_until FROM services WHERE claim_owner IS NOT NULL').all() as {
      name: string;
      claim_owner: string;
      claim_until: number | null;
    }[];
    return rows.map((r) => ({ service: r.name, owner: r.claim_owner, until: r.claim_until ?? 0 }));
  }

  async getClaim(name: string): Promise<ServiceClaim | undefined> {
    const row = this.prepared('SELECT claim_owner, claim_until FROM services WHERE name = ? AND claim_owner IS NOT NULL').get(name) as
      | { claim_owner: string; claim_until: number | null }
      | undefined;
    return row ? { service: name, owner: row.claim_owner, until: row.claim_until ?? 0 } : undefined;
  }

  async listRotationCandidates(): Promise<RotationCandidate[]> {
    const rows = this.prepared(
      `SELECT c.service, c.serial, c.not_before, c.not_after, c.from_csr, c.issuer_key_id, c.owner_renews
           FROM services s JOIN certificates c ON c.serial = s.active_serial
          WHERE s.rotation_enabled = 1 AND c.status = 'active'
          ORDER BY c.service`,
    ).all() as {
      service: string;
      serial: string;
      not_before: number;
      not_after: number;
      from_csr: number;
      issuer_key_id: string;
      owner_renews: number;
    }[];
    return rows.map((r) => ({
      service: r.service,
      serial: r.serial,
      notBefore: r.not_before,
      notAfter: r.not_after,
      fromCsr: r.from_csr === 1,
      issuerKeyId: r.issuer_key_id,
      ownerRenews: r.owner_renews === 1,
    }));
  }

  async latestNotAfter(issuerKeyId: string): Promise<number> {
    const row = this.prepared('SELECT max(not_after) AS n FROM certificates WHERE issuer_key_id = ?').get(issuerKeyId) as {
      n: number | null;
    };
    return row.n ?? 0;
  }

  async hasEvent(kind: EventKind, serial: string): Promise<boolean> {
    return this.prepared('SELECT 1 FROM events WHERE kind = ? AND serial = ? LIMIT 1').get(kind, serial) !== undefined;
  }

  async isKeyCompromised(spkiSha256: string): Promise<boolean> {
    return this.prepared('SELECT 1 FROM compromised_keys WHERE spki_sha256 = ?').get(spkiSha256) !== undefined;
  }

  async markKeyCompromised(spkiSha256: string, at: number): Promise<void> {
    this.prepared('INSERT OR IGNORE INTO compromised_keys (spki_sha256, at) VALUES (?, ?)').run(spkiSha256, at);
  }

  async nextCrlNumber(issuerKeyId: string, atLeast = 1n): Promise<bigint> {
    const row = this.prepared('SELECT next_number FROM crl_state WHERE issuer_key_id = ?').get(issuerKeyId) as
      | { next_number: string }
      | undefined;
    const stored = row ? BigInt(row.next_number) : 1n;
    const number = stored > atLeast ? stored : atLeast;
    this.prepared(
      `INSERT INTO crl_state (issuer_key_id, next_number) VALUES (?, ?)
         ON CONFLICT(issuer_key_id) DO UPDATE SET next_number = excluded.next_number`,
    ).run(issuerKeyId, (number + 1n).toString());
    return number;
  }

  async currentCrlNumber(issuerKeyId: string): Promise<bigint> {
    const row = this.prepared('SELECT next_number FROM crl_state WHERE issuer_key_id = ?').get(issuerKeyId) as
      | { next_number: string }
      | undefined;
    return row ? BigInt(row.next_number) - 1n : 0n;
  }

  async lastRevocationAt(issuerKeyId: string): Promise<number> {
    const row = this.prepared("SELECT max(revoked_at) AS at FROM certificates WHERE issuer_key_id = ? AND status = 'revoked'").get(
      issuerKeyId,
    ) as {
      at: number | null;
    };
    return row.at ?? 0;
  }

  async recordCrlPublished(issuerKeyId: string, number: bigint, at: number, pem?: string): Promise<void> {
    this.prepared(
      "UPDATE certificates SET listed_after_expiry = 1 WHERE issuer_key_id = ? AND status = 'revoked' AND not_after < ? AND listed_after_expiry = 0",
    ).run(issuerKeyId, at);
    this.prepared(
      `INSERT INTO crl_state (issuer_key_id, next_number, published_number, published_at, published_pem) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(issuer_key_id) DO UPDATE SET published_number = excluded.published_number, published_at = excluded.published_at,
           published_pem = excluded.published_pem`,
    ).run(issuerKeyId, (number + 1n).toString(), number.toString(), at, pem ?? null);
  }

  async lastPublishedCrl(issuerKeyId: string): Promise<{ number: bigint; at: number } | undefined> {
    const row = this.prepared('SELECT published_number, published_at FROM crl_state WHERE issuer_key_id = ?').get(issuerKeyId) as
      | { published_number: string | null; published_at: number | null }
      | undefined;
    if (!row || row.published_number === null || row.published_at === null) return undefined;
    return { number: BigInt(row.published_number), at: row.published_at };
  }

  async publishedCrlNumbers(): Promise<Map<string, bigint>> {
    const rows = this.prepared('SELECT issuer_key_id, published_number FROM crl_state WHERE published_number IS NOT NULL').all() as {
      issuer_key_id: string;
      published_number: string;
    }[];
    return new Map(rows.map((r) => [r.issuer_key_id, BigInt(r.published_number)]));
  }

  async publishedCrl(issuerKeyId: string): Promise<{ number: bigint; pem: string } | undefined> {
    const row = this.prepared('SELECT published_number, published_pem FROM crl_state WHERE issuer_key_id = ?').get(issuerKeyId) as
      | { published_number: string | null; published_pem: string | null }
      | undefined;
    if (!row || row.published_number === null || row.published_pem === null) return undefined;
    return { number: BigInt(row.published_number), pem: row.published_pem };
  }

  async insertToken(t: BootstrapToken): Promise<void> {
    this.prepared(`INSERT INTO bootstrap_tokens (${TOKEN_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
      ...tokenToRowValues(t),
    );
  }

  async getToken(secretSha256: string): Promise<BootstrapToken | undefined> {
    const row = this.prepared('SELECT * FROM bootstrap_tokens WHERE secret_sha256 = ?').get(secretSha256) as TokenRow | undefined;
    return row ? rowToToken(row) : undefined;
  }

  async useToken(secretSha256: string, at: number): Promise<boolean> {
    const res = this.prepared(
      'UPDATE bootstrap_tokens SET used_at = ? WHERE secret_sha256 = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?',
    ).run(at, secretSha256, at);
    return res.changes === 1;
  }

  async revokeTokens(service: string, at: number): Promise<number> {
    return this.prepared('UPDATE bootstrap_tokens SET revoked_at = ? WHERE service = ? AND used_at IS NULL AND revoked_at IS NULL').run(
      at,
      service,
    ).changes;
  }

  async appendEvent(e: LedgerEvent): Promise<void> {
    this.prepared(`INSERT INTO events (${EVENT_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`).run(eventToRowValues(e));
  }

  async listEvents(limit = 100): Promise<StoredEvent[]> {
    return this.prepared('SELECT id, at, kind, service, serial, actor, why FROM events ORDER BY id DESC LIMIT ?').all(
      limit,
    ) as StoredEvent[];
  }

  /** Every row of one of LEDGER_TABLES, in key order (bytewise), for `ledger copy`. */
  rawRows(table: LedgerTable): Record<string, unknown>[] {
    return this.prepared(`SELECT ${table.columns.join(', ')} FROM ${table.name} ORDER BY ${table.key}`).all() as Record<string, unknown>[];
  }

  private prepared(sql: string): Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  async close(): Promise<void> {
    if (this.batch || (this.db.open && this.db.inTransaction && !this.running)) this.commitBatch();
    await Promise.all(this.syncing);
    this.db.close();
    if (this.walFd !== undefined) closeSync(this.walFd);
    this.walFd = undefined;
  }
}

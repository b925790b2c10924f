/**
 * The PostgreSQL ledger (node-postgres), for a CA whose ledger is shared by several hosts.
 *
 * Transactions are READ COMMITTED; instead of SQLite's one write lock, each writer locks
 * what it changes, and every statement after a lock sees what committed before it:
 * - a service: its row FOR UPDATE (rotate's claims with SKIP LOCKED, so two hosts never
 *   both take one and neither waits), or, for a service not yet recorded, a transaction
 *   advisory lock on its name so two first issues of it queue too;
 * - an issuer's CRL: its crl_state row, locked by taking the next number (an upsert), so
 *   numbers grow in commit order and each CRL lists every revocation committed before it.
 * The database itself keeps serials unique, one active certificate per service and the
 * event log append-only (see postgres-schema.ts).
 *
 * Connection failures become one line naming the database (user@host:port/db, never a
 * password); a transaction that fails is rolled back by the server, so nothing is half-written.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import type { Pool, PoolClient, QueryResultRow } from 'pg';
import { CaStateError } from '../../common/errors.js';
import { LedgerUnavailableError } from './ledger.js';
import type {
  BootstrapToken,
  CertificateFilter,
  CertificateRecord,
  CertificateStatus,
  EventKind,
  Ledger,
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
import { parseLedgerUrl, type LedgerUrl } from './ledger-url.js';
import { MIGRATIONS, POSTGRES_SCHEMA_VERSION, type LedgerTable } from './postgres-schema.js';

const INT8_OID = 20;
/** int8 columns hold ms times and event ids, well inside 2^53: numbers, not strings. */
const LEDGER_TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** SQLSTATEs and socket errors that mean "the database cannot be reached", not "the query is wrong". */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOENT',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03',
  '3D000',
]);

/**
 * One line for a failure of the database (an error node-postgres threw), naming it by
 * `where` only. Errors of svcca's own code never come through here.
 */
export function ledgerDatabaseError(where: string, err: unknown): Error {
  if (err instanceof CaStateError) return err;
  const e = err as { code?: string; message?: string };
  const code = e.code ?? '';
  const message = (e.message ?? String(err)).split('\n')[0]!;
  if (code === '28P01' || code === '28000' || /password/i.test(message)) {
    return new CaStateError(
      `the ledger database ${where} refused the login: ${message}`,
      'set PGPASSWORD, or put the password in ~/.pgpass (or the file named by ?passfile=)',
      err,
    );
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_|ERR_TLS|ERR_SSL/.test(code) || /\bSSL\b/.test(message)) {
    return new CaStateError(
      `the ledger database ${where} failed the TLS check: ${message}`,
      "check sslmode and sslrootcert in the ledger URL (verify-full needs the CA that signed the server's certificate, and its name or IP in it)",
      err,
    );
  }
  if (UNREACHABLE_CODES.has(code) || code.startsWith('08') || /terminated|timeout|connect/i.test(message)) {
    return new LedgerUnavailableError(
      `the ledger database ${where} is unreachable: ${message}`,
      'check that PostgreSQL is running and reachable from this host, then run the command again (nothing was changed)',
      err,
    );
  }
  if (code === '40P01' || code === '40001') {
    return new LedgerUnavailableError(
      `the ledger database ${where} aborted this command's transaction (${message})`,
      'another svcca changed the same records at the same moment; run the command again (nothing was changed)',
      err,
    );
  }
  if (code)
    return new CaStateError(
      `the ledger database ${where} refused a change: ${message}`,
      'nothing was changed; see the PostgreSQL log for details',
      err,
    );
  return err as Error;
}

interface Shared {
  readonly pool: Pool;
  readonly url: LedgerUrl;
  readonly base: string;
  /** The schema check, done once per pool before the first query (again after a failure). */
  ready?: Promise<void>;
  /**
   * The connection of the transaction running in this async context: a call made on the
   * ledger itself (not `tx`) inside a transaction joins it, as on SQLite, instead of
   * taking another connection that would wait for this transaction's own locks.
   */
  readonly current: AsyncLocalStorage<PoolClient>;
}

/** The schema version recorded in the database, 0 when it holds no svcca ledger. */
async function schemaVersionOf(client: Pool | PoolClient): Promise<number> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('svcca_schema') AS t");
  if (exists.rows[0]?.t === null) return 0;
  const row = await client.query<{ version: number }>('SELECT version FROM svcca_schema');
  return row.rows[0]?.version ?? 0;
}

export class PostgresLedger implements Ledger {
  readonly location: string;
  private readonly shared: Shared;
  /** The CA directory on this host: set folders inside it are stored relative to it, as SQLite does. */
  private readonly base: string;
  /** Set on the view a transaction hands its callback: every query goes to this connection. */
  private readonly client: PoolClient | null;

  private constructor(shared: Shared, client: PoolClient | null) {
    this.shared = shared;
    this.client = client;
    this.location = shared.url.where;
    this.base = shared.base;
  }

  /**
   * A ledger on the database at `url` for the CA directory `base` (a pool: connections are
   * made on first use). Its
   * schema is checked before the first query; `create` (init) first brings an empty
   * database to the current schema and refuses one that already holds a CA's ledger.
   */
  static open(
    url: string,
    base: string,
    opts: { create?: boolean; env?: NodeJS.ProcessEnv; maxConnections?: number } = {},
  ): PostgresLedger {
    const parsed = parseLedgerUrl(url, opts.env ?? process.env, 'the ledger URL');
    const pool = new pg.Pool({ ...parsed.pool, max: opts.maxConnections ?? 4, connectionTimeoutMillis: 10_000, types: LEDGER_TYPES });
    // An idle connection dropped by a restarting server: the next query reports it.
    pool.on('error', () => undefined);
    // And every connection keeps a listener of its own for its whole life. pg parses a
    // read's messages in one go: a server shutting down can send a connection's FATAL in
    // the same read that hands it to a waiting transaction. pg-pool has then taken its idle
    // listener off, and the transaction's own is not on yet (it waits for a microtask), so
    // the 'error' event crashed `svcca serve` (seen in serve-replicas.test.ts under load:
    // 57P01 from ProcessInterrupts, uncaught). The query that uses the connection still
    // fails, and pg-pool drops a connection that is no longer queryable when it comes back.
    pool.on('connect', (client) => client.on('error', () => undefined));
    const ledger = new PostgresLedger({ pool, url: parsed, base, current: new AsyncLocalStorage() }, null);
    if (opts.create) ledger.shared.ready = ledger.prepareNew();
    return ledger;
  }

  /** Brings the schema to this svcca's version. Returns the versions before and after. */
  async migrate(): Promise<{ from: number; to: number }> {
    const versions = await this.inNewTransaction(async (client) => {
      try {
        // Two migrations (or inits) at once queue here rather than both creating tables.
        await client.query("SELECT pg_advisory_xact_lock(hashtextextended('svcca ledger migrate', 0))");
        const from = await schemaVersionOf(client);
        if (from > POSTGRES_SCHEMA_VERSION) throw this.newerSchema(from);
        for (let v = from; v < POSTGRES_SCHEMA_VERSION; v++) await client.query(MIGRATIONS[v]!);
        await client.query('UPDATE svcca_schema SET version = $1', [POSTGRES_SCHEMA_VERSION]);
        return { from, to: POSTGRES_SCHEMA_VERSION };
      } catch (err) {
        throw ledgerDatabaseError(this.location, err);
      }
    });
    this.shared.ready = Promise.resolve();
    return versions;
  }

  /** The schema version in the database (0: none), without refusing anything. */
  async schemaVersion(): Promise<number> {
    try {
      return await schemaVersionOf(this.shared.pool);
    } catch (err) {
      throw ledgerDatabaseError(this.location, err);
    }
  }

  private async prepareNew(): Promise<void> {
    await this.migrate();
    const used = await this.shared.pool
      .query<{ n: number }>('SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM crl_state) AS n')
      .catch((err: unknown) => {
        throw ledgerDatabaseError(this.location, err);
      });
    if (Number(used.rows[0]!.n) > 0) {
      throw new CaStateError(
        `the ledger database ${this.location} already holds a CA's ledger; init never touches an existing one`,
        'give each CA a database of its own (createdb), or point --dir at the CA that owns this one',
      );
    }
  }

  private newerSchema(version: number): CaStateError {
    return new CaStateError(
      `the ledger database ${this.location} has schema ${version}, newer than this svcca understands (${POSTGRES_SCHEMA_VERSION})`,
      'upgrade svcca on this host to the version that migrated it',
    );
  }

  private async checkSchema(): Promise<void> {
    const version = await this.schemaVersion();
    if (version === POSTGRES_SCHEMA_VERSION) return;
    if (version > POSTGRES_SCHEMA_VERSION) throw this.newerSchema(version);
    if (version === 0) {
      throw new CaStateError(
        `the ledger database ${this.location} holds no svcca ledger`,
        "check the ledger URL in the CA's config, or run `svcca ledger migrate` to create the schema there",
      );
    }
    throw new CaStateError(
      `the ledger database ${this.location} has schema ${version}, older than this svcca's ${POSTGRES_SCHEMA_VERSION}`,
      'back the database up, then run `svcca ledger migrate`',
    );
  }

  private ensureReady(): Promise<void> {
    if (!this.shared.ready) {
      const check = this.checkSchema();
      // A failed check (database down) is tried again next time rather than remembered.
      this.shared.ready = check.catch((err: unknown) => {
        this.shared.ready = undefined;
        throw err;
      });
    }
    return this.shared.ready;
  }

  private async connect(): Promise<PoolClient> {
    try {
      return await this.shared.pool.connect();
    } catch (err) {
      throw ledgerDatabaseError(this.location, err);
    }
  }

  /** This view's transaction, or the one running in this async context, if any. */
  private get txClient(): PoolClient | undefined {
    return this.client ?? this.shared.current.getStore();
  }

  private async q<R extends QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = this.txClient;
    if (!client) await this.ensureReady();
    try {
      return (await (client ?? this.shared.pool).query<R>(sql, params)).rows;
    } catch (err) {
      throw ledgerDatabaseError(this.location, err);
    }
  }

  private async changed(sql: string, params: unknown[]): Promise<number> {
    const client = this.txClient;
    if (!client) await this.ensureReady();
    try {
      return (await (client ?? this.shared.pool).query(sql, params)).rowCount ?? 0;
    } catch (err) {
      throw ledgerDatabaseError(this.location, err);
    }
  }

  private requireTransaction(what: string): void {
    if (!this.txClient) throw new Error(`${what} outside a ledger transaction`);
  }

  async transaction<T>(fn: (tx: Ledger) => Promise<T>): Promise<T> {
    // Nested (on `tx`, or on the ledger inside a transaction's callback): part of it.
    const running = this.txClient;
    if (running) return fn(this.client ? this : new PostgresLedger(this.shared, running));
    await this.ensureReady();
    // Errors of `fn` pass through as they are (RenewalOvertaken, UsageError, …): its
    // queries already turned database failures into one-line errors.
    return this.inNewTransaction((client) => this.shared.current.run(client, () => fn(new PostgresLedger(this.shared, client))));
  }

  /** BEGIN on a connection of the pool, `fn`, COMMIT; ROLLBACK when anything throws. */
  private async inNewTransaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect();
    let broken: Error | undefined;
    // A checked-out connection the server drops (restart, failover) emits 'error' on the
    // client, which would otherwise crash the process: the query under way fails anyway.
    const onError = (err: Error) => (broken = err);
    client.on('error', onError);
    const control = async (sql: string) => {
      try {
        await client.query(sql);
      } catch (err) {
        throw ledgerDatabaseError(this.location, err);
      }
    };
    try {
      await control('BEGIN ISOLATION LEVEL READ COMMITTED');
      const result = await fn(client);
      await control('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr as Error;
      }
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  async lockService(name: string, opts: { skipLocked?: boolean } = {}): Promise<boolean> {
    this.requireTransaction('lockService');
    const locked = await this.q(`SELECT name FROM services WHERE name = $1 FOR UPDATE${opts.skipLocked ? ' SKIP LOCKED' : ''}`, [name]);
    if (locked.length === 1) return true;
    if (opts.skipLocked) {
      // Nothing returned: locked by another transaction, or not recorded at all.
      return (await this.q('SELECT 1 FROM services WHERE name = $1', [name])).length === 0;
    }
    // Not recorded yet: the first issues of a name queue on an advisory lock on it, and
    // one that got it after another committed the row locks that row as well.
    await this.q('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`svcca service ${name}`]);
    await this.q('SELECT name FROM services WHERE name = $1 FOR UPDATE', [name]);
    return true;
  }

  async lockCrls(issuerKeyIds: readonly string[]): Promise<void> {
    this.requireTransaction('lockCrls');
    await this.q('SELECT issuer_key_id FROM crl_state WHERE issuer_key_id = ANY($1) ORDER BY issuer_key_id FOR UPDATE', [
      [...issuerKeyIds],
    ]);
  }

  async insertCertificate(r: CertificateRecord): Promise<void> {
    await this.q(
      `INSERT INTO certificates (serial, service, spiffe_id, issuer_key_id, dns_names, ips, ttl_ms, not_before, not_after,
         key_type, set_dir, status, from_csr, spki_sha256, cert_pem, issued_at, revoked_at, revocation_reason, owner_renews)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
      [
        r.serial,
        r.service,
        r.spiffeId,
        r.issuerKeyId,
        JSON.stringify(r.dnsNames),
        JSON.stringify(r.ips),
        r.ttlMs,
        r.notBefore,
        r.notAfter,
        r.keyType,
        storedSetDir(this.base, r.setDir),
        r.status,
        r.fromCsr,
        r.spkiSha256,
        r.certPem,
        r.issuedAt,
        r.revokedAt ?? null,
        r.revocationReason ?? null,
        r.ownerRenews === true,
      ],
    );
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const [row] = await this.q<CertRow>('SELECT * FROM certificates WHERE serial = $1', [serial]);
    return row ? rowToRecord(this.base, row) : undefined;
  }

  async listCertificates(filter: CertificateFilter = {}): Promise<CertificateRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (v: unknown) => `$${params.push(v)}`;
    if (filter.service !== undefined) where.push(`service = ${param(filter.service)}`);
    if (filter.statuses && filter.statuses.length > 0) where.push(`status = ANY(${param([...filter.statuses])})`);
    if (filter.notAfterBefore !== undefined) where.push(`not_after < ${param(filter.notAfterBefore)}`);
    if (filter.notAfterAfter !== undefined) where.push(`not_after > ${param(filter.notAfterAfter)}`);
    if (filter.issuerKeyId !== undefined) where.push(`issuer_key_id = ${param(filter.issuerKeyId)}`);
    const rows = await this.q<CertRow>(
      `SELECT * FROM certificates ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY service, issued_at`,
      params,
    );
    return rows.map((row) => rowToRecord(this.base, row));
  }

  async countCertificates(): Promise<number> {
    const [row] = await this.q<{ n: number }>('SELECT count(*) AS n FROM certificates');
    return row!.n;
  }

  async setStatus(serial: string, status: CertificateStatus): Promise<void> {
    await this.q('UPDATE certificates SET status = $1 WHERE serial = $2', [status, serial]);
  }

  async markRevoked(serial: string, reason: RevocationReason | undefined, at: number): Promise<void> {
    await this.q("UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 WHERE serial = $3", [
      at,
      reason ?? null,
      serial,
    ]);
  }

  async listRevokedForCrl(issuerKeyId: string): Promise<CertificateRecord[]> {
    const rows = await this.q<CertRow>(
      // Everything but the certificate PEM: a 100,000-entry CRL need not hold them all in memory.
      `SELECT serial, service, spiffe_id, issuer_key_id, dns_names, ips, ttl_ms, not_before, not_after, key_type, set_dir, status, from_csr,
              spki_sha256, '' AS cert_pem, issued_at, revoked_at, revocation_reason
         FROM certificates WHERE issuer_key_id = $1 AND status = 'revoked' AND NOT listed_after_expiry ORDER BY revoked_at, serial`,
      [issuerKeyId],
    );
    return rows.map((row) => rowToRecord(this.base, row));
  }

  async servicesWithSetDir(setDir: string): Promise<string[]> {
    const rows = await this.q<{ name: string }>(
      'SELECT DISTINCT s.name AS name FROM services s JOIN certificates c ON c.serial = s.active_serial WHERE c.set_dir = $1 OR c.set_dir = $2',
      [storedSetDir(this.base, setDir), setDir],
    );
    return rows.map((r) => r.name);
  }

  async getService(name: string): Promise<ServiceState | undefined> {
    const [row] = await this.q<{ name: string; active_serial: string | null; rotation_enabled: boolean }>(
      'SELECT name, active_serial, rotation_enabled FROM services WHERE name = $1',
      [name],
    );
    return row ? { name: row.name, activeSerial: row.active_serial, rotationEnabled: row.rotation_enabled } : undefined;
  }

  async setActive(name: string, serial: string): Promise<void> {
    await this.q(
      `INSERT INTO services (name, active_serial, rotation_enabled) VALUES ($1, $2, true)
       ON CONFLICT (name) DO UPDATE SET active_serial = excluded.active_serial, rotation_enabled = true`,
      [name, serial],
    );
  }

  async setRotation(name: string, enabled: boolean): Promise<void> {
    await this.q('UPDATE services SET rotation_enabled = $1 WHERE name = $2', [enabled, name]);
  }

  async listServices(): Promise<ServiceState[]> {
    const rows = await this.q<{ name: string; active_serial: string | null; rotation_enabled: boolean }>(
      'SELECT name, active_serial, rotation_enabled FROM services ORDER BY name',
    );
    return rows.map((r) => ({ name: r.name, activeSerial: r.active_serial, rotationEnabled: r.rotation_enabled }));
  }

  async claimService(name: string, owner: string, until: number, now: number): Promise<boolean> {
    const n = await this.changed(
      'UPDATE services SET claim_owner = $1, claim_until = $2 WHERE name = $3 AND (claim_owner IS NULL OR claim_until < $4 OR claim_owner = $1)',
      [owner, until, name, now],
    );
    return n === 1;
  }

  async releaseClaim(name: string, owner: string): Promise<void> {
    await this.q('UPDATE services SET claim_owner = NULL, claim_until = NULL WHERE name = $1 AND claim_owner = $2', [name, owner]);
  }

  async listClaims(): Promise<ServiceClaim[]> {
    const rows = await this.q<{ name: string; claim_owner: string; claim_until: number | null }>(
      'SELECT name, claim_owner, claim_until FROM services WHERE claim_owner IS NOT NULL ORDER BY name',
    );
    return rows.map((r) => ({ service: r.name, owner: r.claim_owner, until: r.claim_until ?? 0 }));
  }

  async getClaim(name: string): Promise<ServiceClaim | undefined> {
    const [row] = await this.q<{ claim_owner: string; claim_until: number | null }>(
      'SELECT claim_owner, claim_until FROM services WHERE name = $1 AND claim_owner IS NOT NULL',
      [name],
    );
    return row ? { service: name, owner: row.claim_owner, until: row.claim_until ?? 0 } : undefined;
  }

  async listRotationCandidates(): Promise<RotationCandidate[]> {
    const rows = await this.q<{
      service: string;
      serial: string;
      not_before: number;
      not_after: number;
      from_csr: boolean;
      issuer_key_id: string;
      owner_renews: boolean;
    }>(
      `SELECT c.service, c.serial, c.not_before, c.not_after, c.from_csr, c.issuer_key_id, c.owner_renews
         FROM services s JOIN certificates c ON c.serial = s.active_serial
        WHERE s.rotation_enabled AND c.status = 'active'
        ORDER BY c.service`,
    );
    return rows.map((r) => ({
      service: r.service,
      serial: r.serial,
      notBefore: r.not_before,
      notAfter: r.not_after,
      fromCsr: r.from_csr,
      issuerKeyId: r.issuer_key_id,
      ownerRenews: r.owner_renews,
    }));
  }

  async latestNotAfter(issuerKeyId: string): Promise<number> {
    const [row] = await this.q<{ n: number | null }>('SELECT max(not_after) AS n FROM certificates WHERE issuer_key_id = $1', [
      issuerKeyId,
    ]);
    return row?.n ?? 0;
  }

  async hasEvent(kind: EventKind, serial: string): Promise<boolean> {
    return (await this.q('SELECT 1 FROM events WHERE kind = $1 AND serial = $2 LIMIT 1', [kind, serial])).length > 0;
  }

  async isKeyCompromised(spkiSha256: string): Promise<boolean> {
    return (await this.q('SELECT 1 FROM compromised_keys WHERE spki_sha256 = $1', [spkiSha256])).length > 0;
  }

  async markKeyCompromised(spkiSha256: string, at: number): Promise<void> {
    await this.q('INSERT INTO compromised_keys (spki_sha256, at) VALUES ($1, $2) ON CONFLICT (spki_sha256) DO NOTHING', [spkiSha256, at]);
  }

  async nextCrlNumber(issuerKeyId: string, atLeast = 1n): Promise<bigint> {
    // One statement takes, stores and row-locks the number: a concurrent publisher of this
    // issuer waits here until we commit, then gets the next one and sees our revocations.
    const [row] = await this.q<{ number: string }>(
      `INSERT INTO crl_state (issuer_key_id, next_number) VALUES ($1, GREATEST($2::numeric, 1) + 1)
       ON CONFLICT (issuer_key_id) DO UPDATE SET next_number = GREATEST(crl_state.next_number, $2::numeric) + 1
       RETURNING next_number - 1 AS number`,
      [issuerKeyId, atLeast.toString()],
    );
    return BigInt(row!.number);
  }

  async currentCrlNumber(issuerKeyId: string): Promise<bigint> {
    const [row] = await this.q<{ next_number: string }>('SELECT next_number FROM crl_state WHERE issuer_key_id = $1', [issuerKeyId]);
    return row ? BigInt(row.next_number) - 1n : 0n;
  }

  async lastRevocationAt(issuerKeyId: string): Promise<number> {
    const [row] = await this.q<{ at: number | null }>(
      "SELECT max(revoked_at) AS at FROM certificates WHERE issuer_key_id = $1 AND status = 'revoked'",
      [issuerKeyId],
    );
    return row?.at ?? 0;
  }

  async recordCrlPublished(issuerKeyId: string, number: bigint, at: number, pem?: string): Promise<void> {
    await this.q(
      "UPDATE certificates SET listed_after_expiry = true WHERE issuer_key_id = $1 AND status = 'revoked' AND not_after < $2 AND NOT listed_after_expiry",
      [issuerKeyId, at],
    );
    await this.q(
      `INSERT INTO crl_state (issuer_key_id, next_number, published_number, published_at, published_pem) VALUES ($1, $2::numeric + 1, $2::numeric, $3, $4)
       ON CONFLICT (issuer_key_id) DO UPDATE SET published_number = excluded.published_number, published_at = excluded.published_at,
         published_pem = excluded.published_pem`,
      [issuerKeyId, number.toString(), at, pem ?? null],
    );
  }

  async lastPublishedCrl(issuerKeyId: string): Promise<{ number: bigint; at: number } | undefined> {
    const [row] = await this.q<{ published_number: string | null; published_at: number | null }>(
      'SELECT published_number, published_at FROM crl_state WHERE issuer_key_id = $1',
      [issuerKeyId],
    );
    if (!row || row.published_number === null || row.published_at === null) return undefined;
    return { number: BigInt(row.published_number), at: row.published_at };
  }

  async publishedCrlNumbers(): Promise<Map<string, bigint>> {
    const rows = await this.q<{ issuer_key_id: string; published_number: string }>(
      'SELECT issuer_key_id, published_number FROM crl_state WHERE published_number IS NOT NULL',
    );
    return new Map(rows.map((r) => [r.issuer_key_id, BigInt(r.published_number)]));
  }

  async publishedCrl(issuerKeyId: string): Promise<{ number: bigint; pem: string } | undefined> {
    const [row] = await this.q<{ published_number: string | null; published_pem: string | null }>(
      'SELECT published_number, published_pem FROM crl_state WHERE issuer_key_id = $1',
      [issuerKeyId],
    );
    if (!row || row.published_number === null || row.published_pem === null) return undefined;
    return { number: BigInt(row.published_number), pem: row.published_pem };
  }

  async insertToken(t: BootstrapToken): Promise<void> {
    await this.q(
      `INSERT INTO bootstrap_tokens (${TOKEN_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      tokenToRowValues(t),
    );
  }

  async getToken(secretSha256: string): Promise<BootstrapToken | undefined> {
    const [row] = await this.q<TokenRow>('SELECT * FROM bootstrap_tokens WHERE secret_sha256 = $1', [secretSha256]);
    return row ? rowToToken(row) : undefined;
  }

  async useToken(secretSha256: string, at: number): Promise<boolean> {
    // One UPDATE: two replicas presenting the same token at once both try it; the second
    // waits for the first's row lock, re-reads used_at and changes nothing.
    const n = await this.changed(
      'UPDATE bootstrap_tokens SET used_at = $1 WHERE secret_sha256 = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1',
      [at, secretSha256],
    );
    return n === 1;
  }

  async revokeTokens(service: string, at: number): Promise<number> {
    return this.changed('UPDATE bootstrap_tokens SET revoked_at = $1 WHERE service = $2 AND used_at IS NULL AND revoked_at IS NULL', [
      at,
      service,
    ]);
  }

  async appendEvent(e: LedgerEvent): Promise<void> {
    await this.q(`INSERT INTO events (${EVENT_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)`, eventToRowValues(e));
  }

  async listEvents(limit = 100): Promise<StoredEvent[]> {
    return this.q<StoredEvent & QueryResultRow>('SELECT id, at, kind, service, serial, actor, why FROM events ORDER BY id DESC LIMIT $1', [
      limit,
    ]);
  }

  /** Every row of one of LEDGER_TABLES in key order (bytewise, as SQLite sorts), for `ledger copy`. */
  async rawRows(table: LedgerTable): Promise<Record<string, unknown>[]> {
    const order = table.key === 'id' ? 'id' : `${table.key} COLLATE "C"`;
    return this.q(`SELECT ${table.columns.join(', ')} FROM ${table.name} ORDER BY ${order}`);
  }

  /** Inserts rows as `rawRows` returns them (from either back end), in batches. Only inside `transaction`. */
  async insertRawRows(table: LedgerTable, rows: readonly Record<string, unknown>[]): Promise<void> {
    this.requireTransaction('insertRawRows');
    const perBatch = Math.floor(30_000 / table.columns.length);
    for (let i = 0; i < rows.length; i += perBatch) {
      const batch = rows.slice(i, i + perBatch);
      const params: unknown[] = [];
      const values = batch.map(
        (row) =>
          `(${table.columns
            .map((c) => {
              const v = row[c] ?? null;
              params.push(table.booleans.includes(c) && v !== null ? v === true || v === 1 : v);
              return `$${params.length}`;
            })
            .join(', ')})`,
      );
      await this.q(`INSERT INTO ${table.name} (${table.columns.join(', ')}) VALUES ${values.join(', ')}`, params);
    }
    if (table.name === 'events') {
      // Ids were copied as they were: new events continue after the highest.
      await this.q(
        "SELECT setval(pg_get_serial_sequence('events', 'id'), GREATEST((SELECT max(id) FROM events), 1), (SELECT count(*) > 0 FROM events))",
      );
    }
  }

  async close(): Promise<void> {
    if (this.client) return;
    await this.shared.pool.end();
  }
}

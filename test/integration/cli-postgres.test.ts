/**
 * The CLI with its ledger in a real PostgreSQL server (one per file, started here):
 * `init --ledger`, two CA hosts (copies of one CA directory) running 20 issue, revoke and
 * rotate commands at once on one database, the database stopped and restarted, the
 * schema version refusals and `ledger migrate`, and `ledger copy` of a 10,000-record
 * SQLite ledger.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { cpSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cleanEnv, makeCa, runSvcca, spawnSvcca, tempDir, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { PG_PASSWORD, startPostgres, type PgServer } from '../helpers/postgres.js';
import { openCaDir } from '../../cli/store/ca-dir.js';
import { loadAuthority } from '../../cli/ca/authority.js';
import { issueAndRecord, RenewalOvertaken, writeIssuedSet } from '../../cli/ca/issuance.js';
import { PostgresLedger } from '../../cli/store/postgres-ledger.js';
import { MIGRATIONS, POSTGRES_SCHEMA_VERSION } from '../../cli/store/postgres-schema.js';
import { SCHEMA_VERSION as SQLITE_SCHEMA_VERSION } from '../../cli/store/sqlite-ledger.js';
import { allCrlSerials, crlText, isOneLineError, readCrlFile, readSet } from './cli-rotate-helpers.js';

let pg: PgServer;
/** The CA that signed the server's TLS certificate (for 127.0.0.1), made by svcca itself. */
let dbTlsCa: TestCa;
before(async () => {
  dbTlsCa = makeCa({ trustDomain: 'db.example' });
  const set = dbTlsCa.issue('postgres', ['--ip', '127.0.0.1']);
  pg = await startPostgres({
    tls: { certPem: readFileSync(join(set, 'tls.crt'), 'utf8'), keyPem: readFileSync(join(set, 'tls.key'), 'utf8') },
  });
});
after(async () => {
  await pg?.destroy();
  dbTlsCa?.cleanup();
});

/** The same CA on another host: its directory copied, the same database. */
function secondHost(ca: TestCa): TestCa {
  const root = tempDir();
  const dir = join(root, 'ca');
  cpSync(ca.dir, dir, { recursive: true });
  const svcca = (args: readonly string[], env: Record<string, string | undefined> = {}) =>
    runSvcca([...args, '--dir', dir], { env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...pg.env, ...env }) });
  return { ...ca, root, dir, svcca };
}

async function runAll(commands: { ca: TestCa; args: string[] }[]): Promise<{ args: string[]; status: number | null; stderr: string }[]> {
  return Promise.all(
    commands.map(async ({ ca, args }) => {
      const child = spawnSvcca([...args, '--dir', ca.dir], cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...pg.env }));
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.resume();
      const [status] = (await once(child, 'exit')) as [number | null];
      return { args, status, stderr };
    }),
  );
}

async function query<T>(database: string, sql: string): Promise<T[]> {
  const c = await pg.client(database);
  try {
    return (await c.query(sql)).rows as T[];
  } finally {
    await c.end();
  }
}

describe('svcca init --ledger', () => {
  it('keeps the URL (and no password) in the config, and makes no ledger.db', async () => {
    const url = await pg.createDatabase('init_ok');
    const ca = makeCa({ ledger: url, env: pg.env });
    try {
      const config = JSON.parse(readFileSync(join(ca.dir, 'config'), 'utf8')) as { ledger?: string };
      assert.equal(config.ledger, url);
      assert.ok(!readFileSync(join(ca.dir, 'config'), 'utf8').includes(PG_PASSWORD));
      assert.equal(existsSync(join(ca.dir, 'ledger.db')), false);
      const events = await query<{ kind: string }>('init_ok', 'SELECT kind FROM events');
      assert.deepEqual(
        events.map((e) => e.kind),
        ['init'],
      );
    } finally {
      ca.cleanup();
    }
  });

  it('takes SVCCA_LEDGER, and refuses a database that already holds a CA (nothing written)', async () => {
    const url = await pg.createDatabase('init_env');
    const root = tempDir();
    const first = runSvcca(['init', '--trust-domain', 'example.org', '--dir', join(root, 'a')], {
      env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, SVCCA_LEDGER: url, ...pg.env }),
    });
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /ledger\s+postgres:\/\//);
    const second = runSvcca(['init', '--trust-domain', 'example.org', '--dir', join(root, 'b'), '--ledger', url], {
      env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...pg.env }),
    });
    assert.ok(isOneLineError(second), second.stderr);
    assert.match(second.stderr, /already holds a CA's ledger/);
    assert.deepEqual(readdirSync(join(root, 'b')), [], 'the second CA directory is left empty');
  });

  it('refuses a URL with a password, or without a user, before writing anything', () => {
    const root = tempDir();
    for (const [url, why] of [
      [`postgres://svcca:${PG_PASSWORD}@127.0.0.1:${pg.port}/x`, /carries a password/],
      [`postgres://svcca@127.0.0.1:${pg.port}/x?password=${PG_PASSWORD}`, /carries a password/],
      ['mysql://svcca@127.0.0.1/x', /must be a postgres:\/\/ URL/],
    ] as const) {
      const res = runSvcca(['init', '--trust-domain', 'example.org', '--dir', join(root, 'ca'), '--ledger', url]);
      assert.ok(isOneLineError(res), res.stderr);
      assert.match(res.stderr, why);
      assert.ok(!res.stderr.includes(PG_PASSWORD), 'the password is never echoed');
      assert.equal(existsSync(join(root, 'ca', 'config')), false);
    }
  });

  it("sslmode has libpq's meaning: verify-full checks the server against sslrootcert", async () => {
    const url = await pg.createDatabase('init_tls');
    const root = tempDir();
    const init = (dir: string, query: string) =>
      runSvcca(['init', '--trust-domain', 'example.org', '--dir', join(root, dir), '--ledger', `${url}?${query}`], {
        env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...pg.env }),
      });
    const otherCa = makeCa({ trustDomain: 'other.example' });
    try {
      const wrong = init('wrong', `sslmode=verify-full&sslrootcert=${join(otherCa.dir, 'ca.crt')}`);
      assert.ok(isOneLineError(wrong), wrong.stderr);
      assert.match(wrong.stderr, /init_tls failed the TLS check/);
      assert.equal(existsSync(join(root, 'wrong', 'config')), false);
      const good = init('good', `sslmode=verify-full&sslrootcert=${join(dbTlsCa.dir, 'ca.crt')}`);
      assert.equal(good.status, 0, good.stderr);
      const config = JSON.parse(readFileSync(join(root, 'good', 'config'), 'utf8')) as { ledger: string };
      assert.match(config.ledger, /sslmode=verify-full/, 'later commands connect the same way');
      const listed = runSvcca(['list', '--dir', join(root, 'good')], { env: cleanEnv({ ...pg.env }) });
      assert.equal(listed.status, 0, listed.stderr);
    } finally {
      otherCa.cleanup();
    }
  });

  it("finds the password in the URL's passfile, as libpq does", async () => {
    const url = await pg.createDatabase('init_passfile');
    const root = tempDir();
    const passfile = join(root, 'pgpass');
    writeFileSync(passfile, `127.0.0.1:${pg.port}:init_passfile:svcca:${PG_PASSWORD}\n`, { mode: 0o600 });
    const res = runSvcca(['init', '--trust-domain', 'example.org', '--dir', join(root, 'ca'), '--ledger', `${url}?passfile=${passfile}`], {
      env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, PGPASSWORD: undefined, PGPASSFILE: undefined }),
    });
    assert.equal(res.status, 0, res.stderr);
  });

  it('a wrong password is one line naming the database, never the password', async () => {
    const url = await pg.createDatabase('init_badpw');
    const root = tempDir();
    const res = runSvcca(['init', '--trust-domain', 'example.org', '--dir', join(root, 'ca'), '--ledger', url], {
      env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, PGPASSWORD: 'wrong-one' }),
    });
    assert.ok(isOneLineError(res), res.stderr);
    assert.match(res.stderr, new RegExp(`svcca@127\\.0\\.0\\.1:${pg.port}/init_badpw refused the login`));
    assert.ok(!res.stderr.includes('wrong-one'));
    assert.equal(existsSync(join(root, 'ca', 'config')), false, 'no CA was made');
  });
});

describe('two CA hosts on one PostgreSQL ledger', () => {
  let hostA: TestCa;
  let hostB: TestCa;
  const database = 'two_hosts';
  const first = ['s0', 's1', 's2', 's3', 's4', 's5'];
  before(async () => {
    hostA = makeCa({ ledger: await pg.createDatabase(database), env: pg.env });
    hostB = secondHost(hostA);
    const issued = await runAll(first.map((s, i) => ({ ca: i % 2 ? hostB : hostA, args: ['issue', s] })));
    for (const r of issued) assert.equal(r.status, 0, r.stderr);
  });
  after(() => {
    hostA?.cleanup();
    hostB?.cleanup();
  });

  it('20 issue, revoke and rotate commands at once keep every guarantee', { timeout: 120_000 }, async () => {
    const revoked = ['s2', 's3', 's4', 's5'];
    const commands = [
      ...['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 's0', 's1'].map((s, i) => ({ ca: i % 2 ? hostB : hostA, args: ['issue', s] })),
      ...revoked.map((s, i) => ({ ca: i % 2 ? hostA : hostB, args: ['revoke', s, '--reason', 'keyCompromise'] })),
      // Every service is due: these race the issues and the revokes above for the same services.
      ...Array.from({ length: 8 }, (_, i) => ({ ca: i % 2 ? hostB : hostA, args: ['rotate', '--renew-before', '100%'] })),
    ];
    assert.equal(commands.length, 20);
    const results = await runAll(commands);
    for (const r of results) assert.equal(r.status, 0, `svcca ${r.args.join(' ')}: ${r.stderr}`);

    const certs = await query<{ serial: string; service: string; status: string; cert_pem: string; set_dir: string }>(
      database,
      'SELECT serial, service, status, cert_pem, set_dir FROM certificates',
    );
    const services = await query<{ name: string; active_serial: string | null; rotation_enabled: boolean; claim_owner: string | null }>(
      database,
      'SELECT * FROM services',
    );
    // Serials: unique, and each record's certificate carries its own.
    assert.equal(new Set(certs.map((c) => c.serial)).size, certs.length);
    for (const c of certs)
      assert.equal(new X509Certificate(c.cert_pem).serialNumber.toLowerCase().replace(/^0+/, ''), c.serial, 'a whole record');
    for (const svc of services) {
      const active = certs.filter((c) => c.service === svc.name && c.status === 'active');
      assert.ok(active.length <= 1, `${svc.name}: ${active.length} active certificates`);
      assert.equal(svc.claim_owner, null, `${svc.name}: no claim left behind`);
      if (revoked.includes(svc.name)) {
        // A renewal racing the revoke never leaves a certificate that is not revoked.
        assert.deepEqual(
          certs.filter((c) => c.service === svc.name && c.status !== 'revoked').map((c) => c.serial),
          [],
          `${svc.name}: every certificate revoked`,
        );
        assert.equal(svc.rotation_enabled, false);
      } else {
        assert.equal(active.length, 1, `${svc.name} has its active certificate`);
        assert.equal(svc.active_serial, active[0]!.serial);
        // The host that recorded the active certificate wrote its set.
        const onDisk = [hostA, hostB].map((h) =>
          existsSync(join(h.dir, 'issued', svc.name)) ? readSet(join(h.dir, 'issued', svc.name)).serial : undefined,
        );
        assert.ok(
          onDisk.includes(svc.active_serial!),
          `${svc.name}: a host holds the active certificate's set (${onDisk.join(', ')} vs ${svc.active_serial})`,
        );
      }
    }
    // CRL numbers strictly increase in the order they were taken (the event is appended
    // under the same lock), and the newest CRL either host holds lists every revocation.
    const crlEvents = await query<{ why: string }>(database, "SELECT why FROM events WHERE kind = 'crl' ORDER BY id");
    const numbers = crlEvents.map((e) => Number(/#(\d+)/.exec(e.why)![1]));
    for (let i = 1; i < numbers.length; i++) assert.ok(numbers[i]! > numbers[i - 1]!, `CRL numbers in order: ${numbers.join(', ')}`);
    const newest = [hostA, hostB]
      .map((h) => ({ h, number: Math.max(...readCrlFile(h).crls.map((pem, i) => Number(crlText(h, pem, `n-${i}.crl`).number ?? 0))) }))
      .sort((x, y) => y.number - x.number)[0]!;
    assert.equal(newest.number, Math.max(...numbers), 'the newest CRL taken was written by its host');
    const listed = allCrlSerials(newest.h);
    for (const c of certs.filter((c) => c.status === 'revoked'))
      assert.ok(listed.has(c.serial), `${c.serial} (${c.service}) is in the newest crl.pem`);
    // The event log is append-only for svcca's own connection too.
    await assert.rejects(query(database, "DELETE FROM events WHERE kind = 'crl'"), /append-only/);
  });
});

/** Resolves once some backend of `database` waits for a lock: the other side is queued. */
async function someoneWaitsForALock(database: string): Promise<void> {
  for (;;) {
    const rows = await query<{ n: string }>(
      database,
      `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '${database}' AND wait_event_type = 'Lock'`,
    );
    if (Number(rows[0]!.n) > 0) return;
    await new Promise((r) => setImmediate(r));
  }
}

describe('a renewal racing a revoke never leaves a usable certificate', () => {
  const database = 'renew_revoke';
  let ca: TestCa;
  let ledger: PostgresLedger;
  before(async () => {
    ca = makeCa({ ledger: await pg.createDatabase(database), env: pg.env });
    ca.issue('raced');
    ca.issue('raced-too');
    const { dir, config } = openCaDir(ca.dir);
    ledger = PostgresLedger.open(config.ledger!, dir.path, { env: pg.env });
  });
  after(async () => {
    await ledger?.close();
    ca?.cleanup();
  });

  it('a renewal (issuance code) that starts while a revoke holds the service is refused once it commits', async () => {
    const { dir, config } = openCaDir(ca.dir);
    const authority = loadAuthority(dir, config, TEST_PASSPHRASE);
    const planned = (await ledger.getService('raced'))!.activeSerial!;
    let commit!: () => void;
    const held = new Promise<void>((r) => (commit = r));
    let revoking!: () => void;
    const revokedUncommitted = new Promise<void>((r) => (revoking = r));
    // What `svcca revoke raced` does in its transaction, held open before the commit.
    const revoke = ledger.transaction(async (tx) => {
      await tx.lockService('raced');
      await tx.markRevoked(planned, 'keyCompromise', Date.now());
      await tx.setRotation('raced', false);
      revoking();
      await held;
    });
    await revokedUncommitted;
    const renewal = issueAndRecord(authority, ledger, {
      service: 'raced',
      ttlMs: 3_600_000,
      dnsNames: [],
      ips: [],
      setDir: join(ca.root, 'sets', 'raced'),
      kind: 'renew',
      actor: 'test@host',
      why: 'race',
      renewsSerial: planned,
    });
    const outcome = renewal.then(
      () => 'renewed',
      (err: unknown) => (err instanceof RenewalOvertaken ? 'overtaken' : `failed: ${(err as Error).message}`),
    );
    await someoneWaitsForALock(database);
    commit();
    await revoke;
    assert.equal(await outcome, 'overtaken');
    const certs = await ledger.listCertificates({ service: 'raced' });
    assert.deepEqual(
      certs.map((c) => c.status),
      ['revoked'],
      'no new certificate, and the revoked one stays revoked',
    );
  });

  it('`svcca revoke` that starts while a renewal holds the service revokes the renewed certificate too', { timeout: 60_000 }, async () => {
    const old = (await ledger.getCertificate((await ledger.getService('raced-too'))!.activeSerial!))!;
    let commit!: () => void;
    const held = new Promise<void>((r) => (commit = r));
    let recorded!: () => void;
    const renewedUncommitted = new Promise<void>((r) => (recorded = r));
    const fresh = { ...old, serial: `${old.serial.slice(0, -4)}beef`, issuedAt: Date.now(), spkiSha256: 'renewed-key' };
    // What a renewal does in its transaction, held open before the commit.
    const renewal = ledger.transaction(async (tx) => {
      await tx.lockService('raced-too');
      await tx.setStatus(old.serial, 'superseded');
      await tx.insertCertificate(fresh);
      await tx.setActive('raced-too', fresh.serial);
      recorded();
      await held;
    });
    await renewedUncommitted;
    const child = spawnSvcca(['revoke', 'raced-too', '--dir', ca.dir], cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...pg.env }));
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exited = once(child, 'exit');
    await someoneWaitsForALock(database);
    commit();
    await renewal;
    const [status] = (await exited) as [number];
    assert.equal(status, 0, stderr);
    const certs = await ledger.listCertificates({ service: 'raced-too' });
    assert.deepEqual(
      certs.map((c) => [c.serial, c.status]).sort(),
      [
        [fresh.serial, 'revoked'],
        [old.serial, 'revoked'],
      ].sort(),
    );
  });
});

describe('the database stopped and started again', () => {
  let ca: TestCa;
  before(async () => {
    ca = makeCa({ ledger: await pg.createDatabase('restart'), env: pg.env });
    ca.issue('steady');
  });
  after(() => ca?.cleanup());

  it('commands fail with one line naming the database and change nothing, then work again', { timeout: 60_000 }, async () => {
    const crlBefore = readFileSync(join(ca.dir, 'crl.pem'), 'utf8');
    await pg.stop();
    try {
      for (const args of [
        ['issue', 'newcomer'],
        ['revoke', 'steady'],
        ['rotate', '--renew-before', '100%'],
      ]) {
        const res = ca.svcca(args);
        assert.ok(isOneLineError(res), `${args[0]}: ${res.stderr}`);
        assert.match(res.stderr, new RegExp(`the ledger database svcca@127\\.0\\.0\\.1:${pg.port}/restart is unreachable`));
        assert.ok(!res.stderr.includes(PG_PASSWORD));
      }
      assert.equal(existsSync(join(ca.dir, 'issued', 'newcomer')), false, 'no set was written');
      assert.equal(readFileSync(join(ca.dir, 'crl.pem'), 'utf8'), crlBefore, 'crl.pem is unchanged');
    } finally {
      await pg.start();
    }
    const issued = ca.svcca(['issue', 'newcomer']);
    assert.equal(issued.status, 0, issued.stderr);
    const revoked = ca.svcca(['revoke', 'steady']);
    assert.equal(revoked.status, 0, revoked.stderr);
    const listed = ca.svcca(['list', '--all', '--json']);
    assert.deepEqual((JSON.parse(listed.stdout) as { service: string; status: string }[]).map((r) => [r.service, r.status]).sort(), [
      ['newcomer', 'active'],
      ['steady', 'revoked'],
    ]);
  });
});

describe('the database stopped in the middle of a rotate', () => {
  const database = 'stopped_mid_rotate';
  const SERVICES = 100;
  let ca: TestCa;
  before(async () => {
    ca = makeCa({ ledger: await pg.createDatabase(database), env: pg.env });
    // Seeded in this process through the CLI's own modules: 100 `svcca issue` would take a minute.
    const { dir, config } = openCaDir(ca.dir);
    const authority = loadAuthority(dir, config, TEST_PASSPHRASE);
    const ledger = PostgresLedger.open(config.ledger!, dir.path, { env: pg.env });
    try {
      for (let i = 0; i < SERVICES; i++) {
        const service = `load-${i}`;
        const issued = await issueAndRecord(authority, ledger, {
          service,
          ttlMs: 3_600_000,
          dnsNames: [],
          ips: [],
          setDir: dir.issuedSetDir(service),
          kind: 'issue',
          actor: 'test@host',
          why: 'seed',
        });
        writeIssuedSet(authority, issued.record, issued.key);
      }
    } finally {
      await ledger.close();
    }
  });
  after(() => ca?.cleanup());

  it('the run fails naming the database, and the next run after the restart leaves every set matching the ledger', {
    timeout: 120_000,
  }, async () => {
    const child = spawnSvcca(
      ['rotate', '--renew-before', '100%', '--dir', ca.dir],
      cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE, ...pg.env }),
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exited = once(child, 'exit');
    // Stopped once the run is well under way (renewals committed), not before.
    for (;;) {
      const [row] = await query<{ n: string }>(database, "SELECT count(*) AS n FROM events WHERE kind = 'renew'");
      if (Number(row!.n) >= 10) break;
      await new Promise((r) => setImmediate(r));
    }
    await pg.stop();
    const [status] = (await exited) as [number];
    await pg.start();
    assert.notEqual(status, 0, 'the interrupted run does not claim success');
    assert.match(stderr, new RegExp(`the ledger database svcca@127\\.0\\.0\\.1:${pg.port}/${database} is unreachable`));
    assert.doesNotMatch(stderr, /\n\s+at .*:\d+:\d+/, 'no stack trace');

    const again = ca.svcca(['rotate']);
    assert.ok(again.status === 0, again.stderr);
    const services = await query<{ name: string; active_serial: string; claim_owner: string | null }>(
      database,
      'SELECT name, active_serial, claim_owner FROM services',
    );
    assert.equal(services.length, SERVICES);
    for (const svc of services) {
      assert.equal(svc.claim_owner, null, `${svc.name}: no claim left`);
      assert.equal(
        readSet(join(ca.dir, 'issued', svc.name)).serial,
        svc.active_serial,
        `${svc.name}: its set holds the active certificate`,
      );
    }
    const active = await query<{ n: string }>(database, "SELECT count(*) AS n FROM certificates WHERE status = 'active'");
    assert.equal(Number(active[0]!.n), SERVICES, 'one active certificate per service');
  });
});

describe('the schema version', () => {
  let ca: TestCa;
  before(async () => {
    ca = makeCa({ ledger: await pg.createDatabase('schema'), env: pg.env });
  });
  after(() => ca?.cleanup());

  it('a newer schema is refused by every command, migrate included', async () => {
    await query('schema', 'UPDATE svcca_schema SET version = 99');
    for (const args of [
      ['issue', 'x'],
      ['ledger', 'migrate'],
    ]) {
      const res = ca.svcca(args);
      assert.ok(isOneLineError(res), res.stderr);
      assert.match(
        res.stderr,
        new RegExp(`has schema 99, newer than this svcca understands \\(${POSTGRES_SCHEMA_VERSION}\\); upgrade svcca`),
      );
    }
    await query('schema', `UPDATE svcca_schema SET version = ${POSTGRES_SCHEMA_VERSION}`);
    const migrated = ca.svcca(['ledger', 'migrate']);
    assert.equal(migrated.status, 0, migrated.stderr);
    assert.match(migrated.stdout, new RegExp(`is at schema ${POSTGRES_SCHEMA_VERSION} already`));
  });

  it('an older schema is refused, naming `svcca ledger migrate`, which brings it forward', async () => {
    const older = POSTGRES_SCHEMA_VERSION - 1;
    const url = await pg.createDatabase('schema_old');
    for (const sql of MIGRATIONS.slice(0, older)) await query('schema_old', sql);
    if (older > 0) await query('schema_old', `UPDATE svcca_schema SET version = ${older}`);
    const config = JSON.parse(readFileSync(join(ca.dir, 'config'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(ca.dir, 'config'), JSON.stringify({ ...config, ledger: url }), { mode: 0o600 });
    const refused = ca.svcca(['list']);
    assert.ok(isOneLineError(refused), refused.stderr);
    assert.match(refused.stderr, /run `svcca ledger migrate`/);
    const migrated = ca.svcca(['ledger', 'migrate']);
    assert.equal(migrated.status, 0, migrated.stderr);
    assert.match(
      migrated.stdout,
      new RegExp(`Migrated ledger svcca@127\\.0\\.0\\.1:${pg.port}/schema_old from schema ${older} to ${POSTGRES_SCHEMA_VERSION}`),
    );
    assert.equal(ca.svcca(['list']).status, 0);
  });
});

describe('a role limited to the grants docs/postgresql.md lists', () => {
  let ca: TestCa;
  const database = 'least_privilege';
  before(async () => {
    ca = makeCa({ ledger: await pg.createDatabase(database), env: pg.env });
  });
  after(() => ca?.cleanup());

  it('runs issue and revoke, and can neither change the event log nor drop its triggers', async () => {
    const docs = readFileSync(new URL('../../../docs/postgresql.md', import.meta.url), 'utf8');
    const grants = /psql -d svcca_prod -c "([^"]+)"/.exec(docs)![1]!.replaceAll('TO svcca', 'TO limited');
    await query(database, "CREATE ROLE limited LOGIN PASSWORD 'limited-pw'");
    await query(database, grants);
    const config = JSON.parse(readFileSync(join(ca.dir, 'config'), 'utf8')) as { ledger: string };
    writeFileSync(join(ca.dir, 'config'), JSON.stringify({ ...config, ledger: config.ledger.replace('svcca@', 'limited@') }), {
      mode: 0o600,
    });
    for (const args of [
      ['issue', 'least'],
      ['revoke', 'least'],
    ]) {
      const res = ca.svcca(args, { PGPASSWORD: 'limited-pw' });
      assert.equal(res.status, 0, `${args.join(' ')}: ${res.stderr}`);
    }
    const c = new (await import('pg')).default.Client({
      host: '127.0.0.1',
      port: pg.port,
      user: 'limited',
      password: 'limited-pw',
      database,
    });
    await c.connect();
    try {
      for (const sql of [
        'DELETE FROM events',
        "UPDATE events SET why = 'x'",
        'DROP TRIGGER events_no_update_delete ON events',
        'ALTER TABLE events DISABLE TRIGGER ALL',
      ]) {
        await assert.rejects(c.query(sql), /permission denied|must be owner/, sql);
      }
    } finally {
      await c.end();
    }
  });
});

describe('svcca ledger copy', () => {
  const RECORDS = 10_000;
  let ca: TestCa;
  before(() => {
    ca = makeCa();
    ca.issue('real-one');
    // Seeded straight into ledger.db: 10,000 records through `issue` would take minutes.
    const db = new Database(join(ca.dir, 'ledger.db'));
    const template = db.prepare("SELECT * FROM certificates WHERE service = 'real-one'").get() as Record<string, unknown>;
    const insert = db.prepare(
      `INSERT INTO certificates (${Object.keys(template).join(', ')}) VALUES (${Object.keys(template)
        .map((k) => `@${k}`)
        .join(', ')})`,
    );
    const service = db.prepare('INSERT INTO services (name, active_serial, rotation_enabled) VALUES (?, ?, ?)');
    const event = db.prepare("INSERT INTO events (at, kind, service, serial, actor, why) VALUES (?, 'issue', ?, ?, 'seed@host', 'seeded')");
    db.transaction(() => {
      for (let i = 1; i < RECORDS; i++) {
        const serial = (0x100000 + i).toString(16);
        const name = `svc-${i % 2000}`;
        const revokedRow = i % 7 === 0;
        insert.run({
          ...template,
          serial,
          service: name,
          spiffe_id: `spiffe://example.org/${name}`,
          status: revokedRow ? 'revoked' : 'superseded',
          revoked_at: revokedRow ? i : null,
          revocation_reason: revokedRow ? 'superseded' : null,
          set_dir: `issued/${name}`,
        });
        event.run(i, name, serial);
      }
      for (let i = 0; i < 2000; i++) service.run(`svc-${i}`, null, i % 3 === 0 ? 0 : 1);
    })();
    db.close();
  });
  after(() => ca?.cleanup());

  it('`ledger migrate` on the SQLite ledger reports its schema', () => {
    const res = ca.svcca(['ledger', 'migrate']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`ledger\\.db \\(SQLite\\) is at schema ${SQLITE_SCHEMA_VERSION}, this svcca's`));
  });

  it('refuses a database that is not empty, and leaves the config alone', async () => {
    const url = await pg.createDatabase('copy_busy');
    await query('copy_busy', 'CREATE TABLE certificates (serial text)');
    await query('copy_busy', "INSERT INTO certificates VALUES ('x')");
    const before = readFileSync(join(ca.dir, 'config'), 'utf8');
    const res = ca.svcca(['ledger', 'copy', '--to', url], pg.env);
    assert.ok(isOneLineError(res), res.stderr);
    assert.equal(readFileSync(join(ca.dir, 'config'), 'utf8'), before);
  });

  it('refuses a copy that does not read back the same (a tampering trigger), committing nothing', async () => {
    const url = await pg.createDatabase('copy_tampered');
    for (const sql of MIGRATIONS) await query('copy_tampered', sql);
    await query('copy_tampered', `UPDATE svcca_schema SET version = ${MIGRATIONS.length}`);
    await query(
      'copy_tampered',
      `CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.rotation_enabled := NOT NEW.rotation_enabled; RETURN NEW; END $$;
       CREATE TRIGGER tamper BEFORE INSERT ON services FOR EACH ROW EXECUTE FUNCTION tamper();`,
    );
    const before = readFileSync(join(ca.dir, 'config'), 'utf8');
    const res = ca.svcca(['ledger', 'copy', '--to', url], pg.env);
    assert.ok(isOneLineError(res), res.stderr);
    assert.match(res.stderr, /the copy of table services does not match/);
    assert.equal(readFileSync(join(ca.dir, 'config'), 'utf8'), before, 'the CA still uses ledger.db');
    const rows = await query<{ n: string }>(
      'copy_tampered',
      'SELECT (SELECT count(*) FROM certificates) + (SELECT count(*) FROM events) AS n',
    );
    assert.equal(Number(rows[0]!.n), 0, 'nothing was committed');
  });

  it(`moves a ${RECORDS.toLocaleString('en')}-record SQLite ledger, checks every table, then switches the CA to it`, {
    timeout: 120_000,
  }, async () => {
    const url = await pg.createDatabase('copy_target');
    const res = ca.svcca(['ledger', 'copy', '--to', url, '--json'], pg.env);
    assert.equal(res.status, 0, res.stderr);
    const out = JSON.parse(res.stdout) as { tables: { table: string; rows: number; sha256: string }[] };
    const counts = Object.fromEntries(out.tables.map((t) => [t.table, t.rows]));
    assert.equal(counts.certificates, RECORDS);
    assert.equal(counts.services, 2001);
    assert.equal(counts.events, RECORDS - 1 + 2, 'init, the real issue and the seeded ones');
    const rows = await query<{ n: string }>('copy_target', 'SELECT count(*) AS n FROM certificates');
    assert.equal(Number(rows[0]!.n), RECORDS);
    const config = JSON.parse(readFileSync(join(ca.dir, 'config'), 'utf8')) as { ledger?: string };
    assert.equal(config.ledger, url, 'the CA now uses PostgreSQL');
    // The copied CA works: the service issued before the copy renews, and the event ids go on.
    const rotated = ca.svcca(['rotate', 'real-one', '--renew-before', '100%'], pg.env);
    assert.equal(rotated.status, 0, rotated.stderr);
    assert.equal(
      readSet(join(ca.root, 'sets', 'real-one')).serial,
      (await query<{ active_serial: string }>('copy_target', "SELECT active_serial FROM services WHERE name = 'real-one'"))[0]!
        .active_serial,
    );
    const revoked = ca.svcca(['revoke', 'svc-1'], pg.env);
    assert.equal(revoked.status, 0, revoked.stderr);
    const again = ca.svcca(['ledger', 'copy', '--to', url], pg.env);
    assert.ok(isOneLineError(again), again.stderr);
    assert.match(again.stderr, /already in PostgreSQL/);
  });
});

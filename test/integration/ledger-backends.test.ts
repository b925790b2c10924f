/**
 * The ledger's behaviour, one list of cases run against both back ends: SQLite (a file in
 * a temp directory) and PostgreSQL (a real server started for this file, one fresh
 * database per case). Then what only a shared database must show, with two connections
 * racing for real: CRL numbers taken in commit order with every earlier revocation listed,
 * SKIP LOCKED claims, and one active certificate per service kept by the database itself.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { CertificateRecord, Ledger } from '../../cli/store/ledger.js';
import { SqliteLedger } from '../../cli/store/sqlite-ledger.js';
import { PostgresLedger } from '../../cli/store/postgres-ledger.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { tempDir } from '../helpers/cli.js';

interface Backend {
  readonly name: string;
  /** A fresh, empty ledger whose CA directory is `base`. */
  open(base: string): Promise<{ ledger: Ledger; raw: (sql: string) => Promise<void> }>;
}

let pgServer: PgServer | undefined;
let databases = 0;

const BACKENDS: Backend[] = [
  {
    name: 'SQLite',
    async open(base) {
      const path = join(base, 'ledger.db');
      const ledger = SqliteLedger.open(path, { create: true });
      return {
        ledger,
        raw: async (sql) => {
          const db = new Database(path);
          try {
            db.exec(sql);
          } finally {
            db.close();
          }
        },
      };
    },
  },
  {
    name: 'PostgreSQL',
    async open(base) {
      const url = await pgServer!.createDatabase(`cases_${++databases}`);
      const ledger = PostgresLedger.open(url, base, { create: true, env: pgServer!.env });
      return {
        ledger,
        raw: async (sql) => {
          const c = await pgServer!.client(`cases_${databases}`);
          try {
            await c.query(sql);
          } finally {
            await c.end();
          }
        },
      };
    },
  },
];

let serialCounter = 0x1000;
function record(over: Partial<CertificateRecord> & { service: string }, base: string): CertificateRecord {
  const serial = (serialCounter++).toString(16);
  return {
    serial,
    spiffeId: `spiffe://example.org/${over.service}`,
    issuerKeyId: 'aa11',
    dnsNames: ['a.internal'],
    ips: ['10.0.0.1'],
    ttlMs: 3_600_000,
    notBefore: 1_000_000,
    notAfter: 4_600_000,
    keyType: 'ecdsa-p256',
    setDir: join(base, 'issued', over.service),
    status: 'active',
    fromCsr: false,
    spkiSha256: `spki-${serial}`,
    certPem: `-----BEGIN CERTIFICATE-----\n${serial}\n-----END CERTIFICATE-----\n`,
    issuedAt: 1_000_000,
    ...over,
  };
}

/** Issues `rec` the way issuance does: supersede the active one, record, make it active. */
async function issue(ledger: Ledger, rec: CertificateRecord): Promise<void> {
  await ledger.transaction(async (tx) => {
    await tx.lockService(rec.service);
    const prev = await tx.getService(rec.service);
    if (prev?.activeSerial) await tx.setStatus(prev.activeSerial, 'superseded');
    await tx.insertCertificate(rec);
    await tx.setActive(rec.service, rec.serial);
    await tx.appendEvent({ kind: 'issue', service: rec.service, serial: rec.serial, actor: 'test@host', why: 'test' });
  });
}

type Case = (ctx: { ledger: Ledger; base: string; raw: (sql: string) => Promise<void> }) => Promise<void>;

/** The cases every back end passes. */
const CASES: Record<string, Case> = {
  'a certificate round-trips with every field, its set folder relative to the CA directory or absolute': async ({ ledger, base }) => {
    const inside = record(
      { service: 'ns/prod/api', fromCsr: true, revokedAt: 5, revocationReason: 'keyCompromise', status: 'revoked' },
      base,
    );
    const outside = record({ service: 'other', setDir: '/etc/svcca/other' }, base);
    await ledger.transaction(async (tx) => {
      await tx.insertCertificate(inside);
      await tx.insertCertificate(outside);
    });
    assert.deepEqual(await ledger.getCertificate(inside.serial), inside);
    assert.deepEqual(await ledger.getCertificate(outside.serial), outside);
    assert.equal(await ledger.getCertificate('ffff'), undefined);
    assert.equal(await ledger.countCertificates(), 2);
  },
  'a serial is recorded once: a second insert fails and its transaction changes nothing': async ({ ledger, base }) => {
    const rec = record({ service: 'a' }, base);
    await issue(ledger, rec);
    await assert.rejects(issue(ledger, { ...rec, service: 'b' }));
    assert.equal(await ledger.countCertificates(), 1);
    assert.equal(await ledger.getService('b'), undefined, 'the failed transaction left no service');
    assert.equal((await ledger.listEvents()).length, 1);
  },
  'filters: service, statuses, expiry window, issuer': async ({ ledger, base }) => {
    const a1 = record({ service: 'a', notAfter: 100 }, base);
    const a2 = record({ service: 'a', notAfter: 200, issuedAt: 2_000_000 }, base);
    const b = record({ service: 'b', notAfter: 300, issuerKeyId: 'bb22' }, base);
    for (const r of [a1, a2, b]) await issue(ledger, r);
    const serials = (rs: CertificateRecord[]) => rs.map((r) => r.serial);
    assert.deepEqual(serials(await ledger.listCertificates({ service: 'a' })), [a1.serial, a2.serial]);
    assert.deepEqual(serials(await ledger.listCertificates({ statuses: ['superseded'] })), [a1.serial]);
    assert.deepEqual(serials(await ledger.listCertificates({ statuses: ['active', 'superseded'], notAfterBefore: 250 })), [
      a1.serial,
      a2.serial,
    ]);
    assert.deepEqual(serials(await ledger.listCertificates({ notAfterAfter: 150 })), [a2.serial, b.serial]);
    assert.deepEqual(serials(await ledger.listCertificates({ issuerKeyId: 'bb22' })), [b.serial]);
    assert.equal(await ledger.latestNotAfter('aa11'), 200);
    assert.equal(await ledger.latestNotAfter('none'), 0);
  },
  'services: active certificate, rotation switch, set folders, rotation candidates': async ({ ledger, base }) => {
    const a = record({ service: 'a' }, base);
    const b = record({ service: 'b', fromCsr: true }, base);
    await issue(ledger, a);
    await issue(ledger, b);
    assert.deepEqual(await ledger.getService('a'), { name: 'a', activeSerial: a.serial, rotationEnabled: true });
    assert.deepEqual(await ledger.servicesWithSetDir(join(base, 'issued', 'b')), ['b']);
    await ledger.transaction((tx) => tx.setRotation('a', false));
    assert.deepEqual(
      (await ledger.listServices()).map((s) => [s.name, s.rotationEnabled]),
      [
        ['a', false],
        ['b', true],
      ],
    );
    assert.deepEqual(await ledger.listRotationCandidates(), [
      {
        service: 'b',
        serial: b.serial,
        notBefore: b.notBefore,
        notAfter: b.notAfter,
        fromCsr: true,
        issuerKeyId: 'aa11',
        ownerRenews: false,
      },
    ]);
    await issue(ledger, record({ service: 'a' }, base));
    assert.equal((await ledger.getService('a'))?.rotationEnabled, true, 'a new issue turns rotation back on');
  },
  'claims: one owner at a time, an expired claim can be taken, release only by its owner': async ({ ledger, base }) => {
    await issue(ledger, record({ service: 'a' }, base));
    const claim = (owner: string, until: number, now: number) => ledger.transaction((tx) => tx.claimService('a', owner, until, now));
    assert.equal(await claim('host1:1', 1000, 0), true);
    assert.equal(await claim('host2:2', 1000, 500), false, 'a live claim of another owner holds');
    assert.equal(await claim('host1:1', 2000, 500), true, 'its owner may extend it');
    assert.deepEqual(await ledger.getClaim('a'), { service: 'a', owner: 'host1:1', until: 2000 });
    await ledger.transaction((tx) => tx.releaseClaim('a', 'host2:2'));
    assert.deepEqual(await ledger.listClaims(), [{ service: 'a', owner: 'host1:1', until: 2000 }], 'another owner cannot release it');
    assert.equal(await claim('host2:2', 9000, 2001), true, 'an expired claim is taken over');
    await ledger.transaction((tx) => tx.releaseClaim('a', 'host2:2'));
    assert.deepEqual(await ledger.listClaims(), []);
  },
  'CRL numbers grow per issuer, never below a floor, and publication drops entries listed after expiry': async ({ ledger, base }) => {
    const next = (id: string, atLeast?: bigint) => ledger.transaction((tx) => tx.nextCrlNumber(id, atLeast));
    assert.equal(await next('i1'), 1n);
    assert.equal(await next('i1'), 2n);
    assert.equal(await next('i2'), 1n, 'per issuer');
    assert.equal(await next('i1', 10n), 10n, 'a crl.pem ahead of the ledger raises the floor');
    assert.equal(await next('i1', 3n), 11n, 'a lower floor never lowers the number');
    assert.equal(await ledger.currentCrlNumber('i1'), 11n);
    assert.equal(await ledger.currentCrlNumber('none'), 0n);
    const expired = record({ service: 'a', issuerKeyId: 'i1', notAfter: 50, status: 'revoked', revokedAt: 40 }, base);
    const live = record(
      { service: 'b', issuerKeyId: 'i1', notAfter: 5000, status: 'revoked', revokedAt: 45, revocationReason: 'superseded' },
      base,
    );
    await ledger.transaction(async (tx) => {
      await tx.insertCertificate(expired);
      await tx.insertCertificate(live);
    });
    assert.deepEqual(
      (await ledger.listRevokedForCrl('i1')).map((r) => [r.serial, r.certPem]),
      [
        [expired.serial, ''],
        [live.serial, ''],
      ],
    );
    assert.equal(await ledger.lastRevocationAt('i1'), 45);
    await ledger.transaction((tx) => tx.recordCrlPublished('i1', 11n, 100));
    assert.deepEqual(await ledger.lastPublishedCrl('i1'), { number: 11n, at: 100 });
    assert.deepEqual(
      (await ledger.listRevokedForCrl('i1')).map((r) => r.serial),
      [live.serial],
      'listed once after its expiry, then dropped',
    );
    assert.equal(await ledger.lastPublishedCrl('i2'), undefined);
    // The CRL as signed, for svcca serve replicas (schema 3): none stored by that call.
    assert.equal(await ledger.publishedCrl('i1'), undefined);
    await ledger.transaction((tx) => tx.recordCrlPublished('i1', 12n, 200, 'PEM #12'));
    await ledger.transaction((tx) => tx.recordCrlPublished('i2', 3n, 200, 'PEM #3'));
    assert.deepEqual(await ledger.publishedCrl('i1'), { number: 12n, pem: 'PEM #12' });
    assert.deepEqual(
      await ledger.publishedCrlNumbers(),
      new Map([
        ['i1', 12n],
        ['i2', 3n],
      ]),
    );
  },
  'revocation and compromised keys': async ({ ledger, base }) => {
    const a = record({ service: 'a' }, base);
    await issue(ledger, a);
    await ledger.transaction(async (tx) => {
      await tx.markRevoked(a.serial, 'keyCompromise', 77);
      await tx.markKeyCompromised(a.spkiSha256, 77);
      await tx.markKeyCompromised(a.spkiSha256, 78);
    });
    const got = await ledger.getCertificate(a.serial);
    assert.equal(got?.status, 'revoked');
    assert.equal(got?.revokedAt, 77);
    assert.equal(got?.revocationReason, 'keyCompromise');
    assert.equal(await ledger.isKeyCompromised(a.spkiSha256), true);
    assert.equal(await ledger.isKeyCompromised('other'), false);
  },
  'events: appended in order, found by kind and serial, and the database refuses to change or delete them': async ({ ledger, raw }) => {
    await ledger.transaction(async (tx) => {
      await tx.appendEvent({ kind: 'init', actor: 'u@h', why: 'first', at: 1 });
      await tx.appendEvent({ kind: 'roll', serial: 'abc', actor: 'u@h', why: 'second', at: 2 });
    });
    const events = await ledger.listEvents();
    assert.deepEqual(
      events.map((e) => [e.kind, e.why, e.serial, e.service]),
      [
        ['roll', 'second', 'abc', null],
        ['init', 'first', null, null],
      ],
    );
    assert.ok(events[0]!.id > events[1]!.id);
    assert.equal(await ledger.hasEvent('roll', 'abc'), true);
    assert.equal(await ledger.hasEvent('issue', 'abc'), false);
    await assert.rejects(raw("UPDATE events SET why = 'rewritten'"), /append-only/);
    await assert.rejects(raw('DELETE FROM events'), /append-only/);
    assert.equal((await ledger.listEvents()).length, 2, 'both events are still there');
  },
  'a call on the ledger itself inside a transaction is part of that transaction': async ({ ledger, base }) => {
    const a = record({ service: 'a' }, base);
    await assert.rejects(
      ledger.transaction(async (tx) => {
        await tx.lockService('a');
        // A helper handed the ledger rather than `tx` (issuance inside a token's transaction).
        await ledger.transaction(async (inner) => {
          await inner.insertCertificate(a);
          await inner.setActive('a', a.serial);
        });
        assert.equal((await ledger.getService('a'))?.activeSerial, a.serial, 'sees its own uncommitted write');
        throw new Error('roll it all back');
      }),
      /roll it all back/,
    );
    assert.equal(await ledger.getCertificate(a.serial), undefined, 'the inner part rolled back with the outer transaction');
  },
  'bootstrap tokens: stored by hash, used once, not after expiry or revocation': async ({ ledger }) => {
    const token = (secretSha256: string, service: string, expiresAt = 10_000) => ({
      secretSha256,
      service,
      dnsNames: ['x.internal'],
      ips: [],
      certTtlMs: 3_600_000,
      createdAt: 1,
      expiresAt,
      actor: 'u@h',
    });
    await ledger.transaction(async (tx) => {
      await tx.insertToken(token('t1', 'svc'));
      await tx.insertToken(token('t2', 'svc'));
      await tx.insertToken(token('t3', 'svc', 50));
      await tx.insertToken(token('t4', 'other'));
    });
    assert.deepEqual(await ledger.getToken('t1'), token('t1', 'svc'));
    assert.equal(await ledger.getToken('nope'), undefined);
    assert.equal(await ledger.transaction((tx) => tx.useToken('t1', 100)), true);
    assert.equal(await ledger.transaction((tx) => tx.useToken('t1', 101)), false, 'single use');
    assert.equal((await ledger.getToken('t1'))?.usedAt, 100);
    assert.equal(await ledger.transaction((tx) => tx.useToken('t3', 100)), false, 'expired');
    assert.equal(await ledger.transaction((tx) => tx.revokeTokens('svc', 200)), 2, 'the unused ones of svc: t2 and the expired t3');
    assert.equal(await ledger.transaction((tx) => tx.useToken('t2', 300)), false, 'revoked');
    assert.equal((await ledger.getToken('t4'))?.revokedAt, undefined, 'another service keeps its token');
  },
  'a transaction that throws changes nothing': async ({ ledger, base }) => {
    const a = record({ service: 'a' }, base);
    await assert.rejects(
      ledger.transaction(async (tx) => {
        await tx.insertCertificate(a);
        await tx.setActive('a', a.serial);
        await tx.nextCrlNumber('i1');
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.equal(await ledger.countCertificates(), 0);
    assert.equal(await ledger.getService('a'), undefined);
    assert.equal(await ledger.currentCrlNumber('i1'), 0n);
    await assert.rejects(ledger.lockService('a'), /outside a ledger transaction/, 'locks only exist inside a transaction');
    // The caller's own error comes back as it was thrown, whatever its message says.
    class Overtaken extends Error {}
    const thrown = new Overtaken('its active certificate changed; SSL connect timeout');
    await assert.rejects(
      ledger.transaction(async () => {
        throw thrown;
      }),
      (err: unknown) => err === thrown,
    );
  },
};

for (const backend of BACKENDS) {
  describe(`ledger behaviour: ${backend.name}`, () => {
    before(async () => {
      if (backend.name === 'PostgreSQL' && !pgServer) pgServer = await startPostgres();
    });
    for (const [name, run] of Object.entries(CASES)) {
      it(name, async () => {
        const base = tempDir('svcca-ledger-');
        const { ledger, raw } = await backend.open(base);
        try {
          await run({ ledger, base, raw });
        } finally {
          await ledger.close();
        }
      });
    }
  });
}

describe('SQLite group commit (svcca serve under load)', () => {
  it('settles each of 20 concurrent transactions only once another connection sees it, in fewer commits, and one that fails takes nothing of the others', async () => {
    const base = tempDir('svcca-ledger-');
    const path = join(base, 'ledger.db');
    const ledger = SqliteLedger.open(path, { create: true });
    const reader = new Database(path, { readonly: true });
    try {
      const visible = (serial: string) =>
        (reader.prepare('SELECT count(*) AS n FROM certificates WHERE serial = ?').get(serial) as { n: number }).n === 1;
      const commitsSeen = () => reader.pragma('data_version', { simple: true }) as number;
      const before = commitsSeen();
      const recs = Array.from({ length: 20 }, (_, i) => record({ service: `group-${i}` }, base));
      const visibleWhenSettled: boolean[] = [];
      const results = await Promise.allSettled(
        recs.map(async (rec, i) => {
          await issue(ledger, i === 7 ? { ...rec, spiffeId: undefined as unknown as string } : rec);
          visibleWhenSettled[i] = visible(rec.serial);
        }),
      );
      assert.equal(results[7]!.status, 'rejected', 'the broken record is refused');
      assert.equal(visible(recs[7]!.serial), false);
      assert.equal(await ledger.getService('group-7'), undefined, 'nothing of the failed transaction is left');
      for (const [i, r] of results.entries()) {
        if (i === 7) continue;
        assert.equal(r.status, 'fulfilled', `transaction ${i}`);
        assert.equal(visibleWhenSettled[i], true, `transaction ${i} settled before its commit`);
      }
      assert.equal((await ledger.listEvents()).length, 19);
      // Another connection counts each commit it could see: several transactions shared one.
      assert.ok(commitsSeen() - before < recs.length, `${commitsSeen() - before} commits for ${recs.length} transactions`);
    } finally {
      reader.close();
      await ledger.close();
    }
  });
});

describe('PostgreSQL under real concurrency (two connections)', () => {
  let a: PostgresLedger;
  let b: PostgresLedger;
  const base = tempDir('svcca-ledger-');
  before(async () => {
    pgServer ??= await startPostgres();
    const url = await pgServer.createDatabase('races');
    a = PostgresLedger.open(url, base, { create: true, env: pgServer.env });
    await a.countCertificates();
    b = PostgresLedger.open(url, base, { env: pgServer.env });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await pgServer?.destroy();
  });

  /** Resolves when `p` settles, or with 'pending' if it has not after the other side's work. */
  const settled = <T>(p: Promise<T>) => p.then((v) => ({ done: true as const, v }));

  it('a CRL number taken while another transaction holds the issuer waits, comes next, and lists its revocation', async () => {
    const rec = record({ service: 'crl-race', issuerKeyId: 'iR' }, base);
    await issue(a, rec);
    let releaseFirst!: () => void;
    const firstHolds = new Promise<void>((r) => (releaseFirst = r));
    let firstTook!: () => void;
    const firstHasNumber = new Promise<void>((r) => (firstTook = r));
    const first = a.transaction(async (tx) => {
      await tx.markRevoked(rec.serial, 'keyCompromise', 123);
      const n = await tx.nextCrlNumber('iR');
      firstTook();
      await firstHolds;
      return n;
    });
    await firstHasNumber;
    const second = settled(
      b.transaction(async (tx) => {
        const n = await tx.nextCrlNumber('iR');
        return { n, listed: (await tx.listRevokedForCrl('iR')).map((r) => r.serial) };
      }),
    );
    // The second cannot finish while the first holds the row: it has not, when the first is let go.
    const raced = await Promise.race([second, a.listEvents(1).then(() => ({ done: false as const }))]);
    assert.equal(raced.done, false, 'the second publisher waited for the first');
    releaseFirst();
    const n1 = await first;
    const { v } = await second;
    assert.equal(n1, 1n);
    assert.equal(v.n, 2n, 'numbers in commit order');
    assert.deepEqual(v.listed, [rec.serial], 'the later CRL lists the revocation committed before its number');
  });

  it('SKIP LOCKED: a service held by one transaction is skipped by another at once, and taken after', async () => {
    await issue(a, record({ service: 'claimed' }, base));
    let release!: () => void;
    const holding = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = a.transaction(async (tx) => {
      assert.equal(await tx.lockService('claimed'), true);
      locked();
      await holding;
    });
    await isLocked;
    assert.equal(await b.transaction((tx) => tx.lockService('claimed', { skipLocked: true })), false, 'skipped, not waited for');
    assert.equal(
      await b.transaction((tx) => tx.lockService('unknown-service', { skipLocked: true })),
      true,
      'a service nobody recorded is not "busy"',
    );
    release();
    await holder;
    assert.equal(await b.transaction((tx) => tx.lockService('claimed', { skipLocked: true })), true);
  });

  it('two first issues of one service queue: one active certificate, the other superseded', async () => {
    const r1 = record({ service: 'brand-new' }, base);
    const r2 = record({ service: 'brand-new' }, base);
    await Promise.all([issue(a, r1), issue(b, r2)]);
    const all = await a.listCertificates({ service: 'brand-new' });
    assert.deepEqual(all.map((r) => r.status).sort(), ['active', 'superseded']);
    assert.equal((await a.getService('brand-new'))?.activeSerial, all.find((r) => r.status === 'active')!.serial);
  });

  it('a token presented to two replicas at once is used once', async () => {
    await a.transaction((tx) =>
      tx.insertToken({
        secretSha256: 'race',
        service: 'svc',
        dnsNames: [],
        ips: [],
        certTtlMs: 1000,
        createdAt: 1,
        expiresAt: Date.now() + 60_000,
        actor: 'u@h',
      }),
    );
    const results = await Promise.all([a, b, a, b].map((l) => l.transaction((tx) => tx.useToken('race', Date.now()))));
    assert.equal(results.filter(Boolean).length, 1);
  });

  it('the database keeps one active certificate per service even against a caller that skips the lock', async () => {
    await issue(a, record({ service: 'guarded' }, base));
    await assert.rejects(
      a.transaction((tx) => tx.insertCertificate(record({ service: 'guarded' }, base))),
      /refused a change: .*certificates_one_active/,
    );
    assert.equal((await a.listCertificates({ service: 'guarded', statuses: ['active'] })).length, 1);
  });
});

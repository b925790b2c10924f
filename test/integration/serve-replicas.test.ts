/**
 * Several `svcca serve` replicas on one PostgreSQL ledger (issue 17), each with a CA
 * directory of its own (copies of the same key files), as on two hosts:
 * - each replica records its own serving certificate (svcca/replica/<name>), presents
 *   spiffe://<td>/svcca, and renews it in process without ever being refused because the
 *   other started or renewed;
 * - renewals alternating between the replicas from concurrent clients: no duplicate
 *   serial, no lost record (certificate rows and renew events equal the successes);
 * - a renewal whose answer is lost is answered again, for the same key, by the other one;
 * - kill -9 of a replica mid-renewal: every client's set and the ledger agree afterwards
 *   (that replica's CA directory made as examples/kubernetes/ha's init container makes it);
 * - after a revoke on one host, both replicas serve the same crl.pem: same CRL number, same
 *   bytes, same ETag (If-None-Match from one answered 304 by the other).
 * SVCCA_TEST_REPLICA_RENEWALS (default 1,000, the issue's figure) sets how many renewals;
 * bench/serve-renew.ts --replicas 2 --ledger postgres measures their rate.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import type { Client } from 'pg';
import { makeCa, run, tempDir, type TestCa } from '../helpers/cli.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { startServeProcess, type RunningServe } from './serve-harness.js';
import { openCaDir } from '../../cli/store/ca-dir.js';
import { openLedger } from '../../cli/ca/ca-session.js';
import { loadAuthority } from '../../cli/ca/authority.js';
import { issueAndRecord, writeIssuedSet } from '../../cli/ca/issuance.js';
import { caRequest, PENDING_RENEWAL_KEY, parseCaUrl, renewCredentialSet, type CaTls } from '../../common/ca-client.js';
import { buildCsrPem } from '../../common/csr-builder.js';
import { exportKeyPem, generateKey } from '../../common/keys.js';
import { decodeCertificates, decodePemBlocks } from '../../common/pem.js';
import { parseCertificate } from '../../common/x509.js';
import { parseCrlDer, CRL_PEM_LABEL } from '../../common/crl.js';
import { TEST_PASSPHRASE } from '../helpers/cli.js';
import { eventually } from './sidecar-reload-helpers.js';

const RENEWALS = Number(process.env.SVCCA_TEST_REPLICA_RENEWALS ?? 1000);
const CLIENTS = 20;
const SERVER_ID = 'spiffe://example.org/svcca';
const FORCE = { kind: 'fraction', fraction: 1, text: '100%' } as const;

let pg: PgServer;
let db: Client;
let ca: TestCa;
let dirB: string;
let dirC: string;
let a: RunningServe;
let b: RunningServe;
let caPem: string;

interface MemoryClient {
  service: string;
  certPem: string;
  keyPem: string;
}
const memoryClients: MemoryClient[] = [];
const diskClients: { service: string; dir: string }[] = [];

/** The clients' first certificates, issued in this process (CLI runs would take longer than the test). */
async function seed(): Promise<void> {
  const { dir, config } = openCaDir(ca.dir);
  const authority = loadAuthority(dir, config, TEST_PASSPHRASE);
  const ledger = await openLedger(dir, config);
  const issue = (service: string, setDir: string) =>
    issueAndRecord(authority, ledger, {
      service,
      ttlMs: 3_600_000,
      dnsNames: [],
      ips: [],
      setDir,
      kind: 'issue',
      actor: 'test',
      why: 'test seed',
      ownerRenews: true,
    });
  try {
    for (let i = 0; i < CLIENTS; i++) {
      const issued = await issue(`load-${i}`, join(ca.root, 'sets', `load-${i}`));
      memoryClients.push({
        service: `load-${i}`,
        certPem: issued.record.certPem + authority.intermediate.pem,
        keyPem: exportKeyPem(issued.key!),
      });
    }
    for (const service of ['lost', ...Array.from({ length: 8 }, (_, i) => `kill-${i}`)]) {
      const setDir = join(ca.root, 'sets', service);
      const issued = await issue(service, setDir);
      writeIssuedSet(authority, issued.record, issued.key);
      diskClients.push({ service, dir: setDir });
    }
  } finally {
    await ledger.close();
  }
}

async function activeOf(service: string): Promise<{ serial: string; spki: string }> {
  const r = await db.query<{ active_serial: string; spki_sha256: string }>(
    'SELECT s.active_serial, c.spki_sha256 FROM services s JOIN certificates c ON c.serial = s.active_serial WHERE s.name = $1',
    [service],
  );
  return { serial: r.rows[0]!.active_serial, spki: r.rows[0]!.spki_sha256 };
}

const serialOfSet = (dir: string) =>
  parseCertificate(decodeCertificates(readFileSync(join(dir, 'tls.crt'), 'utf8'), 'tls.crt')[0]!).serialHex;

/**
 * Replica c's CA directory is made by the init container of examples/kubernetes/ha from
 * the files its Secret would hold (root.key and the ledger left out): what that example
 * copies is enough for `svcca serve`.
 */
function assembleAsKubernetesDoes(from: string, to: string): void {
  const yamlText = readFileSync(fileURLToPath(new URL('../../../examples/kubernetes/ha/svcca-serve-ha.yaml', import.meta.url)), 'utf8');
  const pod = (parseAllDocuments(yamlText)[0]!.toJS() as { spec: { template: { spec: { initContainers: { args: string[] }[] } } } }).spec
    .template.spec;
  const secret = join(dirname(to), 'secret');
  mkdirSync(secret);
  for (const f of ['config', 'root.crt', 'intermediate.crt', 'intermediate.key', 'ca.crt', 'crl.pem'])
    cpSync(join(from, f), join(secret, f));
  const script = pod.initContainers[0]!.args[0]!.replaceAll('/etc/svcca/ca-files', secret).replaceAll('/var/lib/svcca/ca-data', to);
  const res = run('sh', ['-c', script]);
  assert.equal(res.status, 0, res.stderr);
}

before(async () => {
  pg = await startPostgres();
  Object.assign(process.env, pg.env); // PGPASSWORD for the in-process seeding
  ca = makeCa({ ledger: await pg.createDatabase('replicas'), env: pg.env });
  db = await pg.client('replicas');
  db.on('error', () => {}); // the server is killed with the file's children before `after` ends this client
  await seed();
  // Each replica on a CA directory of its own: the same key files, as on another host.
  dirB = join(tempDir('svcca-replica-b-'), 'ca');
  dirC = join(tempDir('svcca-replica-c-'), 'ca');
  cpSync(ca.dir, dirB, { recursive: true });
  assembleAsKubernetesDoes(ca.dir, dirC);
  caPem = readFileSync(join(ca.dir, 'ca.crt'), 'utf8');
  const flags = ['--rate-limit', '1000000', '--cert-ttl', '12s'];
  [a, b] = await Promise.all([
    startServeProcess(ca, [...flags, '--replica', 'a'], pg.env),
    startServeProcess({ ...ca, dir: dirB }, [...flags, '--replica', 'b'], pg.env),
  ]);
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await db?.end();
  await pg?.destroy();
  ca?.cleanup();
});

describe('two svcca serve replicas on one PostgreSQL ledger', () => {
  it(`take ${RENEWALS} renewals between them from concurrent clients: no duplicate serial, no lost record`, async () => {
    const urls = [parseCaUrl(a.url), parseCaUrl(b.url)];
    const perClient = Math.ceil(RENEWALS / CLIENTS);
    const serials: string[] = [];
    const byReplica = [0, 0];
    const failures: string[] = [];
    await Promise.all(
      memoryClients.map(async (c, i) => {
        for (let n = 0; n < perClient && i * perClient + n < RENEWALS; n++) {
          const replica = (i + n) % 2; // alternating, and half the clients start on each
          const key = generateKey('ecdsa-p256');
          const tls: CaTls = { caPem, serverId: SERVER_ID, certPem: c.certPem, keyPem: c.keyPem };
          const answer = await caRequest(urls[replica]!, 'POST', '/v1/renew', tls, { body: { csr: buildCsrPem(key, c.service) } });
          if (answer.status !== 200) {
            failures.push(`${c.service} via ${replica ? 'b' : 'a'}: ${answer.status} ${answer.body.toString()}`);
            return;
          }
          const body = JSON.parse(answer.body.toString()) as { certificate: string; serial: string };
          serials.push(body.serial);
          byReplica[replica]!++;
          c.certPem = body.certificate;
          c.keyPem = exportKeyPem(key);
        }
      }),
    );
    assert.deepEqual(failures, []);
    assert.equal(serials.length, RENEWALS);
    assert.equal(new Set(serials).size, RENEWALS, 'no serial handed out twice');
    assert.ok(byReplica[0]! > 0 && byReplica[1]! > 0, `both replicas renewed: ${byReplica.join(' / ')}`);
    const rows = await db.query<{ n: string }>("SELECT count(*) AS n FROM certificates WHERE service LIKE 'load-%'");
    assert.equal(Number(rows.rows[0]!.n), CLIENTS + RENEWALS, 'one record per issued certificate');
    const events = await db.query<{ n: string }>("SELECT count(*) AS n FROM events WHERE kind = 'renew' AND service LIKE 'load-%'");
    assert.equal(Number(events.rows[0]!.n), RENEWALS, 'one renew event per renewal');
    const recorded = await db.query<{ serial: string }>(
      "SELECT serial FROM certificates WHERE service LIKE 'load-%' AND serial = ANY($1)",
      [serials],
    );
    assert.equal(recorded.rowCount, RENEWALS, 'every serial answered is in the ledger');
    for (const c of memoryClients) {
      const held = parseCertificate(decodeCertificates(c.certPem, 'cert')[0]!).serialHex;
      assert.equal((await activeOf(c.service)).serial, held, `${c.service}: the ledger's active certificate is the one the client holds`);
    }
  });

  it('each replica records its own certificate for spiffe://<td>/svcca and renews it without superseding the other', async () => {
    // --cert-ttl 12s: both renew their own in process during this file, and may have done
    // so more than once by now (the renewals above take 15 s or more): the ledger must hold
    // each one's newest. One may be renewing as we look, so look again until they agree.
    const renewed = (l: { event?: string; msg?: unknown }) => l.event === 'certificate' && /renewed/.test(String(l.msg));
    await a.waitForLine(renewed, 20_000);
    await b.waitForLine(renewed, 20_000);
    for (const r of [a, b]) assert.equal(r.lines.filter((l) => l.event === 'upkeep').length, 0, 'no upkeep failed');
    const newest = (r: RunningServe) => r.lines.filter(renewed).at(-1)!.serial;
    await eventually(
      "the ledger's active certificates are the replicas' newest",
      async () => {
        const rows = await db.query<{ service: string; spiffe_id: string; serial: string }>(
          "SELECT c.service, c.spiffe_id, c.serial FROM services s JOIN certificates c ON c.serial = s.active_serial WHERE s.name LIKE 'svcca%' ORDER BY c.service",
        );
        assert.deepEqual(
          rows.rows.map((r) => [r.service, r.spiffe_id, r.serial]),
          [
            ['svcca/replica/a', SERVER_ID, newest(a)],
            ['svcca/replica/b', SERVER_ID, newest(b)],
          ],
        );
        return true;
      },
      10_000,
    );
    const listed = ca.svcca(['list']);
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /svcca\/replica\/a .*spiffe:\/\/example\.org\/svcca /);
    assert.match(listed.stdout, /svcca\/replica\/b .*spiffe:\/\/example\.org\/svcca /);
  });

  it("refuses to issue or make a token for the server's own names", () => {
    for (const args of [
      ['issue', 'svcca'],
      ['issue', 'svcca/replica/a'],
      ['token', 'svcca/replica/b'],
    ]) {
      const res = ca.svcca(args);
      assert.equal(res.status, 1, `svcca ${args.join(' ')}`);
      assert.match(res.stderr, /^svcca: .*is the CA server's own identity.*choose another service name\n$/);
    }
  });

  it('answers a renewal whose answer was lost with the same certificate, through the other replica', async () => {
    const lost = diskClients.find((c) => c.service === 'lost')!;
    const before = serialOfSet(lost.dir);
    // The client's first attempt: its new key kept as renewCredentialSet keeps it, the
    // answer (from a) never reaching it.
    const key = generateKey('ecdsa-p256');
    writeFileSync(join(lost.dir, PENDING_RENEWAL_KEY), exportKeyPem(key), { mode: 0o600 });
    const tls: CaTls = {
      caPem,
      serverId: SERVER_ID,
      certPem: readFileSync(join(lost.dir, 'tls.crt'), 'utf8'),
      keyPem: readFileSync(join(lost.dir, 'tls.key'), 'utf8'),
    };
    const first = await caRequest(parseCaUrl(a.url), 'POST', '/v1/renew', tls, { body: { csr: buildCsrPem(key, 'lost') } });
    assert.equal(first.status, 200);
    const issued = (JSON.parse(first.body.toString()) as { serial: string }).serial;
    assert.equal((await activeOf('lost')).serial, issued);
    // The retry through b, from the now superseded certificate.
    const retry = await renewCredentialSet({ ca: parseCaUrl(b.url), dir: lost.dir, threshold: FORCE, force: true });
    assert.equal(retry.kind, 'renewed');
    assert.equal(retry.kind === 'renewed' && retry.serial, issued, 'the certificate already issued, not a new one');
    assert.equal(serialOfSet(lost.dir), issued);
    assert.notEqual(issued, before);
    assert.equal(existsSync(join(lost.dir, PENDING_RENEWAL_KEY)), false, 'the pending key is gone once its certificate is in the set');
    const count = await db.query<{ n: string }>("SELECT count(*) AS n FROM certificates WHERE service = 'lost'");
    assert.equal(Number(count.rows[0]!.n), 2, 'nothing new was signed for the retry');
    // Another key from the superseded certificate is still refused.
    const other = generateKey('ecdsa-p256');
    const refused = await caRequest(parseCaUrl(b.url), 'POST', '/v1/renew', tls, { body: { csr: buildCsrPem(other, 'lost') } });
    assert.equal(refused.status, 403);
    assert.equal((JSON.parse(refused.body.toString()) as { error: string }).error, 'superseded');
  });

  it('kill -9 of a replica mid-renewal: afterwards every set and the ledger agree', async (t) => {
    const c = await startServeProcess({ ...ca, dir: dirC }, ['--rate-limit', '1000000', '--replica', 'c'], pg.env);
    const clients = diskClients.filter((d) => d.service.startsWith('kill-'));
    // kill-0's row is locked here, so that one renewal is surely inside its transaction,
    // waiting, when the replica is killed; the other clients' may be anywhere.
    const blocker = await pg.client('replicas');
    blocker.on('error', () => {});
    let renewed = 0;
    let kill: Promise<void> | undefined;
    const killMidRenewal = async () => {
      await blocker.query('BEGIN');
      await blocker.query("SELECT 1 FROM services WHERE name = 'kill-0' FOR UPDATE");
      for (;;) {
        const waiting = await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%services%'");
        if (waiting.rowCount) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      c.proc.kill('SIGKILL');
      await c.exited;
      await blocker.query('ROLLBACK');
    };
    await Promise.all(
      clients.map(async (client) => {
        for (;;) {
          try {
            await renewCredentialSet({ ca: parseCaUrl(c.url), dir: client.dir, threshold: FORCE, force: true });
          } catch {
            return; // the replica is gone
          }
          if (++renewed >= 12) kill ??= killMidRenewal();
        }
      }),
    );
    await kill;
    await blocker.end();
    assert.equal(await c.exited, null, 'killed by a signal');
    let lostAnswers = 0;
    for (const client of clients) {
      const held = serialOfSet(client.dir);
      const active = await activeOf(client.service);
      if (held !== active.serial) {
        // Committed, answer lost: the client holds the key of the ledger's active certificate.
        const pending = readFileSync(join(client.dir, PENDING_RENEWAL_KEY), 'utf8');
        const der = decodePemBlocks(pending)[0]!.der;
        const { createPrivateKey, createPublicKey } = await import('node:crypto');
        const spki = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ type: 'spki', format: 'der' });
        assert.equal(
          createHash('sha256').update(spki).digest('hex'),
          active.spki,
          `${client.service}: its pending key is the active one's`,
        );
        lostAnswers++;
      }
      if (client.service === 'kill-0') {
        assert.equal(held, active.serial, 'the renewal killed before its commit left no record');
        assert.ok(existsSync(join(client.dir, PENDING_RENEWAL_KEY)), 'and the client keeps the key it asked for');
      }
      // Renewing again through the surviving replica works either way.
      const again = await renewCredentialSet({ ca: parseCaUrl(a.url), dir: client.dir, threshold: FORCE, force: true });
      assert.equal(again.kind, 'renewed');
      assert.equal(serialOfSet(client.dir), (await activeOf(client.service)).serial, `${client.service}: set and ledger agree`);
    }
    t.diagnostic(`${renewed} renewals before the kill; ${lostAnswers} answer(s) lost in it`);
  });

  it('after a revoke, both replicas serve the same crl.pem: same CRL number, bytes and ETag', async () => {
    const res = ca.svcca(['revoke', 'load-0', '--json']);
    assert.equal(res.status, 0, res.stderr);
    const number = BigInt((JSON.parse(res.stdout) as { crl: { crls: { number: string }[] } }).crl.crls[0]!.number);
    // b's directory was not touched by the revoke: it follows the ledger.
    await b.waitForLine((l) => l.event === 'crl' && l.result === 'followed' && (l.crls as string[]).includes(number.toString()), 10_000);
    const get = async (r: RunningServe, etag?: string) => {
      const res = await caRequest(
        parseCaUrl(r.url),
        'GET',
        '/v1/crl.pem',
        { caPem, serverId: SERVER_ID },
        etag ? { headers: { 'if-none-match': etag } } : {},
      );
      return { status: res.status, body: res.body, etag: String(res.headers.etag) };
    };
    const [fromA, fromB] = [await get(a), await get(b)];
    assert.equal(fromA.status, 200);
    assert.equal(fromB.status, 200);
    assert.ok(fromA.body.equals(fromB.body), 'byte-identical crl.pem');
    assert.equal(fromA.etag, fromB.etag);
    const numbers = decodePemBlocks(fromB.body.toString())
      .filter((blk) => blk.label === CRL_PEM_LABEL)
      .map((blk) => parseCrlDer(blk.der))
      .filter((crl) => crl.revoked.length > 0)
      .map((crl) => crl.crlNumber);
    assert.deepEqual(numbers, [number], "the revoke's CRL number; no replica signed one of its own");
    assert.equal((await get(b, fromA.etag)).status, 304, "a's ETag is current at b");
    const after = await db.query<{ n: string }>('SELECT max(next_number) - 1 AS n FROM crl_state');
    assert.equal(BigInt(after.rows[0]!.n), number, 'the ledger handed out no further CRL number');
  });

  it('the database stopped and started under renewal load: each answer is a certificate or a 503, nothing is lost, and all renew after', async (t) => {
    // load-0 was revoked above; ten others renew without pause through both replicas.
    const clients = memoryClients.slice(1, 11);
    const urls = [parseCaUrl(a.url), parseCaUrl(b.url)];
    const counts = { ok: 0, unavailable: 0 };
    const answered: string[] = [];
    const failures: string[] = [];
    const renewedSinceRestart = new Set<string>();
    let restarted = false;
    let running = true;
    const loops = clients.map(async (c, i) => {
      let key = generateKey('ecdsa-p256');
      for (let n = 0; running; n++) {
        const tls: CaTls = { caPem, serverId: SERVER_ID, certPem: c.certPem, keyPem: c.keyPem };
        const answer = await caRequest(urls[(i + n) % 2]!, 'POST', '/v1/renew', tls, { body: { csr: buildCsrPem(key, c.service) } }).catch(
          (err: Error) => ({ status: 0, body: Buffer.from(err.message) }),
        );
        if (answer.status === 200) {
          const body = JSON.parse(answer.body.toString()) as { certificate: string; serial: string };
          answered.push(body.serial);
          counts.ok++;
          c.certPem = body.certificate;
          c.keyPem = exportKeyPem(key);
          key = generateKey('ecdsa-p256');
          if (restarted) renewedSinceRestart.add(c.service);
        } else if (answer.status === 503 && /"ledger-unavailable"/.test(answer.body.toString())) {
          // As svcca renew does: the same key again, so an answer lost in the outage is re-sent.
          counts.unavailable++;
          await new Promise((r) => setTimeout(r, 50));
        } else {
          failures.push(`${c.service}: ${answer.status} ${answer.body.toString().slice(0, 200)}`);
          return;
        }
      }
    });
    // A loop that got anything but a certificate or a 503 has stopped: a wait that times out
    // names what it got, and how many answers came since the stop (one full run of the
    // suite saw no 10 503s within 20 s, with nothing to tell why).
    const until = (done: () => boolean) => () => {
      if (failures.length > 0) throw new Error(`a client stopped: ${failures.join('; ')}`);
      return done() ? true : undefined;
    };
    try {
      await eventually(
        'renewals before the stop',
        until(() => counts.ok >= 20),
      );
      await db.end();
      await pg.stop();
      const okAtStop = counts.ok;
      await eventually(
        '503s while the database is down',
        until(() => counts.unavailable >= 10),
        20_000,
      ).catch((err: Error) => {
        const state = (r: RunningServe) =>
          r.proc.exitCode === null && r.proc.signalCode === null
            ? 'running'
            : `exited (${r.proc.exitCode ?? r.proc.signalCode}; stderr: ${JSON.stringify(r.stderr().slice(-600))})`;
        const lastError = [...a.lines, ...b.lines].reverse().find((l) => l.level === 'error' || l.level === 'fatal');
        throw new Error(
          `${err.message}; ${counts.ok - okAtStop} renewed and ${counts.unavailable} answered 503 since the stop; replica a ${state(a)}, b ${state(b)}${lastError ? `; last error line: ${JSON.stringify(lastError).slice(0, 300)}` : ''}`,
        );
      });
      assert.ok(counts.ok - okAtStop <= clients.length, 'no renewal succeeded once the database was down, beyond those in flight');
      await pg.start();
      restarted = true;
      await eventually(
        'every client renewed after the restart',
        until(() => renewedSinceRestart.size === clients.length),
        60_000,
      );
    } finally {
      running = false;
      await Promise.all(loops);
    }
    assert.deepEqual(failures, []);
    t.diagnostic(`${counts.ok} renewals answered, ${counts.unavailable} answered 503 while the database was down`);
    db = await pg.client('replicas');
    db.on('error', () => {});
    const recorded = await db.query<{ serial: string }>('SELECT serial FROM certificates WHERE serial = ANY($1)', [answered]);
    assert.equal(recorded.rowCount, new Set(answered).size, 'every certificate answered is in the ledger');
    for (const c of clients) {
      const held = parseCertificate(decodeCertificates(c.certPem, 'cert')[0]!).serialHex;
      assert.equal((await activeOf(c.service)).serial, held, `${c.service}: the ledger's active certificate is the one the client holds`);
    }
  });
});

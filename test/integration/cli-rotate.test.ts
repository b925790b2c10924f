/**
 * `svcca rotate` on real CAs through the built CLI: nothing due, renewing (new key, same
 * names and TTL, the set switched with its modes), --dry-run, --json, naming services,
 * malformed thresholds, --exec (environment without passphrases; a failing hook is exit 2
 * and does not stop the others), CSR certificates (same public key re-signed; a key revoked
 * for keyCompromise skipped with a line, exit 0), an expired certificate, a revoked service.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { makeCa, run, SIDECAR_BIN, type TestCa, opensslEcCsr } from '../helpers/cli.js';
import { isOneLineError, readLedger, readSet, sleep } from './cli-rotate-helpers.js';

interface RotateJson {
  renewed: {
    service: string;
    oldSerial: string;
    newSerial: string;
    notAfter: string;
    expired: boolean;
    clamped: boolean;
    fromCsr: boolean;
    hook?: { ok: boolean; error?: string };
  }[];
  skipped: { service: string; reason: string }[];
  failed: { service: string; error: string }[];
  notDue: number;
  warnings: string[];
}

function rotateJson(
  ca: TestCa,
  args: string[],
  env?: Record<string, string | undefined>,
): { status: number; json: RotateJson; stderr: string } {
  const res = ca.svcca(['rotate', ...args, '--json'], env);
  let json: RotateJson;
  try {
    json = JSON.parse(res.stdout) as RotateJson;
  } catch {
    throw new Error(`rotate --json printed no JSON (status ${res.status}): ${res.stdout} ${res.stderr}`);
  }
  return { status: res.status, json, stderr: res.stderr };
}

describe('svcca rotate', () => {
  let ca: TestCa;
  let order: string;
  let payment: string;
  before(() => {
    ca = makeCa();
    order = ca.issue('order-service', ['--ttl', '2h', '--dns', 'order.internal']);
    payment = ca.issue('payment-service', ['--ttl', '24h']);
  });
  after(() => ca.cleanup());

  it('nothing due: exit 0, sets untouched, says when the next one is due', () => {
    const before = readSet(order).serial;
    const res = ca.svcca(['rotate']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /0 renewed, 0 skipped, 0 failed, 2 not due; next due /);
    assert.equal(readSet(order).serial, before);
  });

  it('--dry-run lists what is due and changes nothing (no passphrase needed)', () => {
    const ledgerBefore = readLedger(ca);
    const setBefore = readSet(order).serial;
    const res = ca.svcca(['rotate', '--renew-before', '100%', '--dry-run'], { SVCCA_PASSPHRASE: undefined });
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /Would renew order-service/);
    assert.match(res.stdout, /Would renew payment-service/);
    assert.match(res.stdout, /nothing was changed/);
    assert.equal(readSet(order).serial, setBefore);
    assert.deepEqual(readLedger(ca).certs, ledgerBefore.certs);
  });

  it('--renew-before 100% renews every certificate: new key, same names and TTL, modes kept, old key gone', () => {
    const old = readSet(order);
    const oldCert = new X509Certificate(old.leafPem);
    const oldFolders = readdirSync(order).filter((f) => /^\.\.\d{4}_/.test(f));
    const { status, json } = rotateJson(ca, ['--renew-before', '100%']);
    assert.equal(status, 0);
    assert.deepEqual(json.renewed.map((r) => r.service).sort(), ['order-service', 'payment-service']);
    const now = readSet(order);
    assert.notEqual(now.serial, old.serial);
    assert.equal(now.keyMatches, true);
    const cert = new X509Certificate(now.leafPem);
    assert.equal(cert.subjectAltName, oldCert.subjectAltName);
    assert.equal(Date.parse(cert.validTo) - Date.parse(cert.validFrom), Date.parse(oldCert.validTo) - Date.parse(oldCert.validFrom));
    assert.notEqual(
      cert.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
      oldCert.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    );
    assert.equal(statSync(join(order, '..data', 'tls.key')).mode & 0o777, 0o600);
    const folders = readdirSync(order).filter((f) => /^\.\.\d{4}_/.test(f));
    assert.equal(folders.length, 1);
    assert.ok(!oldFolders.includes(folders[0]!), 'the previous folder (and its key) is removed');
    const ledger = readLedger(ca);
    assert.equal(ledger.active.get('order-service')!.serial, now.serial);
    assert.equal(ledger.certs.find((c) => c.serial === old.serial)!.status, 'superseded');
    assert.equal(ledger.active.get('order-service')!.claim, null, 'claims are released');
    assert.ok(ledger.events.some((e) => e.kind === 'renew' && e.serial === now.serial));
  });

  it('human output: one line per renewal (old → new, not-after) and a summary', () => {
    const res = ca.svcca(['rotate', 'order-service', '--renew-before', '100%']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /^Renewed order-service {2}[0-9a-f]+ → [0-9a-f]+ {2}until \d{4}-\d\d-\d\dT/m);
    assert.match(res.stdout, /rotate: 1 renewed, 0 skipped, 0 failed, 0 not due/);
  });

  it('naming a service renews only it; an unknown one is one line, exit 1', () => {
    const p = readSet(payment).serial;
    const { status, json } = rotateJson(ca, ['order-service', '--renew-before', '100%']);
    assert.equal(status, 0);
    assert.deepEqual(
      json.renewed.map((r) => r.service),
      ['order-service'],
    );
    assert.equal(readSet(payment).serial, p);
    const res = ca.svcca(['rotate', 'no-such-service']);
    assert.ok(isOneLineError(res), res.stderr);
    assert.match(res.stderr, /unknown service no-such-service/);
  });

  for (const bad of ['abc', '-5%', '0%', '101%', '12']) {
    it(`--renew-before ${bad}: one line, exit 1, nothing changed`, () => {
      const before = readLedger(ca).certs.length;
      const res = ca.svcca(['rotate', `--renew-before=${bad}`]);
      assert.ok(isOneLineError(res), `${res.status} ${res.stderr}`);
      assert.match(res.stderr, /--renew-before/);
      assert.equal(readLedger(ca).certs.length, before);
    });
  }

  it('a wrong passphrase: one line, exit 1, nothing renewed', () => {
    const before = readLedger(ca).certs.length;
    const res = ca.svcca(['rotate', '--renew-before', '100%'], { SVCCA_PASSPHRASE: 'wrong' });
    assert.ok(isOneLineError(res), res.stderr);
    assert.equal(readLedger(ca).certs.length, before);
  });

  it('--exec runs after each set with SVCCA_SERVICE and SVCCA_SET_DIR and no passphrase variable', () => {
    const log = join(ca.root, 'hook.log');
    const hook = `echo "$SVCCA_SERVICE|$SVCCA_SET_DIR|\${SVCCA_PASSPHRASE-unset}|\${SVCCA_ROOT_PASSPHRASE-unset}|\${MY_DB_PASSWORD-unset}|\${KEEP_ME-unset}" >> ${log}`;
    const { status, json } = rotateJson(ca, ['--renew-before', '100%', '--exec', hook], {
      SVCCA_ROOT_PASSPHRASE: 'r00t',
      MY_DB_PASSWORD: 'x',
      KEEP_ME: 'kept',
    });
    assert.equal(status, 0);
    assert.ok(json.renewed.every((r) => r.hook?.ok));
    const lines = readFileSync(log, 'utf8').trim().split('\n').sort();
    assert.deepEqual(lines, [`order-service|${order}|unset|unset|unset|kept`, `payment-service|${payment}|unset|unset|unset|kept`]);
  });

  it('a failing hook is named, exit 2, and the other renewals still happen', () => {
    const hook = 'test "$SVCCA_SERVICE" != order-service';
    const p = readSet(payment).serial;
    const o = readSet(order).serial;
    const res = ca.svcca(['rotate', '--renew-before', '100%', '--exec', hook]);
    assert.equal(res.status, 2, res.stderr);
    assert.match(res.stderr, /failed: order-service: --exec hook exited with 1/);
    assert.notEqual(readSet(payment).serial, p);
    assert.notEqual(readSet(order).serial, o, 'the set was renewed; only its hook failed');
  });

  it('an expired certificate is renewed and the output says it had expired', async () => {
    const gone = ca.issue('short-lived', ['--ttl', '2s']);
    await sleep(2600);
    const { status, json } = rotateJson(ca, ['short-lived']);
    assert.equal(status, 0);
    assert.equal(json.renewed[0]?.expired, true);
    const human = ca.svcca(['rotate', 'short-lived', '--renew-before', '100%']);
    assert.equal(human.status, 0);
    const s = readSet(gone);
    assert.equal(s.keyMatches, true);
    assert.ok(Date.parse(new X509Certificate(s.leafPem).validTo) > Date.now());
  });

  it('a revoked service is not renewed; naming it says why, exit 0', () => {
    ca.issue('retired-service');
    assert.equal(ca.svcca(['revoke', 'retired-service']).status, 0);
    const { status, json } = rotateJson(ca, ['retired-service', '--renew-before', '100%']);
    assert.equal(status, 0);
    assert.equal(json.renewed.length, 0);
    assert.match(json.skipped[0]!.reason, /revoked: rotation stopped/);
  });
});

describe('svcca rotate: what a killed run left behind', () => {
  it("removes the previous set's folder (with its key) that a run killed after its swap left, even when nothing is due", () => {
    const ca = makeCa();
    try {
      const dir = ca.issue('left-behind');
      const orphan = join(dir, '..2020_01_01_00_00_00.000000000');
      mkdirSync(orphan, { mode: 0o755 });
      writeFileSync(join(orphan, 'tls.key'), 'an old private key', { mode: 0o600 });
      // The dead run's claim, as a kill -9 between the swap and the release leaves it.
      const dead = spawnSync('true').pid;
      const db = new Database(join(ca.dir, 'ledger.db'));
      db.prepare('UPDATE services SET claim_owner = ?, claim_until = ? WHERE name = ?').run(
        `${hostname()}:${dead}:dead`,
        Date.now() + 600_000,
        'left-behind',
      );
      db.close();
      const res = ca.svcca(['rotate']);
      assert.equal(res.status, 0, res.stderr);
      assert.match(res.stdout, /0 renewed/);
      assert.equal(existsSync(orphan), false, 'the orphaned key is gone');
      assert.equal(readSet(dir).keyMatches, true, 'the live set is untouched');
      assert.equal(readLedger(ca).active.get('left-behind')!.claim, null);
    } finally {
      ca.cleanup();
    }
  });
});

describe('svcca rotate: certificates signed from a CSR', () => {
  let ca: TestCa;
  let setDir: string;
  let ownerKey: string;
  before(() => {
    ca = makeCa();
    ownerKey = join(ca.root, 'owner.key');
    const csr = join(ca.root, 'req.csr');
    const res = opensslEcCsr(ownerKey, csr, '/CN=billing');
    assert.equal(res.status, 0, res.stderr);
    setDir = join(ca.root, 'sets', 'billing');
    assert.equal(ca.svcca(['issue', 'billing', '--csr', csr, '--out', setDir]).status, 0);
  });
  after(() => ca.cleanup());

  it('re-signs the same public key, says so, and writes no key', () => {
    const old = readSet(setDir);
    const res = ca.svcca(['rotate', '--renew-before', '100%']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /Renewed billing .*re-signed the same public key \(CSR\)/);
    const now = readSet(setDir);
    assert.notEqual(now.serial, old.serial);
    assert.equal(
      new X509Certificate(now.leafPem).publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
      new X509Certificate(old.leafPem).publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    );
    assert.equal(existsSync(join(setDir, '..data', 'tls.key')), false);
    writeFileSync(join(ca.root, 'leaf.pem'), now.leafPem);
    const sig = run('openssl', ['x509', '-in', join(ca.root, 'leaf.pem'), '-noout', '-pubkey']);
    const own = run('openssl', ['pkey', '-in', ownerKey, '-pubout']);
    assert.equal(sig.stdout, own.stdout, "the owner's key still matches");
  });

  it("a service switched from a CA-made key to --csr keeps the owner's key, written beside the set, across renewals", () => {
    const dir = join(ca.root, 'sets', 'switched');
    assert.equal(ca.svcca(['issue', 'switched', '--out', dir]).status, 0);
    assert.ok(lstatSync(join(dir, 'tls.key')).isSymbolicLink());
    const key = join(ca.root, 'switched.key');
    const csr = join(ca.root, 'switched.csr');
    assert.equal(opensslEcCsr(key, csr, '/CN=switched').status, 0);
    assert.equal(ca.svcca(['issue', 'switched', '--csr', csr]).status, 0);
    // No dangling link left: the owner's shell redirect makes a plain file beside the set.
    assert.equal(existsSync(join(dir, 'tls.key')), false);
    const written = run('sh', ['-c', `umask 077; cat ${JSON.stringify(key)} > ${JSON.stringify(join(dir, 'tls.key'))}`]);
    assert.equal(written.status, 0, written.stderr);
    assert.ok(lstatSync(join(dir, 'tls.key')).isFile());
    assert.equal(ca.svcca(['rotate', 'switched', '--renew-before', '100%']).status, 0);
    assert.equal(readFileSync(join(dir, 'tls.key'), 'utf8'), readFileSync(key, 'utf8'), "the renewal left the owner's key alone");
    // And the sidecar reads the set: the key beside it matches the renewed certificate.
    const cfg = join(ca.root, 'switched.yaml');
    writeFileSync(
      cfg,
      `identity:\n  dir: ${dir}\noutbound:\n  - listen: 127.0.0.1:0\n    connect: 127.0.0.1:9\n    serverId: spiffe://example.org/x\n`,
    );
    const check = run(process.execPath, [SIDECAR_BIN, '--check', '--config', cfg]);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /ok: identity spiffe:\/\/example\.org\/switched/);
  });

  it('a key revoked for keyCompromise is never signed again: skipped with what to run, exit 0', () => {
    // Revoke the superseded certificate (same key) for keyCompromise: the service itself stays on rotation.
    const superseded = readLedger(ca).certs.find((c) => c.service === 'billing' && c.status === 'superseded')!;
    assert.equal(ca.svcca(['revoke', '--serial', superseded.serial, '--reason', 'keyCompromise']).status, 0);
    const active = readSet(setDir).serial;
    const res = ca.svcca(['rotate', '--renew-before', '100%']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /Skipped billing: its CSR key was revoked for keyCompromise .*svcca issue billing --csr/);
    assert.equal(readSet(setDir).serial, active);
  });
});

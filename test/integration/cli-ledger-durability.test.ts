/**
 * The ledger and the credential sets under `kill -9` and under concurrent `svcca`
 * processes: a killed `issue` leaves no set or a whole one (key matches certificate),
 * no record or a whole one, an intact database, and the next `issue` works; 20 parallel
 * issues leave 20 distinct serials; 20 parallel re-issues of one service leave one
 * active record and one whole set.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeCa, spawnSvcca, type TestCa } from '../helpers/cli.js';
import { timeRun } from './cli-rotate-helpers.js';
import { readCredentialSet } from '../../common/credential-set.js';

interface Row {
  serial: string;
  service: string;
  status: string;
  cert_pem: string;
  set_dir: string;
}

function readLedger(ca: TestCa): { integrity: string; rows: Row[]; services: { name: string; active_serial: string | null }[] } {
  const db = new Database(join(ca.dir, 'ledger.db'), { readonly: true, fileMustExist: true });
  try {
    const integrity = db.pragma('integrity_check', { simple: true }) as string;
    const rows = db.prepare('SELECT serial, service, status, cert_pem, set_dir FROM certificates').all() as Row[];
    const services = db.prepare('SELECT name, active_serial FROM services').all() as { name: string; active_serial: string | null }[];
    return { integrity, rows, services };
  } finally {
    db.close();
  }
}

const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+/, '');

/** A visible set is whole: the pair read through ..data belongs together, and the stable links agree. */
function checkSet(dir: string): string | undefined {
  if (!existsSync(join(dir, '..data'))) return undefined; // no set switched in yet
  const set = readCredentialSet(dir);
  const leaf = new X509Certificate(set.certChainPem);
  assert.ok(leaf.checkPrivateKey(createPrivateKey(set.keyPem)), `${dir}: tls.key does not match tls.crt`);
  assert.equal(set.certChainPem.match(/BEGIN CERTIFICATE/g)?.length, 2, `${dir}: tls.crt is leaf + intermediate`);
  assert.match(set.caPem, /BEGIN CERTIFICATE/);
  for (const name of ['tls.crt', 'tls.key'] as const) {
    if (existsSync(join(dir, name))) {
      assert.equal(
        readFileSync(join(dir, name), 'utf8'),
        name === 'tls.crt' ? set.certChainPem : set.keyPem,
        `${dir}/${name} agrees with ..data`,
      );
    }
  }
  const folders = readdirSync(dir).filter((e) => /^\.\.\d{4}_/.test(e));
  assert.ok(folders.length >= 1, `${dir}: the live folder exists`);
  return serialOf(set.certChainPem);
}

function checkLedger(ca: TestCa): ReturnType<typeof readLedger> {
  const ledger = readLedger(ca);
  assert.equal(ledger.integrity, 'ok');
  for (const row of ledger.rows) assert.equal(serialOf(row.cert_pem), row.serial, 'a whole record: its certificate carries its serial');
  for (const svc of ledger.services) {
    const active = ledger.rows.filter((r) => r.service === svc.name && r.status === 'active');
    assert.ok(active.length <= 1, `${svc.name}: ${active.length} active records`);
    if (svc.active_serial)
      assert.deepEqual(
        active.map((r) => r.serial),
        [svc.active_serial],
        `${svc.name}: services.active_serial is the one active record`,
      );
  }
  return ledger;
}

function waitExit(child: ReturnType<typeof spawnSvcca>): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.resume();
  return new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stderr })));
}

describe('kill -9 at random moments', () => {
  const ca = makeCa();
  after(() => ca.cleanup());
  const SERVICES = ['alpha', 'beta', 'ns/prod/gamma', 'delta'];
  const setDir = (svc: string) => join(ca.root, 'sets', svc);

  it('leaves every set absent or whole, every record whole, the database intact, and the next issue working', async () => {
    const TRIES = 50;
    // One uninterrupted issue sets the kill window: from start-up to just before the end.
    const runMs = await timeRun(['issue', 'calibration', '--out', setDir('calibration'), '--dir', ca.dir]);
    let killed = 0;
    let completed = 0;
    for (let i = 0; i < TRIES; i++) {
      const svc = SERVICES[i % SERVICES.length]!;
      const child = spawnSvcca(['issue', svc, '--out', setDir(svc), '--dir', ca.dir]);
      const exited = waitExit(child);
      const delay = Math.floor(Math.random() * runMs);
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      const res = await exited;
      clearTimeout(timer);
      if (res.signal === 'SIGKILL') killed++;
      else {
        assert.equal(res.code, 0, `an issue that was not killed succeeds: ${res.stderr}`);
        completed++;
      }
      const ledger = checkLedger(ca);
      const known = new Set(ledger.rows.map((r) => r.serial));
      for (const s of SERVICES) {
        const serial = checkSet(setDir(s));
        // The record is committed before the set is switched: no set the CA does not know.
        if (serial !== undefined) assert.ok(known.has(serial), `${s}: the set's certificate ${serial} is in the ledger`);
      }
    }
    assert.ok(killed > 0, `some processes were killed mid-way (${killed} killed, ${completed} completed)`);

    for (const svc of SERVICES) {
      const res = await waitExit(spawnSvcca(['issue', svc, '--out', setDir(svc), '--dir', ca.dir]));
      assert.equal(res.code, 0, `the next issue of ${svc} works: ${res.stderr}`);
      const serial = checkSet(setDir(svc));
      const ledger = checkLedger(ca);
      const active = ledger.services.find((s) => s.name === svc)?.active_serial;
      assert.equal(serial, active, `${svc}: the set holds the active certificate`);
      assert.equal(readdirSync(setDir(svc)).filter((e) => /^\.\.\d{4}_/.test(e)).length, 1, `${svc}: crash orphans cleaned`);
    }
  });
});

describe('concurrent svcca processes', () => {
  it('20 concurrent issues of 20 services leave 20 records with distinct serials', async () => {
    const ca = makeCa();
    try {
      const services = Array.from({ length: 20 }, (_, i) => `svc-${i}`);
      const results = await Promise.all(services.map((s) => waitExit(spawnSvcca(['issue', s, '--dir', ca.dir]))));
      results.forEach((r, i) => {
        assert.equal(r.code, 0, `${services[i]}: ${r.stderr}`);
      });
      const ledger = checkLedger(ca);
      assert.equal(ledger.rows.length, 20);
      assert.equal(new Set(ledger.rows.map((r) => r.serial)).size, 20, 'distinct serials');
      assert.deepEqual(ledger.rows.map((r) => r.service).sort(), [...services].sort());
      assert.ok(ledger.rows.every((r) => r.status === 'active'));
      for (const s of services) assert.ok(checkSet(join(ca.dir, 'issued', s)) !== undefined, `${s}: set written`);
    } finally {
      ca.cleanup();
    }
  });

  it('20 concurrent re-issues of one service leave exactly one active record and one whole set', async () => {
    const ca = makeCa();
    try {
      const out = join(ca.root, 'one');
      ca.issue('one');
      const results = await Promise.all(
        Array.from({ length: 20 }, () => waitExit(spawnSvcca(['issue', 'one', '--out', out, '--dir', ca.dir]))),
      );
      results.forEach((r) => {
        assert.equal(r.code, 0, r.stderr);
      });
      const ledger = checkLedger(ca);
      const mine = ledger.rows.filter((r) => r.service === 'one');
      assert.equal(mine.length, 21);
      assert.equal(new Set(mine.map((r) => r.serial)).size, 21);
      const active = mine.filter((r) => r.status === 'active');
      assert.equal(active.length, 1, 'exactly one active record');
      assert.equal(mine.filter((r) => r.status === 'superseded').length, 20);
      const serial = checkSet(out);
      assert.equal(serial, active[0]!.serial, 'the set on disk holds the active certificate');
      assert.equal(readdirSync(out).filter((e) => /^\.\.\d{4}_/.test(e)).length, 1, 'one folder left');
    } finally {
      ca.cleanup();
    }
  });
});

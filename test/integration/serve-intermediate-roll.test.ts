/**
 * `svcca rotate --intermediate` while `svcca serve` runs (issue 16): the server notices
 * the roll, signs with the new intermediate from then on, re-issues its own certificate
 * under it, and still renews a service whose current certificate came from the retired
 * intermediate — the case every fleet meets once a year. Real CLI, real `svcca renew`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { once } from 'node:events';
import { makeCa, run, type TestCa } from '../helpers/cli.js';
import { parseCertificate, type CertInfo } from '../../common/x509.js';
import { decodeCertificates } from '../../common/pem.js';
import { readLedger, readSet } from './cli-rotate-helpers.js';
import { startServeProcess, svccaClient, type RunningServe } from './serve-harness.js';
import { eventually } from './sidecar-reload-helpers.js';

describe('svcca serve across an intermediate roll', () => {
  let ca: TestCa;
  let serve: RunningServe;
  const sets: Record<string, string> = {};

  const intermediate = (): CertInfo =>
    parseCertificate(decodeCertificates(readFileSync(join(ca.dir, 'intermediate.crt'), 'utf8'), 'i')[0]!);
  const leafOf = (setDir: string): CertInfo =>
    parseCertificate(decodeCertificates(readFileSync(join(setDir, 'tls.crt'), 'utf8'), 'set')[0]!);
  /** The certificate the server presents now. */
  const served = async (): Promise<CertInfo> => {
    const [host, port] = serve.url.slice('https://'.length).split(':') as [string, string];
    const s = tlsConnect({ host, port: Number(port), ca: readFileSync(join(ca.dir, 'ca.crt')), checkServerIdentity: () => undefined });
    await once(s, 'secureConnect');
    const raw = (s.getPeerCertificate(false) as { raw: Buffer }).raw;
    s.destroy();
    return parseCertificate(raw);
  };
  const verifies = (setDir: string) =>
    run('openssl', ['verify', '-CAfile', join(ca.dir, 'root.crt'), '-untrusted', join(setDir, 'tls.crt'), join(setDir, 'tls.crt')]);

  before(async () => {
    ca = makeCa();
    sets.early = ca.issue('roll-early');
    sets.late = ca.issue('roll-late');
    // 20 s server certificates: the server looks for a roll every 2 s.
    serve = await startServeProcess(ca, ['--cert-ttl', '20s']);
  });
  after(async () => {
    await serve?.stop();
    ca?.cleanup();
  });

  it('before the roll, a renewal is signed by the first intermediate', async () => {
    const res = await svccaClient(['renew', '--ca', serve.url, '--dir', sets.early!, '--force']);
    assert.equal(res.status, 0, res.stderr);
    assert.equal(leafOf(sets.early!).authorityKeyId, intermediate().subjectKeyId);
  });

  it('after the roll: the server signs with the new intermediate, its own certificate too, and renews a leaf of the retired one', async () => {
    const first = intermediate();
    const oldLeaf = leafOf(sets.late!);
    assert.equal(oldLeaf.authorityKeyId, first.subjectKeyId);

    const roll = ca.svcca(['rotate', '--intermediate']);
    assert.equal(roll.status, 0, roll.stderr);
    const second = intermediate();
    assert.notEqual(second.subjectKeyId, first.subjectKeyId);
    await serve.waitForLine((l) => l.event === 'intermediate', 15_000);
    const own = await eventually('the server presents a certificate of the new intermediate', async () => {
      const c = await served();
      return c.authorityKeyId === second.subjectKeyId ? c : undefined;
    });
    assert.deepEqual(own.uris, [`spiffe://${ca.trustDomain}/svcca`]);

    // roll-late still holds its certificate from the retired intermediate: it renews with it.
    const res = await svccaClient(['renew', '--ca', serve.url, '--dir', sets.late!, '--force', '--json']);
    assert.equal(res.status, 0, res.stderr);
    const out = JSON.parse(res.stdout) as { serial: string; previousSerial: string };
    assert.equal(out.previousSerial, oldLeaf.serialHex);
    const renewed = leafOf(sets.late!);
    assert.equal(renewed.serialHex, out.serial);
    assert.equal(renewed.authorityKeyId, second.subjectKeyId, 'signed by the new intermediate');
    const v = verifies(sets.late!);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(readSet(sets.late!).keyMatches, true);
    const ledger = readLedger(ca);
    assert.equal(ledger.active.get('roll-late')!.serial, out.serial);
    assert.equal(ledger.certs.find((c) => c.serial === oldLeaf.serialHex)!.status, 'superseded');
  });
});

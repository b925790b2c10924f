/**
 * `svcca crl` and crl.pem: the intermediates' CRLs re-signed with a growing number and the
 * root's copied verbatim; a bad --next-update refused; an entry kept until a CRL issued
 * after its certificate's end listed it, then dropped; a crl.pem left behind the ledger (a
 * crash between commit and write) caught by the next rotate; and a Node `tls` server given
 * the CRLs as an array accepting a live client and refusing a revoked one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { crlText, isOneLineError, readCrlFile, readSet, sleep } from './cli-rotate-helpers.js';

describe('svcca crl', () => {
  let ca: TestCa;
  before(() => {
    ca = makeCa();
    ca.issue('order-service');
  });
  after(() => ca.cleanup());

  it('re-signs the intermediate CRL with a higher number and keeps the root CRL byte for byte', () => {
    const before = readCrlFile(ca);
    const n0 = crlText(ca, before.crls[1]!).number;
    const res = ca.svcca(['crl', '--next-update', '12h']);
    assert.equal(res.status, 0, res.stderr);
    const after = readCrlFile(ca);
    assert.equal(after.crls[0], before.crls[0]);
    const t = crlText(ca, after.crls[1]!);
    assert.ok(t.number > n0);
    const next = Date.parse(/Next Update: (.*)/.exec(t.text)![1]!);
    assert.ok(Math.abs(next - (Date.now() + 12 * 3_600_000)) < 120_000, `next update ${new Date(next).toISOString()}`);
    assert.deepEqual(after.certs, before.certs);
  });

  for (const bad of ['abc', '0h', '10m', '400d', '-1h']) {
    it(`--next-update ${bad}: one line, exit 1, crl.pem unchanged`, () => {
      const file = readFileSync(join(ca.dir, 'crl.pem'));
      const res = ca.svcca(['crl', `--next-update=${bad}`]);
      assert.ok(isOneLineError(res), `${res.status} ${res.stderr}`);
      assert.match(res.stderr, /--next-update/);
      assert.deepEqual(readFileSync(join(ca.dir, 'crl.pem')), file);
    });
  }

  it('an entry stays until a CRL issued after its certificate expired listed it, then goes', async () => {
    // Revoked (and listed) before its end, so the TTL must outlast starting two CLI
    // processes: its end is whole seconds, as little as ttl − 1 s after issue's clock. With
    // 2 s, a machine twice as slow as this one left 0.4 s, and a slower one revokes after
    // the end, which `revoke` refuses.
    ca.issue('ephemeral', ['--ttl', '4s']);
    const { serial, leafPem } = readSet(join(ca.root, 'sets', 'ephemeral'));
    const end = Date.parse(new X509Certificate(leafPem).validTo);
    const revoked = ca.svcca(['revoke', 'ephemeral']);
    assert.equal(revoked.status, 0, revoked.stderr);
    assert.ok(crlText(ca, readCrlFile(ca).crls[1]!).serials.includes(serial));
    // Past its end by the certificate's own clock, however long the steps above took.
    await sleep(Math.max(0, end - Date.now()) + 100);
    assert.equal(ca.svcca(['crl']).status, 0);
    assert.ok(crlText(ca, readCrlFile(ca).crls[1]!).serials.includes(serial), 'the first CRL after its end still lists it');
    assert.equal(ca.svcca(['crl']).status, 0);
    assert.ok(!crlText(ca, readCrlFile(ca).crls[1]!).serials.includes(serial), 'then it is dropped');
  });

  it('a crl.pem behind the ledger (crash between commit and write) is republished by the next rotate', () => {
    ca.issue('leaky');
    const stale = readFileSync(join(ca.dir, 'crl.pem'));
    assert.equal(ca.svcca(['revoke', 'leaky']).status, 0);
    const serial = readSet(join(ca.root, 'sets', 'leaky')).serial;
    writeFileSync(join(ca.dir, 'crl.pem'), stale);
    const res = ca.svcca(['rotate']);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /Republished .*behind the ledger/);
    assert.ok(crlText(ca, readCrlFile(ca).crls[1]!).serials.includes(serial));
    const quiet = ca.svcca(['rotate']);
    assert.doesNotMatch(quiet.stdout, /Republished/, 'and once current, it is left alone');
  });
});

describe('crl.pem in a Node tls server (the CRLs given as an array)', () => {
  let ca: TestCa;
  let strict: tls.Server;
  let lenient: tls.Server;
  let live: string;
  let revoked: string;

  async function serve(srv: string, crls: readonly string[], rejectUnauthorized: boolean): Promise<tls.Server> {
    const server = tls.createServer({
      key: readFileSync(join(srv, 'tls.key')),
      cert: readFileSync(join(srv, 'tls.crt')),
      ca: readFileSync(join(ca.dir, 'root.crt')),
      // Node's `crl` option reads only the first CRL of each string (FACTS): one per element.
      crl: [...crls],
      requestCert: true,
      rejectUnauthorized,
    });
    server.on('secureConnection', (s) => s.end('hello'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return server;
  }

  before(async () => {
    ca = makeCa();
    const srv = ca.issue('payment-service');
    live = ca.issue('order-service');
    revoked = ca.issue('intruder');
    assert.equal(ca.svcca(['revoke', 'intruder', '--reason', 'keyCompromise']).status, 0);
    const crls = readCrlFile(ca).crls;
    assert.equal(crls.length, 2);
    strict = await serve(srv, crls, true);
    // The same check, but the server keeps the socket so OpenSSL's reason can be read.
    lenient = await serve(srv, crls, false);
  });
  after(async () => {
    strict.close();
    lenient.close();
    ca.cleanup();
  });

  interface Verdict {
    accepted: boolean;
    authorized: boolean;
    reason: string;
  }

  function connectAs(server: tls.Server, setDir: string): Promise<Verdict> {
    return new Promise((resolve) => {
      const onAccept = (s: tls.TLSSocket) =>
        finish({ accepted: true, authorized: s.authorized, reason: String(s.authorizationError ?? '') });
      const onRefuse = (err: Error) => finish({ accepted: false, authorized: false, reason: err.message });
      const finish = (v: Verdict) => {
        server.off('secureConnection', onAccept);
        server.off('tlsClientError', onRefuse);
        client.destroy();
        resolve(v);
      };
      server.once('secureConnection', onAccept);
      server.once('tlsClientError', onRefuse);
      const client = tls.connect({
        port: (server.address() as AddressInfo).port,
        host: '127.0.0.1',
        key: readFileSync(join(setDir, 'tls.key')),
        cert: readFileSync(join(setDir, 'tls.crt')),
        ca: readFileSync(join(ca.dir, 'root.crt')),
        checkServerIdentity: () => undefined,
      });
      client.on('error', () => undefined);
    });
  }

  it("accepts a live client (every level has a CRL, so Node's all-levels check passes)", async () => {
    const v = await connectAs(strict, live);
    assert.equal(v.accepted, true, v.reason);
    assert.equal(v.authorized, true);
  });

  it('refuses a revoked client', async () => {
    const v = await connectAs(strict, revoked);
    assert.equal(v.accepted, false);
  });

  it('and the reason OpenSSL gives is that the certificate is revoked', async () => {
    const ok = await connectAs(lenient, live);
    assert.equal(ok.authorized, true, ok.reason);
    const v = await connectAs(lenient, revoked);
    assert.equal(v.authorized, false);
    assert.equal(v.reason, 'CERT_REVOKED');
  });
});

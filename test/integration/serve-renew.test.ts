/**
 * `svcca serve` POST /v1/renew (issue 16): a service renews itself with its current
 * certificate and a CSR for a new key, with the real `svcca renew` and with curl; every
 * refusal the issue names gets its JSON error, is logged with caller and address, and is
 * counted; the CRL and trust bundle are served with ETags; the server presents
 * spiffe://<td>/svcca, renews that certificate in process, and drains on SIGTERM.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { makeCa, run, type TestCa } from '../helpers/cli.js';
import { parseCertificate } from '../../common/x509.js';
import { decodeCertificates } from '../../common/pem.js';
import { readLedger, readSet } from './cli-rotate-helpers.js';
import { runAsync, within } from './sidecar-harness.js';
import { curl, curlRenew, opensslCsr, startServeProcess, svccaClient, type RunningServe } from './serve-harness.js';

describe('svcca serve: renewal over mTLS', () => {
  let ca: TestCa;
  let other: TestCa;
  let serve: RunningServe;
  let scratch: string;
  const sets: Record<string, string> = {};
  /** A TLS connection to the CA with the caller set's certificate, reading nothing yet. */
  /** TLS options for the CA with the caller set's certificate. The server's identity is a
   *  SPIFFE ID, not a host name; the chain is still verified. */
  const callerTlsOptions = () => {
    const [host, port] = serve.url.slice('https://'.length).split(':') as [string, string];
    return {
      host,
      port: Number(port),
      cert: readFileSync(join(sets.caller!, 'tls.crt')),
      key: readFileSync(join(sets.caller!, 'tls.key')),
      ca: readFileSync(join(ca.dir, 'ca.crt')),
      checkServerIdentity: () => undefined,
    };
  };
  /** A TLS connection to the CA as the caller, reading nothing yet. */
  const callerSocket = () => tlsConnect(callerTlsOptions());
  /** Reads until a whole response head has arrived. */
  const responseHead = (socket: TLSSocket) =>
    new Promise<string>((resolve, reject) => {
      let text = '';
      const onData = (d: Buffer) => {
        text += d.toString('latin1');
        if (text.includes('\r\n\r\n')) {
          socket.off('data', onData);
          socket.pause();
          resolve(text);
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.once('close', () => reject(new Error(`closed before a response head; got ${JSON.stringify(text.slice(0, 200))}`)));
    });

  before(async () => {
    ca = makeCa();
    other = makeCa();
    scratch = ca.root;
    for (const s of ['api', 'old', 'gone', 'same', 'victim', 'caller', 'hammer']) sets[s] = ca.issue(s);
    sets.names = ca.issue('names', ['--dns', 'names.internal']);
    sets.foreign = other.issue('api');
    // A copy of old's set taken before it is issued again: a superseded certificate.
    sets.oldCopy = join(scratch, 'old-copy');
    cpSync(join(sets.old, '..data'), sets.oldCopy, { recursive: true, dereference: true });
    assert.equal(ca.svcca(['issue', 'old', '--out', sets.old]).status, 0);
    assert.equal(ca.svcca(['revoke', 'gone']).status, 0);
    assert.equal(ca.svcca(['revoke', '--serial', readSet(sets.victim).serial, '--reason', 'keyCompromise']).status, 0);
    // A short server certificate, so that its renewal in process happens during this file.
    serve = await startServeProcess(ca, ['--cert-ttl', '12s']);
  });
  after(async () => {
    await serve?.stop();
    ca?.cleanup();
    other?.cleanup();
  });

  it('svcca renew makes a new key, gets the same names from the ledger and switches the set', async () => {
    const before = readSet(sets.api);
    const keyBefore = readFileSync(join(sets.api, 'tls.key'), 'utf8');
    const res = await svccaClient(['renew', '--ca', serve.url, '--dir', sets.api, '--force', '--json']);
    assert.equal(res.status, 0, res.stderr);
    const out = JSON.parse(res.stdout) as { renewed: boolean; serial: string; previousSerial: string };
    assert.equal(out.renewed, true);
    assert.equal(out.previousSerial, before.serial);
    const after = readSet(sets.api);
    assert.equal(after.serial, out.serial);
    assert.notEqual(after.serial, before.serial);
    assert.equal(after.keyMatches, true);
    assert.notEqual(readFileSync(join(sets.api, 'tls.key'), 'utf8'), keyBefore, 'the key must be new');
    const verify = run('openssl', [
      'verify',
      '-CAfile',
      join(ca.dir, 'root.crt'),
      '-untrusted',
      join(sets.api, 'tls.crt'),
      join(sets.api, 'tls.crt'),
    ]);
    assert.equal(verify.status, 0, verify.stderr);
    const ledger = readLedger(ca);
    assert.equal(ledger.active.get('api')!.serial, after.serial);
    assert.equal(ledger.certs.find((c) => c.serial === before.serial)!.status, 'superseded');
    assert.ok(
      ledger.events.some((e) => e.kind === 'renew' && e.serial === after.serial),
      'the renewal is in the event log',
    );
    // Not due: nothing happens, exit 0.
    const again = await svccaClient(['renew', '--ca', serve.url, '--dir', sets.api]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /Not due/);
    assert.equal(readSet(sets.api).serial, after.serial);
    // Cron rotate leaves a self-renewing service to its owner (it would supersede its certificate).
    const rotate = ca.svcca(['rotate', 'api', '--renew-before', '100%']);
    assert.equal(rotate.status, 0, rotate.stderr);
    assert.match(rotate.stdout, /Skipped api: its owner renews it through `svcca serve`/);
    assert.equal(readLedger(ca).active.get('api')!.serial, after.serial);
  });

  it('a CSR asking for other names gets the names the ledger holds, nothing else', async () => {
    const { csrPem } = await opensslCsr(scratch, 'evil', { subj: '/CN=admin', san: 'URI:spiffe://example.org/admin,DNS:evil.example.com' });
    const res = await curlRenew(serve, scratch, csrPem, sets.names);
    assert.equal(res.status, 200, res.body);
    const leaf = parseCertificate(decodeCertificates(res.json!.certificate!, 'answer')[0]!);
    assert.deepEqual(leaf.uris, ['spiffe://example.org/names']);
    assert.deepEqual(leaf.dnsNames, ['names.internal']);
    assert.equal(leaf.subjectCN, 'names');
  });

  const refusals: { name: string; set?: string; csr?: 'fresh' | 'own-key' | 'victim-key' | 'garbage'; status: number; code: string }[] = [
    { name: 'no client certificate', csr: 'fresh', status: 401, code: 'no-client-certificate' },
    { name: 'a superseded certificate', set: 'oldCopy', csr: 'fresh', status: 403, code: 'superseded' },
    { name: 'a revoked certificate', set: 'gone', csr: 'fresh', status: 403, code: 'revoked' },
    { name: 'a certificate of another CA', set: 'foreign', csr: 'fresh', status: 403, code: 'untrusted-certificate' },
    { name: 'a CSR for the current key', set: 'same', csr: 'own-key', status: 400, code: 'same-key' },
    { name: 'a CSR for a key blocked by keyCompromise', set: 'caller', csr: 'victim-key', status: 403, code: 'key-blocked' },
    { name: 'a garbage CSR', set: 'caller', csr: 'garbage', status: 400, code: 'bad-csr' },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name} (${r.status} ${r.code}), logs it with caller and address, and counts it`, async () => {
      const setDir = r.set ? sets[r.set] : undefined;
      let csrPem = 'this is not a CSR';
      if (r.csr === 'fresh') csrPem = (await opensslCsr(scratch, `fresh-${r.code}`)).csrPem;
      if (r.csr === 'own-key') csrPem = (await opensslCsr(scratch, 'own', { keyPath: join(setDir!, 'tls.key') })).csrPem;
      if (r.csr === 'victim-key') csrPem = (await opensslCsr(scratch, 'victim', { keyPath: join(sets.victim!, 'tls.key') })).csrPem;
      const res = await curlRenew(serve, scratch, csrPem, setDir);
      assert.equal(res.status, r.status, res.body);
      assert.equal(res.json?.error, r.code, res.body);
      assert.ok((res.json?.message ?? '').length > 20, 'the message says what and what to do');
      const line = await serve.waitForLine((l) => l.event === 'request' && l.outcome === r.code);
      assert.equal(line.address, '127.0.0.1');
      assert.equal(line.status, r.status);
      if (r.set && r.set !== 'foreign') assert.match(String(line.caller), /^spiffe:\/\/example\.org\//);
    });
  }

  it('refuses a 10 MB body with 413 without reading it, and keeps serving', async () => {
    const big = join(scratch, 'big.json');
    writeFileSync(big, JSON.stringify({ csr: 'x'.repeat(10 * 1024 * 1024) }));
    const res = await curl(`${serve.url}/v1/renew`, [
      '--cert',
      join(sets.caller!, 'tls.crt'),
      '--key',
      join(sets.caller!, 'tls.key'),
      '-H',
      'content-type: application/json',
      '--data-binary',
      `@${big}`,
    ]);
    assert.equal(res.status, 413, res.body);
    assert.equal(res.json?.error, 'body-too-large');
    assert.equal((await curl(`${serve.url}/v1/ca.crt`, [])).status, 200);
  });

  it('answers an oversized upload announced with Expect: 100-continue with 413, not 100 Continue', async () => {
    const socket = callerSocket();
    try {
      await once(socket, 'secureConnect');
      socket.write(
        'POST /v1/renew HTTP/1.1\r\nHost: ca\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n\r\n',
      );
      const head = await within('the answer', 20_000, responseHead(socket));
      assert.match(head, /^HTTP\/1\.1 413 /, `the first answer: ${head.split('\r\n')[0]}`);
    } finally {
      socket.destroy();
    }
  });

  it('after a 413, takes and drops the rest of the upload instead of resetting the connection', async () => {
    const socket = callerSocket();
    const errors: string[] = [];
    socket.on('error', (err) => errors.push(err.message));
    try {
      await once(socket, 'secureConnect');
      const total = 10 * 1024 * 1024;
      socket.write(`POST /v1/renew HTTP/1.1\r\nHost: ca\r\nContent-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      socket.write(chunk);
      const head = await within('the answer', 20_000, responseHead(socket));
      assert.match(head, /^HTTP\/1\.1 413 /);
      // The answer is read; the client goes on sending what it announced, as curl does.
      const sendRest = async () => {
        for (let sent = chunk.length; sent < total && errors.length === 0 && !socket.destroyed; sent += chunk.length) {
          if (!socket.write(chunk)) await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
        }
        socket.end();
        if (!socket.closed) await once(socket, 'close');
      };
      // Bounded: a server that stops reading leaves the writes stuck rather than failed.
      await within('sending the refused body to its end', 30_000, sendRest());
      assert.deepEqual(errors, [], 'the connection was reset while the refused body was still being sent');
    } finally {
      socket.destroy();
    }
  });

  it('refuses a body that is not JSON, and an unknown path, as JSON errors', async () => {
    const auth = ['--cert', join(sets.caller!, 'tls.crt'), '--key', join(sets.caller!, 'tls.key')];
    const plain = await curl(`${serve.url}/v1/renew`, [...auth, '-H', 'content-type: text/plain', '--data', 'hello']);
    assert.equal(plain.status, 415);
    assert.equal(plain.json?.error, 'unsupported-media-type');
    const notFound = await curl(`${serve.url}/v2/nothing`, []);
    assert.equal(notFound.status, 404);
    assert.equal(notFound.json?.error, 'not-found');
  });

  it('rate-limits one caller: a leaked key cannot hammer the CA', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await curlRenew(serve, scratch, 'garbage', sets.hammer)).status);
    assert.ok(
      statuses.slice(0, 10).every((s) => s === 400),
      statuses.join(','),
    );
    assert.equal(statuses[11], 429, statuses.join(','));
    // Another service is not affected.
    assert.equal((await curlRenew(serve, scratch, 'garbage', sets.caller)).status, 400);
  });

  it('serves crl.pem and ca.crt with ETags, 304 when unchanged, no client certificate needed', async () => {
    for (const [path, file] of [
      ['/v1/crl.pem', 'crl.pem'],
      ['/v1/ca.crt', 'ca.crt'],
    ] as const) {
      const headers = join(scratch, 'headers.txt');
      const first = await curl(`${serve.url}${path}`, ['-D', headers]);
      assert.equal(first.status, 200);
      assert.equal(first.body, readFileSync(join(ca.dir, file), 'utf8'));
      const etag = /^etag: (.+)$/im.exec(readFileSync(headers, 'utf8'))?.[1]?.trim();
      assert.ok(etag, 'an ETag header');
      const second = await curl(`${serve.url}${path}`, ['-H', `If-None-Match: ${etag}`]);
      assert.equal(second.status, 304);
    }
  });

  it('admin listener: /healthz, /readyz and /metrics counting the outcomes', async () => {
    assert.equal((await curl(`${serve.admin}/healthz`, [])).status, 200);
    const ready = await curl(`${serve.admin}/readyz`, []);
    assert.equal(ready.status, 200, ready.body);
    assert.match(ready.body, /spiffe:\/\/example\.org\/svcca valid until/);
    const metrics = (await curl(`${serve.admin}/metrics`, [])).body;
    assert.match(metrics, /svcca_serve_requests_total\{route="renew",outcome="revoked"\} 1/);
    assert.match(metrics, /svcca_serve_requests_total\{route="renew",outcome="ok"\} [1-9]/);
    assert.match(metrics, /svcca_serve_process_resident_memory_bytes \d+/);
  });

  it('presents spiffe://<td>/svcca and renews that certificate in process', async () => {
    const first = serve.lines.find((l) => l.event === 'certificate')!;
    await serve.waitForLine((l) => l.msg === 'renewed its own server certificate', 20_000);
    const shown = await runAsync(
      'openssl',
      ['s_client', '-connect', serve.url.slice('https://'.length), '-CAfile', join(ca.dir, 'ca.crt'), '-verify_return_error'],
      { input: '', until: /Verify return code/ },
    );
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(shown.stdout)?.[0];
    assert.ok(pem, shown.stderr);
    const leaf = parseCertificate(decodeCertificates(pem, 's_client')[0]!);
    assert.deepEqual(leaf.uris, ['spiffe://example.org/svcca']);
    assert.notEqual(leaf.serialHex, first.serial, 'a new handshake sees the renewed server certificate');
    assert.match(shown.stdout, /Verify return code: 0/);
    // Clients still renew through it.
    const res = await svccaClient(['renew', '--ca', serve.url, '--dir', sets.caller!, '--force']);
    assert.equal(res.status, 0, res.stderr);
  });

  it('resumes no TLS session: every connection proves its certificate in a full handshake', async () => {
    const options = callerTlsOptions();
    const { host } = options;
    // One request on a connection, keeping whatever session the server offers for reuse.
    const oneRequest = (session?: Buffer) =>
      new Promise<{ reused: boolean; session: Buffer | undefined }>((resolve, reject) => {
        let offered: Buffer | undefined;
        let reused = false;
        const socket = tlsConnect({ ...options, session }, () => {
          reused = socket.isSessionReused();
          socket.write(`GET /v1/ca.crt HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
        });
        socket.on('session', (s: Buffer) => {
          offered = s;
        });
        socket.on('error', reject);
        socket.resume();
        socket.on('close', () => resolve({ reused, session: offered }));
      });
    const first = await oneRequest();
    assert.ok(first.session, 'the server sent the client something to offer back');
    const second = await oneRequest(first.session);
    assert.equal(second.reused, false, 'a connection to the CA resumed an earlier session');
  });

  it('SIGTERM drains: a request in flight is answered, then it exits 0', async () => {
    const body = join(scratch, 'slow.json');
    writeFileSync(body, JSON.stringify({ csr: 'x'.repeat(4000) }));
    // About two seconds of upload at 2 KB/s: SIGTERM arrives while the body is still coming.
    const slow = curl(`${serve.url}/v1/renew`, [
      '--limit-rate',
      '2k',
      '--cert',
      join(sets.caller!, 'tls.crt'),
      '--key',
      join(sets.caller!, 'tls.key'),
      '-H',
      'content-type: application/json',
      '--data-binary',
      `@${body}`,
    ]);
    await new Promise((r) => setTimeout(r, 500));
    const exited = serve.stop();
    const answer = await slow;
    assert.equal(answer.status, 400, `the request in flight was answered (${answer.body})`);
    assert.equal(answer.json?.error, 'bad-csr');
    assert.equal(await exited, 0);
    assert.ok(serve.lines.some((l) => l.event === 'drain'));
  });
});

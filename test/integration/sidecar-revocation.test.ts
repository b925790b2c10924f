/**
 * Revocation, checked by the sidecar itself against crl.pem: a new crl.pem is picked up
 * without a restart; a revoked caller is refused on a fresh handshake and on a resumed
 * TLS session (which skips OpenSSL's checks); an open connection of a caller revoked
 * since is closed; and an expired CRL keeps being enforced instead of locking everyone out.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { makeCa, TEST_PASSPHRASE, type TestCa } from '../helpers/cli.js';
import { decodePemBlocks, encodePem } from '../../common/pem.js';
import { parseCrlDer, subjectNameDer } from '../../common/crl.js';
import { crlPemFile, loadCaDir, makeCrlDer } from '../helpers/attacker-ca.js';
import {
  adminGet,
  credsFromDir,
  refusalFrom,
  revokeSerials,
  serialOfSet,
  sidecarYaml,
  splitHostPort,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';

/** A fresh connection from `creds` gets nothing back, and `s` logs it refused as revoked. */
async function assertRevokedRefusal(s: RunningSidecar, creds: ReturnType<typeof credsFromDir>, payload: string): Promise<void> {
  const r = await tlsExchange(s.inbound!, creds, { payload });
  assert.equal(r.data, '');
  assert.equal((await s.waitForLine(refusalFrom(r.localPort))).reason, 'revoked');
}

describe('sidecar revocation', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let order: string;
  let inventory: string;

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    inventory = ca.issue('inventory-service');
    const payment = ca.issue('payment-service');
    echo = await startEchoService('payment');
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service, inventory-service]\n');
    sidecar = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: payment,
        crl: join(ca.dir, 'crl.pem'),
        policy,
        forward: echo.address,
        extra: 'admin:\n  listen: 127.0.0.1:0\nreload:\n  interval: 200ms',
      }),
    );
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  it('refuses a revoked caller on a new handshake and on a resumed session, and closes its open connection', async () => {
    const creds = credsFromDir(order);
    // Before: allowed, and the client keeps a TLS session ticket.
    const first = await tlsExchange(sidecar.inbound!, creds, { payload: 'one\n' });
    assert.equal(first.data, 'hello payment\none\n');
    assert.ok(first.session, 'the sidecar issues session tickets');
    // Proves resumption works for an allowed caller, so the refusal below is the CRL's doing.
    const resumedOk = await tlsExchange(sidecar.inbound!, creds, { payload: 'two\n', session: first.session! });
    assert.equal(resumedOk.reused, true);
    assert.equal(resumedOk.data, 'hello payment\ntwo\n');

    // An open connection, idle, from before the revocation.
    const [host, port] = splitHostPort(sidecar.inbound!);
    const open = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
    open.on('error', () => undefined);
    await new Promise<void>((resolve) => open.once('data', () => resolve()));
    const openClosed = new Promise<void>((resolve) => open.once('close', () => resolve()));

    const via = await revokeSerials(ca, [serialOfSet(order)], TEST_PASSPHRASE);
    await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.crlChanged === true);

    const resumed = await tlsExchange(sidecar.inbound!, creds, { payload: 'three\n', session: first.session! });
    assert.equal(resumed.reused, true, 'the client really resumed its session');
    assert.equal(resumed.data, '');
    const line = await sidecar.waitForLine(refusalFrom(resumed.localPort));
    assert.equal(line.reason, 'revoked', `via ${via}: ${line.detail}`);
    assert.equal(line.peer, 'spiffe://example.org/order-service');
    assert.equal(line.resumed, true);

    const fresh = await tlsExchange(sidecar.inbound!, creds, { payload: 'four\n' });
    assert.equal(fresh.reused, false);
    assert.equal(fresh.data, '');
    assert.equal((await sidecar.waitForLine(refusalFrom(fresh.localPort))).reason, 'revoked');

    await openClosed;
    const closing = await sidecar.waitForLine((l) => l.event === 'refused' && l.open === true);
    assert.equal(closing.reason, 'revoked');

    // Others are unaffected.
    const other = await tlsExchange(sidecar.inbound!, credsFromDir(inventory), { payload: 'five\n' });
    assert.equal(other.data, 'hello payment\nfive\n');
  });

  it('keeps enforcing an expired CRL: what it lists is refused, the others get in, /readyz stays ready and says so', async () => {
    const { root, intermediate } = loadCaDir(ca.dir, TEST_PASSPHRASE);
    const past = new Date(Date.now() - 3_600_000);
    const expiredCrl = join(ca.root, 'crl-expired.pem');
    writeFileSync(
      expiredCrl,
      crlPemFile(
        [
          makeCrlDer(root, { crlNumber: 1n, thisUpdate: new Date(Date.now() - 7_200_000), nextUpdate: past }),
          makeCrlDer(intermediate, {
            serials: [serialOfSet(inventory)],
            crlNumber: 1n,
            thisUpdate: new Date(Date.now() - 7_200_000),
            nextUpdate: past,
          }),
        ],
        [intermediate],
      ),
    );
    const echo2 = await startEchoService('payment');
    const policy = join(ca.root, 'policy.yaml');
    const s2 = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: join(ca.root, 'sets', 'payment-service'),
        crl: expiredCrl,
        policy,
        forward: echo2.address,
        extra: 'admin:\n  listen: 127.0.0.1:0',
      }),
      'sidecar-expired-crl.yaml',
    );
    try {
      const logged = await s2.waitForLine((l) => l.event === 'crl-expired');
      assert.equal(logged.level, 'error');

      await assertRevokedRefusal(s2, credsFromDir(inventory), 'x\n');

      const unlisted = await tlsExchange(s2.inbound!, credsFromDir(order), { payload: 'y\n' });
      // order-service was revoked in the shared CA above, but this CRL does not list it.
      assert.equal(unlisted.data, 'hello payment\ny\n');

      const ready = await adminGet(s2.admin!, '/readyz');
      assert.equal(ready.status, 200);
      assert.match(ready.body, /crl: EXPIRED/);
      const metrics = await adminGet(s2.admin!, '/metrics');
      assert.match(metrics.body, /^svcca_sidecar_crl_expired 1$/m);
      assert.match(metrics.body, /svcca_sidecar_refusals_total\{direction="inbound",reason="revoked"\} 1/);
    } finally {
      await s2.stop();
      await echo2.close();
    }
  });

  it('refuses to swap in a crl.pem whose signature does not verify, keeping the one in force', async () => {
    const crlPath = join(ca.dir, 'crl.pem');
    const good = readFileSync(crlPath, 'utf8');
    const { intermediate } = loadCaDir(ca.dir, TEST_PASSPHRASE);
    writeFileSync(crlPath, crlPemFile([makeCrlDer(intermediate, { crlNumber: 999_999n, corruptSignature: true })], [intermediate]));
    try {
      const refused = await sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'failure');
      assert.match(String(refused.reason), /signature does not verify/);
      // The revocation in force still holds.
      await assertRevokedRefusal(sidecar, credsFromDir(order), 'z\n');
    } finally {
      writeFileSync(crlPath, good);
    }
  });
  it("refuses a crl.pem with the intermediate's CRL cut out (the root's left genuine): the revoked caller stays refused", async () => {
    // What the attacker can do without any key: drop one signed block from the real file.
    const crlPath = join(ca.dir, 'crl.pem');
    const good = readFileSync(crlPath, 'utf8');
    const { intermediate } = loadCaDir(ca.dir, TEST_PASSPHRASE);
    const intermediateName = subjectNameDer(intermediate.certDer);
    const blocks = decodePemBlocks(good);
    const kept = blocks.filter((b) => !(b.label === 'X509 CRL' && parseCrlDer(b.der).issuerNameDer.equals(intermediateName)));
    assert.equal(kept.length, blocks.length - 1, 'the file held one CRL from the intermediate');
    assert.ok(
      kept.some((b) => b.label === 'X509 CRL'),
      "the root's CRL stays",
    );
    const stripped = kept.map((b) => encodePem(b.label, b.der)).join('');

    const strippedCopy = join(ca.root, 'crl-stripped.pem');
    writeFileSync(strippedCopy, stripped);
    // A start on such a file fails with the reason.
    const start = await startSidecarProcess(
      ca.root,
      sidecarYaml({
        setDir: join(ca.root, 'sets', 'payment-service'),
        crl: strippedCopy,
        policy: join(ca.root, 'policy.yaml'),
        forward: echo.address,
      }),
      'sidecar-stripped-crl.yaml',
    ).then(
      async (started) => {
        await started.stop('SIGKILL');
        return 'the sidecar started';
      },
      (err: Error) => err.message,
    );
    assert.match(start, /holds no CRL from .*the CA that issued this sidecar's certificate/);

    writeFileSync(crlPath, stripped);
    try {
      const refused = await sidecar.waitForLine(
        (l) => l.event === 'reload' && l.result === 'failure' && /holds no CRL from/.test(String(l.reason)),
      );
      assert.equal(refused.refusal, 'crl-invalid');
      await assertRevokedRefusal(sidecar, credsFromDir(order), 'z\n');
      const other = await tlsExchange(sidecar.inbound!, credsFromDir(inventory), { payload: 'w\n' });
      assert.equal(other.data, 'hello payment\nw\n');
    } finally {
      writeFileSync(crlPath, good);
    }
  });
  it('fails /readyz, naming the fix, when its own certificate is revoked', async () => {
    assert.equal((await adminGet(sidecar.admin!, '/readyz')).status, 200);
    const own = serialOfSet(join(ca.root, 'sets', 'payment-service'));
    await revokeSerials(ca, [own], TEST_PASSPHRASE);
    // Earlier reload lines are still in the log: wait for the readiness itself.
    let ready = await adminGet(sidecar.admin!, '/readyz');
    for (
      const deadline = Date.now() + 15_000;
      ready.status === 200 && Date.now() < deadline;
      ready = await adminGet(sidecar.admin!, '/readyz')
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(ready.status, 503, ready.body);
    assert.match(
      ready.body,
      new RegExp(`is revoked \\(serial ${own} is on the CRL\\); issue it again with \`svcca issue payment-service\``),
    );
  });
});

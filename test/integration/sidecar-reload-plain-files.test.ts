/**
 * A plain credential folder (no `..data`: files another tool replaces) is followed too:
 * a pair renamed over the old files, a pair rewritten in place, and a torn pair —
 * tls.crt written seconds before tls.key (spiffe-helper#422) — which must not take the
 * sidecar down: the old pair keeps serving until the matching key is there.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import {
  credsFromDir,
  serialOfSet,
  sidecarYaml,
  startEchoService,
  startSidecarProcess,
  tlsExchange,
  writePolicy,
  type RunningSidecar,
} from './sidecar-harness.js';
import { servedSerial, svccaAsync, WATCH_ONLY } from './sidecar-reload-helpers.js';

describe('sidecar reload: plain files', () => {
  let ca: TestCa;
  let sidecar: RunningSidecar;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  let plain: string;
  let order: string;
  let round = 0;

  /** A fresh payment-service pair from the real CLI, in a staging folder. */
  async function freshPair(): Promise<string> {
    const out = join(ca.root, `staging-${round++}`);
    const r = await svccaAsync(ca.dir, ['issue', 'payment-service', '--out', out]);
    if (r.status !== 0) throw new Error(r.stderr);
    return out;
  }

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    const issued = ca.issue('payment-service');
    plain = join(ca.root, 'plain-payment');
    mkdirSync(plain);
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) copyFileSync(join(issued, f), join(plain, f));
    const policy = writePolicy(ca.root, 'services:\n  payment-service:\n    allow: [order-service]\n');
    echo = await startEchoService('payment');
    sidecar = await startSidecarProcess(ca.root, sidecarYaml({ setDir: plain, policy, forward: echo.address, extra: WATCH_ONLY }));
  });
  after(async () => {
    await sidecar?.stop();
    await echo?.close();
    ca?.cleanup();
  });

  const applied = (serial: string) => sidecar.waitForLine((l) => l.event === 'reload' && l.result === 'success' && l.serial === serial);

  it('picks up a pair renamed over the old files', async () => {
    const staged = await freshPair();
    for (const f of ['tls.key', 'tls.crt']) {
      copyFileSync(join(staged, f), join(plain, `.${f}.new`));
      renameSync(join(plain, `.${f}.new`), join(plain, f));
    }
    const serial = serialOfSet(plain);
    await applied(serial);
    assert.equal(await servedSerial(sidecar.inbound!, credsFromDir(order)), serial);
  });

  it('picks up a pair rewritten in place', async () => {
    const staged = await freshPair();
    for (const f of ['tls.key', 'tls.crt']) writeFileSync(join(plain, f), readFileSync(join(staged, f)));
    const serial = serialOfSet(plain);
    await applied(serial);
    assert.equal(await servedSerial(sidecar.inbound!, credsFromDir(order)), serial);
  });

  it('keeps serving the old pair through a torn write, then switches when the key arrives', async () => {
    const old = serialOfSet(plain);
    const staged = await freshPair();
    const from = sidecar.lines.length;
    writeFileSync(join(plain, 'tls.crt'), readFileSync(join(staged, 'tls.crt')));
    const refusal = await sidecar.waitForLine((l) => sidecar.lines.indexOf(l) >= from && l.event === 'reload' && l.result === 'failure');
    assert.equal(refusal.refusal, 'key-mismatch');

    // The torn window lasts a few seconds: the sidecar is up and serving the old pair.
    for (let i = 0; i < 5; i++) {
      assert.equal(await servedSerial(sidecar.inbound!, credsFromDir(order)), old);
      assert.equal(
        (await tlsExchange(sidecar.inbound!, credsFromDir(order), { payload: `torn ${i}\n` })).data,
        `hello payment\ntorn ${i}\n`,
      );
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(sidecar.proc.exitCode, null);

    writeFileSync(join(plain, 'tls.key'), readFileSync(join(staged, 'tls.key')));
    const serial = serialOfSet(plain);
    assert.notEqual(serial, old);
    await applied(serial);
    assert.equal(await servedSerial(sidecar.inbound!, credsFromDir(order)), serial);
    const refusals = sidecar.lines.slice(from).filter((l) => l.event === 'reload' && l.result === 'failure');
    assert.equal(refusals.length, 1, 'the same torn state is logged once, not on every event or timer');
  });
});

/**
 * The content-hash check (`reload.hashInterval`) catches what the stat poll cannot: a
 * file rewritten in place to the same size with its mtime put back (a copy that keeps
 * timestamps, `cp -p`, `rsync -t`). File-system events are off here, as on a mount that
 * delivers none, so nothing else can have noticed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCa, type TestCa } from '../helpers/cli.js';
import { parseConfig } from '../../sidecar/config/schema.js';
import { startSidecar, type SidecarHandle } from '../../sidecar/sidecar.js';
import { createLogger } from '../../sidecar/logging.js';
import { credsFromDir, sidecarYaml, startEchoService, tlsExchange, writePolicy } from './sidecar-harness.js';
import { eventually } from './sidecar-reload-helpers.js';

const ALLOW_ORDER = 'services:\n  payment-service:\n    allow: [order-service]\n';
// The same length, so size and (restored) mtime stay as they were.
const ALLOW_OTHER = 'services:\n  payment-service:\n    allow: [other-service]\n';

/** The policy, with whole-second times: utimes cannot put back a sub-millisecond mtime. */
function writeRoundedPolicy(dir: string, name: string): string {
  const path = writePolicy(dir, ALLOW_ORDER, name);
  const t = Math.floor(Date.now() / 1000) - 60;
  utimesSync(path, t, t);
  return path;
}

/** Rewrites `path` in place with `text` (same inode) and puts its mtime back. */
function rewriteKeepingStat(path: string, text: string): void {
  const before = statSync(path);
  assert.equal(Buffer.byteLength(text), before.size, 'the test needs a same-size rewrite');
  writeFileSync(path, text);
  utimesSync(path, before.atime, before.mtime);
  const afterStat = statSync(path);
  assert.equal(afterStat.ino, before.ino);
  assert.equal(afterStat.mtimeMs, before.mtimeMs);
}

describe('sidecar reload: the content-hash check (reload.hashInterval)', () => {
  let ca: TestCa;
  let order: string;
  let payment: string;
  let echo: Awaited<ReturnType<typeof startEchoService>>;
  const sidecars: SidecarHandle[] = [];

  before(async () => {
    ca = makeCa();
    order = ca.issue('order-service');
    payment = ca.issue('payment-service');
    echo = await startEchoService('payment');
  });
  after(async () => {
    for (const s of sidecars) await s.shutdown(0);
    await echo?.close();
    ca?.cleanup();
  });

  async function start(policy: string, reload: string): Promise<string> {
    const yaml = sidecarYaml({ setDir: payment, policy, forward: echo.address, extra: `reload:\n${reload}` });
    const sidecar = await startSidecar(parseConfig(yaml, join(ca.root, 'hash-check.yaml')), {
      logger: createLogger('silent'),
      watch: false,
    });
    sidecars.push(sidecar);
    return sidecar.addresses.inbound!;
  }

  const orderIsServed = async (address: string) =>
    (await tlsExchange(address, credsFromDir(order), { payload: 'ping' })).data.includes('ping');

  it('the stat poll alone does not see a same-size rewrite with its mtime put back', async () => {
    const policy = writeRoundedPolicy(ca.root, 'policy-stat-only.yaml');
    const address = await start(policy, '  interval: 200ms\n  hashInterval: 7d\n');
    assert.equal(await orderIsServed(address), true);
    rewriteKeepingStat(policy, ALLOW_OTHER);
    await new Promise((r) => setTimeout(r, 2_000)); // ten stat polls
    assert.equal(await orderIsServed(address), true, 'the stat poll saw the change: this test no longer isolates the hash check');
    assert.equal(readFileSync(policy, 'utf8'), ALLOW_OTHER);
  });

  it('the hash check picks it up within reload.hashInterval', async () => {
    const policy = writeRoundedPolicy(ca.root, 'policy-hash.yaml');
    const address = await start(policy, '  interval: 200ms\n  hashInterval: 1s\n');
    assert.equal(await orderIsServed(address), true);
    rewriteKeepingStat(policy, ALLOW_OTHER);
    await eventually('order-service refused after the hash check', async () => ((await orderIsServed(address)) ? undefined : true), 10_000);
  });
});

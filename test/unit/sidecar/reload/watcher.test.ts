import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCredentialSet } from '../../../../common/credential-set.js';
import { createLogger } from '../../../../sidecar/logging.js';
import { ReloadWatcher, watchTargets } from '../../../../sidecar/reload/watcher.js';

const FILES = { certChainPem: 'cert\n', keyPem: 'key\n', caPem: 'ca\n' };

describe('ReloadWatcher (events → one debounced "check again")', () => {
  let dir: string;
  let watcher: ReloadWatcher | undefined;
  let calls: (readonly string[])[];
  let waiters: (() => void)[];

  const nextCall = (timeoutMs = 5_000) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no onChange')), timeoutMs);
      waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  const quiet = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svcca-watch-'));
    writeCredentialSet(join(dir, 'set'), FILES);
    mkdirSync(join(dir, 'ca'));
    writeFileSync(join(dir, 'ca', 'crl.pem'), 'crl 1');
    writeFileSync(join(dir, 'ca', 'ledger.db'), '');
    calls = [];
    waiters = [];
    watcher = await ReloadWatcher.start({
      targets: watchTargets(join(dir, 'set'), [join(dir, 'ca', 'crl.pem')]),
      onChange: (paths) => {
        calls.push(paths);
        for (const w of waiters.splice(0)) w();
      },
      logger: createLogger('silent'),
      debounceMs: 100,
    });
  });
  afterEach(async () => {
    await watcher?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fires on a ..data swap, though no event names tls.crt', async () => {
    const fired = nextCall();
    writeCredentialSet(join(dir, 'set'), { ...FILES, certChainPem: 'cert 2\n' });
    await fired;
    assert.ok(
      calls[0]!.some((p) => p.endsWith('..data')),
      JSON.stringify(calls),
    );
  });

  it('folds a burst of events into one call', async () => {
    const fired = nextCall();
    for (let i = 0; i < 5; i++) writeCredentialSet(join(dir, 'set'), { ...FILES, certChainPem: `cert ${i}\n` });
    await fired;
    await quiet(400);
    assert.equal(calls.length, 1);
  });

  it('fires when the CRL file is replaced, and ignores its busy neighbours', async () => {
    writeFileSync(join(dir, 'ca', 'ledger.db'), 'rows');
    writeFileSync(join(dir, 'ca', 'ledger.db-wal'), 'wal');
    await quiet(400);
    assert.equal(calls.length, 0, JSON.stringify(calls));
    const fired = nextCall();
    writeFileSync(join(dir, 'ca', 'crl.pem.tmp'), 'crl 2');
    const { renameSync } = await import('node:fs');
    renameSync(join(dir, 'ca', 'crl.pem.tmp'), join(dir, 'ca', 'crl.pem'));
    await fired;
    assert.ok(
      calls[0]!.every((p) => p.endsWith('crl.pem')),
      JSON.stringify(calls),
    );
  });
});

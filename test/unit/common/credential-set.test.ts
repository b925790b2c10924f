/**
 * The credential set's `..data` swap (Kubernetes' atomic writer layout): the old
 * folder and its key are gone after a write, the key is 0600, a reader never pairs
 * files of two sets, and crash leftovers are cleaned by the next write.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DATA_LINK,
  assertUsableSetDir,
  readCredentialSet,
  resolveSetFolder,
  writeCredentialSet,
  type LoadedCredentialSet,
} from '../../../common/credential-set.js';
import { IdentityError, UsageError } from '../../../common/errors.js';

const scratch = mkdtempSync(join(tmpdir(), 'svcca-credset-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(scratch, `set-${n++}`);

const files = (tag: string) => ({ certChainPem: `cert ${tag}\n`, keyPem: `key ${tag}\n`, caPem: `ca ${tag}\n` });
const timestamped = (dir: string) => readdirSync(dir).filter((e) => /^\.\.\d{4}_/.test(e));

describe('writeCredentialSet', () => {
  it('lays out timestamped folder, ..data link and stable links through it', () => {
    const dir = freshDir();
    const folder = writeCredentialSet(dir, files('one'));
    const folders = timestamped(dir);
    assert.equal(folders.length, 1);
    assert.equal(join(dir, folders[0]!), folder);
    assert.ok(lstatSync(join(dir, DATA_LINK)).isSymbolicLink());
    assert.equal(readlinkSync(join(dir, DATA_LINK)), folders[0], '..data is a relative link to the folder');
    for (const name of ['tls.crt', 'tls.key', 'ca.crt']) {
      assert.ok(lstatSync(join(dir, name)).isSymbolicLink(), `${name} is a link`);
      assert.equal(readlinkSync(join(dir, name)), join(DATA_LINK, name));
    }
    assert.equal(statSync(join(folder, 'tls.key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'tls.key')).mode & 0o777, 0o600, 'through the link too');
    const loaded = readCredentialSet(dir);
    assert.equal(loaded.certChainPem, 'cert one\n');
    assert.equal(loaded.keyPem, 'key one\n');
    assert.equal(loaded.caPem, 'ca one\n');
    assert.equal(loaded.sourceDir, folder);
  });

  it('a second write swaps ..data and removes the old folder with its key', () => {
    const dir = freshDir();
    const first = writeCredentialSet(dir, files('old'));
    const second = writeCredentialSet(dir, files('new'));
    assert.notEqual(first, second);
    assert.equal(existsSync(first), false, 'the previous folder (and its private key) is gone');
    assert.deepEqual(
      timestamped(dir).map((e) => join(dir, e)),
      [second],
    );
    assert.equal(resolveSetFolder(dir), second);
    assert.equal(readCredentialSet(dir).keyPem, 'key new\n');
    assert.equal(statSync(join(dir, 'tls.key')).mode & 0o777, 0o600);
    const leftovers = readdirSync(dir).filter((e) => e.includes('tmp') || e.endsWith('.link'));
    assert.deepEqual(leftovers, []);
  });

  it('a set without a key (signed from a CSR) has no tls.key link', () => {
    const dir = freshDir();
    const folder = writeCredentialSet(dir, { certChainPem: 'cert\n', caPem: 'ca\n' });
    assert.equal(existsSync(join(folder, 'tls.key')), false);
    assert.throws(() => lstatSync(join(dir, 'tls.key')), /ENOENT/);
    assert.ok(lstatSync(join(dir, 'tls.crt')).isSymbolicLink());
  });

  it('replaces plain files another tool left by the stable links', () => {
    const dir = freshDir();
    mkdirSync(dir);
    writeFileSync(join(dir, 'tls.crt'), 'stale cert');
    writeFileSync(join(dir, 'tls.key'), 'stale key');
    writeCredentialSet(dir, files('fresh'));
    assert.ok(lstatSync(join(dir, 'tls.crt')).isSymbolicLink());
    assert.ok(lstatSync(join(dir, 'tls.key')).isSymbolicLink());
    assert.equal(readCredentialSet(dir).certChainPem, 'cert fresh\n');
  });

  it('a crash orphan folder, a dangling ..data_tmp link and .link temps are removed by the next write', () => {
    const dir = freshDir();
    const live = writeCredentialSet(dir, files('live'));
    // What a kill -9 between "folder written" and "..data swapped" leaves behind.
    const orphan = join(dir, '..2020_01_01_00_00_00.000_abcdef');
    mkdirSync(orphan);
    writeFileSync(join(orphan, 'tls.key'), 'orphan key', { mode: 0o600 });
    symlinkSync('..2020_01_01_00_00_00.000_abcdef', join(dir, '..data_tmp_0a0b0c'));
    symlinkSync(join(DATA_LINK, 'tls.crt'), join(dir, '.tls.crt.0a0b0c.link'));
    assert.equal(readCredentialSet(dir).keyPem, 'key live\n', 'the reader still sees the live set, not the orphan');

    const next = writeCredentialSet(dir, files('next'));
    assert.equal(existsSync(orphan), false, 'orphan folder removed');
    assert.equal(existsSync(live), false, 'previous folder removed');
    assert.deepEqual(
      readdirSync(dir).sort(),
      ['..data', next.slice(dir.length + 1), 'ca.crt', 'tls.crt', 'tls.key'].sort(),
      'nothing but the live set remains',
    );
    assert.equal(readCredentialSet(dir).keyPem, 'key next\n');
  });

  it('leaves entries that are not its own alone', () => {
    const dir = freshDir();
    mkdirSync(dir);
    writeFileSync(join(dir, 'README'), 'mine');
    mkdirSync(join(dir, '..not-a-timestamp'));
    writeCredentialSet(dir, files('a'));
    writeCredentialSet(dir, files('b'));
    assert.ok(existsSync(join(dir, 'README')));
    assert.ok(existsSync(join(dir, '..not-a-timestamp')));
  });

  it('refuses a target that is a file, before writing anything', () => {
    const path = join(scratch, `plain-file-${n++}`);
    writeFileSync(path, 'x');
    assert.throws(() => writeCredentialSet(path, files('x')), UsageError);
    assert.throws(
      () => assertUsableSetDir(path),
      (err: unknown) => err instanceof UsageError && /is not a directory/.test(err.message),
    );
    assert.doesNotThrow(() => assertUsableSetDir(join(scratch, 'does-not-exist-yet')));
  });
});

describe('readCredentialSet', () => {
  it('reads a plain directory of files (no ..data) as is', () => {
    const dir = freshDir();
    mkdirSync(dir);
    for (const [name, text] of [
      ['tls.crt', 'c'],
      ['tls.key', 'k'],
      ['ca.crt', 'a'],
    ] as const)
      writeFileSync(join(dir, name), text);
    const loaded = readCredentialSet(dir);
    assert.deepEqual([loaded.certChainPem, loaded.keyPem, loaded.caPem], ['c', 'k', 'a']);
  });

  it('a missing directory or file is an IdentityError naming it', () => {
    assert.throws(
      () => readCredentialSet(join(scratch, 'nope')),
      (err: unknown) => err instanceof IdentityError && /does not exist/.test(err.message),
    );
    const dir = freshDir();
    writeCredentialSet(dir, { certChainPem: 'c', caPem: 'a' });
    assert.throws(
      () => readCredentialSet(dir),
      (err: unknown) => err instanceof IdentityError && /tls\.key is missing/.test(err.message),
    );
  });

  it('never pairs files of two sets while a writer swaps sets as fast as it can', async () => {
    const dir = freshDir();
    writeCredentialSet(dir, files('0'));
    const moduleUrl = new URL('../../../common/credential-set.js', import.meta.url).href;
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import(workerData.moduleUrl).then(({ writeCredentialSet }) => {
         let stop = false;
         parentPort.on('message', () => { stop = true; });
         let i = 1;
         const step = () => {
           for (let k = 0; k < 20 && !stop; k++, i++) {
             const t = String(i);
             writeCredentialSet(workerData.dir, { certChainPem: 'cert ' + t + '\\n', keyPem: 'key ' + t + '\\n', caPem: 'ca ' + t + '\\n' });
           }
           if (stop) parentPort.postMessage(i); else setImmediate(step);
         };
         step();
       });`,
      { eval: true, workerData: { dir, moduleUrl } },
    );
    const finished = new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    let consistent = 0;
    let vanished = 0;
    const seen = new Set<string>();
    // At least 1.5 s, and on until the reader has seen 20 sets: how many swaps a time
    // allows depends on the machine (the worker's start and each set's fsyncs), and a slow
    // disk could leave the reader racing nothing but the first set.
    const start = Date.now();
    const racedEnough = () => Date.now() - start >= 1500 && seen.size >= 20;
    try {
      while (!racedEnough() && Date.now() - start < 60_000) {
        let set: LoadedCredentialSet;
        try {
          set = readCredentialSet(dir);
        } catch (err) {
          // The folder a reader resolved may be removed before it reads: it retries,
          // but it must never get a mixed pair.
          assert.ok(err instanceof IdentityError, String(err));
          vanished++;
          continue;
        }
        const tag = set.certChainPem.slice('cert '.length);
        assert.equal(set.keyPem, `key ${tag}`, `key and certificate from different sets (${set.sourceDir})`);
        assert.equal(set.caPem, `ca ${tag}`, 'ca.crt from a different set');
        seen.add(tag);
        consistent++;
        if (consistent % 50 === 0) await new Promise((r) => setImmediate(r));
      }
    } catch (err) {
      // A failed check must not leave the writer running: the file would hang.
      await worker.terminate();
      throw err;
    }
    worker.postMessage('stop');
    const written = await finished;
    await worker.terminate();
    assert.ok(written > 10, `the writer made ${written} sets`);
    assert.ok(consistent > 0 && seen.size >= 20, `reads: ${consistent} consistent over ${seen.size} sets, ${vanished} retried`);
    assert.equal(timestamped(dir).length, 1, 'one folder left once the writer stopped');
  });
});

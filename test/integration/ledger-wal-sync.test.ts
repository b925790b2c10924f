/**
 * The SQLite ledger's commits are on disk before anyone is told, and their sync does not
 * block the event loop (cli/store/sqlite-ledger.ts, syncCommitsOffThread). Watched from
 * outside with strace on a real `svcca issue`: after the last write to ledger.db-wal and
 * before the command prints its result, an fdatasync/fsync of the WAL completes, made by a
 * thread other than the main one.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cleanEnv, makeCa, SVCCA_BIN, TEST_PASSPHRASE } from '../helpers/cli.js';

const straceWorks = spawnSync('strace', ['-f', '-qq', '-o', '/dev/null', 'true']).status === 0;

interface Syscall {
  readonly tid: number;
  readonly name: string;
  readonly args: string;
  readonly result: string;
}

/** strace -f lines, with each `<unfinished ...>` joined to its `<... resumed>`, in order of completion. */
function parseStrace(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const unfinished = new Map<number, { name: string; args: string }>();
  for (const line of text.split('\n')) {
    let m = /^(\d+) +(\w+)\((.*) <unfinished \.\.\.>$/.exec(line);
    if (m) {
      unfinished.set(Number(m[1]), { name: m[2]!, args: m[3]! });
      continue;
    }
    m = /^(\d+) +<\.\.\. (\w+) resumed>(.*)\) += (.*)$/.exec(line);
    if (m) {
      const started = unfinished.get(Number(m[1]));
      unfinished.delete(Number(m[1]));
      calls.push({ tid: Number(m[1]), name: m[2]!, args: (started?.args ?? '') + m[3]!, result: m[4]! });
      continue;
    }
    m = /^(\d+) +(\w+)\((.*)\) += (.*)$/.exec(line);
    if (m) calls.push({ tid: Number(m[1]), name: m[2]!, args: m[3]!, result: m[4]! });
  }
  return calls;
}

describe('the SQLite ledger syncs each commit before answering, off the event loop', {
  skip: !straceWorks && 'strace cannot trace here',
}, () => {
  const ca = makeCa();
  after(() => ca.cleanup());

  it('svcca issue: the WAL is synced after its last write and before the result is printed, by a pool thread', () => {
    const log = join(ca.root, 'strace.log');
    const res = spawnSync(
      'strace',
      [
        '-f',
        '-qq',
        '-e',
        'trace=openat,close,pwrite64,write,fdatasync,fsync',
        '-o',
        log,
        process.execPath,
        SVCCA_BIN,
        'issue',
        'payment-service',
        '--dir',
        ca.dir,
        '--out',
        join(ca.root, 'sets', 'payment-service'),
      ],
      { env: cleanEnv({ SVCCA_PASSPHRASE: TEST_PASSPHRASE }), encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(res.status, 0, res.stderr);
    const text = readFileSync(log, 'utf8');
    const mainTid = Number(/^(\d+) /.exec(text)?.[1]);
    const calls = parseStrace(text);

    const walFds = new Set<string>();
    let lastWalWrite = -1;
    let printed = -1;
    const walSyncs: { index: number; tid: number }[] = [];
    for (const [i, c] of calls.entries()) {
      const fd = c.args.split(',')[0]!.trim();
      if (c.name === 'openat' && c.args.includes('ledger.db-wal"') && /^\d+$/.test(c.result)) walFds.add(c.result);
      else if (c.name === 'close') walFds.delete(fd);
      else if (c.name === 'pwrite64' && walFds.has(fd)) lastWalWrite = i;
      else if ((c.name === 'fdatasync' || c.name === 'fsync') && walFds.has(fd) && c.result.startsWith('0'))
        walSyncs.push({ index: i, tid: c.tid });
      else if (c.name === 'write' && fd === '1' && c.tid === mainTid && printed < 0) printed = i;
    }
    assert.ok(
      lastWalWrite >= 0 && printed > lastWalWrite,
      `the ledger wrote its WAL (${lastWalWrite}) before the result was printed (${printed})`,
    );
    const covering = walSyncs.find((s) => s.index > lastWalWrite && s.index < printed);
    assert.ok(
      covering,
      'no sync of ledger.db-wal completed between its last write and the printed result: the commit was not durable when reported',
    );
    assert.notEqual(covering.tid, mainTid, 'the WAL was synced on the main thread: each commit blocks the event loop');
  });
});

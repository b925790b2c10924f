/**
 * Every process a test starts goes through here, so none outlives the test file: a
 * sidecar left draining for its grace period, or a client left waiting on a socket,
 * would otherwise hold the test runner (and CI) open long after its test failed.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { after } from 'node:test';

const running = new Set<ChildProcess>();
const killAll = () => {
  for (const child of running) child.kill('SIGKILL');
};

// Registered when a test file first imports this module, so on that file's root: it runs
// once every test of the file is done, and a leaked child (its pipes hold the event loop)
// cannot keep the file's process, and so the whole run, waiting. (--test-force-exit would
// do the same but loses test results still in flight on Node 20: seen here, 553 of 573.)
after(killAll);
process.once('exit', killAll);

/** `spawn`, with the child killed (SIGKILL) if it is still running when this process exits. */
export function spawnTracked(cmd: string, args: readonly string[], opts: SpawnOptions): ChildProcess {
  const child = spawn(cmd, args, opts);
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.once('error', () => running.delete(child));
  return child;
}

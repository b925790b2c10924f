/**
 * Every process a test starts goes through here, so none outlives the test file: a
 * sidecar left draining for its grace period, or a client left waiting on a socket,
 * would otherwise hold the test runner (and CI) open long after its test failed.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const running = new Set<ChildProcess>();

process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** `spawn`, with the child killed (SIGKILL) if it is still running when this process exits. */
export function spawnTracked(cmd: string, args: readonly string[], opts: SpawnOptions): ChildProcess {
  const child = spawn(cmd, args, opts);
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.once('error', () => running.delete(child));
  return child;
}

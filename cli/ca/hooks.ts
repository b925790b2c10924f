/**
 * `rotate --exec CMD`: a command run after each renewed set (an nginx reload, say). It
 * gets the service and the set's folder, and never a passphrase: every variable that
 * names one is removed from its environment.
 */
import { spawnSync } from 'node:child_process';

/** A hook that hangs must not hold cron forever. */
export const HOOK_TIMEOUT_MS = 120_000;

const SECRET_VAR = /PASSPHRASE|PASSWORD|PASSWD/i;

/** The hook's environment: ours without any passphrase or password variable. */
export function hookEnv(env: NodeJS.ProcessEnv, service: string, setDir: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!SECRET_VAR.test(k)) out[k] = v;
  out.SVCCA_SERVICE = service;
  out.SVCCA_SET_DIR = setDir;
  return out;
}

export interface HookResult {
  readonly ok: boolean;
  /** Why it failed, for the one line naming it. */
  readonly error?: string;
}

/** Runs `cmd` through /bin/sh; its output goes to our stderr so --json stdout stays clean. */
export function runHook(cmd: string, env: NodeJS.ProcessEnv, service: string, setDir: string): HookResult {
  const res = spawnSync('/bin/sh', ['-c', cmd], {
    env: hookEnv(env, service, setDir),
    stdio: ['ignore', 2, 2],
    timeout: HOOK_TIMEOUT_MS,
    // SIGTERM can be ignored, and a hook that never ends would hold the run (and the
    // claims of the services after it) for ever.
    killSignal: 'SIGKILL',
  });
  if (res.error) {
    const code = (res.error as NodeJS.ErrnoException).code;
    return { ok: false, error: code === 'ETIMEDOUT' ? `timed out after ${HOOK_TIMEOUT_MS / 1000}s` : res.error.message };
  }
  if (res.signal) return { ok: false, error: `killed by ${res.signal}` };
  if (res.status !== 0) return { ok: false, error: `exited with ${res.status}` };
  return { ok: true };
}

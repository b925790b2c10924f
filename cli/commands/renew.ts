/**
 * `svcca renew --ca https://HOST:PORT --dir SET_DIR [--renew-before 33%] [--exec CMD]`:
 * renews a credential set in place through `svcca serve` (new key made here, mTLS with
 * the set's current certificate, the `..data` swap). For VMs, from a systemd timer or
 * cron. Exit codes as `rotate`: 0 renewed or not due, 2 failed, 4 renewed but clamped to
 * the intermediate's end. The client code is common/ca-client.ts, shared with the sidecar.
 */
import { resolve } from 'node:path';
import { UsageError, errorLine, ExitCode, SvccaError } from '../../common/errors.js';
import { parseCaUrl, renewCredentialSet, type RenewOutcome } from '../../common/ca-client.js';
import { DEFAULT_THRESHOLD, parseThreshold } from '../../common/renewal-threshold.js';
import { runHook } from '../ca/hooks.js';
import type { CommandContext } from '../context.js';

export interface RenewOptions {
  readonly ca: string;
  /** The credential set (not the CA directory). */
  readonly dir: string;
  readonly renewBefore?: string;
  readonly force?: boolean;
  readonly exec?: string;
}

export async function runRenew(opts: RenewOptions, ctx: CommandContext): Promise<void> {
  const ca = parseCaUrl(opts.ca);
  const threshold = parseThreshold(opts.renewBefore ?? DEFAULT_THRESHOLD);
  if (opts.exec !== undefined && opts.exec.trim() === '')
    throw new UsageError('--exec needs a command', 'e.g. --exec "systemctl reload nginx"');
  const dir = resolve(opts.dir);
  let outcome: RenewOutcome;
  try {
    outcome = await renewCredentialSet({ ca, dir, threshold, ...(opts.force ? { force: true } : {}) });
  } catch (err) {
    if (!(err instanceof SvccaError) || err instanceof UsageError) throw err;
    // The CA refused or could not be reached, or the set is unusable: a failed renewal (2).
    process.stderr.write(`svcca: renew failed: ${errorLine(err)}\n`);
    ctx.out.result({ renewed: false, failed: true, error: errorLine(err) });
    ctx.exitCode = ExitCode.partial;
    return;
  }
  if (outcome.kind === 'not-due') {
    ctx.out.line(
      `Not due: ${dir} holds ${outcome.serial} until ${outcome.notAfter.toISOString()}; due from ${outcome.dueAt.toISOString()} (${threshold.text} threshold)`,
    );
    ctx.out.result({
      renewed: false,
      serial: outcome.serial,
      notAfter: outcome.notAfter.toISOString(),
      dueAt: outcome.dueAt.toISOString(),
    });
    return;
  }
  ctx.out.line(
    `Renewed ${outcome.spiffeId}  ${outcome.previousSerial} → ${outcome.serial}  until ${outcome.notAfter.toISOString()}${outcome.clamped ? "  (cut short: ends with the intermediate's end)" : ''}`,
  );
  ctx.out.line(`  files      ${dir}/tls.crt, tls.key, ca.crt (new key made here)`);
  const hook = opts.exec === undefined ? undefined : runHook(opts.exec, ctx.env, outcome.spiffeId.split('/').slice(3).join('/'), dir);
  if (hook && !hook.ok) ctx.out.warn(`--exec hook ${hook.error}`);
  if (outcome.clamped)
    ctx.out.warn("the certificate was cut short at the intermediate's end: the CA operator must run `svcca rotate --intermediate`");
  ctx.out.result({
    renewed: true,
    spiffeId: outcome.spiffeId,
    previousSerial: outcome.previousSerial,
    serial: outcome.serial,
    notAfter: outcome.notAfter.toISOString(),
    clamped: outcome.clamped,
    hook: hook ?? null,
  });
  ctx.exitCode = hook && !hook.ok ? ExitCode.partial : outcome.clamped ? ExitCode.attention : ExitCode.ok;
}

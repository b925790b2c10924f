/**
 * `svcca completion bash|zsh|fish` prints a completion script; `svcca __complete-services`
 * (hidden) is what those scripts run to offer service names.
 */
import type { Command } from 'commander';
import { UsageError } from '../../common/errors.js';
import { closestKey } from '../../common/policy/suggest.js';
import { bashScript } from '../completion/bash.js';
import { fishScript } from '../completion/fish.js';
import { zshScript } from '../completion/zsh.js';
import { completionSpec, type CommandSpec } from '../completion/spec.js';
import { openCaForReading } from '../ca/ca-session.js';
import type { CommandContext } from '../context.js';

export interface CompletionOptions {
  readonly shell: string;
  /** The program whose commands and flags are completed. */
  readonly program: Command;
}

const SCRIPTS: Record<string, (spec: CommandSpec) => string> = { bash: bashScript, zsh: zshScript, fish: fishScript };

export function runCompletion(opts: CompletionOptions, ctx: CommandContext): void {
  const script = SCRIPTS[opts.shell];
  if (!script) {
    const near = closestKey(opts.shell, Object.keys(SCRIPTS));
    throw new UsageError(
      `no completion for shell "${opts.shell}"`,
      near ? `did you mean ${near}? (bash, zsh or fish)` : 'use bash, zsh or fish',
    );
  }
  process.stdout.write(script(completionSpec(opts.program)));
  ctx.exitCode = 0;
}

/**
 * The names of services with an active certificate, one per line. A tab press must never
 * print an error into the user's command line, so anything wrong prints nothing.
 */
export async function runCompleteServices(ctx: CommandContext): Promise<void> {
  try {
    const ca = await openCaForReading(ctx.global.dir);
    try {
      const records = await ca.ledger.listCertificates({ statuses: ['active'], notAfterAfter: Date.now() });
      const names = [...new Set(records.map((r) => r.service))].sort();
      if (names.length) process.stdout.write(`${names.join('\n')}\n`);
    } finally {
      await ca.close();
    }
  } catch {
    // nothing to offer
  }
}

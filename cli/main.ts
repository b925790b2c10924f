#!/usr/bin/env node
/**
 * `svcca` entry point: the one place that turns anything thrown into one line on
 * stderr and an exit code. Never a stack trace (SVCCA_DEBUG=1 adds the cause).
 */
import { CommanderError } from 'commander';
import { buildProgram } from './program.js';
import { ExitCode, SvccaError, UsageError, errorLine } from '../common/errors.js';
import type { CommandContext } from './context.js';

function commanderLine(err: CommanderError, captured: string): string {
  // Commander prints "error: ...\n(Did you mean x?)": fold it into one line.
  const text = (captured || err.message)
    .replace(/^error:\s*/i, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  return text;
}

/** A message from a library may span lines; the contract promises one. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ');
}

async function main(argv: string[]): Promise<number> {
  let ctx: CommandContext | undefined;
  let captured = '';
  const program = buildProgram({ onContext: (c) => (ctx = c), env: process.env });
  const configure = (cmd: typeof program) => {
    cmd.exitOverride();
    cmd.configureOutput({ outputError: (str) => (captured += str) });
    for (const sub of cmd.commands) configure(sub as typeof program);
  };
  configure(program);
  try {
    await program.parseAsync(argv);
    return ctx?.exitCode ?? ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here too, with exit code 0.
      if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      if (err.code === 'commander.help') return 0;
      const usage = new UsageError(commanderLine(err, captured), 'see `svcca --help`');
      process.stderr.write(`svcca: ${usage.line}\n`);
      return ExitCode.user;
    }
    process.stderr.write(`svcca: ${oneLine(errorLine(err))}\n`);
    if (process.env.SVCCA_DEBUG && err instanceof Error)
      process.stderr.write(`${err.stack ?? ''}\n${err.cause ? String((err.cause as Error).stack ?? err.cause) : ''}\n`);
    return err instanceof SvccaError ? err.exitCode : ExitCode.user;
  }
}

// `svcca --help | head` closes the pipe early: that is not an error worth a trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`svcca: ${errorLine(err)}\n`);
    process.exitCode = ExitCode.user;
  },
);

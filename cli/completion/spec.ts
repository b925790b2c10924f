/**
 * What a shell needs to complete svcca's command line, read off the commander program
 * itself, so a flag added to a command is completed without touching the scripts.
 */
import type { Argument, Command, Option } from 'commander';

/** How a value (a flag's or an argument's) is completed. */
export type ValueKind =
  | { readonly kind: 'file' }
  | { readonly kind: 'dir' }
  | { readonly kind: 'service' }
  | { readonly kind: 'file-or-service' }
  | { readonly kind: 'choices'; readonly choices: readonly string[] }
  | { readonly kind: 'none' };

export interface FlagSpec {
  /** `--ttl`. */
  readonly long: string;
  readonly short?: string;
  /** What follows the flag, or undefined for a switch. */
  readonly value?: ValueKind;
}

export interface CommandSpec {
  /** The words that name this command after `svcca` ([] for svcca itself, ['policy', 'check']). */
  readonly path: readonly string[];
  readonly description: string;
  readonly flags: readonly FlagSpec[];
  /** How the command's positional arguments are completed (the first one's kind; svcca's commands take one kind each). */
  readonly args: ValueKind;
  readonly subcommands: readonly CommandSpec[];
}

/** Positional arguments whose names say they hold a service. */
const SERVICE_ARGS = new Set(['service', 'from', 'to']);
const SHELLS = ['bash', 'zsh', 'fish'] as const;

function argKind(arg: Argument | undefined): ValueKind {
  if (!arg) return { kind: 'none' };
  const name = arg.name();
  if (arg.argChoices) return { kind: 'choices', choices: arg.argChoices };
  if (SERVICE_ARGS.has(name)) return { kind: 'service' };
  if (name === 'file|service') return { kind: 'file-or-service' };
  if (name === 'shell') return { kind: 'choices', choices: SHELLS };
  return { kind: 'none' };
}

/** The placeholder in `--out <dir>` says what the value is. */
function flagValue(option: Option): ValueKind | undefined {
  if (!option.required && !option.optional) return undefined;
  if (option.argChoices) return { kind: 'choices', choices: option.argChoices };
  const placeholder = /<([^>]+)>|\[([^\]]+)\]/.exec(option.flags);
  const name = placeholder?.[1] ?? placeholder?.[2] ?? '';
  if (name === 'file') return { kind: 'file' };
  // `--dir <path>` names a directory; `--path <path>` (policy check) an HTTP path.
  if (name === 'dir' || option.long === '--dir') return { kind: 'dir' };
  return { kind: 'none' };
}

export function completionSpec(program: Command, path: readonly string[] = []): CommandSpec {
  const help = program.createHelp();
  const flags: FlagSpec[] = help.visibleOptions(program).flatMap((o) => {
    if (!o.long) return [];
    const value = flagValue(o);
    return [{ long: o.long, ...(o.short ? { short: o.short } : {}), ...(value ? { value } : {}) }];
  });
  const subcommands = help
    .visibleCommands(program)
    .filter((c) => c.name() !== 'help')
    .map((c) => completionSpec(c, [...path, c.name()]));
  return { path, description: program.description(), flags, args: argKind(program.registeredArguments[0]), subcommands };
}

/** Every command in the tree, svcca itself first. */
export function allCommands(spec: CommandSpec): CommandSpec[] {
  return [spec, ...spec.subcommands.flatMap(allCommands)];
}

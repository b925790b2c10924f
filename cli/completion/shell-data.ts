/**
 * The command tree as shell functions that bash and zsh both run (plain `case`), so their
 * two drivers share one description of svcca's command line:
 *
 *   _svcca_subcommands PATH   the subcommands of the command named by PATH ("" for svcca)
 *   _svcca_flags PATH         its long flags
 *   _svcca_value PATH FLAG    what FLAG's value is (file, dir, none, "choices A B"); empty for a switch
 *   _svcca_args PATH          what its positional arguments are (service, file-or-service, "choices …")
 */
import { allCommands, type CommandSpec, type ValueKind } from './spec.js';

/** Only names commander accepts reach here, but a quote would end the case pattern. */
function quoted(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function kindWord(kind: ValueKind): string {
  return kind.kind === 'choices' ? `choices ${kind.choices.join(' ')}` : kind.kind;
}

function caseFunction(name: string, params: string, arms: readonly (readonly [string, string])[]): string {
  const lines = arms.filter(([, out]) => out !== '').map(([pattern, out]) => `    ${pattern}) echo ${quoted(out)} ;;`);
  return [`${name}() {`, `  case "${params}" in`, ...lines, '  esac', '}'].join('\n');
}

export function shellData(spec: CommandSpec): string {
  const commands = allCommands(spec);
  const key = (c: CommandSpec) => quoted(c.path.join(' '));
  return [
    caseFunction(
      '_svcca_subcommands',
      '$1',
      commands.map((c) => [key(c), c.subcommands.map((s) => s.path.at(-1)!).join(' ')]),
    ),
    caseFunction(
      '_svcca_flags',
      '$1',
      commands.map((c) => [key(c), c.flags.map((f) => f.long).join(' ')]),
    ),
    caseFunction(
      '_svcca_value',
      '$1 $2',
      commands.flatMap((c) =>
        c.flags.filter((f) => f.value).map((f) => [quoted(`${c.path.join(' ')} ${f.long}`), kindWord(f.value!)] as const),
      ),
    ),
    caseFunction(
      '_svcca_args',
      '$1',
      commands.map((c) => [key(c), c.args.kind === 'none' ? '' : kindWord(c.args)]),
    ),
  ].join('\n\n');
}

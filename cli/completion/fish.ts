/** `svcca completion fish`: save as ~/.config/fish/completions/svcca.fish. */
import { kindWord } from './shell-data.js';
import { allCommands, type CommandSpec, type ValueKind } from './spec.js';

function quoted(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The fish condition "the command line names exactly this command". */
function condition(spec: CommandSpec): string {
  if (spec.path.length === 0) return '__fish_use_subcommand';
  const parts = spec.path.map((word) => `__fish_seen_subcommand_from ${word}`);
  // `svcca policy` is complete only when no subcommand of policy has been typed yet.
  if (spec.subcommands.length > 0) parts.push(`not __fish_seen_subcommand_from ${spec.subcommands.map((s) => s.path.at(-1)).join(' ')}`);
  return parts.join('; and ');
}

function valueArgs(kind: ValueKind): string {
  switch (kind.kind) {
    case 'file':
      return '-r -F';
    case 'dir':
      return "-r -f -a '(__fish_complete_directories)'";
    case 'service':
      return "-f -a '(__svcca_services)'";
    case 'file-or-service':
      return "-F -a '(__svcca_services)'";
    case 'choices':
      return `-x -a ${quoted(kindWord(kind).slice('choices '.length))}`;
    case 'none':
      return '-r -f';
  }
}

const SERVICES_FUNCTION = `# Service names from the ledger of the CA directory on the command line (--dir), SVCCA_DIR or ./ca-data.
function __svcca_services
    set -l tokens (commandline -opc)
    set -l dir_args
    set -l i (contains -i -- --dir $tokens)
    and set dir_args --dir $tokens[(math $i + 1)]
    $tokens[1] __complete-services $dir_args 2>/dev/null
end`;

export function fishScript(spec: CommandSpec): string {
  const lines = [
    '# svcca completion for fish. Install: svcca completion fish > ~/.config/fish/completions/svcca.fish',
    '',
    SERVICES_FUNCTION,
    '',
    'complete -c svcca -f',
  ];
  for (const cmd of allCommands(spec)) {
    const when = condition(cmd);
    for (const sub of cmd.subcommands)
      lines.push(`complete -c svcca -n ${quoted(when)} -a ${quoted(sub.path.at(-1)!)} -d ${quoted(sub.description)}`);
    for (const flag of cmd.flags) {
      const short = flag.short ? ` -s ${flag.short.replace(/^-/, '')}` : '';
      lines.push(
        `complete -c svcca -n ${quoted(when)} -l ${flag.long.replace(/^--/, '')}${short}${flag.value ? ` ${valueArgs(flag.value)}` : ''}`,
      );
    }
    if (cmd.args.kind !== 'none' && cmd.subcommands.length === 0) lines.push(`complete -c svcca -n ${quoted(when)} ${valueArgs(cmd.args)}`);
  }
  return `${lines.join('\n')}\n`;
}

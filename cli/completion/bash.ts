/** `svcca completion bash`: `source <(svcca completion bash)`, or save it under bash-completion's directory. */
import { shellData } from './shell-data.js';
import type { CommandSpec } from './spec.js';

// `cmdpath`, not `path`: zsh ties `path` to PATH, and the loop below is shared in spirit with zsh.ts.
const DRIVER = `
_svcca_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmdpath="" w kind subs i
  local -a dir_args=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [[ "$w" == -* ]]; then
      [[ "$w" == --dir ]] && dir_args=(--dir "\${COMP_WORDS[i + 1]}")
      [[ -n "$(_svcca_value "$cmdpath" "$w")" ]] && ((i++))
    elif [[ " $(_svcca_subcommands "$cmdpath") " == *" $w "* ]]; then
      cmdpath="\${cmdpath:+$cmdpath }$w"
    fi
  done
  ((COMP_CWORD > 1)) && prev="\${COMP_WORDS[COMP_CWORD - 1]}"
  COMPREPLY=()
  kind="$(_svcca_value "$cmdpath" "$prev")"
  if [[ -z "$kind" ]]; then
    if [[ "$cur" == -* ]]; then
      COMPREPLY=($(compgen -W "$(_svcca_flags "$cmdpath")" -- "$cur"))
      return
    fi
    subs="$(_svcca_subcommands "$cmdpath")"
    if [[ -n "$subs" ]]; then
      COMPREPLY=($(compgen -W "$subs" -- "$cur"))
      return
    fi
    kind="$(_svcca_args "$cmdpath")"
  fi
  case "$kind" in
    file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
    dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
    service) COMPREPLY=($(compgen -W "$("\${COMP_WORDS[0]}" __complete-services "\${dir_args[@]}" 2>/dev/null)" -- "$cur")) ;;
    file-or-service)
      compopt -o filenames 2>/dev/null
      COMPREPLY=($(compgen -W "$("\${COMP_WORDS[0]}" __complete-services "\${dir_args[@]}" 2>/dev/null)" -- "$cur") $(compgen -f -- "$cur")) ;;
    choices\\ *) COMPREPLY=($(compgen -W "\${kind#choices }" -- "$cur")) ;;
  esac
}
complete -F _svcca_complete svcca
`;

export function bashScript(spec: CommandSpec): string {
  return `# svcca completion for bash. Install: echo 'source <(svcca completion bash)' >> ~/.bashrc\n\n${shellData(spec)}\n${DRIVER}`;
}

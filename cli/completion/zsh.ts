/** `svcca completion zsh`: save as `_svcca` in a directory of $fpath, or source it after compinit. */
import { shellData } from './shell-data.js';
import type { CommandSpec } from './spec.js';

// `cmdpath`, not `path`: in zsh `path` is PATH as an array, and assigning it would hide svcca.
const DRIVER = `
_svcca_kind() {
  local kind="$1"
  case "$kind" in
    file) _files ;;
    dir) _files -/ ;;
    service) compadd -- \${(f)"$("\${words[1]}" __complete-services "\${dir_args[@]}" 2>/dev/null)"} ;;
    file-or-service)
      compadd -- \${(f)"$("\${words[1]}" __complete-services "\${dir_args[@]}" 2>/dev/null)"}
      _files ;;
    choices\\ *) compadd -- \${=\${kind#choices }} ;;
  esac
}

_svcca() {
  local cur="\${words[CURRENT]}" prev="\${words[CURRENT-1]}" cmdpath="" w kind subs
  local -a dir_args
  local -i i
  for ((i = 2; i < CURRENT; i++)); do
    w="\${words[i]}"
    if [[ "$w" == -* ]]; then
      [[ "$w" == --dir ]] && dir_args=(--dir "\${words[i + 1]}")
      [[ -n "$(_svcca_value "$cmdpath" "$w")" ]] && ((i++))
    elif [[ " $(_svcca_subcommands "$cmdpath") " == *" $w "* ]]; then
      cmdpath="\${cmdpath:+$cmdpath }$w"
    fi
  done
  ((CURRENT > 2)) || prev=""
  kind="$(_svcca_value "$cmdpath" "$prev")"
  if [[ -z "$kind" ]]; then
    if [[ "$cur" == -* ]]; then
      compadd -- \${=$(_svcca_flags "$cmdpath")}
      return
    fi
    subs="$(_svcca_subcommands "$cmdpath")"
    if [[ -n "$subs" ]]; then
      compadd -- \${=subs}
      return
    fi
    kind="$(_svcca_args "$cmdpath")"
  fi
  _svcca_kind "$kind"
}

# Saved in $fpath, compinit reads the #compdef line; sourced, this registers it.
(( $+functions[compdef] )) && compdef _svcca svcca
`;

export function zshScript(spec: CommandSpec): string {
  return `#compdef svcca\n# svcca completion for zsh. Install: svcca completion zsh > "\${fpath[1]}/_svcca", then start a new shell.\n\n${shellData(spec)}\n${DRIVER}`;
}

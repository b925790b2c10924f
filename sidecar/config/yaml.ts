/**
 * Config YAML text → plain values, through the same hostile-input guard as the policy
 * (common/safe-yaml.ts): a sidecar config is a few hundred bytes, so anything large,
 * binary, tagged or deeply nested is a wrong file, and costs a millisecond and one line.
 */
import { readYaml, type YamlLimits } from '../../common/safe-yaml.js';

/** Far above any real config; a megabyte-long value is refused here, unread. */
export const MAX_CONFIG_BYTES = 64 * 1024;

const CONFIG_YAML: YamlLimits = {
  what: 'config',
  maxBytes: MAX_CONFIG_BYTES,
  // A config is four levels deep (outbound → list → entry → key).
  maxNesting: 16,
  // A config has no use for anchors; a few are tolerated.
  maxAliasCount: 20,
  fixSyntax: 'fix the YAML (see the example config: svcca-sidecar --help)',
  tooBigHint: 'check that --config names the sidecar YAML file',
  nestingHint: 'a config is at most four levels deep; check the indentation and brackets',
};

/** Parses `text` (YAML 1.2, failsafe schema: every scalar is a string) into Maps, arrays, strings, null. */
export function readConfigYaml(text: string, source: string): unknown {
  return readYaml(text, source, CONFIG_YAML);
}

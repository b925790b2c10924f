export type { Decision, HttpRequestFacts, Policy, PolicyMode, PolicyRule } from './types.js';
export { parsePolicy, MAX_POLICY_BYTES } from './parse.js';
export { loadPolicyFile } from './load.js';
export { allowListDecision, evaluatePolicy, tcpModeWarnings, pathMatches } from './evaluate.js';

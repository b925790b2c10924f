export type { Decision, HttpRequestFacts, Policy, PolicyRule } from './types.js';
export { parsePolicy, MAX_POLICY_BYTES } from './parse.js';
export { loadPolicyFile } from './load.js';
export { evaluatePolicy, tcpModeWarnings, pathMatches } from './evaluate.js';

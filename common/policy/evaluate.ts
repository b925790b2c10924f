/**
 * The policy decision, pure: the sidecar enforces it and `svcca policy check` explains it,
 * so both always agree.
 *
 * Default deny: a callee missing from the policy, an empty allow list and an unnamed caller
 * all deny. A caller's entries are unioned; the first entry (in file order) that allows
 * is the one reported.
 *
 * A `from:` entry with neither `methods` nor `paths` allows the caller in both modes,
 * exactly like a plain name: that is what Envoy RBAC users expect of a principal-only
 * rule, and "a rule that leaves out methods or paths allows any" then needs no exception.
 * An entry with methods and/or paths is http-mode only: a tcp-mode sidecar sees no
 * request, so it cannot check them, and allowing would widen the rule.
 *
 * A callee whose entry says `mode: audit` gets the same allow-list verdict, turned into
 * an allow that carries `wouldDeny`: rolling a policy out must not break a call, yet
 * every call it would break has to be seen. A callee missing from the policy has no
 * entry, hence no mode, and stays denied.
 */
import type { Decision, HttpRequestFacts, Policy, PolicyRule } from './types.js';

/**
 * Decides whether `caller` may call `self`. Both are service names (the SPIFFE ID's path,
 * no leading slash). Without `request`, decides as a tcp-mode sidecar does.
 */
export function evaluatePolicy(policy: Policy, self: string, caller: string, request?: HttpRequestFacts): Decision {
  const d = allowListDecision(policy, self, caller, request);
  if (d.allow || !policy.audit.has(self)) return d;
  return { allow: true, reason: `audit mode: ${d.reason}`, wouldDeny: d.reason };
}

/** What the allow list alone says, whatever the entry's mode. */
export function allowListDecision(policy: Policy, self: string, caller: string, request?: HttpRequestFacts): Decision {
  const rules = policy.services.get(self);
  if (rules === undefined) return deny(`services.${self} is not in the policy, so every caller is denied`);
  if (rules.length === 0) return deny(`services.${self}.allow is empty, so every caller is denied`);
  let callerNamed = false;
  for (const rule of rules) {
    if (rule.from !== caller) continue;
    callerNamed = true;
    if (ruleAllows(rule, request)) {
      return { allow: true, rule: rule.label, reason: `${rule.label} allows ${caller}` };
    }
  }
  if (!callerNamed) return deny(`no rule in services.${self} allows ${caller}`);
  if (request === undefined) {
    return deny(`services.${self} allows ${caller} only with methods/paths, which allow http-mode requests and nothing in tcp mode`);
  }
  return deny(`no rule in services.${self} allows ${caller} to ${request.method} ${request.path}`);
}

function ruleAllows(rule: PolicyRule, request: HttpRequestFacts | undefined): boolean {
  if (rule.plain || (rule.methods === undefined && rule.paths === undefined)) return true;
  if (request === undefined) return false;
  if (rule.methods !== undefined && !rule.methods.includes(request.method)) return false;
  if (rule.paths !== undefined && !rule.paths.some((pattern) => pathMatches(pattern, request.path))) return false;
  return true;
}

/**
 * A policy path matches exactly, or, when it ends in `*`, by plain string prefix:
 * `/stock/*` matches `/stock/` and `/stock/a/b` but not `/stock` or `/stockx`.
 */
export function pathMatches(pattern: string, path: string): boolean {
  return pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
}

/**
 * What a tcp-mode sidecar for `self` should warn about at start-up and in `--check`:
 * a missing entry or empty list (every caller denied), and each methods/paths rule,
 * which can never allow anything in tcp mode.
 */
export function tcpModeWarnings(policy: Policy, self: string): string[] {
  const rules = policy.services.get(self);
  if (rules === undefined) return [`services.${self} is not in the policy: every caller will be denied`];
  if (rules.length === 0) return [`services.${self}.allow is empty: every caller will be denied`];
  return rules
    .filter((rule) => !rule.plain && (rule.methods !== undefined || rule.paths !== undefined))
    .map((rule) => `${rule.label} has methods/paths and allows nothing in tcp mode; set inbound.mode: http, or allow ${rule.from} by name`);
}

function deny(reason: string): Decision {
  return { allow: false, reason };
}

/**
 * The smallest change to a policy that allows every call seen, pure. Never removes or
 * widens an existing rule: it only adds entries, and lists the existing rules that no
 * call in the logs used (candidates for a human to review).
 *
 * Smallest means: a caller seen on a tcp connection needs its name (only a plain entry
 * allows tcp); otherwise one `from:` entry per group of paths that were called with the
 * same set of methods, so the entries allow exactly the (method, path) pairs seen and
 * nothing else. Paths are generalized only with `paths: 'prefix'`: two or more paths
 * under the same parent (`/orders/1`, `/orders/2`, or gRPC's `/pkg.Svc/A`, `/pkg.Svc/B`)
 * become one prefix rule (`/orders/*`).
 */
import { allowListDecision, type Policy } from '../../common/policy/index.js';
import type { CallOutcome, CallSummary } from './observed-calls.js';

export type PathGeneralization = 'exact' | 'prefix';

/** One entry to add to `services.<callee>.allow`. */
export interface LearnedRule {
  readonly callee: string;
  readonly from: string;
  /** Both undefined for a plain name entry. */
  readonly methods?: readonly string[];
  readonly paths?: readonly string[];
  /** What the logs saw of the calls this entry allows. */
  readonly count: number;
  readonly outcomes: Record<CallOutcome, number>;
  readonly first?: string;
  readonly last?: string;
}

export interface LearnPlan {
  readonly add: LearnedRule[];
  /** Labels of existing rules of callees seen in the logs that allowed none of the calls seen. */
  readonly unseen: string[];
  /** Callees in the policy with no call in the logs (nothing can be said about their rules). */
  readonly calleesNotSeen: string[];
  /** Callees in audit mode: what to switch to enforce once the additions are reviewed. */
  readonly inAudit: string[];
}

export function planLearn(policy: Policy | undefined, calls: readonly CallSummary[], paths: PathGeneralization): LearnPlan {
  const used = new Set<string>();
  const needed = new Map<string, CallSummary[]>();
  for (const call of calls) {
    const request = call.method !== undefined ? { method: call.method, path: call.path! } : undefined;
    const d = policy ? allowListDecision(policy, call.callee, call.caller, request) : undefined;
    if (d?.allow) {
      if (d.rule) used.add(d.rule);
      continue;
    }
    const key = `${call.callee}\0${call.caller}`;
    needed.set(key, [...(needed.get(key) ?? []), call]);
  }
  const add: LearnedRule[] = [];
  for (const group of needed.values()) add.push(...rulesFor(group, paths));
  add.sort((a, b) => cmp(a.callee, b.callee) || cmp(a.from, b.from) || cmp(a.paths?.[0] ?? '', b.paths?.[0] ?? ''));

  const seenCallees = new Set(calls.map((c) => c.callee));
  const unseen: string[] = [];
  const calleesNotSeen: string[] = [];
  for (const [callee, rules] of policy?.services ?? []) {
    if (!seenCallees.has(callee)) {
      if (rules.length > 0) calleesNotSeen.push(callee);
      continue;
    }
    for (const rule of rules) if (!used.has(rule.label)) unseen.push(rule.label);
  }
  return { add, unseen, calleesNotSeen, inAudit: [...(policy?.audit ?? [])] };
}

/** The entries for one (callee, caller) pair. */
function rulesFor(group: readonly CallSummary[], generalize: PathGeneralization): LearnedRule[] {
  const { callee, caller } = group[0]!;
  if (group.some((c) => c.method === undefined)) return [withStats({ callee, from: caller }, group)];
  // path (or prefix) → the methods it was called with, and the calls behind it.
  const byPath = new Map<string, { methods: Set<string>; calls: CallSummary[] }>();
  const put = (path: string, calls: CallSummary[]) => {
    const e = byPath.get(path) ?? { methods: new Set<string>(), calls: [] };
    for (const c of calls) {
      e.methods.add(c.method!);
      e.calls.push(c);
    }
    byPath.set(path, e);
  };
  if (generalize === 'prefix') {
    const byParent = new Map<string, CallSummary[]>();
    for (const c of group) {
      const parent = c.path!.slice(0, c.path!.lastIndexOf('/') + 1);
      byParent.set(parent, [...(byParent.get(parent) ?? []), c]);
    }
    for (const [parent, calls] of byParent) {
      const distinct = new Set(calls.map((c) => c.path));
      // The root is no parent to fold into: `/*` would allow everything.
      if (distinct.size >= 2 && parent !== '/') put(`${parent}*`, calls);
      else for (const c of calls) put(c.path!, [c]);
    }
  } else {
    for (const c of group) put(c.path!, [c]);
  }
  // Paths called with the same methods share one entry: allows exactly the pairs seen.
  const byMethods = new Map<string, { methods: string[]; paths: string[]; calls: CallSummary[] }>();
  for (const [path, e] of byPath) {
    const methods = [...e.methods].sort();
    const key = methods.join(' ');
    const r = byMethods.get(key) ?? { methods, paths: [], calls: [] };
    r.paths.push(path);
    r.calls.push(...e.calls);
    byMethods.set(key, r);
  }
  return [...byMethods.values()].map((r) => withStats({ callee, from: caller, methods: r.methods, paths: r.paths.sort() }, r.calls));
}

function withStats(rule: Pick<LearnedRule, 'callee' | 'from' | 'methods' | 'paths'>, calls: readonly CallSummary[]): LearnedRule {
  const outcomes: Record<CallOutcome, number> = { allowed: 0, denied: 0, 'would-deny': 0 };
  let count = 0;
  let first: string | undefined;
  let last: string | undefined;
  for (const c of calls) {
    count += c.count;
    for (const k of Object.keys(outcomes) as CallOutcome[]) outcomes[k] += c.outcomes[k];
    if (c.first !== undefined && (first === undefined || c.first < first)) first = c.first;
    if (c.last !== undefined && (last === undefined || c.last > last)) last = c.last;
  }
  return { ...rule, count, outcomes, ...(first !== undefined && { first }), ...(last !== undefined && { last }) };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

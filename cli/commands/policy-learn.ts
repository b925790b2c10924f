/**
 * `svcca policy learn --log FILE… [--policy CURRENT] [--write NEW] [--paths exact|prefix]`:
 * reads inbound sidecar logs and proposes the smallest addition to the policy that would
 * allow every call seen (see cli/policy/learn-plan.ts). Prints a YAML patch (the entries
 * to add, each with its count and first/last seen), or with --write the whole new policy,
 * comments of the current one kept, checked by the policy parser before it is written
 * (temp, fsync, rename). Rules are never removed; those no call used are listed.
 */
import { readFileSync } from 'node:fs';
import { Document, isMap, isSeq, parseDocument, type YAMLMap, type YAMLSeq } from 'yaml';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { ConfigError, UsageError } from '../../common/errors.js';
import { loadPolicyFile, parsePolicy } from '../../common/policy/index.js';
import type { CommandContext } from '../context.js';
import { planLearn, type LearnedRule, type LearnPlan, type PathGeneralization } from '../policy/learn-plan.js';
import { readObservedCalls } from '../policy/observed-calls.js';

export interface PolicyLearnOptions {
  /** Sidecar log files (JSON lines). */
  log: string[];
  /** The policy in force: only what it does not allow yet is proposed. */
  policy?: string;
  /** Write the whole new policy here (the current one plus the additions). */
  write?: string;
  /** `prefix` folds sibling paths into one `parent/*` rule; default `exact`. */
  paths: PathGeneralization;
}

export async function runPolicyLearn(opts: PolicyLearnOptions, ctx: CommandContext): Promise<void> {
  if (opts.log.length === 0)
    throw new UsageError(
      '--log is required',
      'give one or more sidecar log files: svcca policy learn --log sidecar.log --policy policy.yaml',
    );
  const current = opts.policy === undefined ? undefined : loadPolicyFile(opts.policy);
  const observed = await readObservedCalls(opts.log);
  const plan = planLearn(current, observed.calls, opts.paths);
  const seen = observed.calls.reduce((n, c) => n + c.count, 0);

  const header = `svcca policy learn: ${plan.add.length} ${plan.add.length === 1 ? 'entry' : 'entries'} to add, from ${seen} calls in ${observed.lines} log lines (${observed.files} ${observed.files === 1 ? 'file' : 'files'})`;
  let written: string | undefined;
  if (opts.write !== undefined) {
    const text =
      opts.policy === undefined ? patchDocument(plan, header).toString({ flowCollectionPadding: false }) : mergedPolicy(opts.policy, plan);
    // What is written must be a policy the sidecar accepts, or nothing is written.
    try {
      parsePolicy(text, opts.write);
    } catch (err) {
      throw new ConfigError(
        `the new policy would not be valid (${err instanceof ConfigError ? err.message : String(err)})`,
        'report this as a bug; nothing was written',
        err,
      );
    }
    writeFileAtomic(opts.write, text, 0o644);
    written = opts.write;
  }

  ctx.out.result({
    add: plan.add.map((r) => ({
      service: r.callee,
      from: r.from,
      methods: r.methods ?? null,
      paths: r.paths ?? null,
      count: r.count,
      outcomes: r.outcomes,
      first: r.first ?? null,
      last: r.last ?? null,
    })),
    unseen: judgedUnseen(plan, observed.calls),
    calleesNotSeen: plan.calleesNotSeen,
    audit: plan.inAudit,
    calls: seen,
    lines: observed.lines,
    skipped: observed.skipped,
    written: written ?? null,
  });
  if (written !== undefined) {
    ctx.out.line(`${header}; wrote ${written}${plan.add.length > 0 ? '' : ' (unchanged: every call seen is allowed)'}`);
    for (const r of plan.add) ctx.out.line(`  + services.${r.callee}: ${describe(r)}  (${stats(r)})`);
  } else if (plan.add.length === 0) {
    ctx.out.line(`# ${header}`);
    ctx.out.line(
      seen === 0
        ? '# no calls in these logs: run the sidecars at log level debug (allowed calls) or with mode: audit'
        : '# nothing to add: every call seen is allowed by the policy',
    );
  } else {
    ctx.out.line(patchDocument(plan, header).toString({ flowCollectionPadding: false }).replace(/\n$/, ''));
  }
  // Whether a rule is used shows only in allowed calls, which the sidecar logs at debug.
  const judged = observed.calls.some((c) => c.outcomes.allowed > 0);
  if (judged)
    for (const label of plan.unseen)
      ctx.out.line(`# not used by any call seen (a candidate to remove after review; learn never removes a rule): ${label}`);
  else if (plan.unseen.length > 0)
    ctx.out.line('# existing rules not judged: no allowed calls in these logs (the sidecar logs them at log level debug)');
  if (plan.calleesNotSeen.length > 0)
    ctx.out.line(`# no calls seen to ${plan.calleesNotSeen.join(', ')}: their rules cannot be judged from these logs`);
  if (plan.inAudit.length > 0)
    ctx.out.line(`# in audit mode: ${plan.inAudit.join(', ')}; once the additions are reviewed, remove mode: audit to enforce`);
}

function judgedUnseen(plan: LearnPlan, calls: readonly { outcomes: { allowed: number } }[]): string[] | null {
  return calls.some((c) => c.outcomes.allowed > 0) ? plan.unseen : null;
}

/** The entries to add, as a policy fragment: `services: <callee>: allow: [...]`. */
function patchDocument(plan: LearnPlan, header: string): Document {
  const doc = new Document({ services: {} });
  doc.commentBefore = ` ${header}\n review each entry, then add it to the policy (or run again with --write NEW)`;
  for (const r of plan.add) appendRule(doc, r);
  return doc;
}

/** The current policy's text with the additions appended to each callee's allow list. */
function mergedPolicy(path: string, plan: LearnPlan): string {
  const doc = parseDocument(readFileSync(path, 'utf8'));
  for (const r of plan.add) appendRule(doc, r);
  return doc.toString({ flowCollectionPadding: false });
}

function appendRule(doc: Document, r: LearnedRule): void {
  const services: unknown = doc.get('services', true);
  if (!isMap(services)) throw new ConfigError('the policy has no services: map', 'check the --policy file');
  let entry: unknown = services.get(r.callee, true);
  if (!isMap(entry)) {
    entry = doc.createNode({ allow: [] });
    services.set(r.callee, entry);
  }
  const callee = entry as YAMLMap;
  let allow: unknown = callee.get('allow', true);
  if (!isSeq(allow)) {
    allow = doc.createNode([]);
    callee.set('allow', allow);
  }
  const list = allow as YAMLSeq;
  // A flow list ([a, b]) with a commented map inside reads badly: written as a block list.
  list.flow = false;
  const node = r.methods === undefined ? doc.createNode(r.from) : doc.createNode({ from: r.from, methods: r.methods, paths: r.paths });
  if (isMap(node)) {
    for (const key of ['methods', 'paths']) {
      const inner: unknown = node.get(key, true);
      if (isSeq(inner)) inner.flow = true;
    }
  }
  node.commentBefore = ` learned: ${stats(r)}`;
  list.add(node);
}

function stats(r: LearnedRule): string {
  const how = (['denied', 'would-deny', 'allowed'] as const)
    .filter((k) => r.outcomes[k] > 0)
    .map((k) => `${k} ${r.outcomes[k]}`)
    .join(', ');
  const when = r.first !== undefined ? `, first ${r.first}, last ${r.last}` : '';
  return `seen ${r.count} ${r.count === 1 ? 'time' : 'times'} (${how})${when}`;
}

function describe(r: LearnedRule): string {
  return r.methods === undefined ? `allow ${r.from}` : `allow ${r.from} ${r.methods.join(',')} ${r.paths!.join(' ')}`;
}

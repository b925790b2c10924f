/**
 * `svcca policy check <from> <to> --policy F [--method M --path P]`: decides exactly as the
 * sidecar of <to> would, with the same parser, normalization and evaluation. Exit 0 allow,
 * 3 deny, 5 would deny (the callee's entry is in audit mode: let through and logged).
 */
import { ExitCode, UsageError } from '../../common/errors.js';
import { normalizeRequestTarget } from '../../common/http-path.js';
import { evaluatePolicy, loadPolicyFile } from '../../common/policy/index.js';
import type { Decision } from '../../common/policy/index.js';
import { parseSpiffeId, serviceNameProblem } from '../../common/spiffe-id.js';
import type { CommandContext } from '../context.js';
import { METHODS } from 'node:http';

export interface PolicyCheckOptions {
  /** The caller: a service name, or a SPIFFE ID whose path is one. */
  from: string;
  /** The callee, whose policy entry decides. */
  to: string;
  /** Path of the policy YAML file. */
  policy: string;
  /** With `path`: decide as an http-mode sidecar. Without both: as a tcp-mode one. */
  method?: string;
  path?: string;
}

const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export async function runPolicyCheck(opts: PolicyCheckOptions, ctx: CommandContext): Promise<void> {
  const caller = serviceArg(opts.from, '<from>');
  const callee = serviceArg(opts.to, '<to>');
  const from = caller.service;
  const to = callee.service;
  if ((opts.method === undefined) !== (opts.path === undefined)) {
    throw new UsageError(
      opts.method === undefined ? '--path needs --method' : '--method needs --path',
      'give both to check an http-mode request (--method GET --path /stock), or neither for tcp mode',
    );
  }
  const method = opts.method === undefined ? undefined : methodArg(opts.method);
  const policy = loadPolicyFile(opts.policy);

  let decision: Decision;
  let path: string | undefined;
  if (caller.trustDomain !== undefined && callee.trustDomain !== undefined && caller.trustDomain !== callee.trustDomain) {
    // The sidecar refuses a foreign trust domain at the handshake, before any policy.
    decision = {
      allow: false,
      reason: `the caller's trust domain ${caller.trustDomain} is not the callee's (${callee.trustDomain}): the sidecar refuses it before the policy`,
    };
  } else if (method !== undefined && !METHODS.includes(method)) {
    const upper = method.toUpperCase();
    const hint = upper !== method && METHODS.includes(upper) ? ` (methods are case-sensitive: did you mean ${upper}?)` : '';
    decision = { allow: false, reason: `the sidecar answers 400 to method ${method}: its HTTP parser does not know it${hint}` };
  } else if (method !== undefined && opts.path !== undefined) {
    const target = normalizeRequestTarget(opts.path);
    if (target.ok) {
      path = target.path;
      decision = evaluatePolicy(policy, to, from, { method, path });
    } else {
      decision = { allow: false, reason: `the sidecar answers 400 to this path: ${target.reason}` };
    }
  } else {
    decision = evaluatePolicy(policy, to, from);
  }

  const mode = method === undefined ? 'tcp' : 'http';
  const verdict = decision.wouldDeny !== undefined ? 'would-deny' : decision.allow ? 'allow' : 'deny';
  ctx.out.result({
    decision: verdict,
    from,
    to,
    mode,
    ...(mode === 'http' && { method, path: path ?? null }),
    rule: decision.rule ?? null,
    reason: decision.wouldDeny ?? decision.reason,
  });
  if (verdict === 'would-deny') ctx.out.line(`would deny (audit mode): ${decision.wouldDeny}; the sidecar lets it through and logs it`);
  else ctx.out.line(decision.allow ? `allow: ${decision.rule ?? decision.reason}` : `deny: ${decision.reason}`);
  // The query is forwarded untouched, so only a changed path is worth a word.
  if (path !== undefined && path !== opts.path?.split('?')[0])
    ctx.out.line(`(path normalized to ${path}, as the sidecar matches and forwards it)`);
  if (verdict === 'would-deny') ctx.exitCode = ExitCode.wouldDeny;
  else if (!decision.allow) ctx.exitCode = ExitCode.denied;
}

/** Accepts a service name or a SPIFFE ID, since users paste either from logs. */
function serviceArg(value: string, name: string): { service: string; trustDomain?: string } {
  let service = value;
  let trustDomain: string | undefined;
  if (value.startsWith('spiffe://')) {
    const parsed = parseSpiffeId(value);
    if (!parsed.ok)
      throw new UsageError(
        `${name}: invalid SPIFFE ID ${JSON.stringify(clip(value))}: ${parsed.reason}`,
        'give a service name such as order-service',
      );
    service = parsed.id.service;
    trustDomain = parsed.id.trustDomain;
  }
  const problem = serviceNameProblem(service);
  if (problem) {
    throw new UsageError(
      `${name}: invalid service name ${JSON.stringify(clip(service))}: it ${problem}`,
      'use 1-128 characters of a-z 0-9 . - _ (e.g. order-service)',
    );
  }
  return trustDomain === undefined ? { service } : { service, trustDomain };
}

function methodArg(value: string): string {
  if (!HTTP_TOKEN.test(value) || value.length > 32) {
    throw new UsageError(`--method: ${JSON.stringify(clip(value))} is not an HTTP method`, 'use a method such as GET or POST');
  }
  // Not upper-cased: the sidecar's HTTP parser answers 400 to `get`, and so must this.
  return value;
}

function clip(value: string): string {
  return value.length > 60 ? `${value.slice(0, 57)}...` : value;
}

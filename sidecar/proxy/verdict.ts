/**
 * The parts of a verdict that are not about the peer's certificate (verify-peer.ts):
 * whether this sidecar can serve at all, and what the policy says. Every path that
 * judges a peer — a tcp connection, an http request, an open connection re-judged after
 * a swap — asks here, so the fail-closed rules are written once.
 */
import { evaluatePolicy, type Decision, type HttpRequestFacts } from '../../common/policy/index.js';
import { validityProblem, type Snapshot } from '../snapshot.js';
import type { RefusalReason } from './verify-peer.js';

/** Fail closed: a sidecar with no policy configured allows no caller. */
const NO_POLICY: Decision = { allow: false, reason: 'no policy is configured' };

/**
 * May `callerService` call this sidecar's service under `snap`? `request` in http mode
 * (methods/paths rules apply), undefined for a tcp connection. Without a policy: denied.
 */
export function policyDecision(snap: Snapshot, callerService: string, request?: HttpRequestFacts): Decision {
  if (!snap.policy) return NO_POLICY;
  return evaluatePolicy(snap.policy.policy, snap.identity.id.service, callerService, request);
}

/**
 * Why nothing may pass right now because this sidecar's own certificate is out of its
 * validity (expired, or not yet valid); undefined when it is usable. Checked per
 * connection, in and out: an expired identity is tolerated at start, not served with.
 */
export function ownCertificateRefusal(snap: Snapshot, now: Date): { readonly reason: RefusalReason; readonly detail: string } | undefined {
  const own = validityProblem(snap.identity.leaf, now);
  return own ? { reason: 'own-certificate-invalid', detail: `this sidecar's own certificate cannot be used: ${own}` } : undefined;
}

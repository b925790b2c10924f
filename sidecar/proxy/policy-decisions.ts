/**
 * Counts every inbound allow-list decision and logs the ones audit mode let through.
 *
 * A would-deny call is logged at warn level once per distinct (caller, method, path) —
 * a busy caller would otherwise write one line per request and drown the log — and, when
 * debug is on, again every time at debug level (in place of the `allowed` line), so that
 * `svcca policy learn` can count calls exactly from a debug log. Seen keys are bounded:
 * past MAX_SEEN distinct calls the set starts afresh, so memory stays bounded whatever
 * the callers send, at the price of a repeated line.
 */
import type { Logger } from 'pino';
import type { Decision } from '../../common/policy/index.js';
import type { Metrics } from '../metrics.js';
import { clipForLog } from '../log-fields.js';

const MAX_SEEN = 10_000;

/** Who made the call the decision is about, and (http mode) the request. */
export interface DecidedCall {
  readonly peer: string;
  readonly address: string;
  readonly mode: 'tcp' | 'http';
  readonly method?: string;
  /** Normalized. */
  readonly path?: string;
}

export class PolicyDecisions {
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #seen = new Set<string>();

  constructor(logger: Logger, metrics: Metrics) {
    this.#logger = logger;
    this.#metrics = metrics;
  }

  /** Records `d` for `call`: counted always; a would-deny is also logged (see above). */
  record(d: Decision, call: DecidedCall): void {
    if (d.wouldDeny === undefined) {
      this.#metrics.policyDecisions.inc({ result: d.allow ? 'allowed' : 'denied' });
      return;
    }
    this.#metrics.policyDecisions.inc({ result: 'would-deny' });
    const key = `${call.peer} ${call.method ?? ''} ${call.path ?? ''}`;
    const first = !this.#seen.has(key);
    if (!first && !this.#logger.isLevelEnabled('debug')) return;
    if (first) {
      if (this.#seen.size >= MAX_SEEN) this.#seen.clear();
      this.#seen.add(key);
    }
    const line = {
      event: 'would-deny',
      direction: 'inbound',
      mode: call.mode,
      peer: call.peer,
      address: call.address,
      ...(call.method !== undefined && { method: call.method }),
      ...(call.path !== undefined && { path: clipForLog(call.path) }),
      reason: 'policy-denied',
      detail: d.wouldDeny,
      ...(first ? {} : { repeat: true }),
    };
    if (first) this.#logger.warn(line, 'audit mode: the policy would deny this; let through');
    else this.#logger.debug(line, 'audit mode: the policy would deny this; let through');
  }
}

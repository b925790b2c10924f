/**
 * The mesh policy as the sidecar enforces it and `svcca policy` explains it.
 * Every value here has passed the strict schema in parse.ts: names are valid service
 * names, methods upper-case HTTP tokens, paths normalized (see common/http-path.ts).
 */

/** One entry of a service's `allow` list. */
export interface PolicyRule {
  /** The caller's service name (SPIFFE ID path, no leading slash). */
  readonly from: string;
  /** Upper-cased HTTP methods; undefined means any method. Never empty. */
  readonly methods?: readonly string[];
  /** Exact paths, or prefixes when ending in `*`; undefined means any path. Never empty. */
  readonly paths?: readonly string[];
  /** true for a plain name entry (`- order-service`). */
  readonly plain: boolean;
  /** Human description used in messages, e.g. 'services.payment-service.allow[0] (order-service)'. */
  readonly label: string;
}

/** `enforce` (the default) refuses what the allow list does not allow; `audit` lets it through and logs it. */
export type PolicyMode = 'enforce' | 'audit';

export interface Policy {
  /** Callee service name → its allow list, in file order. */
  readonly services: ReadonlyMap<string, readonly PolicyRule[]>;
  /**
   * The callees whose entry says `mode: audit`: identity checks stay enforced, but a
   * caller or request their allow list would deny is let through (and logged as would-deny).
   */
  readonly audit: ReadonlySet<string>;
}

/** What http mode knows about a request. */
export interface HttpRequestFacts {
  readonly method: string;
  /** Already normalized with normalizeRequestTarget. */
  readonly path: string;
}

export interface Decision {
  readonly allow: boolean;
  /** The label of the rule that allowed, or undefined on deny. */
  readonly rule?: string;
  /** One short human reason, e.g. 'no rule in services.payment-service allows order-service'. */
  readonly reason: string;
  /**
   * Set (with allow: true) when the allow list denies but the callee's entry is in audit
   * mode: the call is let through, and this is why it would have been denied.
   */
  readonly wouldDeny?: string;
}

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

export interface Policy {
  /** Callee service name → its allow list, in file order. */
  readonly services: ReadonlyMap<string, readonly PolicyRule[]>;
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
}

/**
 * The policy's strict schema. Anything the schema does not name is refused with its key
 * path, because a misspelt key silently ignored would widen a rule (`method:` instead of
 * `methods:` would allow every method).
 *
 * ```yaml
 * services:
 *   <service>:
 *     allow:
 *       - <caller>                   # any mode
 *       - from: <caller>             # methods and paths are each optional; either one
 *         methods: [GET, POST]       #   present makes the rule http-mode only
 *         paths: [/exact, /prefix/*]
 *     mode: audit                    # optional: enforce (default) or audit
 * ```
 */
import { ConfigError } from '../errors.js';
import { normalizeRequestTarget } from '../http-path.js';
import { serviceNameProblem } from '../spiffe-id.js';
import { closestKey } from './suggest.js';
import type { Policy, PolicyMode, PolicyRule } from './types.js';
import { readYaml, YamlNonString, type YamlLimits } from '../safe-yaml.js';

/** Larger than any real policy (about 10,000 rules), small enough to parse in well under a second. */
export const MAX_POLICY_BYTES = 1024 * 1024;

const POLICY_YAML: YamlLimits = {
  what: 'policy',
  maxBytes: MAX_POLICY_BYTES,
  // A policy is five levels deep; anything near this is not a policy.
  maxNesting: 32,
  // Anchors may share lists of callers.
  maxAliasCount: 100,
  fixSyntax: 'fix the YAML (see the example policy in the docs)',
  tooBigHint: 'check that --policy names the policy YAML file',
  nestingHint: 'a policy is services → name → allow → entries; check the indentation and brackets',
  // `allow: [yes]` or `[123]` would otherwise be the names "yes" and "123", where Kubernetes
  // and most YAML tools read a boolean and a number: refused, to be quoted if meant.
  markNonStrings: true,
};

/** Longer than any route a real service exposes; keeps messages and matching cheap. */
export const MAX_POLICY_PATH = 2048;
const MAX_METHOD = 32;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const ROOT_KEYS = ['services'] as const;
const SERVICE_KEYS = ['allow', 'mode'] as const;
const MODES = ['enforce', 'audit'] as const;
const RULE_KEYS = ['from', 'methods', 'paths'] as const;

const NAME_HINT =
  'a service name is 1-128 characters of a-z 0-9 . - _, each "/"-separated segment starting with a letter or digit (e.g. payment-service)';

/**
 * Parses and validates a policy. `source` (usually the file name) starts every error
 * message: `${source}: services.x.allow[1].method: unknown key`.
 */
export function parsePolicy(yamlText: string, source: string): Policy {
  const root = readYaml(yamlText, source, POLICY_YAML);
  const fail = (path: string, problem: string, hint: string): never => {
    throw new ConfigError(path ? `${source}: ${path}: ${problem}` : `${source}: ${problem}`, hint);
  };

  if (root === null || root === '') fail('', 'is empty', 'a policy needs a services: map; see the example in the docs');
  if (!(root instanceof Map)) fail('', 'the top level must be a map with a services: key', 'start the file with services:');
  const top = root as Map<unknown, unknown>;
  checkKeys(top, '', ROOT_KEYS, fail);
  if (!top.has('services')) fail('services', 'missing', 'add services:, with an allow list under each service that accepts calls');
  const servicesValue = top.get('services');
  if (servicesValue === null || servicesValue === '') {
    fail('services', 'is empty', 'list each service with its allow list, or write services: {} to deny every call');
  }
  if (!(servicesValue instanceof Map))
    fail('services', 'must be a map of service names', 'write services:, then one indented key per service');

  const services = new Map<string, readonly PolicyRule[]>();
  const audit = new Set<string>();
  for (const [name, entry] of servicesValue as Map<unknown, unknown>) {
    if (name instanceof YamlNonString) refuseNonString(name, keyPath('services', name.text), 'a service name', fail);
    if (typeof name !== 'string') fail('services', 'has a key that is not a plain service name', NAME_HINT);
    const path = keyPath('services', name as string);
    checkServiceName(name as string, path, fail);
    services.set(name as string, Object.freeze(readService(entry, name as string, path, fail)));
    if (readMode(entry as Map<unknown, unknown>, path, fail) === 'audit') audit.add(name as string);
  }
  return Object.freeze({ services, audit });
}

type Fail = (path: string, problem: string, hint: string) => never;

function readService(entry: unknown, name: string, path: string, fail: Fail): PolicyRule[] {
  if (entry === null || entry === '') fail(path, 'has no allow list', 'write allow: [] to deny every caller, or list the callers');
  if (!(entry instanceof Map)) fail(path, 'must be a map with an allow list', `write allow: under ${name}`);
  const map = entry as Map<unknown, unknown>;
  checkKeys(map, path, SERVICE_KEYS, fail);
  const allowPath = `${path}.allow`;
  if (!map.has('allow')) fail(allowPath, 'missing', 'write allow: [] to deny every caller, or list the callers');
  const allow = map.get('allow');
  if (allow === null || allow === '') fail(allowPath, 'is empty', 'write allow: [] to deny every caller, or list the callers');
  if (typeof allow === 'string') fail(allowPath, 'must be a list', `write allow: [${clip(allow)}]`);
  if (!Array.isArray(allow)) fail(allowPath, 'must be a list of callers', 'write one "- <service>" or "- from: <service>" line per caller');
  return (allow as unknown[]).map((item, i) => readRule(item, `${allowPath}[${i}]`, fail));
}

/** `mode:` of a service entry already checked by readService; absent means enforce. */
function readMode(entry: Map<unknown, unknown>, path: string, fail: Fail): PolicyMode {
  if (!entry.has('mode')) return 'enforce';
  const mode = entry.get('mode');
  const hint = 'write mode: audit to log would-be denials without refusing them, or leave mode out to enforce';
  if (mode instanceof YamlNonString) refuseNonString(mode, `${path}.mode`, 'a mode', fail);
  if (typeof mode !== 'string') fail(`${path}.mode`, 'must be enforce or audit', hint);
  if (!(MODES as readonly string[]).includes(mode as string)) {
    const guess = closestKey(mode as string, MODES);
    fail(`${path}.mode`, `${quote(mode as string)} is not a mode`, guess ? `did you mean "${guess}"?` : hint);
  }
  return mode as PolicyMode;
}

function readRule(item: unknown, path: string, fail: Fail): PolicyRule {
  if (item === null || item === '') fail(path, 'is empty', "write a caller's service name, or from: <service>");
  if (item instanceof YamlNonString) refuseNonString(item, path, 'a service name', fail);
  if (typeof item === 'string') {
    checkServiceName(item, path, fail);
    return Object.freeze({ from: item, plain: true, label: `${path} (${item})` });
  }
  if (!(item instanceof Map)) fail(path, 'must be a service name or a map with from:', 'write one caller per entry');
  const map = item as Map<unknown, unknown>;
  checkKeys(map, path, RULE_KEYS, fail);
  if (!map.has('from')) fail(`${path}.from`, 'missing', 'name the calling service: from: order-service');
  const from = map.get('from');
  if (Array.isArray(from)) fail(`${path}.from`, 'must be one service name, not a list', 'write one entry per caller');
  if (from instanceof YamlNonString) refuseNonString(from, `${path}.from`, 'a service name', fail);
  if (typeof from !== 'string') fail(`${path}.from`, 'must be a service name', NAME_HINT);
  checkServiceName(from as string, `${path}.from`, fail);
  const methods = map.has('methods') ? readList(map.get('methods'), `${path}.methods`, 'method', readMethod, fail) : undefined;
  const paths = map.has('paths') ? readList(map.get('paths'), `${path}.paths`, 'path', readPath, fail) : undefined;
  const parts = [`from: ${from as string}`];
  if (methods) parts.push(`methods: [${methods.join(', ')}]`);
  if (paths) parts.push(`paths: [${paths.join(', ')}]`);
  return Object.freeze({
    from: from as string,
    ...(methods && { methods }),
    ...(paths && { paths }),
    plain: false,
    label: `${path} (${parts.join(', ')})`,
  });
}

function readList(
  value: unknown,
  path: string,
  what: 'method' | 'path',
  readItem: (v: string, path: string, fail: Fail) => string,
  fail: Fail,
): readonly string[] {
  // An empty list would allow nothing while reading like "no restriction": refuse both readings.
  const leaveOut = `leave ${what}s out to allow any ${what}`;
  if (value === null || value === '' || (Array.isArray(value) && value.length === 0)) fail(path, 'is empty', leaveOut);
  if (typeof value === 'string') fail(path, 'must be a list', `write ${what}s: [${clip(value)}]`);
  if (!Array.isArray(value)) fail(path, `must be a list of ${what}s`, leaveOut);
  const out: string[] = [];
  (value as unknown[]).forEach((v, i) => {
    if (v instanceof YamlNonString) refuseNonString(v, `${path}[${i}]`, `a ${what}`, fail);
    if (typeof v !== 'string')
      fail(`${path}[${i}]`, `must be a ${what}, not a ${Array.isArray(v) ? 'list' : v === null ? 'null' : 'map'}`, leaveOut);
    const item = readItem(v as string, `${path}[${i}]`, fail);
    if (!out.includes(item)) out.push(item);
  });
  return Object.freeze(out);
}

function readMethod(value: string, path: string, fail: Fail): string {
  if (value === '*') fail(path, '"*" is not a method', 'leave methods out to allow any method');
  if (value.length === 0 || value.length > MAX_METHOD || !TOKEN.test(value)) {
    fail(path, `${quote(value)} is not an HTTP method`, 'use method names such as GET, POST, PUT, DELETE');
  }
  // Policies are forgiving about case; requests are not (HTTP methods are case-sensitive).
  return value.toUpperCase();
}

function readPath(value: string, path: string, fail: Fail): string {
  if (value.length > MAX_POLICY_PATH)
    fail(path, `is ${value.length} characters long; the limit is ${MAX_POLICY_PATH}`, 'use a shorter path or a prefix ending in *');
  if (!value.startsWith('/')) fail(path, `${quote(value)} must start with "/"`, 'write an absolute path such as /stock or /stock/*');
  if (value.includes('?') || value.includes('#'))
    fail(path, `${quote(value)} has a query or fragment`, 'paths are matched without the query; remove everything from "?"');
  const star = value.indexOf('*');
  const prefix = star !== -1;
  if (prefix && star !== value.length - 1)
    fail(path, `${quote(value)} has "*" before the end`, '"*" is allowed only as the last character, for a prefix match (/stock/*)');
  const base = prefix ? value.slice(0, -1) : value;
  const normalized = normalizeRequestTarget(base);
  if (!normalized.ok)
    fail(path, `${quote(value)} is not a valid request path: ${normalized.reason}`, 'write the path as the service receives it');
  const canonical = normalized.ok ? normalized.path : base;
  if (canonical !== base) {
    // The sidecar matches normalized request paths, so a non-normalized rule could never match.
    fail(
      path,
      `${quote(value)} is not in normalized form, so no request would match it`,
      `write ${quote(canonical + (prefix ? '*' : ''))}`,
    );
  }
  return value;
}

function checkServiceName(name: string, path: string, fail: Fail): void {
  const problem = serviceNameProblem(name);
  if (!problem) return;
  if (name.startsWith('spiffe://')) {
    fail(
      path,
      `${quote(name)} is a SPIFFE ID, not a service name`,
      "write the service name alone (the ID's path, without spiffe://<trust-domain>/)",
    );
  }
  if (name === '*') fail(path, '"*" is not a service name', 'there is no wildcard caller: name each caller');
  fail(path, `invalid service name ${quote(name)}: it ${problem}`, NAME_HINT);
}

/** `what` is what the value stands for: "a service name". */
function refuseNonString(value: YamlNonString, path: string, what: string, fail: Fail): never {
  return fail(
    path,
    `${quote(value.text)} is a ${value.kind} in YAML, not ${what}`,
    `write it in quotes, "${clip(value.text)}", if that is really meant`,
  );
}

function checkKeys(map: Map<unknown, unknown>, path: string, known: readonly string[], fail: Fail): void {
  for (const raw of map.keys()) {
    // A key such as `yes:` or `1:` is no known key either: named as written.
    const key = raw instanceof YamlNonString ? raw.text : raw;
    if (typeof key !== 'string') fail(path || '(top level)', 'has a key that is not a plain word', `the keys here are ${known.join(', ')}`);
    if (known.includes(key as string)) continue;
    const at = path ? keyPath(path, key as string) : keyPath('', key as string);
    if (key === 'deny') fail(at, 'unknown key', 'the policy is default deny: list only the callers to allow and remove deny');
    const guess = closestKey(key as string, known);
    fail(at, 'unknown key', guess ? `did you mean "${guess}"?` : `the keys here are ${known.join(', ')}`);
  }
}

/** `services.payment-service`, or `services["api.v1"]` when a dot, an odd character or sheer length would mislead. */
function keyPath(parent: string, key: string): string {
  if (key.length <= 60 && /^[A-Za-z0-9_/-]+$/.test(key)) return parent ? `${parent}.${key}` : key;
  return `${parent}[${quote(key)}]`;
}

function quote(value: string): string {
  return JSON.stringify(clip(value));
}

function clip(value: string): string {
  return value.length > 60 ? `${value.slice(0, 57)}...` : value;
}

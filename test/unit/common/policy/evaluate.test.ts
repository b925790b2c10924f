import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluatePolicy, parsePolicy, pathMatches, tcpModeWarnings } from '../../../../common/policy/index.js';
import type { Decision, HttpRequestFacts } from '../../../../common/policy/index.js';
import { EXAMPLE_POLICY } from '../../../helpers/policy-fixtures.js';

const policy = parsePolicy(
  `${EXAMPLE_POLICY}  union-service:
    allow:
      - from: web
        methods: [GET]
      - from: web
        paths: [/admin/*]
        methods: [POST]
  mixed-service:
    allow:
      - from: web
        paths: [/x]
      - web
`,
  'p.yaml',
);

const INV = 'services.inventory-service';
const NOTIFY_RULE = `${INV}.allow[1] (from: notification-service, methods: [GET], paths: [/stock, /stock/*])`;

describe('evaluatePolicy', () => {
  const cases: { name: string; input: { self: string; caller: string; request?: HttpRequestFacts }; want: Decision }[] = [
    {
      name: 'plain name allows in tcp mode',
      input: { self: 'payment-service', caller: 'order-service' },
      want: {
        allow: true,
        rule: 'services.payment-service.allow[0] (order-service)',
        reason: 'services.payment-service.allow[0] (order-service) allows order-service',
      },
    },
    {
      name: 'plain name allows any http request',
      input: { self: 'inventory-service', caller: 'order-service', request: { method: 'DELETE', path: '/anything' } },
      want: { allow: true, rule: `${INV}.allow[0] (order-service)`, reason: `${INV}.allow[0] (order-service) allows order-service` },
    },
    {
      name: 'unknown caller is denied',
      input: { self: 'payment-service', caller: 'notification-service' },
      want: { allow: false, reason: 'no rule in services.payment-service allows notification-service' },
    },
    {
      name: 'names match exactly, not by prefix',
      input: { self: 'payment-service', caller: 'order-service-2' },
      want: { allow: false, reason: 'no rule in services.payment-service allows order-service-2' },
    },
    {
      name: 'names match exactly, not case-insensitively',
      input: { self: 'payment-service', caller: 'Order-service' },
      want: { allow: false, reason: 'no rule in services.payment-service allows Order-service' },
    },
    {
      name: 'callee missing from the policy denies',
      input: { self: 'ghost-service', caller: 'order-service' },
      want: { allow: false, reason: 'services.ghost-service is not in the policy, so every caller is denied' },
    },
    {
      name: 'empty allow list denies',
      input: { self: 'audit-service', caller: 'order-service' },
      want: { allow: false, reason: 'services.audit-service.allow is empty, so every caller is denied' },
    },
    {
      name: 'methods/paths rule allows nothing in tcp mode',
      input: { self: 'inventory-service', caller: 'notification-service' },
      want: {
        allow: false,
        reason:
          'services.inventory-service allows notification-service only with methods/paths, which allow http-mode requests and nothing in tcp mode',
      },
    },
    {
      name: 'methods/paths rule allows an exact path',
      input: { self: 'inventory-service', caller: 'notification-service', request: { method: 'GET', path: '/stock' } },
      want: { allow: true, rule: NOTIFY_RULE, reason: `${NOTIFY_RULE} allows notification-service` },
    },
    {
      name: 'prefix rule allows a deeper path',
      input: { self: 'inventory-service', caller: 'notification-service', request: { method: 'GET', path: '/stock/a/b' } },
      want: { allow: true, rule: NOTIFY_RULE, reason: `${NOTIFY_RULE} allows notification-service` },
    },
    {
      name: 'prefix "/stock/*" does not allow "/stockx"',
      input: { self: 'inventory-service', caller: 'notification-service', request: { method: 'GET', path: '/stockx' } },
      want: { allow: false, reason: 'no rule in services.inventory-service allows notification-service to GET /stockx' },
    },
    {
      name: 'wrong method is denied',
      input: { self: 'inventory-service', caller: 'notification-service', request: { method: 'POST', path: '/stock' } },
      want: { allow: false, reason: 'no rule in services.inventory-service allows notification-service to POST /stock' },
    },
    {
      name: 'methods match case-sensitively',
      input: { self: 'inventory-service', caller: 'notification-service', request: { method: 'get', path: '/stock' } },
      want: { allow: false, reason: 'no rule in services.inventory-service allows notification-service to get /stock' },
    },
    {
      name: 'paths match case-sensitively',
      input: { self: 'inventory-service', caller: 'notification-service', request: { method: 'GET', path: '/Stock' } },
      want: { allow: false, reason: 'no rule in services.inventory-service allows notification-service to GET /Stock' },
    },
    {
      name: 'from: alone allows in tcp mode, like a plain name',
      input: { self: 'report-service', caller: 'billing-service' },
      want: {
        allow: true,
        rule: 'services.report-service.allow[0] (from: billing-service)',
        reason: 'services.report-service.allow[0] (from: billing-service) allows billing-service',
      },
    },
    {
      name: 'from: alone allows any http request',
      input: { self: 'report-service', caller: 'billing-service', request: { method: 'PATCH', path: '/x/y' } },
      want: {
        allow: true,
        rule: 'services.report-service.allow[0] (from: billing-service)',
        reason: 'services.report-service.allow[0] (from: billing-service) allows billing-service',
      },
    },
    {
      name: 'entries are unioned: the second entry allows what the first does not',
      input: { self: 'union-service', caller: 'web', request: { method: 'POST', path: '/admin/users' } },
      want: {
        allow: true,
        rule: 'services.union-service.allow[1] (from: web, methods: [POST], paths: [/admin/*])',
        reason: 'services.union-service.allow[1] (from: web, methods: [POST], paths: [/admin/*]) allows web',
      },
    },
    {
      name: 'a rule without paths allows any path for its methods',
      input: { self: 'union-service', caller: 'web', request: { method: 'GET', path: '/whatever' } },
      want: {
        allow: true,
        rule: 'services.union-service.allow[0] (from: web, methods: [GET])',
        reason: 'services.union-service.allow[0] (from: web, methods: [GET]) allows web',
      },
    },
    {
      name: 'a method/path pair must come from one entry, not be mixed across entries',
      input: { self: 'union-service', caller: 'web', request: { method: 'DELETE', path: '/admin/users' } },
      want: { allow: false, reason: 'no rule in services.union-service allows web to DELETE /admin/users' },
    },
    {
      name: 'a plain entry after an http-only one still allows in tcp mode',
      input: { self: 'mixed-service', caller: 'web' },
      want: { allow: true, rule: 'services.mixed-service.allow[1] (web)', reason: 'services.mixed-service.allow[1] (web) allows web' },
    },
    {
      name: 'the first entry that allows is the one reported',
      input: { self: 'mixed-service', caller: 'web', request: { method: 'GET', path: '/x' } },
      want: {
        allow: true,
        rule: 'services.mixed-service.allow[0] (from: web, paths: [/x])',
        reason: 'services.mixed-service.allow[0] (from: web, paths: [/x]) allows web',
      },
    },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.deepEqual(evaluatePolicy(policy, input.self, input.caller, input.request), want));
  }

  it('an empty policy denies everyone', () => {
    const empty = parsePolicy('services: {}\n', 'p.yaml');
    assert.equal(evaluatePolicy(empty, 'a', 'b').allow, false);
    assert.equal(evaluatePolicy(empty, 'a', 'b', { method: 'GET', path: '/' }).allow, false);
  });
});

describe('pathMatches', () => {
  const cases: { name: string; input: [string, string]; want: boolean }[] = [
    { name: 'exact', input: ['/stock', '/stock'], want: true },
    { name: 'exact does not match a subpath', input: ['/stock', '/stock/a'], want: false },
    { name: 'exact does not match a trailing slash', input: ['/stock', '/stock/'], want: false },
    { name: 'prefix matches deeper', input: ['/stock/*', '/stock/a/b'], want: true },
    { name: 'prefix matches its own directory', input: ['/stock/*', '/stock/'], want: true },
    { name: 'prefix does not match the bare name', input: ['/stock/*', '/stock'], want: false },
    { name: 'prefix does not match a longer name', input: ['/stock/*', '/stockx'], want: false },
    { name: 'a prefix without a slash is a plain string prefix', input: ['/stock*', '/stockx'], want: true },
    { name: '/* matches everything', input: ['/*', '/'], want: true },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.equal(pathMatches(...input), want));
  }
});

describe('tcpModeWarnings', () => {
  const cases: { name: string; input: string; want: string[] }[] = [
    { name: 'plain names only: nothing to say', input: 'payment-service', want: [] },
    { name: 'from: alone is not http-only', input: 'report-service', want: [] },
    {
      name: 'a methods/paths rule is dead in tcp mode',
      input: 'inventory-service',
      want: [
        `${NOTIFY_RULE} has methods/paths and allows nothing in tcp mode; set inbound.mode: http, or allow notification-service by name`,
      ],
    },
    { name: 'missing callee', input: 'ghost-service', want: ['services.ghost-service is not in the policy: every caller will be denied'] },
    { name: 'empty allow list', input: 'audit-service', want: ['services.audit-service.allow is empty: every caller will be denied'] },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.deepEqual(tcpModeWarnings(policy, input), want));
  }
});

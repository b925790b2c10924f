import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../../../common/errors.js';
import { evaluatePolicy, parsePolicy } from '../../../../common/policy/index.js';
import { runPolicyCheck } from '../../../../cli/commands/policy-check.js';
import { planLearn } from '../../../../cli/policy/learn-plan.js';
import { callFromLine, type CallSummary } from '../../../../cli/policy/observed-calls.js';
import { overlayObserved, buildPolicyGraph } from '../../../../cli/commands/policy-graph.js';
import { policyFile } from '../../../helpers/policy-fixtures.js';
import { fakeContext } from '../commands/fake-context.js';

const AUDIT = `services:
  inventory-service:
    mode: audit
    allow:
      - from: notification-service
        methods: [GET]
        paths: [/stock/*]
  payment-service:
    mode: enforce
    allow: [order-service]
`;

function errorLine(text: string): string {
  try {
    parsePolicy(text, 'p.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.line;
  }
  return assert.fail('expected a refusal');
}

describe('policy mode: audit', () => {
  const policy = parsePolicy(AUDIT, 'p.yaml');

  it('parses mode per service (enforce is the default and may be written)', () => {
    assert.deepEqual([...policy.audit], ['inventory-service']);
    assert.deepEqual([...parsePolicy('services:\n  a:\n    allow: [b]\n', 'p.yaml').audit], []);
  });

  const refusals = [
    {
      name: 'a misspelt mode',
      input: 'services:\n  a:\n    mode: audti\n    allow: []\n',
      want: 'p.yaml: services.a.mode: "audti" is not a mode; did you mean "audit"?',
    },
    {
      name: 'a boolean',
      input: 'services:\n  a:\n    mode: yes\n    allow: []\n',
      want: /services\.a\.mode: "yes" is a boolean in YAML, not a mode/,
    },
    { name: 'a list', input: 'services:\n  a:\n    mode: [audit]\n    allow: []\n', want: /services\.a\.mode: must be enforce or audit/ },
    {
      name: 'a misspelt key',
      input: 'services:\n  a:\n    mdoe: audit\n    allow: []\n',
      want: /services\.a\.mdoe: unknown key; did you mean "mode"\?/,
    },
  ];
  for (const c of refusals) {
    it(`refuses ${c.name}`, () => {
      const line = errorLine(c.input);
      if (typeof c.want === 'string') assert.equal(line, c.want);
      else assert.match(line, c.want);
    });
  }

  const decisions = [
    {
      name: 'allowed stays allowed, no wouldDeny',
      self: 'inventory-service',
      caller: 'notification-service',
      req: { method: 'GET', path: '/stock/1' },
      allow: true,
      wouldDeny: undefined,
    },
    {
      name: 'a deny in audit mode becomes an allow carrying the reason',
      self: 'inventory-service',
      caller: 'notification-service',
      req: { method: 'POST', path: '/stock/1' },
      allow: true,
      wouldDeny: 'no rule in services.inventory-service allows notification-service to POST /stock/1',
    },
    {
      name: 'an unnamed caller too',
      self: 'inventory-service',
      caller: 'intruder',
      req: undefined,
      allow: true,
      wouldDeny: 'no rule in services.inventory-service allows intruder',
    },
    {
      name: 'an enforced entry still denies',
      self: 'payment-service',
      caller: 'intruder',
      req: undefined,
      allow: false,
      wouldDeny: undefined,
    },
    {
      name: 'a callee missing from the policy has no mode: denied',
      self: 'ghost',
      caller: 'intruder',
      req: undefined,
      allow: false,
      wouldDeny: undefined,
    },
  ];
  for (const c of decisions) {
    it(c.name, () => {
      const d = evaluatePolicy(policy, c.self, c.caller, c.req);
      assert.equal(d.allow, c.allow);
      assert.equal(d.wouldDeny, c.wouldDeny);
    });
  }

  describe('svcca policy check', () => {
    let file: ReturnType<typeof policyFile>;
    before(() => (file = policyFile(AUDIT)));
    after(() => file.cleanup());
    it('says would deny (audit mode) and exits 5', async () => {
      const ctx = fakeContext();
      await runPolicyCheck({ from: 'intruder', to: 'inventory-service', policy: file.path }, ctx);
      assert.deepEqual(ctx.lines, [
        'would deny (audit mode): no rule in services.inventory-service allows intruder; the sidecar lets it through and logs it',
      ]);
      assert.equal(ctx.exitCode, 5);
    });
    it('reports decision would-deny in --json', async () => {
      const ctx = fakeContext(true);
      await runPolicyCheck({ from: 'intruder', to: 'inventory-service', policy: file.path }, ctx);
      assert.equal((ctx.results[0] as { decision: string }).decision, 'would-deny');
    });
  });
});

describe('callFromLine', () => {
  const S = { self: 'spiffe://example.org/inv', direction: 'inbound', time: '2026-12-03T05:00:00.000Z' };
  const cases: { name: string; line: Record<string, unknown> | string; want: unknown }[] = [
    {
      name: 'a would-deny request',
      line: { ...S, event: 'would-deny', mode: 'http', peer: 'spiffe://example.org/a', method: 'GET', path: '/x' },
      want: { callee: 'inv', caller: 'a', method: 'GET', path: '/x', outcome: 'would-deny', time: S.time },
    },
    {
      name: 'a tcp policy refusal',
      line: { ...S, event: 'refused', reason: 'policy-denied', peer: 'spiffe://example.org/a' },
      want: { callee: 'inv', caller: 'a', outcome: 'denied', time: S.time },
    },
    {
      name: 'an allowed request (debug)',
      line: { ...S, event: 'allowed', mode: 'http', peer: 'spiffe://example.org/a', method: 'GET', path: '/x' },
      want: { callee: 'inv', caller: 'a', method: 'GET', path: '/x', outcome: 'allowed', time: S.time },
    },
    {
      name: 'an http connection line is not a call',
      line: { ...S, event: 'allowed', mode: 'http', peer: 'spiffe://example.org/a' },
      want: undefined,
    },
    {
      name: 'an identity refusal is not a policy matter',
      line: { ...S, event: 'refused', reason: 'revoked', peer: 'spiffe://example.org/a' },
      want: undefined,
    },
    {
      name: 'an open connection cut by a new policy was already seen',
      line: { ...S, event: 'refused', reason: 'policy-denied', open: true, peer: 'spiffe://example.org/a' },
      want: undefined,
    },
    { name: 'another trust domain', line: { ...S, event: 'would-deny', peer: 'spiffe://evil.org/a' }, want: undefined },
    {
      name: 'a line without self (an old sidecar)',
      line: { event: 'would-deny', direction: 'inbound', peer: 'spiffe://example.org/a' },
      want: undefined,
    },
    { name: 'outbound lines', line: { ...S, direction: 'outbound', event: 'allowed', peer: 'spiffe://example.org/a' }, want: undefined },
    { name: 'not JSON', line: '{"event": "would-deny"', want: undefined },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(callFromLine(typeof c.line === 'string' ? c.line : JSON.stringify(c.line)), c.want));
  }
});

function call(
  caller: string,
  method: string | undefined,
  path: string | undefined,
  outcome: 'allowed' | 'denied' | 'would-deny',
  count = 1,
  time = '2026-12-03T05:00:00.000Z',
): CallSummary {
  return {
    callee: 'inventory-service',
    caller,
    ...(method !== undefined && { method, path: path! }),
    count,
    outcomes: { allowed: 0, denied: 0, 'would-deny': 0, [outcome]: count },
    first: time,
    last: time,
  };
}

describe('planLearn', () => {
  const policy = parsePolicy(AUDIT, 'p.yaml');
  const strip = (p: ReturnType<typeof planLearn>) =>
    p.add.map((r) => ({ from: r.from, methods: r.methods, paths: r.paths, count: r.count }));

  it('adds one entry per set of methods, allowing exactly the pairs seen', () => {
    const plan = planLearn(
      policy,
      [
        call('a', 'GET', '/x', 'would-deny', 2),
        call('a', 'GET', '/y', 'denied'),
        call('a', 'POST', '/y', 'denied'),
        call('a', 'POST', '/z', 'denied'),
      ],
      'exact',
    );
    assert.deepEqual(strip(plan), [
      { from: 'a', methods: ['GET'], paths: ['/x'], count: 2 },
      { from: 'a', methods: ['GET', 'POST'], paths: ['/y'], count: 2 },
      { from: 'a', methods: ['POST'], paths: ['/z'], count: 1 },
    ]);
  });
  it('a caller seen on a tcp connection needs its name', () => {
    assert.deepEqual(strip(planLearn(policy, [call('a', undefined, undefined, 'denied'), call('a', 'GET', '/x', 'denied')], 'exact')), [
      { from: 'a', methods: undefined, paths: undefined, count: 2 },
    ]);
  });
  it('proposes nothing for calls the policy already allows, and marks the rule used', () => {
    const plan = planLearn(policy, [call('notification-service', 'GET', '/stock/1', 'allowed')], 'exact');
    assert.deepEqual(plan.add, []);
    assert.deepEqual(plan.unseen, []);
    assert.deepEqual(plan.calleesNotSeen, ['payment-service']);
  });
  it('lists rules no call used, never removes them', () => {
    assert.deepEqual(planLearn(policy, [call('a', 'GET', '/x', 'denied')], 'exact').unseen, [
      'services.inventory-service.allow[0] (from: notification-service, methods: [GET], paths: [/stock/*])',
    ]);
  });
  it('--paths prefix folds siblings (gRPC methods too), never into /*', () => {
    const plan = planLearn(
      policy,
      [
        call('a', 'POST', '/orders.v1.Orders/Get', 'denied'),
        call('a', 'POST', '/orders.v1.Orders/List', 'denied'),
        call('a', 'GET', '/health', 'denied'),
        call('a', 'GET', '/ready', 'denied'),
      ],
      'prefix',
    );
    assert.deepEqual(strip(plan), [
      { from: 'a', methods: ['GET'], paths: ['/health', '/ready'], count: 2 },
      { from: 'a', methods: ['POST'], paths: ['/orders.v1.Orders/*'], count: 2 },
    ]);
  });
  it('keeps first and last seen', () => {
    const plan = planLearn(
      undefined,
      [call('a', 'GET', '/x', 'denied', 1, '2026-12-03T05:00:00.000Z'), call('a', 'GET', '/y', 'denied', 1, '2026-12-03T06:00:00.000Z')],
      'exact',
    );
    assert.equal(plan.add[0]!.first, '2026-12-03T05:00:00.000Z');
    assert.equal(plan.add[0]!.last, '2026-12-03T06:00:00.000Z');
  });
});

describe('overlayObserved', () => {
  it('puts allowed calls on policy edges and refusals on edges of their own', () => {
    const policy = parsePolicy(AUDIT, 'p.yaml');
    const g = overlayObserved(buildPolicyGraph(policy), [
      call('notification-service', 'GET', '/stock/1', 'allowed', 3),
      call('x', 'GET', '/a', 'denied', 2),
      call('x', 'GET', '/b', 'would-deny', 1),
    ]);
    assert.equal(g.edges.find((e) => e.from === 'notification-service')!.seen, 3);
    assert.deepEqual(g.refused, [
      { from: 'x', to: 'inventory-service', kind: 'denied', count: 2 },
      { from: 'x', to: 'inventory-service', kind: 'would-deny', count: 1 },
    ]);
    assert.ok(g.nodes.includes('x'));
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runPolicyCheck } from '../../../../cli/commands/policy-check.js';
import type { PolicyCheckOptions } from '../../../../cli/commands/policy-check.js';
import { ConfigError, UsageError } from '../../../../common/errors.js';
import { fakeContext } from './fake-context.js';
import { EXAMPLE_POLICY, policyFile } from '../../../helpers/policy-fixtures.js';

const NOTIFY_RULE = 'services.inventory-service.allow[1] (from: notification-service, methods: [GET], paths: [/stock, /stock/*])';

describe('runPolicyCheck', () => {
  let file: ReturnType<typeof policyFile>;
  before(() => {
    file = policyFile(EXAMPLE_POLICY);
  });
  after(() => file.cleanup());

  const cases: { name: string; input: Omit<PolicyCheckOptions, 'policy'>; want: { lines: string[]; exitCode: number } }[] = [
    {
      name: 'tcp allow',
      input: { from: 'order-service', to: 'payment-service' },
      want: { lines: ['allow: services.payment-service.allow[0] (order-service)'], exitCode: 0 },
    },
    {
      name: 'tcp deny',
      input: { from: 'notification-service', to: 'payment-service' },
      want: { lines: ['deny: no rule in services.payment-service allows notification-service'], exitCode: 3 },
    },
    {
      name: 'tcp deny of an http-only rule says why',
      input: { from: 'notification-service', to: 'inventory-service' },
      want: {
        lines: [
          'deny: services.inventory-service allows notification-service only with methods/paths, which allow http-mode requests and nothing in tcp mode',
        ],
        exitCode: 3,
      },
    },
    {
      name: 'http allow',
      input: { from: 'notification-service', to: 'inventory-service', method: 'GET', path: '/stock/42' },
      want: { lines: [`allow: ${NOTIFY_RULE}`], exitCode: 0 },
    },
    {
      name: 'http deny by method',
      input: { from: 'notification-service', to: 'inventory-service', method: 'POST', path: '/stock' },
      want: { lines: ['deny: no rule in services.inventory-service allows notification-service to POST /stock'], exitCode: 3 },
    },
    {
      name: 'the path is normalized as the sidecar does, and said so',
      input: { from: 'notification-service', to: 'inventory-service', method: 'GET', path: '/admin/../stock//a?x=1' },
      want: { lines: [`allow: ${NOTIFY_RULE}`, '(path normalized to /stock/a, as the sidecar matches and forwards it)'], exitCode: 0 },
    },
    {
      name: 'encoded dots cannot climb out of a prefix',
      input: { from: 'notification-service', to: 'inventory-service', method: 'GET', path: '/stock/%2e%2e/admin' },
      want: {
        lines: [
          'deny: no rule in services.inventory-service allows notification-service to GET /admin',
          '(path normalized to /admin, as the sidecar matches and forwards it)',
        ],
        exitCode: 3,
      },
    },
    {
      name: 'a path the sidecar answers 400 to is a deny naming why',
      input: { from: 'notification-service', to: 'inventory-service', method: 'GET', path: '/stock%2F..%2Fadmin' },
      want: { lines: ['deny: the sidecar answers 400 to this path: encoded "/" (%2F) in the path'], exitCode: 3 },
    },
    {
      name: 'a lower-case method is a deny, as the sidecar answers 400 to it',
      input: { from: 'notification-service', to: 'inventory-service', method: 'get', path: '/stock' },
      want: {
        lines: [
          'deny: the sidecar answers 400 to method get: its HTTP parser does not know it (methods are case-sensitive: did you mean GET?)',
        ],
        exitCode: 3,
      },
    },
    {
      name: 'a method the parser does not know is a deny',
      input: { from: 'notification-service', to: 'inventory-service', method: 'FETCH', path: '/stock' },
      want: { lines: ['deny: the sidecar answers 400 to method FETCH: its HTTP parser does not know it'], exitCode: 3 },
    },
    {
      name: 'a caller from another trust domain is a deny whatever the policy says',
      input: { from: 'spiffe://evil.org/order-service', to: 'spiffe://example.org/payment-service' },
      want: {
        lines: ["deny: the caller's trust domain evil.org is not the callee's (example.org): the sidecar refuses it before the policy"],
        exitCode: 3,
      },
    },
    {
      name: 'SPIFFE IDs are accepted for from and to',
      input: { from: 'spiffe://example.org/order-service', to: 'spiffe://example.org/payment-service' },
      want: { lines: ['allow: services.payment-service.allow[0] (order-service)'], exitCode: 0 },
    },
    {
      name: 'a callee missing from the policy is denied',
      input: { from: 'order-service', to: 'ghost' },
      want: { lines: ['deny: services.ghost is not in the policy, so every caller is denied'], exitCode: 3 },
    },
  ];
  for (const { name, input, want } of cases) {
    it(name, async () => {
      const ctx = fakeContext();
      await runPolicyCheck({ ...input, policy: file.path }, ctx);
      assert.deepEqual({ lines: ctx.lines, exitCode: ctx.exitCode }, want);
    });
  }

  it('--json prints one result with the decision, mode and rule', async () => {
    const ctx = fakeContext(true);
    await runPolicyCheck(
      { from: 'notification-service', to: 'inventory-service', method: 'GET', path: '/stock/./a', policy: file.path },
      ctx,
    );
    assert.deepEqual(ctx.results, [
      {
        decision: 'allow',
        from: 'notification-service',
        to: 'inventory-service',
        mode: 'http',
        method: 'GET',
        path: '/stock/a',
        rule: NOTIFY_RULE,
        reason: `${NOTIFY_RULE} allows notification-service`,
      },
    ]);
    assert.deepEqual(ctx.lines, []);
  });

  it('--json on a tcp deny has a null rule and exit 3', async () => {
    const ctx = fakeContext(true);
    await runPolicyCheck({ from: 'x', to: 'payment-service', policy: file.path }, ctx);
    assert.deepEqual(ctx.results, [
      {
        decision: 'deny',
        from: 'x',
        to: 'payment-service',
        mode: 'tcp',
        rule: null,
        reason: 'no rule in services.payment-service allows x',
      },
    ]);
    assert.equal(ctx.exitCode, 3);
  });

  const usageCases: { name: string; input: Omit<PolicyCheckOptions, 'policy'>; want: string }[] = [
    {
      name: '--method without --path',
      input: { from: 'a', to: 'b', method: 'GET' },
      want: '--method needs --path; give both to check an http-mode request (--method GET --path /stock), or neither for tcp mode',
    },
    {
      name: '--path without --method',
      input: { from: 'a', to: 'b', path: '/x' },
      want: '--path needs --method; give both to check an http-mode request (--method GET --path /stock), or neither for tcp mode',
    },
    {
      name: 'an invalid method',
      input: { from: 'a', to: 'b', method: 'GE T', path: '/' },
      want: '--method: "GE T" is not an HTTP method; use a method such as GET or POST',
    },
    {
      name: 'an invalid caller name',
      input: { from: 'Order', to: 'b' },
      want: /^<from>: invalid service name "Order": it contains "O"/.source,
    },
    {
      name: 'an invalid SPIFFE ID',
      input: { from: 'a', to: 'spiffe://Example/x' },
      want: /^<to>: invalid SPIFFE ID "spiffe:\/\/Example\/x": trust domain contains/.source,
    },
  ];
  for (const { name, input, want } of usageCases) {
    it(`usage error: ${name}`, async () => {
      const ctx = fakeContext();
      await assert.rejects(runPolicyCheck({ ...input, policy: file.path }, ctx), (err: unknown) => {
        assert.ok(err instanceof UsageError);
        assert.match(err.line, want.startsWith('^') ? new RegExp(want) : new RegExp(`^${escapeRegExp(want)}$`));
        return true;
      });
      assert.deepEqual(ctx.lines, [], 'nothing printed before the flags are checked');
    });
  }

  it('a malformed policy is a ConfigError naming the key, not a deny', async () => {
    const bad = policyFile('services:\n  a:\n    allow:\n      - from: b\n        method: [GET]\n');
    try {
      const ctx = fakeContext();
      await assert.rejects(runPolicyCheck({ from: 'b', to: 'a', policy: bad.path }, ctx), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.line, `${bad.path}: services.a.allow[0].method: unknown key; did you mean "methods"?`);
        return true;
      });
      assert.equal(ctx.exitCode, 0);
    } finally {
      bad.cleanup();
    }
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

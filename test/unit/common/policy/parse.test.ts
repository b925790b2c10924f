import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../../common/errors.js';
import { parsePolicy } from '../../../../common/policy/index.js';
import type { Policy } from '../../../../common/policy/index.js';
import { EXAMPLE_POLICY } from '../../../helpers/policy-fixtures.js';

const SRC = 'policy.yaml';

/** The policy as plain data, so tables can state it. */
function plain(policy: Policy): Record<string, unknown[]> {
  return Object.fromEntries([...policy.services].map(([name, rules]) => [name, rules.map((r) => ({ ...r }))]));
}

function errorLine(text: string): string {
  try {
    parsePolicy(text, SRC);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(!err.line.includes('\n'), `error is more than one line: ${err.line}`);
    return err.line;
  }
  assert.fail('expected the policy to be refused');
}

describe('parsePolicy: valid policies', () => {
  const cases: { name: string; input: string; want: Record<string, unknown[]> }[] = [
    {
      name: 'the contract example',
      input: EXAMPLE_POLICY,
      want: {
        'payment-service': [{ from: 'order-service', plain: true, label: 'services.payment-service.allow[0] (order-service)' }],
        'inventory-service': [
          { from: 'order-service', plain: true, label: 'services.inventory-service.allow[0] (order-service)' },
          {
            from: 'notification-service',
            methods: ['GET'],
            paths: ['/stock', '/stock/*'],
            plain: false,
            label: 'services.inventory-service.allow[1] (from: notification-service, methods: [GET], paths: [/stock, /stock/*])',
          },
        ],
        'audit-service': [],
        'report-service': [{ from: 'billing-service', plain: false, label: 'services.report-service.allow[0] (from: billing-service)' }],
      },
    },
    {
      name: 'methods are upper-cased and de-duplicated',
      input: 'services:\n  a:\n    allow:\n      - from: b\n        methods: [get, GET, Post]\n',
      want: { a: [{ from: 'b', methods: ['GET', 'POST'], plain: false, label: 'services.a.allow[0] (from: b, methods: [GET, POST])' }] },
    },
    {
      name: 'paths without methods',
      input: 'services:\n  a:\n    allow:\n      - from: b\n        paths: ["/*"]\n',
      want: { a: [{ from: 'b', paths: ['/*'], plain: false, label: 'services.a.allow[0] (from: b, paths: [/*])' }] },
    },
    { name: 'no services at all, written explicitly', input: 'services: {}\n', want: {} },
    {
      name: 'quoted, on, 123 and null are names (unquoted, they are refused: see the schema errors)',
      input: 'services:\n  "123":\n    allow: ["on", \'123\', "null"]\n',
      want: {
        '123': [
          { from: 'on', plain: true, label: 'services.123.allow[0] (on)' },
          { from: '123', plain: true, label: 'services.123.allow[1] (123)' },
          { from: 'null', plain: true, label: 'services.123.allow[2] (null)' },
        ],
      },
    },
    {
      name: 'a dotted name is quoted in key paths; a path-like name is not',
      input: 'services:\n  api.v1:\n    allow: [ns/prod/web]\n',
      want: { 'api.v1': [{ from: 'ns/prod/web', plain: true, label: 'services["api.v1"].allow[0] (ns/prod/web)' }] },
    },
    {
      name: 'anchors and aliases share a list',
      input: 'services:\n  a:\n    allow: &front [web, mobile]\n  b:\n    allow: *front\n',
      want: {
        a: [
          { from: 'web', plain: true, label: 'services.a.allow[0] (web)' },
          { from: 'mobile', plain: true, label: 'services.a.allow[1] (mobile)' },
        ],
        b: [
          { from: 'web', plain: true, label: 'services.b.allow[0] (web)' },
          { from: 'mobile', plain: true, label: 'services.b.allow[1] (mobile)' },
        ],
      },
    },
    { name: 'a byte-order mark is ignored', input: '\ufeffservices:\n  a:\n    allow: []\n', want: { a: [] } },
    {
      name: 'CRLF line ends',
      input: 'services:\r\n  a:\r\n    allow: [b]\r\n',
      want: { a: [{ from: 'b', plain: true, label: 'services.a.allow[0] (b)' }] },
    },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.deepEqual(plain(parsePolicy(input, SRC)), want));
  }

  it('returns frozen rules, so a sidecar snapshot cannot be changed under it', () => {
    const policy = parsePolicy(EXAMPLE_POLICY, SRC);
    const rule = policy.services.get('inventory-service')![1]!;
    assert.ok(Object.isFrozen(rule) && Object.isFrozen(rule.methods) && Object.isFrozen(rule.paths));
  });
});

describe('parsePolicy: schema errors name the key path', () => {
  const svc = (body: string) => `services:\n  inventory-service:\n${body}`;
  const rule = (body: string) => svc(`    allow:\n      - order-service\n      - from: notification-service\n${body}`);
  const cases: { name: string; input: string; want: string }[] = [
    {
      name: 'misspelt methods',
      input: rule('        method: [GET]\n'),
      want: `${SRC}: services.inventory-service.allow[1].method: unknown key; did you mean "methods"?`,
    },
    {
      name: 'misspelt paths',
      input: rule('        path: [/stock]\n'),
      want: `${SRC}: services.inventory-service.allow[1].path: unknown key; did you mean "paths"?`,
    },
    {
      name: 'capitalised key',
      input: rule('        Methods: [GET]\n'),
      want: `${SRC}: services.inventory-service.allow[1].Methods: unknown key; did you mean "methods"?`,
    },
    {
      name: 'misspelt allow',
      input: svc('    alow: [a]\n'),
      want: `${SRC}: services.inventory-service.alow: unknown key; did you mean "allow"?`,
    },
    { name: 'misspelt services', input: 'service:\n  a:\n    allow: []\n', want: `${SRC}: service: unknown key; did you mean "services"?` },
    {
      name: 'an unrelated key lists the known ones',
      input: rule('        ports: [80]\n'),
      want: `${SRC}: services.inventory-service.allow[1].ports: unknown key; the keys here are from, methods, paths`,
    },
    {
      name: 'deny is explained',
      input: svc('    allow: []\n    deny: [x]\n'),
      want: `${SRC}: services.inventory-service.deny: unknown key; the policy is default deny: list only the callers to allow and remove deny`,
    },
    {
      name: 'a merge key is just an unknown key',
      input: 'x: &a {allow: []}\nservices: {}\n',
      want: `${SRC}: x: unknown key; the keys here are services`,
    },
    { name: 'empty file', input: '', want: `${SRC}: is empty; a policy needs a services: map; see the example in the docs` },
    {
      name: 'comments only',
      input: '# nothing yet\n',
      want: `${SRC}: is empty; a policy needs a services: map; see the example in the docs`,
    },
    {
      name: 'top level is a list',
      input: '- a\n',
      want: `${SRC}: the top level must be a map with a services: key; start the file with services:`,
    },
    {
      name: 'top level is a string',
      input: 'hello\n',
      want: `${SRC}: the top level must be a map with a services: key; start the file with services:`,
    },
    {
      name: 'services missing',
      input: '{}\n',
      want: `${SRC}: services: missing; add services:, with an allow list under each service that accepts calls`,
    },
    {
      name: 'services empty',
      input: 'services:\n',
      want: `${SRC}: services: is empty; list each service with its allow list, or write services: {} to deny every call`,
    },
    {
      name: 'services a list',
      input: 'services: [a]\n',
      want: `${SRC}: services: must be a map of service names; write services:, then one indented key per service`,
    },
    {
      name: 'service without a body',
      input: svc(''),
      want: `${SRC}: services.inventory-service: has no allow list; write allow: [] to deny every caller, or list the callers`,
    },
    {
      name: 'service as a list',
      input: 'services:\n  a: [b]\n',
      want: `${SRC}: services.a: must be a map with an allow list; write allow: under a`,
    },
    {
      name: 'allow missing',
      input: 'services:\n  a: {}\n',
      want: `${SRC}: services.a.allow: missing; write allow: [] to deny every caller, or list the callers`,
    },
    {
      name: 'allow empty',
      input: svc('    allow:\n'),
      want: `${SRC}: services.inventory-service.allow: is empty; write allow: [] to deny every caller, or list the callers`,
    },
    {
      name: 'allow a string',
      input: svc('    allow: order-service\n'),
      want: `${SRC}: services.inventory-service.allow: must be a list; write allow: [order-service]`,
    },
    {
      name: 'allow a map',
      input: svc('    allow: {from: a}\n'),
      want: `${SRC}: services.inventory-service.allow: must be a list of callers; write one "- <service>" or "- from: <service>" line per caller`,
    },
    {
      name: 'an empty entry',
      input: svc('    allow:\n      -\n'),
      want: `${SRC}: services.inventory-service.allow[0]: is empty; write a caller's service name, or from: <service>`,
    },
    {
      name: 'an entry that is a list',
      input: svc('    allow: [[a, b]]\n'),
      want: `${SRC}: services.inventory-service.allow[0]: must be a service name or a map with from:; write one caller per entry`,
    },
    {
      name: 'from missing',
      input: svc('    allow:\n      - methods: [GET]\n'),
      want: `${SRC}: services.inventory-service.allow[0].from: missing; name the calling service: from: order-service`,
    },
    {
      name: 'from a list',
      input: svc('    allow:\n      - from: [a, b]\n'),
      want: `${SRC}: services.inventory-service.allow[0].from: must be one service name, not a list; write one entry per caller`,
    },
    {
      name: 'from a SPIFFE ID',
      input: svc('    allow:\n      - from: spiffe://example.org/order-service\n'),
      want: `${SRC}: services.inventory-service.allow[0].from: "spiffe://example.org/order-service" is a SPIFFE ID, not a service name; write the service name alone (the ID's path, without spiffe://<trust-domain>/)`,
    },
    {
      name: 'wildcard caller',
      input: svc('    allow: ["*"]\n'),
      want: `${SRC}: services.inventory-service.allow[0]: "*" is not a service name; there is no wildcard caller: name each caller`,
    },
    {
      name: 'upper-case caller',
      input: svc('    allow: [Order]\n'),
      want: `${SRC}: services.inventory-service.allow[0]: invalid service name "Order": it contains "O"; only lower-case letters, digits, ".", "-", "_" and "/" between segments are allowed; a service name is 1-128 characters of a-z 0-9 . - _, each "/"-separated segment starting with a letter or digit (e.g. payment-service)`,
    },
    {
      name: 'invalid callee name',
      input: 'services:\n  Pay:\n    allow: []\n',
      want: `${SRC}: services.Pay: invalid service name "Pay": it contains "P"; only lower-case letters, digits, ".", "-", "_" and "/" between segments are allowed; a service name is 1-128 characters of a-z 0-9 . - _, each "/"-separated segment starting with a letter or digit (e.g. payment-service)`,
    },
    {
      name: 'a name with a space is quoted in the key path',
      input: 'services:\n  "a b":\n    allow: []\n',
      want: `${SRC}: services["a b"]: invalid service name "a b": it contains " "; only lower-case letters, digits, ".", "-", "_" and "/" between segments are allowed; a service name is 1-128 characters of a-z 0-9 . - _, each "/"-separated segment starting with a letter or digit (e.g. payment-service)`,
    },
    {
      name: 'methods empty',
      input: rule('        methods: []\n'),
      want: `${SRC}: services.inventory-service.allow[1].methods: is empty; leave methods out to allow any method`,
    },
    {
      name: 'methods null',
      input: rule('        methods:\n'),
      want: `${SRC}: services.inventory-service.allow[1].methods: is empty; leave methods out to allow any method`,
    },
    {
      name: 'methods a string',
      input: rule('        methods: GET\n'),
      want: `${SRC}: services.inventory-service.allow[1].methods: must be a list; write methods: [GET]`,
    },
    {
      name: 'method "*"',
      input: rule('        methods: ["*"]\n'),
      want: `${SRC}: services.inventory-service.allow[1].methods[0]: "*" is not a method; leave methods out to allow any method`,
    },
    {
      name: 'method with a space',
      input: rule('        methods: ["GE T"]\n'),
      want: `${SRC}: services.inventory-service.allow[1].methods[0]: "GE T" is not an HTTP method; use method names such as GET, POST, PUT, DELETE`,
    },
    {
      name: 'method a map',
      input: rule('        methods: [{GET: x}]\n'),
      want: `${SRC}: services.inventory-service.allow[1].methods[0]: must be a method, not a map; leave methods out to allow any method`,
    },
    {
      name: 'paths empty',
      input: rule('        paths: []\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths: is empty; leave paths out to allow any path`,
    },
    {
      name: 'path without a leading slash',
      input: rule('        paths: [stock]\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: "stock" must start with "/"; write an absolute path such as /stock or /stock/*`,
    },
    {
      name: 'star in the middle',
      input: rule('        paths: ["/stock/*/a"]\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: "/stock/*/a" has "*" before the end; "*" is allowed only as the last character, for a prefix match (/stock/*)`,
    },
    {
      name: 'path with a query',
      input: rule('        paths: ["/stock?id=1"]\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: "/stock?id=1" has a query or fragment; paths are matched without the query; remove everything from "?"`,
    },
    {
      name: 'path with dot segments',
      input: rule('        paths: [/a/../admin]\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: "/a/../admin" is not in normalized form, so no request would match it; write "/admin"`,
    },
    {
      name: 'prefix with doubled slash',
      input: rule('        paths: ["/a//*"]\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: "/a//*" is not in normalized form, so no request would match it; write "/a/*"`,
    },
    {
      name: 'path with lower-case hex',
      input: rule('        paths: ["/a%3a"]\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: "/a%3a" is not in normalized form, so no request would match it; write "/a%3A"`,
    },
    {
      name: 'path with an encoded slash',
      input: rule('        paths: ["/a%2Fb"]\n'),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: "/a%2Fb" is not a valid request path: encoded "/" (%2F) in the path; write the path as the service receives it`,
    },
    // Kubernetes and most YAML tools read these as a boolean, a number or null: a name must be quoted.
    {
      name: 'a caller written as a number',
      input: svc('    allow: [123]\n'),
      want: `${SRC}: services.inventory-service.allow[0]: "123" is a number in YAML, not a service name; write it in quotes, "123", if that is really meant`,
    },
    {
      name: 'a caller written as yes',
      input: svc('    allow: [yes]\n'),
      want: `${SRC}: services.inventory-service.allow[0]: "yes" is a boolean in YAML, not a service name; write it in quotes, "yes", if that is really meant`,
    },
    {
      name: 'a caller written as on, in a block list',
      input: svc('    allow:\n      - order-service\n      - on\n'),
      want: `${SRC}: services.inventory-service.allow[1]: "on" is a boolean in YAML, not a service name; write it in quotes, "on", if that is really meant`,
    },
    {
      name: 'a caller written as null',
      input: svc('    allow: [null]\n'),
      want: `${SRC}: services.inventory-service.allow[0]: "null" is a null in YAML, not a service name; write it in quotes, "null", if that is really meant`,
    },
    {
      name: 'a caller written as a float',
      input: svc('    allow: [1.5]\n'),
      want: `${SRC}: services.inventory-service.allow[0]: "1.5" is a number in YAML, not a service name; write it in quotes, "1.5", if that is really meant`,
    },
    {
      name: 'from: written as a number',
      input: svc('    allow:\n      - from: 8080\n'),
      want: `${SRC}: services.inventory-service.allow[0].from: "8080" is a number in YAML, not a service name; write it in quotes, "8080", if that is really meant`,
    },
    {
      name: 'a callee written as a number',
      input: 'services:\n  123:\n    allow: []\n',
      want: `${SRC}: services.123: "123" is a number in YAML, not a service name; write it in quotes, "123", if that is really meant`,
    },
    {
      name: 'a key written as a boolean',
      input: svc('    allow: []\n    yes: []\n'),
      want: `${SRC}: services.inventory-service.yes: unknown key; the keys here are allow, mode`,
    },
    {
      name: 'a method written as a number',
      input: rule('        methods: [200]\n'),
      want: `${SRC}: services.inventory-service.allow[1].methods[0]: "200" is a number in YAML, not a method; write it in quotes, "200", if that is really meant`,
    },
    {
      name: 'a very long path',
      input: rule(`        paths: ["/${'a'.repeat(5000)}"]\n`),
      want: `${SRC}: services.inventory-service.allow[1].paths[0]: is 5001 characters long; the limit is 2048; use a shorter path or a prefix ending in *`,
    },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.equal(errorLine(input), want));
  }
});

describe('parsePolicy: YAML errors give a line and column', () => {
  const cases: { name: string; input: string; want: RegExp }[] = [
    {
      name: 'duplicate service',
      input: 'services:\n  a:\n    allow: []\n  a:\n    allow: [b]\n',
      want: /^policy\.yaml: line 4, column 3: Map keys must be unique; each key may appear once in a map; merge the two entries$/,
    },
    {
      name: 'unclosed flow sequence',
      input: 'services:\n  a:\n    allow: [b\n',
      want: /^policy\.yaml: line \d+, column \d+: .+; fix the YAML/,
    },
    {
      name: 'tab indentation',
      input: 'services:\n\ta:\n',
      want: /^policy\.yaml: line 2, column 1: Tabs are not allowed as indentation; fix the YAML/,
    },
    {
      name: 'two documents',
      input: 'services: {}\n---\nservices: {}\n',
      want: /^policy\.yaml: line 2, column 1: Source contains multiple documents/,
    },
    {
      name: 'a tag',
      input: 'services: !!binary aGVsbG8=\n',
      want: /^policy\.yaml: line 1, column 11: YAML tag !!binary is not allowed in a policy; remove the tag/,
    },
    {
      name: 'a custom tag',
      input: 'services:\n  a: !include other.yaml\n',
      want: /^policy\.yaml: line 2, column 6: YAML tag !include is not allowed/,
    },
    { name: 'an alias to nothing', input: 'services: *nope\n', want: /^policy\.yaml: Unresolved alias .*: nope; fix the YAML/ },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.match(errorLine(input), want));
  }
});

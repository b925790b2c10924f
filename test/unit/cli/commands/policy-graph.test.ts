import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildPolicyGraph, runPolicyGraph, toDot, toMermaid } from '../../../../cli/commands/policy-graph.js';
import type { PolicyGraph } from '../../../../cli/commands/policy-graph.js';
import { ConfigError } from '../../../../common/errors.js';
import { parsePolicy } from '../../../../common/policy/index.js';
import { fakeContext } from './fake-context.js';
import { EXAMPLE_POLICY, policyFile } from '../../../helpers/policy-fixtures.js';

const GRAPH_POLICY = `${EXAMPLE_POLICY}  union-service:
    allow:
      - from: web
        methods: [GET]
      - from: web
        paths: [/admin/*]
  mixed-service:
    allow:
      - from: web
        paths: [/x]
      - web
`;

describe('buildPolicyGraph', () => {
  const cases: { name: string; input: string; want: PolicyGraph }[] = [
    {
      name: 'callers and callees are nodes; one edge per pair; http-only rules are marked',
      input: GRAPH_POLICY,
      want: {
        nodes: [
          'payment-service',
          'inventory-service',
          'audit-service',
          'report-service',
          'union-service',
          'mixed-service',
          'order-service',
          'notification-service',
          'billing-service',
          'web',
        ],
        edges: [
          { from: 'order-service', to: 'payment-service', httpOnly: false, conditions: [] },
          { from: 'order-service', to: 'inventory-service', httpOnly: false, conditions: [] },
          { from: 'notification-service', to: 'inventory-service', httpOnly: true, conditions: ['GET /stock /stock/*'] },
          { from: 'billing-service', to: 'report-service', httpOnly: false, conditions: [] },
          { from: 'web', to: 'union-service', httpOnly: true, conditions: ['GET any path', 'any method /admin/*'] },
          { from: 'web', to: 'mixed-service', httpOnly: false, conditions: [] },
        ],
      },
    },
    { name: 'an empty policy has no nodes', input: 'services: {}\n', want: { nodes: [], edges: [] } },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.deepEqual(buildPolicyGraph(parsePolicy(input, 'p.yaml')), want));
  }
});

describe('renderers', () => {
  const graph = buildPolicyGraph(parsePolicy(GRAPH_POLICY, 'p.yaml'));

  it('DOT: solid arrows for any mode, dashed and labelled for http only', () => {
    const dot = toDot(graph);
    assert.match(dot, /^digraph policy \{\n/);
    assert.match(dot, /\n {2}"order-service" -> "payment-service";\n/);
    assert.match(
      dot,
      /\n {2}"notification-service" -> "inventory-service" \[style=dashed, label="http only\\nGET \/stock \/stock\/\*"\];\n/,
    );
    assert.match(dot, /\n {2}"audit-service";\n/, 'a service nobody may call is still drawn');
    assert.match(dot, /\n\}\n$/);
  });

  it('DOT: quotes and backslashes in names cannot break out of a string', () => {
    const dot = toDot({ nodes: ['a"b\\'], edges: [] });
    assert.match(dot, /\n {2}"a\\"b\\\\";\n/);
  });

  it('mermaid: quoted labels, dotted arrows for http only', () => {
    const text = toMermaid(graph);
    assert.match(text, /^flowchart LR\n/);
    assert.match(text, /\n {2}s0\["payment-service"\]\n/);
    assert.match(text, /\n {2}s6 --> s0\n/);
    assert.match(text, /\n {2}s7 -\.->\|"http only; GET \/stock \/stock\/\*"\| s1\n/);
  });

  it('mermaid: characters that end a label are escaped', () => {
    assert.match(toMermaid({ nodes: ['a"<b>#'], edges: [] }), /s0\["a#34;#60;b#62;#35;"\]/);
  });
});

describe('runPolicyGraph', () => {
  let file: ReturnType<typeof policyFile>;
  before(() => {
    file = policyFile(GRAPH_POLICY);
  });
  after(() => file.cleanup());

  it('prints DOT', async () => {
    const ctx = fakeContext();
    await runPolicyGraph({ policy: file.path, format: 'dot' }, ctx);
    assert.equal(ctx.lines.length, 1);
    assert.equal(`${ctx.lines[0]}\n`, toDot(buildPolicyGraph(parsePolicy(GRAPH_POLICY, 'p.yaml'))));
  });

  it('prints mermaid', async () => {
    const ctx = fakeContext();
    await runPolicyGraph({ policy: file.path, format: 'mermaid' }, ctx);
    assert.match(ctx.lines[0]!, /^flowchart LR\n/);
  });

  it('renders SVG in-process', async () => {
    const ctx = fakeContext();
    await runPolicyGraph({ policy: file.path, format: 'svg' }, ctx);
    const svg = ctx.lines[0]!;
    assert.match(svg, /<svg[\s>]/);
    assert.match(svg, /<\/svg>$/);
    // Graphviz writes '-' as &#45; in SVG text.
    assert.match(svg, /<title>notification&#45;service&#45;&gt;inventory&#45;service<\/title>/);
    assert.match(svg, /stroke-dasharray/, 'the http-only edge is dashed');
  });

  it('--json gives the graph as data alongside the text', async () => {
    const ctx = fakeContext(true);
    await runPolicyGraph({ policy: file.path, format: 'mermaid' }, ctx);
    const result = ctx.results[0] as { format: string; nodes: string[]; edges: unknown[]; output: string };
    assert.equal(result.format, 'mermaid');
    assert.equal(result.nodes.length, 10);
    assert.equal(result.edges.length, 6);
    assert.match(result.output, /^flowchart LR/);
  });

  it('a malformed policy is a ConfigError', async () => {
    const bad = policyFile('services:\n  a:\n    allowed: []\n');
    try {
      await assert.rejects(runPolicyGraph({ policy: bad.path, format: 'svg' }, fakeContext()), ConfigError);
    } finally {
      bad.cleanup();
    }
  });
});

/**
 * `svcca policy graph --policy F [--format dot|mermaid|svg]`: who may call whom.
 * Nodes are services (callees and callers); an arrow goes caller → callee. A solid arrow
 * allows in any mode; a dashed one only in http mode, labelled with its methods/paths.
 */
import { loadPolicyFile } from '../../common/policy/index.js';
import type { Policy, PolicyRule } from '../../common/policy/index.js';
import type { CommandContext } from '../context.js';

export interface PolicyGraphOptions {
  /** Path of the policy YAML file. */
  policy: string;
  /** Output format; svg is rendered in-process with @viz-js/viz (no Graphviz install). */
  format: 'dot' | 'mermaid' | 'svg';
}

export interface PolicyGraphEdge {
  readonly from: string;
  readonly to: string;
  /** true when every rule for this pair has methods/paths, so tcp mode allows nothing. */
  readonly httpOnly: boolean;
  /** For an http-only edge, one `METHODS PATHS` line per rule; empty otherwise. */
  readonly conditions: readonly string[];
}

export interface PolicyGraph {
  readonly nodes: readonly string[];
  readonly edges: readonly PolicyGraphEdge[];
}

export async function runPolicyGraph(opts: PolicyGraphOptions, ctx: CommandContext): Promise<void> {
  const graph = buildPolicyGraph(loadPolicyFile(opts.policy));
  let output: string;
  if (opts.format === 'mermaid') {
    output = toMermaid(graph);
  } else if (opts.format === 'svg') {
    // Loaded only here: the wasm Graphviz build is large and no other command needs it.
    const { instance } = await import('@viz-js/viz');
    output = (await instance()).renderString(toDot(graph), { format: 'svg' });
  } else {
    output = toDot(graph);
  }
  ctx.out.result({ format: opts.format, nodes: graph.nodes, edges: graph.edges, output });
  ctx.out.line(output.replace(/\n+$/, ''));
}

/** One edge per caller → callee pair: the union of that caller's entries. */
export function buildPolicyGraph(policy: Policy): PolicyGraph {
  const nodes = new Set<string>(policy.services.keys());
  const edges: PolicyGraphEdge[] = [];
  for (const [callee, rules] of policy.services) {
    const byCaller = new Map<string, PolicyRule[]>();
    for (const rule of rules) {
      nodes.add(rule.from);
      byCaller.set(rule.from, [...(byCaller.get(rule.from) ?? []), rule]);
    }
    for (const [caller, callerRules] of byCaller) {
      const httpOnly = callerRules.every((r) => !r.plain && (r.methods !== undefined || r.paths !== undefined));
      const conditions = httpOnly ? callerRules.map((r) => `${r.methods?.join(' ') ?? 'any method'} ${r.paths?.join(' ') ?? 'any path'}`) : [];
      edges.push({ from: caller, to: callee, httpOnly, conditions });
    }
  }
  return { nodes: [...nodes], edges };
}

export function toDot(graph: PolicyGraph): string {
  const lines = [
    'digraph policy {',
    '  rankdir=LR;',
    '  label="svcca policy: solid = allowed in any mode, dashed = http mode only";',
    '  labelloc=b; fontname="Helvetica"; fontsize=10;',
    '  node [shape=box, style=rounded, fontname="Helvetica"];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  for (const node of graph.nodes) lines.push(`  ${dotId(node)};`);
  for (const edge of graph.edges) {
    const attrs = edge.httpOnly ? ` [style=dashed, label=${dotId(['http only', ...edge.conditions].join('\n'))}]` : '';
    lines.push(`  ${dotId(edge.from)} -> ${dotId(edge.to)}${attrs};`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

export function toMermaid(graph: PolicyGraph): string {
  // Mermaid ids cannot hold "/" or "."; names go in quoted labels instead.
  const ids = new Map(graph.nodes.map((node, i) => [node, `s${i}`]));
  const lines = ['flowchart LR'];
  for (const node of graph.nodes) lines.push(`  ${ids.get(node)}["${mermaidText(node)}"]`);
  for (const edge of graph.edges) {
    const from = ids.get(edge.from)!;
    const to = ids.get(edge.to)!;
    lines.push(edge.httpOnly ? `  ${from} -.->|"${mermaidText(['http only', ...edge.conditions].join('; '))}"| ${to}` : `  ${from} --> ${to}`);
  }
  return `${lines.join('\n')}\n`;
}

function dotId(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

function mermaidText(text: string): string {
  return text.replace(/[#"<>]/g, (ch) => `#${ch.charCodeAt(0)};`);
}

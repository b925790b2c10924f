/**
 * `svcca policy graph --policy F [--format dot|mermaid|svg] [--observed LOG…]`: who may
 * call whom. Nodes are services (callees and callers); an arrow goes caller → callee. A
 * solid arrow allows in any mode; a dashed one only in http mode, labelled with its
 * methods/paths. With --observed, the calls seen in sidecar logs are drawn over it: an
 * allowed edge says how many calls it carried, and calls the allow list refused (red,
 * bold, "denied N") or audit mode let through (orange, dotted, "would deny N") get edges
 * of their own.
 */
import { loadPolicyFile } from '../../common/policy/index.js';
import type { Policy, PolicyRule } from '../../common/policy/index.js';
import type { CommandContext } from '../context.js';
import type { CallSummary } from '../policy/observed-calls.js';

export interface PolicyGraphOptions {
  /** Path of the policy YAML file. */
  policy: string;
  /** Output format; svg is rendered in-process with @viz-js/viz (no Graphviz install). */
  format: 'dot' | 'mermaid' | 'svg';
  /** Sidecar log files whose calls are drawn over the policy. */
  observed?: string[];
}

export interface PolicyGraphEdge {
  readonly from: string;
  readonly to: string;
  /** true when every rule for this pair has methods/paths, so tcp mode allows nothing. */
  readonly httpOnly: boolean;
  /** For an http-only edge, one `METHODS PATHS` line per rule; empty otherwise. */
  readonly conditions: readonly string[];
  /** With --observed: calls seen on this edge (any outcome). */
  seen?: number;
}

/** A pair of services with calls the allow list did not allow. */
export interface ObservedRefusalEdge {
  readonly from: string;
  readonly to: string;
  readonly kind: 'denied' | 'would-deny';
  readonly count: number;
}

export interface PolicyGraph {
  readonly nodes: readonly string[];
  readonly edges: readonly PolicyGraphEdge[];
  /** With --observed only. */
  readonly refused?: readonly ObservedRefusalEdge[];
}

export async function runPolicyGraph(opts: PolicyGraphOptions, ctx: CommandContext): Promise<void> {
  const policy = loadPolicyFile(opts.policy);
  let graph = buildPolicyGraph(policy);
  if (opts.observed !== undefined && opts.observed.length > 0) {
    // Loaded only here: no other use of graph needs the log reader.
    const { readObservedCalls } = await import('../policy/observed-calls.js');
    graph = overlayObserved(graph, (await readObservedCalls(opts.observed)).calls);
  }
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
  ctx.out.result({ format: opts.format, nodes: graph.nodes, edges: graph.edges, ...(graph.refused && { refused: graph.refused }), output });
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
      const conditions = httpOnly
        ? callerRules.map((r) => `${r.methods?.join(' ') ?? 'any method'} ${r.paths?.join(' ') ?? 'any path'}`)
        : [];
      edges.push({ from: caller, to: callee, httpOnly, conditions });
    }
  }
  return { nodes: [...nodes], edges };
}

/**
 * The policy graph with observed calls over it. Each call is put on the policy's edge
 * when the sidecar allowed it, else on a denied or would-deny edge of its own: what the
 * sidecar decided at the time, as logged (the policy may have changed since).
 */
export function overlayObserved(graph: PolicyGraph, calls: readonly Pick<CallSummary, 'callee' | 'caller' | 'outcomes'>[]): PolicyGraph {
  const nodes = new Set(graph.nodes);
  const edges = graph.edges.map((e) => ({ ...e, seen: 0 }));
  const refused = new Map<string, ObservedRefusalEdge & { count: number }>();
  for (const call of calls) {
    nodes.add(call.caller);
    nodes.add(call.callee);
    const edge = edges.find((e) => e.from === call.caller && e.to === call.callee);
    if (edge) edge.seen += call.outcomes.allowed;
    for (const kind of ['denied', 'would-deny'] as const) {
      const n = call.outcomes[kind];
      if (n === 0) continue;
      const key = `${call.caller}\0${call.callee}\0${kind}`;
      const r = refused.get(key) ?? { from: call.caller, to: call.callee, kind, count: 0 };
      r.count += n;
      refused.set(key, r);
    }
    // Allowed calls on a pair the policy has no edge for (a policy changed since): still drawn.
    if (!edge && call.outcomes.allowed > 0)
      edges.push({ from: call.caller, to: call.callee, httpOnly: false, conditions: ['not in this policy'], seen: call.outcomes.allowed });
  }
  return { nodes: [...nodes], edges, refused: [...refused.values()] };
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
    const label = [...(edge.httpOnly ? ['http only', ...edge.conditions] : []), ...(edge.seen ? [`seen ${edge.seen}`] : [])];
    const attrs = [...(edge.httpOnly ? ['style=dashed'] : []), ...(label.length > 0 ? [`label=${dotId(label.join('\n'))}`] : [])];
    lines.push(`  ${dotId(edge.from)} -> ${dotId(edge.to)}${attrs.length > 0 ? ` [${attrs.join(', ')}]` : ''};`);
  }
  for (const r of graph.refused ?? []) {
    const attrs =
      r.kind === 'denied'
        ? `color=red, fontcolor=red, style=bold, label=${dotId(`denied ${r.count}`)}`
        : `color=orange, fontcolor=orange, style=dotted, label=${dotId(`would deny ${r.count}`)}`;
    lines.push(`  ${dotId(r.from)} -> ${dotId(r.to)} [${attrs}];`);
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
    const seen = edge.seen ? `seen ${edge.seen}` : '';
    if (edge.httpOnly)
      lines.push(`  ${from} -.->|"${mermaidText(['http only', ...edge.conditions, ...(seen ? [seen] : [])].join('; '))}"| ${to}`);
    else lines.push(seen ? `  ${from} -->|"${seen}"| ${to}` : `  ${from} --> ${to}`);
  }
  for (const r of graph.refused ?? []) {
    const from = ids.get(r.from)!;
    const to = ids.get(r.to)!;
    lines.push(r.kind === 'denied' ? `  ${from} --x|"denied ${r.count}"| ${to}` : `  ${from} -.-x|"would deny ${r.count}"| ${to}`);
  }
  return `${lines.join('\n')}\n`;
}

function dotId(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

function mermaidText(text: string): string {
  return text.replace(/[#"<>]/g, (ch) => `#${ch.charCodeAt(0)};`);
}

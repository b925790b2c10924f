/**
 * Medians, the side-by-side table with ratio columns, and the JSON written to bench/results/.
 * The ratio that matters (issue 12) is svcca ÷ the plain-Node floor.
 */
import { PEERS, TARGET_LABEL, type TargetId } from './targets.js';

export interface MetricDef {
  readonly key: string;
  readonly label: string;
  readonly better: 'higher' | 'lower';
}

export const METRICS: readonly MetricDef[] = [
  { key: 'ka_rps', label: '1 keep-alive conn: req/s', better: 'higher' },
  { key: 'ka_p50', label: '1 keep-alive conn: p50 µs', better: 'lower' },
  { key: 'ka_p99', label: '1 keep-alive conn: p99 µs', better: 'lower' },
  { key: 'conc_rps', label: 'N keep-alive conns: req/s', better: 'higher' },
  { key: 'conc_p50', label: 'N keep-alive conns: p50 µs', better: 'lower' },
  { key: 'conc_p99', label: 'N keep-alive conns: p99 µs', better: 'lower' },
  { key: 'conc_cpu', label: 'proxy CPU µs per request (N conns)', better: 'lower' },
  { key: 'full_rate', label: 'full mTLS handshake+GET: conn/s', better: 'higher' },
  { key: 'full_cpu', label: 'proxy CPU µs per full handshake', better: 'lower' },
  { key: 'res_rate', label: 'resumed (1.3 ticket)+GET: conn/s', better: 'higher' },
  { key: 'res_cpu', label: 'proxy CPU µs per resumed handshake', better: 'lower' },
  { key: 'res_over_full', label: 'resumed ÷ full handshake CPU', better: 'lower' },
  { key: 'stime_full', label: 'openssl s_time -new: conn/s', better: 'higher' },
  { key: 'stime_res', label: 'openssl s_time -reuse: conn/s', better: 'higher' },
  { key: 'ttfb_p50', label: 'new conn: ready → 1st byte p50 µs', better: 'lower' },
  { key: 'ttfb_p99', label: 'new conn: ready → 1st byte p99 µs', better: 'lower' },
  { key: 'mesh_ttfb_p50', label: 'mesh*: app connect → 1st byte p50 µs', better: 'lower' },
  { key: 'mesh_ttfb_p99', label: 'mesh*: app connect → 1st byte p99 µs', better: 'lower' },
  { key: 'mesh_cpu', label: 'mesh*: both proxies CPU µs per conn', better: 'lower' },
  { key: 'dl4_mbps', label: '4 conns × 1 MiB GETs: MB/s', better: 'higher' },
  { key: 'dl4_cpu', label: 'proxy CPU µs per MB (4 × 1 MiB)', better: 'lower' },
  { key: 'dl_mbps', label: 'one big streamed download: MB/s', better: 'higher' },
  { key: 'dl_cpu', label: 'proxy CPU µs per MB (one stream)', better: 'lower' },
  { key: 'rss_idle', label: 'RSS idle after start (VmRSS), MB', better: 'lower' },
  { key: 'rss_peak', label: 'RSS peak under load (VmHWM), MB', better: 'lower' },
  { key: 'idle_conn_kb', label: 'RSS per idle mTLS conn, KB', better: 'lower' },
  { key: 'idle_rss', label: 'RSS with the idle conns open, MB', better: 'lower' },
  { key: 'idle_rss_after', label: 'RSS after they closed, MB', better: 'lower' },
];

/** Client CPU (% of its core) per phase: shown in a second table, to see it is not the bottleneck. */
export const CLIENT_PHASES: readonly { key: string; label: string }[] = [
  { key: 'ccpu_ka', label: '1 keep-alive conn' },
  { key: 'ccpu_conc', label: 'N keep-alive conns' },
  { key: 'ccpu_full', label: 'full handshakes' },
  { key: 'ccpu_res', label: 'resumed handshakes' },
  { key: 'ccpu_ttfb', label: 'new conn → 1st byte' },
  { key: 'ccpu_mesh', label: 'mesh*' },
  { key: 'ccpu_dl4', label: '4 × 1 MiB' },
  { key: 'ccpu_dl', label: 'one big download' },
];

/** samples[metric][target] = one value per repetition. */
export type Samples = Map<string, Map<TargetId, number[]>>;

export function addSample(s: Samples, metric: string, target: TargetId, value: number): void {
  if (!Number.isFinite(value)) return;
  let m = s.get(metric);
  if (!m) {
    m = new Map();
    s.set(metric, m);
  }
  const list = m.get(target) ?? [];
  list.push(value);
  m.set(target, list);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function medianOf(s: Samples, metric: string, target: TargetId): number {
  return median(s.get(metric)?.get(target) ?? []);
}

export function fmt(v: number): string {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toString();
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/**
 * A ÷ B. When both have one sample per repetition, the median of the per-repetition ratios:
 * A and B of one repetition were measured seconds apart, so a noisy neighbour that slows one
 * repetition down cancels out. Otherwise (pooled or single readings) the ratio of the medians.
 */
export function ratioOf(s: Samples, metric: string, a: TargetId, b: TargetId): number {
  const xs = s.get(metric)?.get(a) ?? [];
  const ys = s.get(metric)?.get(b) ?? [];
  if (xs.length >= 2 && xs.length === ys.length) {
    const r = xs.map((x, i) => x / ys[i]!).filter((v) => Number.isFinite(v));
    if (r.length === xs.length) return median(r);
  }
  const x = median(xs);
  const y = median(ys);
  return Number.isFinite(x) && Number.isFinite(y) && y !== 0 ? x / y : NaN;
}

function ratioText(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '–';
}

/** The best installed peer for a metric (HAProxy, nginx, stunnel; not s_server). */
export function bestPeer(s: Samples, metric: MetricDef, peers: readonly TargetId[]): TargetId | undefined {
  let best: TargetId | undefined;
  let bestValue = NaN;
  for (const p of peers) {
    const v = medianOf(s, metric.key, p);
    if (!Number.isFinite(v)) continue;
    if (best === undefined || (metric.better === 'higher' ? v > bestValue : v < bestValue)) {
      best = p;
      bestValue = v;
    }
  }
  return best;
}

function layout(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...r[i]!].length)));
  const pad = (text: string, i: number) =>
    i === 0 ? text + ' '.repeat(widths[i]! - [...text].length) : ' '.repeat(widths[i]! - [...text].length) + text;
  const line = (r: string[]) => r.map(pad).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A ratio column: numerator ÷ denominator for every row, when both targets ran. */
export interface RatioColumn {
  readonly label: string;
  readonly of: TargetId;
  readonly to: TargetId | 'best-peer';
}

export function renderTable(
  s: Samples,
  targets: readonly TargetId[],
  ratios: readonly RatioColumn[],
  labelN: (label: string) => string,
): string {
  const peers = targets.filter((t) => PEERS.includes(t));
  const head = ['metric (↑ higher is better, ↓ lower)', ...targets.map((t) => TARGET_LABEL[t]), ...ratios.map((r) => r.label)];
  const rows: string[][] = [];
  for (const m of METRICS) {
    const cells = targets.map((t) => fmt(medianOf(s, m.key, t)));
    if (cells.every((c) => c === '–')) continue;
    const ratioCells = ratios.map((r) => {
      if (r.to !== 'best-peer') return ratioText(ratioOf(s, m.key, r.of, r.to));
      const best = bestPeer(s, m, peers);
      return best ? `${ratioText(ratioOf(s, m.key, r.of, best))} ${TARGET_LABEL[best]}` : '–';
    });
    rows.push([`${m.better === 'higher' ? '↑' : '↓'} ${labelN(m.label)}`, ...cells, ...ratioCells]);
  }
  return layout(head, rows);
}

export function renderClientTable(s: Samples, targets: readonly TargetId[], labelN: (label: string) => string): string {
  const head = ['client CPU, % of its core, during', ...targets.map((t) => TARGET_LABEL[t])];
  const rows: string[][] = [];
  for (const p of CLIENT_PHASES) {
    const cells = targets.map((t) => {
      const v = medianOf(s, p.key, t);
      return Number.isFinite(v) ? `${v.toFixed(0)} %` : '–';
    });
    if (cells.every((c) => c === '–')) continue;
    rows.push([labelN(p.label), ...cells]);
  }
  return layout(head, rows);
}

export function samplesToJson(s: Samples): Record<string, Record<string, { median: number; samples: number[] }>> {
  const out: Record<string, Record<string, { median: number; samples: number[] }>> = {};
  for (const [metric, byTarget] of s) {
    out[metric] = {};
    for (const [t, values] of byTarget) out[metric]![t] = { median: median(values), samples: values.map((v) => Number(v.toPrecision(6))) };
  }
  return out;
}

/**
 * Medians, the side-by-side table with ratio columns, and the JSON written to bench/results/.
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
  { key: 'ka_cpu', label: 'proxy CPU µs per request', better: 'lower' },
  { key: 'conc_rps', label: 'N keep-alive conns: req/s', better: 'higher' },
  { key: 'conc_p99', label: 'N keep-alive conns: p99 µs', better: 'lower' },
  { key: 'full_rate', label: 'new conn, full handshake+GET /s', better: 'higher' },
  { key: 'full_p50', label: 'new conn, full: p50 µs', better: 'lower' },
  { key: 'full_cpu', label: 'proxy CPU µs per full handshake', better: 'lower' },
  { key: 'res_rate', label: 'resumed (1.3 ticket)+GET /s', better: 'higher' },
  { key: 'res_p50', label: 'resumed: p50 µs', better: 'lower' },
  { key: 'res_cpu', label: 'proxy CPU µs per resumption', better: 'lower' },
  { key: 'stime_full', label: 'openssl s_time -new: conn/s', better: 'higher' },
  { key: 'stime_res', label: 'openssl s_time -reuse: conn/s', better: 'higher' },
  { key: 'dl_mbps', label: 'download (one conn): MB/s', better: 'higher' },
  { key: 'dl_cpu', label: 'proxy CPU ms per 100 MB', better: 'lower' },
  { key: 'rss_idle', label: 'RSS idle, MB', better: 'lower' },
  { key: 'rss_peak', label: 'RSS peak (VmHWM), MB', better: 'lower' },
];

/** samples[metric][target] = one value per repetition. */
export type Samples = Map<string, Map<TargetId, number[]>>;

export function addSample(s: Samples, metric: string, target: TargetId, value: number): void {
  if (!Number.isFinite(value)) return;
  let m = s.get(metric);
  if (!m) s.set(metric, (m = new Map()));
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

function ratio(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${(a / b).toFixed(2)}×`;
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

export function renderTable(s: Samples, targets: readonly TargetId[], svcca: TargetId): string {
  const peers = targets.filter((t) => PEERS.includes(t));
  const head = ['metric (↑ higher is better, ↓ lower)', ...targets.map((t) => TARGET_LABEL[t]), `${TARGET_LABEL[svcca]} ÷ direct`, `${TARGET_LABEL[svcca]} ÷ best peer`];
  const rows: string[][] = [];
  for (const m of METRICS) {
    const cells = targets.map((t) => fmt(medianOf(s, m.key, t)));
    if (cells.every((c) => c === '–')) continue;
    const mine = medianOf(s, m.key, svcca);
    const best = bestPeer(s, m, peers);
    rows.push([
      `${m.better === 'higher' ? '↑' : '↓'} ${m.label}`,
      ...cells,
      ratio(mine, medianOf(s, m.key, 'direct')),
      best ? `${ratio(mine, medianOf(s, m.key, best))} ${TARGET_LABEL[best]}` : '–',
    ]);
  }
  const widths = head.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...r[i]!].length)));
  const pad = (text: string, i: number) => (i === 0 ? text + ' '.repeat(widths[i]! - [...text].length) : ' '.repeat(widths[i]! - [...text].length) + text);
  const line = (r: string[]) => r.map(pad).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function samplesToJson(s: Samples): Record<string, Record<string, { median: number; samples: number[] }>> {
  const out: Record<string, Record<string, { median: number; samples: number[] }>> = {};
  for (const [metric, byTarget] of s) {
    out[metric] = {};
    for (const [t, values] of byTarget) out[metric]![t] = { median: median(values), samples: values.map((v) => Number(v.toPrecision(6))) };
  }
  return out;
}

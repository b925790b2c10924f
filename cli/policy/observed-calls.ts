/**
 * Calls seen by inbound sidecars, read back from their JSON log lines: what
 * `svcca policy learn` and `svcca policy graph --observed` work from.
 *
 * A line counts when it names both ends (`self`, the callee's SPIFFE ID, which every
 * inbound line carries, and `peer`) in one trust domain, and is one of:
 * - `event: refused`, `reason: policy-denied` (not an open connection cut by a later
 *   policy: that call was already seen when it was allowed) → denied;
 * - `event: would-deny` (audit mode let it through) → would-deny;
 * - `event: allowed` with a method and path (an http request), or without a `mode`
 *   (a tcp connection), which the sidecar writes at debug level → allowed.
 * Identity refusals (revoked, expired, wrong trust domain) are about certificates, not
 * the allow list, and are skipped like any other line.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { UsageError, errnoCode } from '../../common/errors.js';
import { parseSpiffeId } from '../../common/spiffe-id.js';

export type CallOutcome = 'allowed' | 'denied' | 'would-deny';

/** One call as one log line told it. */
export interface ObservedCall {
  readonly callee: string;
  readonly caller: string;
  /** http mode; both undefined for a tcp connection. */
  readonly method?: string;
  readonly path?: string;
  readonly outcome: CallOutcome;
  /** ISO time of the line, when it has one. */
  readonly time?: string;
}

/** Calls with the same callee, caller, method and path, folded. */
export interface CallSummary {
  readonly callee: string;
  readonly caller: string;
  readonly method?: string;
  readonly path?: string;
  count: number;
  readonly outcomes: Record<CallOutcome, number>;
  first?: string;
  last?: string;
}

export interface ObservedLog {
  readonly calls: CallSummary[];
  readonly files: number;
  readonly lines: number;
  /** Lines that were not a call (other events, other text, no `self`). */
  readonly skipped: number;
}

/** Reads every file, line by line (logs may be large); a missing or unreadable file is a UsageError. */
export async function readObservedCalls(files: readonly string[]): Promise<ObservedLog> {
  const byKey = new Map<string, CallSummary>();
  let lines = 0;
  let skipped = 0;
  for (const file of files) {
    try {
      const input = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
      for await (const line of input) {
        if (line.trim() === '') continue;
        lines++;
        const call = callFromLine(line);
        if (!call) {
          skipped++;
          continue;
        }
        fold(byKey, call);
      }
    } catch (err) {
      const code = errnoCode(err);
      const why =
        code === 'ENOENT'
          ? 'no such file'
          : code === 'EISDIR'
            ? 'is a directory'
            : code === 'EACCES'
              ? 'permission denied'
              : (code ?? String(err));
      throw new UsageError(
        `--log ${file}: cannot read it (${why})`,
        'give the sidecar log files (JSON lines, as svcca-sidecar writes them on stdout)',
        err,
      );
    }
  }
  return { calls: [...byKey.values()], files: files.length, lines, skipped };
}

/** The call a log line records, or undefined when it records none. */
export function callFromLine(line: string): ObservedCall | undefined {
  if (line[0] !== '{') return undefined;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== 'object' || o.direction !== 'inbound' || typeof o.self !== 'string' || typeof o.peer !== 'string')
    return undefined;
  const method = typeof o.method === 'string' ? o.method : undefined;
  const path = typeof o.path === 'string' ? o.path : undefined;
  if ((method === undefined) !== (path === undefined)) return undefined;
  let outcome: CallOutcome;
  if (o.event === 'would-deny') outcome = 'would-deny';
  else if (o.event === 'refused' && o.reason === 'policy-denied' && o.open !== true) outcome = 'denied';
  // An http connection's own 'allowed' line (no method) is not a call: its requests are.
  else if (o.event === 'allowed' && (method !== undefined || o.mode === undefined)) outcome = 'allowed';
  else return undefined;
  const self = parseSpiffeId(o.self);
  const peer = parseSpiffeId(o.peer);
  if (!self.ok || !peer.ok || self.id.trustDomain !== peer.id.trustDomain) return undefined;
  return {
    callee: self.id.service,
    caller: peer.id.service,
    ...(method !== undefined && { method, path: path! }),
    outcome,
    ...(typeof o.time === 'string' && { time: o.time }),
  };
}

function fold(byKey: Map<string, CallSummary>, call: ObservedCall): void {
  const key = `${call.callee}\0${call.caller}\0${call.method ?? ''}\0${call.path ?? ''}`;
  let s = byKey.get(key);
  if (!s) {
    s = {
      callee: call.callee,
      caller: call.caller,
      ...(call.method !== undefined && { method: call.method, path: call.path! }),
      count: 0,
      outcomes: { allowed: 0, denied: 0, 'would-deny': 0 },
    };
    byKey.set(key, s);
  }
  s.count++;
  s.outcomes[call.outcome]++;
  if (call.time !== undefined) {
    if (s.first === undefined || call.time < s.first) s.first = call.time;
    if (s.last === undefined || call.time > s.last) s.last = call.time;
  }
}

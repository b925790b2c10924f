/**
 * Reading a child's JSON log lines (the sidecar's, svcca serve's) as they arrive, and
 * waiting for one that matches.
 */
import type { ChildProcess } from 'node:child_process';

export interface FollowedLines<T> {
  readonly lines: T[];
  /** Resolves with the first line (already logged or future) matching `pred`. */
  waitForLine(pred: (l: T) => boolean, timeoutMs?: number): Promise<T>;
  readonly stderr: () => string;
}

export function followJsonLines<T extends object>(proc: ChildProcess): FollowedLines<T> {
  const lines: T[] = [];
  const waiters: { pred: (l: T) => boolean; resolve: (l: T) => void }[] = [];
  let err = '';
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let line: T;
      try {
        line = JSON.parse(text) as T;
      } catch {
        line = { level: 'raw', msg: text } as unknown as T;
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const waitForLine = (pred: (l: T) => boolean, timeoutMs = 15_000): Promise<T> => {
    const found = lines.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${err}; lines: ${JSON.stringify(lines.slice(-5))}`)),
        timeoutMs,
      );
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  };
  return { lines, waitForLine, stderr: () => err };
}

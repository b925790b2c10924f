/**
 * Where command results go: human lines on stdout, or one JSON document with --json.
 * Warnings go to stderr in both modes so that stdout stays parseable.
 */
import { progressWanted, startProgress, type Progress } from './progress.js';

export interface Output {
  readonly json: boolean;
  /** A human line (suppressed with --json). */
  line(text: string): void;
  /** The machine result (printed only with --json, as one JSON document). */
  result(value: unknown): void;
  /** A warning for people, always on stderr. */
  warn(text: string): void;
  /** A progress bar for a long run, drawn only on a terminal (see progress.ts). */
  progress(label: string, total: number): Progress;
}

export function createOutput(
  json: boolean,
  env: NodeJS.ProcessEnv = process.env,
  stdout: NodeJS.WritableStream = process.stdout,
  stderr: NodeJS.WriteStream = process.stderr,
): Output {
  const drawProgress = progressWanted(stderr, json, env);
  return {
    json,
    line(text) {
      if (!json) stdout.write(`${text}\n`);
    },
    result(value) {
      if (json) stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
    warn(text) {
      stderr.write(`warning: ${text}\n`);
    },
    progress: (label, total) => startProgress(drawProgress, label, total, stderr),
  };
}

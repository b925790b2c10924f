/**
 * Where command results go: human lines on stdout, or one JSON document with --json.
 * Warnings go to stderr in both modes so that stdout stays parseable.
 */
export interface Output {
  readonly json: boolean;
  /** A human line (suppressed with --json). */
  line(text: string): void;
  /** The machine result (printed only with --json, as one JSON document). */
  result(value: unknown): void;
  /** A warning for people, always on stderr. */
  warn(text: string): void;
}

export function createOutput(json: boolean, stdout: NodeJS.WritableStream = process.stdout, stderr: NodeJS.WritableStream = process.stderr): Output {
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
  };
}

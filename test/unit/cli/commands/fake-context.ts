import type { CommandContext } from '../../../../cli/context.js';
import type { Output } from '../../../../cli/output.js';

/** A CommandContext whose Output collects what a command prints. */
export interface FakeContext extends CommandContext {
  readonly lines: string[];
  readonly results: unknown[];
  readonly warnings: string[];
}

export function fakeContext(json = false): FakeContext {
  const lines: string[] = [];
  const results: unknown[] = [];
  const warnings: string[] = [];
  const out: Output = {
    json,
    line: (text) => {
      if (!json) lines.push(text);
    },
    result: (value) => {
      if (json) results.push(value);
    },
    warn: (text) => warnings.push(text),
    progress: () => ({ update() {}, stop() {} }),
  };
  return { global: { dir: 'unused-ca-data', json }, out, env: {}, exitCode: 0, lines, results, warnings };
}

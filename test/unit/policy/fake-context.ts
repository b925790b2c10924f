import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandContext } from '../../../cli/context.js';
import type { Output } from '../../../cli/output.js';

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
  };
  return { global: { dir: 'unused-ca-data', json }, out, env: {}, exitCode: 0, lines, results, warnings };
}

/** Writes `text` to a policy file in a fresh temp directory; `cleanup` removes it. */
export function policyFile(text: string | Buffer): { path: string; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'svcca-policy-'));
  const path = join(dir, 'policy.yaml');
  writeFileSync(path, text);
  return { path, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The policy of PRODUCT.md, plus a few entries the tests lean on. */
export const EXAMPLE_POLICY = `services:
  payment-service:
    allow: [order-service]
  inventory-service:
    allow:
      - order-service
      - from: notification-service     # http mode only: method/path rules
        methods: [GET]
        paths: [/stock, /stock/*]
  audit-service:
    allow: []
  report-service:
    allow:
      - from: billing-service
`;

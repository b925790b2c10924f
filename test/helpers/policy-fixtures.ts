/** A policy file on disk and the example policy the policy tests share. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../../common/errors.js';
import { loadPolicyFile, MAX_POLICY_BYTES } from '../../../../common/policy/index.js';
import { EXAMPLE_POLICY, policyFile } from '../../../helpers/policy-fixtures.js';

function loadError(path: string): string {
  try {
    loadPolicyFile(path);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(!err.line.includes('\n'));
    return err.line;
  }
  assert.fail('expected the file to be refused');
}

describe('loadPolicyFile', () => {
  it('reads and parses a policy file', () => {
    const file = policyFile(EXAMPLE_POLICY);
    try {
      assert.deepEqual(
        [...loadPolicyFile(file.path).services.keys()],
        ['payment-service', 'inventory-service', 'audit-service', 'report-service'],
      );
    } finally {
      file.cleanup();
    }
  });

  const cases: { name: string; input: (dir: string, path: string) => string; want: RegExp }[] = [
    {
      name: 'missing file',
      input: (dir) => join(dir, 'nope.yaml'),
      want: /nope\.yaml: cannot open the policy file \(no such file\); check the path/,
    },
    { name: 'a directory', input: (dir) => dir, want: /: is a directory, not a policy file; name the policy YAML file itself$/ },
    { name: 'invalid UTF-8', input: (_dir, path) => path, want: /policy\.yaml: is not UTF-8 text; / },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => {
      const file = policyFile(Buffer.from([0x73, 0x3a, 0x20, 0xc3, 0x28, 0x0a]));
      try {
        assert.match(loadError(input(file.dir, file.path)), want);
      } finally {
        file.cleanup();
      }
    });
  }

  it('a file larger than the limit is refused without reading it all', () => {
    const file = policyFile(Buffer.alloc(MAX_POLICY_BYTES + 10, 0x61));
    try {
      assert.match(loadError(file.path), new RegExp(`policy\\.yaml: is larger than ${MAX_POLICY_BYTES} bytes`));
    } finally {
      file.cleanup();
    }
  });

  it('an endless device is refused, not read forever', () => {
    assert.match(loadError('/dev/zero'), /^\/dev\/zero: is larger than/);
  });

  it('an unreadable file names the problem', { skip: process.getuid?.() === 0 ? 'root reads everything' : false }, () => {
    const file = policyFile(EXAMPLE_POLICY);
    try {
      chmodSync(file.path, 0o000);
      assert.match(loadError(file.path), /policy\.yaml: cannot open the policy file \(permission denied\)/);
    } finally {
      file.cleanup();
    }
  });

  it('errors inside the file start with its path', () => {
    const file = policyFile('services:\n  a:\n    alow: []\n');
    try {
      assert.equal(loadError(file.path), `${file.path}: services.a.alow: unknown key; did you mean "allow"?`);
    } finally {
      file.cleanup();
    }
  });
});

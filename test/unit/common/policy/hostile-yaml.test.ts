import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../../common/errors.js';
import { MAX_POLICY_BYTES, parsePolicy } from '../../../../common/policy/index.js';

/**
 * Hostile or broken input must be refused with one short line, never a crash, a hang or
 * an out-of-memory abort (yaml's composer overflows the stack on deep nesting and, with
 * prettyErrors, aborts the process). Durations are not asserted; these cases finish in
 * milliseconds and the suite would hang or die if the guards were removed.
 */
function refusal(text: string): string {
  try {
    parsePolicy(text, 'p.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err instanceof Error ? err.stack : String(err)}`);
    assert.ok(!err.line.includes('\n'), 'one line');
    assert.ok(err.line.length < 400, `short line, got ${err.line.length} characters`);
    assert.ok(err.line.startsWith('p.yaml: '), err.line);
    return err.line;
  }
  assert.fail('expected the input to be refused');
}

const LOL = '"lol"';
function aliasBomb(levels: number): string {
  let text = `a0: &a0 [${Array(9).fill(LOL).join(', ')}]\n`;
  for (let i = 1; i < levels; i++)
    text += `a${i}: &a${i} [${Array(9)
      .fill(`*a${i - 1}`)
      .join(', ')}]\n`;
  return text;
}

describe('parsePolicy: hostile YAML', () => {
  const cases: { name: string; input: () => string; want: RegExp }[] = [
    {
      name: 'billion laughs alias bomb',
      input: () => aliasBomb(9),
      want: /^p\.yaml: Excessive alias count .*; use anchors and aliases sparingly/,
    },
    {
      name: 'ten thousand nested flow sequences',
      input: () => `services: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`,
      want: /^p\.yaml: line 1, column \d+: nested more than 32 levels deep/,
    },
    {
      name: 'two hundred thousand unclosed flow maps',
      input: () => `services: ${'{a: '.repeat(200_000)}\n`,
      want: /nested more than 32 levels deep/,
    },
    {
      name: 'a hundred thousand nested block sequences on one line',
      input: () => `${'- '.repeat(100_000)}x\n`,
      want: /nested more than 32 levels deep/,
    },
    {
      name: 'a thousand levels of indentation',
      input: () => Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i)}k:`).join('\n'),
      want: /^p\.yaml: line 32, column 33: nested more than 32 levels deep/,
    },
    {
      name: 'more than a megabyte',
      input: () => `services:\n  a:\n    allow: [${'x'.repeat(MAX_POLICY_BYTES)}]\n`,
      want: /^p\.yaml: is \d+ bytes; a policy is at most 1048576 bytes/,
    },
    {
      name: 'a value just under a megabyte',
      input: () => `services:\n  a:\n    allow: [${'x'.repeat(MAX_POLICY_BYTES - 100)}]\n`,
      want: /^p\.yaml: services\.a\.allow\[0\]: invalid service name "x{57}\.\.\.": it is 1048476 characters long/,
    },
    {
      name: 'a key just under a megabyte',
      input: () => `services:\n  a:\n    ? ${'k'.repeat(MAX_POLICY_BYTES - 100)}\n    : []\n`,
      want: /^p\.yaml: services\.a\["k{57}\.\.\."\]: unknown key; the keys here are allow, mode$/,
    },
    {
      name: 'a NUL byte',
      input: () => 'services:\n  a\u0000b:\n    allow: []\n',
      want: /^p\.yaml: line 2, column 4: contains the character U\+0000/,
    },
    { name: 'an escape byte', input: () => 'services: {}\n\u001b[2J', want: /U\+001B/ },
    { name: 'a lone surrogate', input: () => 'services: {}\n# \ud800\n', want: /U\+D800/ },
    {
      name: 'binary junk',
      input: () => String.fromCharCode(...Array.from({ length: 512 }, (_, i) => (i * 7919) % 256)),
      want: /contains the character U\+00/,
    },
    {
      name: 'an escaped NUL in a quoted name',
      input: () => 'services:\n  "a\\u0000b":\n    allow: []\n',
      want: /^p\.yaml: services\["a\\u0000b"\]: invalid service name "a\\u0000b": it contains the character U\+0000/,
    },
  ];
  for (const { name, input, want } of cases) {
    it(name, () => assert.match(refusal(input()), want));
  }

  it('a real policy at the nesting that a policy uses is not refused', () => {
    const policy = parsePolicy(
      'services:\n  a:\n    allow:\n      - b\n      - from: c\n        methods: [GET]\n        paths:\n          - /x\n',
      'p.yaml',
    );
    assert.equal(policy.services.get('a')!.length, 2);
  });
});

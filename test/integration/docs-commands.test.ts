/**
 * The documentation cannot drift from the code: every ```sh block in README.md and docs/
 * that is marked runnable is executed, in order, against the real built CLI.
 *
 * The convention (an HTML comment on the line before the block, invisible on GitHub):
 *   <!-- run -->                  run it; it must exit 0 (bash, `set -eo pipefail`)
 *   <!-- run: exit=3 -->          run it; it must exit 3 (the last command decides)
 *   <!-- run: output -->          also: the ```text block right after it must appear in
 *                                 its stdout+stderr, line by line in order; "..." in an
 *                                 expected line matches anything
 *   <!-- not-run: why -->         shown, not run (a running sidecar, a cluster, cron)
 * Blocks of one document run one after another in one scratch directory, with `svcca`
 * and `svcca-sidecar` on PATH and nothing from the developer's SVCCA_* environment;
 * variables a block exports are seen by the blocks after it. An unmarked ```sh block
 * that runs `svcca` is an error: each CLI command shown either runs or says why not.
 */
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanEnv, run, SIDECAR_BIN, SVCCA_BIN, tempDir } from '../helpers/cli.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const DOCS = [
  'README.md',
  ...readdirSync(join(REPO, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

interface Block {
  readonly lang: string;
  readonly code: string;
  readonly line: number;
  readonly marker: { kind: 'run'; exit: number; output: boolean } | { kind: 'not-run' } | undefined;
  /** Index of its closing fence. */
  readonly end: number;
  /** The ```text block that directly follows, if any. */
  expected?: string;
}

function blocks(text: string): Block[] {
  const lines = text.split('\n');
  const out: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) {
      i++;
      continue;
    }
    const start = i;
    const body: string[] = [];
    i++;
    while (i < lines.length && !/^```\s*$/.test(lines[i]!)) body.push(lines[i++]!);
    const end = i;
    i++;
    let j = start - 1;
    while (j >= 0 && lines[j]!.trim() === '') j--;
    const prev = j >= 0 ? lines[j]! : '';
    let marker: Block['marker'];
    const r = /^<!--\s*run(?::\s*(.*?))?\s*-->\s*$/.exec(prev);
    if (r) {
      const opts = r[1] ?? '';
      const exit = /exit=(\d+)/.exec(opts);
      marker = { kind: 'run', exit: exit ? Number(exit[1]) : 0, output: /\boutput\b/.test(opts) };
    } else if (/^<!--\s*not-run\b.*-->\s*$/.test(prev)) marker = { kind: 'not-run' };
    const block: Block = { lang: open[1] ?? '', code: body.join('\n'), line: start + 1, end, marker };
    const last = out[out.length - 1];
    if (
      block.lang === 'text' &&
      last?.marker?.kind === 'run' &&
      last.marker.output &&
      last.expected === undefined &&
      lastEnd(lines, start) === last.end
    ) {
      last.expected = block.code;
    }
    out.push(block);
  }
  return out;
}

/** Index of the last non-blank line before `start` (the previous block's closing fence). */
function lastEnd(lines: readonly string[], start: number): number {
  let j = start - 1;
  while (j >= 0 && lines[j]!.trim() === '') j--;
  return j;
}

function shims(root: string): string {
  const bin = join(root, '.bin');
  mkdirSync(bin, { recursive: true });
  for (const [name, target] of [
    ['svcca', SVCCA_BIN],
    ['svcca-sidecar', SIDECAR_BIN],
  ] as const) {
    writeFileSync(join(bin, name), `#!/bin/sh\nexec "${process.execPath}" "${target}" "$@"\n`);
    chmodSync(join(bin, name), 0o755);
  }
  return bin;
}

function matchInOrder(expected: string, actual: string): string | undefined {
  const lines = actual.split('\n');
  let at = 0;
  for (const want of expected.split('\n').filter((l) => l.trim() !== '')) {
    const re = new RegExp(
      `^${want
        .trim()
        .split('...')
        .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*')}$`,
    );
    const found = lines.findIndex((l, k) => k >= at && re.test(l.trim()));
    if (found < 0) return want;
    at = found + 1;
  }
  return undefined;
}

for (const doc of DOCS) {
  const text = readFileSync(join(REPO, doc), 'utf8');
  const all = blocks(text);
  const runnable = all.filter((b) => b.marker?.kind === 'run');

  describe(`${doc}`, () => {
    test('every ```sh block that runs svcca is marked run or not-run', () => {
      for (const b of all) {
        if (b.lang !== 'sh' || b.marker) continue;
        assert.doesNotMatch(
          b.code,
          /^\s*(svcca|svcca-sidecar)\s/m,
          `${doc}:${b.line}: a block showing svcca commands needs <!-- run --> or <!-- not-run: why -->`,
        );
      }
      for (const b of runnable) assert.equal(b.lang, 'sh', `${doc}:${b.line}: only sh blocks are run`);
    });

    test('relative links point at files that exist', () => {
      for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/i.test(target)) continue;
        assert.ok(existsSync(resolve(dirname(join(REPO, doc)), target)), `${doc}: link ${target} points at nothing`);
      }
    });

    if (runnable.length === 0) return;
    const work = tempDir('svcca-docs-');
    const state = join(work, '.env-state');
    const bin = shims(work);
    for (const b of runnable) {
      const marker = b.marker as { kind: 'run'; exit: number; output: boolean };
      test(`${doc}:${b.line} ${
        b.code
          .split('\n')
          .find((l) => l.trim() && !l.trim().startsWith('#'))
          ?.trim()
          .slice(0, 70) ?? ''
      }`, () => {
        const script = [
          `[ -f '${state}' ] && . '${state}'`,
          `trap 'export -p | grep -v -E "^declare -x (PWD|OLDPWD|SHLVL|_)=" > "${state}"' EXIT`,
          'set -eo pipefail',
          b.code,
        ].join('\n');
        const res = spawnSync('bash', ['-c', script], {
          env: cleanEnv({ PATH: `${bin}:${process.env.PATH}`, HOME: work }),
          timeout: 120_000,
          cwd: work,
          encoding: 'utf8',
        });
        const output = `${res.stdout ?? ''}${res.stderr ?? ''}`;
        assert.equal(
          res.status,
          marker.exit,
          `${doc}:${b.line} exited ${res.status}, the doc says ${marker.exit}:\n${b.code}\n--- output ---\n${output}`,
        );
        if (marker.output) {
          assert.ok(b.expected !== undefined, `${doc}:${b.line}: marked output but no \`\`\`text block follows`);
          const missing = matchInOrder(b.expected, output);
          assert.equal(missing, undefined, `${doc}:${b.line}: the doc shows "${missing}", the command printed:\n${output}`);
        }
      });
    }
  });
}

test('docs/policy.svg is what svcca policy graph draws from docs/policy.example.yaml', () => {
  const res = run(
    process.execPath,
    [SVCCA_BIN, 'policy', 'graph', '--policy', join(REPO, 'docs', 'policy.example.yaml'), '--format', 'svg'],
    { env: cleanEnv() },
  );
  assert.equal(res.status, 0, res.stderr);
  const committed = readFileSync(join(REPO, 'docs', 'policy.svg'), 'utf8');
  assert.equal(
    committed,
    res.stdout,
    `docs/policy.svg is stale: regenerate it with\n  node dist/bin/svcca.mjs policy graph --policy docs/policy.example.yaml --format svg > docs/policy.svg`,
  );
});

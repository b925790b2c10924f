/**
 * `svcca completion bash|zsh|fish`, run by the real shells: commands, subcommands, flags,
 * flag values and service names from the ledger. Each shell is given the script exactly as
 * a user installs it and asked what it would complete.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SVCCA_BIN, cleanEnv, makeCa, run, type TestCa } from '../helpers/cli.js';

let ca: TestCa;
let env: NodeJS.ProcessEnv;
let scripts: Record<'bash' | 'zsh' | 'fish', string>;

const has = (shell: string) => run('sh', ['-c', `command -v ${shell}`]).status === 0;

before(() => {
  ca = makeCa();
  ca.issue('order-service');
  ca.issue('payment-service');
  ca.issue('gone-service');
  assert.equal(ca.svcca(['revoke', 'gone-service']).status, 0);
  // The scripts call `svcca` by the name the user typed: put one on PATH.
  const bin = join(ca.root, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'svcca'), `#!/bin/sh\nexec "${process.execPath}" "${SVCCA_BIN}" "$@"\n`);
  chmodSync(join(bin, 'svcca'), 0o755);
  env = cleanEnv({ PATH: `${bin}:${process.env.PATH}`, SVCCA_DIR: ca.dir, HOME: ca.root });
  scripts = { bash: '', zsh: '', fish: '' };
  for (const shell of ['bash', 'zsh', 'fish'] as const) {
    const res = run('svcca', ['completion', shell], { env });
    assert.equal(res.status, 0, res.stderr);
    scripts[shell] = join(ca.root, `completion.${shell}`);
    writeFileSync(scripts[shell], res.stdout);
  }
});
after(() => ca?.cleanup());

/** What each shell offers for a command line whose last word is being completed. */
const CASES: readonly { line: readonly string[]; includes: readonly string[]; excludes?: readonly string[] }[] = [
  { line: ['svcca', 'i'], includes: ['init', 'issue', 'inspect'], excludes: ['rotate'] },
  { line: ['svcca', 'policy', ''], includes: ['check', 'graph'], excludes: ['issue'] },
  { line: ['svcca', 'issue', 'x', '--t'], includes: ['--ttl'] },
  { line: ['svcca', 'rotate', '--'], includes: ['--renew-before', '--dry-run', '--exec', '--dir', '--json'] },
  // Only active certificates' services: a revoked one is not offered.
  { line: ['svcca', 'revoke', ''], includes: ['order-service', 'payment-service'], excludes: ['gone-service'] },
  { line: ['svcca', 'policy', 'check', 'order-service', ''], includes: ['payment-service'] },
  { line: ['svcca', 'revoke', 'order-service', '--reason', ''], includes: ['keyCompromise', 'superseded'] },
  { line: ['svcca', 'completion', ''], includes: ['bash', 'zsh', 'fish'] },
];

function bashOffers(line: readonly string[]): string[] {
  const words = line.map((w) => `'${w}'`).join(' ');
  const res = run(
    'bash',
    [
      '-c',
      `source "${scripts.bash}"; COMP_WORDS=(${words}); COMP_CWORD=${line.length - 1}; _svcca_complete; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { env },
  );
  assert.equal(res.status, 0, res.stderr);
  return res.stdout.split('\n').filter(Boolean);
}

// zsh's completion builtins only exist inside its line editor; compadd and _files are
// replaced by functions that print what they were given (zsh filters by prefix itself).
function zshOffers(line: readonly string[]): string[] {
  const words = line.map((w) => `'${w}'`).join(' ');
  const shim = `compadd() { [[ "$1" == -- ]] && shift; print -rl -- "$@"; }; _files() { print -r -- "<files$*>"; }`;
  const res = run('zsh', ['-f', '-c', `source "${scripts.zsh}"; ${shim}; words=(${words}); CURRENT=${line.length}; _svcca`], { env });
  assert.equal(res.status, 0, res.stderr);
  const prefix = line.at(-1)!;
  return res.stdout.split('\n').filter((w) => w !== '' && w.startsWith(prefix));
}

function fishOffers(line: readonly string[]): string[] {
  const res = run('fish', ['--no-config', '-c', `source "${scripts.fish}"; complete -C ${JSON.stringify(line.join(' '))}`], { env });
  assert.equal(res.status, 0, res.stderr);
  return res.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t')[0]!);
}

const SHELLS = { bash: bashOffers, zsh: zshOffers, fish: fishOffers } as const;

for (const [shell, offers] of Object.entries(SHELLS)) {
  describe(`svcca completion ${shell}`, { skip: has(shell) ? false : `${shell} is not installed (.ci/run installs it)` }, () => {
    for (const c of CASES) {
      it(`"${c.line.join(' ')}" offers ${c.includes.join(', ')}`, () => {
        const got = offers(c.line);
        for (const w of c.includes) assert.ok(got.includes(w), `${shell} offered [${got.join(' ')}], not ${w}`);
        for (const w of c.excludes ?? []) assert.ok(!got.includes(w), `${shell} offered ${w}: [${got.join(' ')}]`);
      });
    }
  });
}

describe('svcca completion: refusals and the hidden service lister', () => {
  it('an unknown shell is refused in one line with exit 1', () => {
    const res = run('svcca', ['completion', 'powershell'], { env });
    assert.equal(res.status, 1);
    assert.match(res.stderr, /^svcca: no completion for shell "powershell"; .*bash, zsh or fish\)?\n$/);
  });
  it('__complete-services prints nothing, and exits 0, when there is no CA (a tab press must not print errors)', () => {
    const res = run('svcca', ['__complete-services', '--dir', join(ca.root, 'no-such-ca')], { env });
    assert.equal(res.status, 0);
    assert.equal(res.stdout, '');
    assert.equal(res.stderr, '');
  });
  it('__complete-services is not in --help', () => {
    const res = run('svcca', ['--help'], { env });
    assert.match(res.stdout, /completion/);
    assert.doesNotMatch(res.stdout, /__complete/);
  });
});

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCappedFile, readCappedText } from '../../../common/capped-file.js';
import { ConfigError, InputError, errnoCode } from '../../../common/errors.js';

const CAP = { what: 'a test file', maxBytes: 100 };
const dir = mkdtempSync(join(tmpdir(), 'svcca-capped-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, size: number): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.alloc(size, 0x61));
  return path;
}

function refusal(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  assert.fail('expected a refusal');
}

describe('readCappedFile', () => {
  const accepted = [
    { name: 'empty', size: 0 },
    { name: 'one byte', size: 1 },
    { name: 'exactly the limit', size: 100 },
  ];
  for (const { name, size } of accepted) {
    it(`reads a file: ${name}`, () => {
      assert.equal(readCappedFile(file(`ok-${size}`, size), CAP).length, size);
    });
  }

  it('refuses one byte over, from fstat, naming file, size and limit', () => {
    const path = file('over', 101);
    const err = refusal(() => readCappedFile(path, CAP));
    assert.ok(err instanceof InputError);
    assert.equal(err.message, `${path}: is larger than 100 bytes, the limit for a test file (it is 101 bytes)`);
  });

  it('refuses an endless device whose fstat size is 0 after reading one byte past the limit', () => {
    const err = refusal(() => readCappedFile('/dev/zero', CAP));
    assert.equal(err.message, '/dev/zero: is larger than 100 bytes, the limit for a test file (it has more than that)');
  });

  it("uses the caller's label, hint and error class", () => {
    const path = file('labelled', 500);
    const err = refusal(() => readCappedText(path, CAP, { label: `--thing ${path}`, hint: 'do this', error: ConfigError }));
    assert.ok(err instanceof ConfigError);
    assert.match(
      (err as ConfigError).line,
      /^--thing .*labelled: is larger than 100 bytes, the limit for a test file \(it is 500 bytes\); do this$/,
    );
  });

  it("passes Node's own errors through for the caller to word", () => {
    assert.equal(errnoCode(refusal(() => readCappedFile(join(dir, 'nope'), CAP))), 'ENOENT');
    assert.equal(errnoCode(refusal(() => readCappedFile(dir, CAP))), 'EISDIR');
  });
});

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ConfigError, errnoCode } from '../errors.js';
import { parsePolicy } from './parse.js';
import type { Policy } from './types.js';
import { MAX_POLICY_BYTES } from './parse.js';

const READABLE = 'check the path and that this user may read the file';

/**
 * Reads and parses a policy file. Every failure (missing, a directory, unreadable, too
 * large, not UTF-8, invalid) is a ConfigError with one line starting with `${path}: `.
 */
export function loadPolicyFile(path: string): Policy {
  return parsePolicy(readPolicyText(path), path);
}

function readPolicyText(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new ConfigError(`${path}: cannot open the policy file (${describe(err)})`, READABLE, err);
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new ConfigError(`${path}: is a directory, not a policy file`, 'name the policy YAML file itself');
    // Read at most one byte past the limit, so that /dev/zero or a huge file costs nothing.
    const buffer = Buffer.alloc(MAX_POLICY_BYTES + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === buffer.length) {
        throw new ConfigError(`${path}: is larger than ${MAX_POLICY_BYTES} bytes; a policy is at most that`, 'check that this is the policy YAML file');
      }
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(0, length));
    } catch (err) {
      throw new ConfigError(`${path}: is not UTF-8 text`, 'a policy is a UTF-8 YAML file; check that this is the right file', err);
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${path}: cannot read the policy file (${describe(err)})`, READABLE, err);
  } finally {
    closeSync(fd);
  }
}

function describe(err: unknown): string {
  const code = errnoCode(err);
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return code ?? (err instanceof Error ? err.message : String(err));
}

import { ConfigError, errnoCode } from '../errors.js';
import { parsePolicy } from './parse.js';
import type { Policy } from './types.js';
import { MAX_POLICY_BYTES } from './parse.js';
import { readCappedFile } from '../capped-file.js';

const POLICY_CAP = { what: 'a policy', maxBytes: MAX_POLICY_BYTES };

const READABLE = 'check the path and that this user may read the file';

/**
 * Reads and parses a policy file. Every failure (missing, a directory, unreadable, too
 * large, not UTF-8, invalid) is a ConfigError with one line starting with `${path}: `.
 */
export function loadPolicyFile(path: string): Policy {
  return parsePolicy(readPolicyText(path), path);
}

function readPolicyText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readCappedFile(path, POLICY_CAP, { error: ConfigError, hint: 'check that this is the policy YAML file' });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if (errnoCode(err) === 'EISDIR')
      throw new ConfigError(`${path}: is a directory, not a policy file`, 'name the policy YAML file itself');
    throw new ConfigError(`${path}: cannot open the policy file (${describe(err)})`, READABLE, err);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new ConfigError(`${path}: is not UTF-8 text`, 'a policy is a UTF-8 YAML file; check that this is the right file', err);
  }
}

function describe(err: unknown): string {
  const code = errnoCode(err);
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return code ?? (err instanceof Error ? err.message : String(err));
}

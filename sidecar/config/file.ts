/**
 * Reading the config file itself: the text that parseConfig / validateConfigText judge.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, errnoCode } from '../../common/errors.js';
import { MAX_CONFIG_BYTES } from './yaml.js';

/** Reads the config file text, refusing a missing, unreadable or oversized one in one line. */
export function readConfigFile(path: string): string {
  try {
    const buf = readFileSync(path);
    if (buf.length > MAX_CONFIG_BYTES) return buf.subarray(0, MAX_CONFIG_BYTES + 1).toString('utf8');
    return buf.toString('utf8');
  } catch (err) {
    const code = errnoCode(err);
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES'
          ? 'is not readable by this user'
          : code === 'EISDIR'
            ? 'is a directory'
            : `cannot be read (${code ?? String(err)})`;
    throw new ConfigError(`${path}: ${why}`, 'pass the sidecar YAML with --config FILE', err);
  }
}

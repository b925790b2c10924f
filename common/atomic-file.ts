/**
 * Durable writes: temp file in the same directory, fsync, rename, fsync the directory.
 * A crash leaves the old content or the new, never a torn file.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync, constants } from 'node:fs';
import { InputError, errnoCode } from './errors.js';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * `mkdir -p`, one level at a time. Node's `mkdirSync(…, { recursive: true })` loops
 * forever where mkdir answers ENOENT under a parent that exists (inside /proc), so each
 * missing ancestor is made on its own and any failure is one InputError naming it.
 */
export function makeDirectories(path: string, mode: number): void {
  const missing: string[] = [];
  for (let p = path; !existsSync(p); p = dirname(p)) {
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  for (const dir of missing) {
    try {
      mkdirSync(dir, { mode });
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EEXIST') continue; // made meanwhile by a concurrent run
      const why =
        code === 'ENOTDIR' ? `${dirname(dir)} is not a directory` : code === 'EACCES' ? 'permission denied' : `${code ?? String(err)}`;
      throw new InputError(`cannot create the directory ${dir}: ${why}`, 'choose a path under a directory this user can write', err);
    }
  }
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes `data` to a new file with exactly `mode` and fsyncs it (no rename). */
export function writeFileDurable(path: string, data: string | Uint8Array, mode: number): void {
  // O_EXCL: never follow or reuse a file someone planted at the temp name.
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Replaces `path` atomically with `data`, created with `mode` (0600 for anything secret). */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    writeFileDurable(tmp, data, mode);
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file was never created, or already renamed
    }
    throw err;
  }
  fsyncDir(dir);
}

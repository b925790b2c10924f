/**
 * Durable writes: temp file in the same directory, fsync, rename, fsync the directory.
 * A crash leaves the old content or the new, never a torn file.
 */
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync, constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

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

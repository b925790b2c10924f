/**
 * Reading a file whose size a user controls: its size is checked with fstat before a byte
 * is read, and the read stops one byte past the limit, so a 100 MB "CSR", /dev/zero or a
 * file that grows while it is read costs milliseconds and one line, never gigabytes.
 *
 * Open and read failures (ENOENT, EACCES, EISDIR…) are rethrown as Node's own errors, so
 * that each caller keeps wording that names its flag; only "too large" is said here.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { InputError, type SvccaError } from './errors.js';

/** What a kind of file may hold. */
export interface FileCap {
  /** The kind, for messages: "a CSR". */
  readonly what: string;
  readonly maxBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Every kind of file svcca reads, each far above its real size: a CSR or a key is a few
 * kilobytes, a PEM bundle a few certificates; a crl.pem of 100,000 entries is about 7 MB.
 */
export const FILE_CAPS = {
  csr: { what: 'a CSR', maxBytes: 64 * KiB },
  secret: { what: 'a passphrase or password file', maxBytes: 4 * KiB },
  key: { what: 'a private key file', maxBytes: 64 * KiB },
  pemBundle: { what: 'a PEM certificate file', maxBytes: 1 * MiB },
  caConfig: { what: 'a CA config', maxBytes: 64 * KiB },
  crl: { what: 'a CRL file', maxBytes: 64 * MiB },
} as const satisfies Record<string, FileCap>;

export interface CappedReadOptions {
  /** How the file is named in the message (a flag and its path, say); default the path. */
  readonly label?: string;
  readonly hint?: string;
  /** The error class callers already use for this file; default InputError. */
  readonly error?: new (
    message: string,
    hint?: string,
  ) => SvccaError;
}

const CHUNK = 64 * KiB;

/**
 * The file's bytes, or a one-line error (exit 1) naming the file, its size and the limit.
 * Node's open/read errors pass through unchanged.
 */
export function readCappedFile(path: string, cap: FileCap, opts: CappedReadOptions = {}): Buffer {
  const fd = openSync(path, 'r');
  try {
    const tooLarge = (size: string) => {
      const ErrorClass = opts.error ?? InputError;
      return new ErrorClass(
        `${opts.label ?? path}: is larger than ${cap.maxBytes} bytes, the limit for ${cap.what} (${size})`,
        opts.hint ?? `check that this is the right file`,
      );
    };
    const stat = fstatSync(fd);
    // A directory's size is its entries' table: reading it fails with EISDIR below.
    const size = stat.isFile() ? stat.size : 0;
    if (size > cap.maxBytes) throw tooLarge(`it is ${size} bytes`);
    // fstat's size is 0 for /dev/zero and stale for a file being appended to: read at most
    // one byte past the limit whatever it said.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(CHUNK, cap.maxBytes + 1 - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(n === chunk.length ? chunk : chunk.subarray(0, n));
      total += n;
      if (total > cap.maxBytes) throw tooLarge(size > 0 ? `it grew past that while being read` : `it has more than that`);
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

/** readCappedFile as UTF-8 text (invalid sequences become U+FFFD, as readFileSync does). */
export function readCappedText(path: string, cap: FileCap, opts: CappedReadOptions = {}): string {
  return readCappedFile(path, cap, opts).toString('utf8');
}

/**
 * The credential set: `tls.crt` (leaf then intermediate), `tls.key` (0600), `ca.crt`,
 * laid out like Kubernetes' atomic writer so a Secret volume and a set written by
 * `svcca` look the same to the sidecar:
 *
 *   ..2026_11_25_20_07_24.123456789_ab12/   the files, written and fsynced
 *   ..data -> ..2026_11_25_...              swapped by rename (atomic)
 *   tls.crt -> ..data/tls.crt               stable names, never rewritten
 *
 * A reader resolves `..data` once and reads every file from that folder, so it can
 * never pair a key with another set's certificate.
 */
import {
  accessSync,
  constants,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  statSync,
  type Dirent,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fsyncDir, makeDirectories, writeFileDurable } from './atomic-file.js';
import { IdentityError, UsageError, errnoCode } from './errors.js';
import { FILE_CAPS, readCappedText } from './capped-file.js';

export const SET_FILES = ['tls.crt', 'tls.key', 'ca.crt'] as const;
export const DATA_LINK = '..data';

export interface CredentialFiles {
  /** Leaf certificate followed by the intermediate(s), PEM. */
  readonly certChainPem: string;
  /** PKCS#8 private key, PEM; written 0600. */
  readonly keyPem: string;
  /** Trust bundle (the root), PEM. */
  readonly caPem: string;
}

/** A set signed from a CSR has no key: its owner keeps it. */
export interface CredentialFilesToWrite extends Omit<CredentialFiles, 'keyPem'> {
  readonly keyPem?: string;
}

export interface LoadedCredentialSet extends CredentialFiles {
  /** The folder the files were read from (the resolved `..data`, or the set itself). */
  readonly sourceDir: string;
}

function timestampedName(now = new Date()): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const ts = `${now.getUTCFullYear()}_${p(now.getUTCMonth() + 1)}_${p(now.getUTCDate())}_${p(now.getUTCHours())}_${p(now.getUTCMinutes())}_${p(now.getUTCSeconds())}.${p(now.getUTCMilliseconds(), 3)}`;
  return `..${ts}_${randomBytes(3).toString('hex')}`;
}

/** Fails with a clear line when `dir` exists but is not a directory. */
export function assertUsableSetDir(dir: string): void {
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) throw new UsageError(`--out ${dir} is not a directory`, 'point --out at a directory (it is created if missing)');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = errnoCode(err);
    if (code === 'ENOTDIR')
      throw new UsageError(`--out ${dir} lies below a file, not a directory`, 'point --out at a directory (it is created if missing)');
    if (code !== 'ENOENT') throw new UsageError(`--out ${dir} cannot be used (${code})`, 'point --out at a directory this user can write');
  }
}

/**
 * Why a set in `dir` would nest with another set, or undefined. Service paths nest
 * folders (issued/team, issued/team/billing): whoever is given one set's folder (a
 * volume mount, a copy) would then also read the other's key.
 */
export function setNestingProblem(dir: string): string | undefined {
  const target = resolve(dir);
  for (let a = dirname(target); a !== dirname(a); a = dirname(a)) {
    if (holdsSet(a)) return `it would lie inside the credential set in ${a}`;
  }
  const inner = setBelow(target, 8);
  return inner ? `it would hold the credential set in ${inner}` : undefined;
}

function isPlainFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false;
  }
}

function present(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function holdsSet(dir: string): boolean {
  return present(join(dir, DATA_LINK)) || present(join(dir, 'tls.key')) || present(join(dir, 'tls.crt'));
}

/** A set folder below `dir` (set internals start with "."; service segments never do). */
function setBelow(dir: string, depth: number): string | undefined {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  for (const e of entries) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const sub = join(dir, e.name);
    if (holdsSet(sub)) return sub;
    const deeper = depth > 0 ? setBelow(sub, depth - 1) : undefined;
    if (deeper) return deeper;
  }
  return undefined;
}

/**
 * Writes a new set and switches `..data` to it atomically; then removes the previous
 * folder so no old private key is left behind. A crash at any point leaves the old set
 * or the new one visible, and at worst an orphan timestamped folder that the next
 * write removes.
 */
export function writeCredentialSet(dir: string, files: CredentialFilesToWrite, opts: { dirMode?: number } = {}): string {
  assertUsableSetDir(dir);
  makeDirectories(dir, opts.dirMode ?? 0o755);
  const folderName = timestampedName();
  const folder = join(dir, folderName);
  mkdirSync(folder, { mode: 0o755 });
  writeFileDurable(join(folder, 'tls.crt'), files.certChainPem, 0o644);
  if (files.keyPem !== undefined) writeFileDurable(join(folder, 'tls.key'), files.keyPem, 0o600);
  writeFileDurable(join(folder, 'ca.crt'), files.caPem, 0o644);
  fsyncDir(folder);

  const tmpLink = join(dir, `..data_tmp_${randomBytes(3).toString('hex')}`);
  symlinkSync(folderName, tmpLink);
  renameSync(tmpLink, join(dir, DATA_LINK));
  for (const name of SET_FILES) {
    if (name === 'tls.key' && files.keyPem === undefined) {
      // A CSR set: the owner's key lives in `dir` as a plain file, never in a swapped
      // folder. A link left by an earlier CA-made key would dangle, and a key written
      // through it would land in a folder the next swap deletes.
      if (isLinkTo(join(dir, name), join(DATA_LINK, name))) unlinkSync(join(dir, name));
      continue;
    }
    const link = join(dir, name);
    if (!isLinkTo(link, join(DATA_LINK, name))) {
      // First write, or a plain file left by another tool: replace it by the stable link.
      const tmp = join(dir, `.${name}.${randomBytes(3).toString('hex')}.link`);
      symlinkSync(join(DATA_LINK, name), tmp);
      renameSync(tmp, link);
    }
  }
  fsyncDir(dir);
  removeStaleFolders(dir, folderName);
  return folder;
}

function isLinkTo(path: string, target: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink() && readlinkSync(path) === target;
  } catch {
    return false;
  }
}

function currentDataFolder(dir: string): string | undefined {
  try {
    return readlinkSync(join(dir, DATA_LINK));
  } catch {
    return undefined;
  }
}

/**
 * Removes what a writer killed after its swap left in `dir`: the previous set's folder
 * (with its private key) and temporary links. The live set is untouched.
 */
export function removeSetOrphans(dir: string): void {
  const live = currentDataFolder(dir);
  if (live !== undefined) removeStaleFolders(dir, live);
}

/** Removes every timestamped folder but the live one (the previous set and crash orphans). */
function removeStaleFolders(dir: string, live: string): void {
  for (const entry of readdirSync(dir)) {
    if (entry === live || entry === DATA_LINK || !entry.startsWith('..')) continue;
    if (entry.startsWith('..data_tmp_') || /^\.\.\d{4}_/.test(entry)) {
      rmSync(join(dir, entry), { recursive: true, force: true });
    }
  }
  for (const entry of readdirSync(dir)) {
    if (/^\.(tls\.crt|tls\.key|ca\.crt)\.[0-9a-f]+\.link$/.test(entry)) unlinkSync(join(dir, entry));
  }
}

/**
 * Removes a set svcca wrote from `dir` (after it moved to another `--out`): the stable
 * links, `..data` and the timestamped folders, so no old private key lingers there.
 * Anything else in `dir` is left alone; `dir` itself goes only when empty.
 */
export function removeCredentialSet(dir: string): void {
  if (readlinkSafe(join(dir, DATA_LINK)) === undefined) return; // no set of ours there (any more)
  for (const name of SET_FILES) {
    if (isLinkTo(join(dir, name), join(DATA_LINK, name))) unlinkSync(join(dir, name));
  }
  unlinkSync(join(dir, DATA_LINK));
  removeStaleFolders(dir, '');
  fsyncDir(dir);
  try {
    rmdirSync(dir);
  } catch {
    // not empty: other files of the user's live there
  }
}

function readlinkSafe(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/** The folder a reader should take all three files from. */
export function resolveSetFolder(dir: string): string {
  const link = join(dir, DATA_LINK);
  try {
    const target = readlinkSync(link);
    return resolve(dir, target);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'EINVAL') return resolve(dir); // a plain directory of files
    throw err;
  }
}

/** Reads a set as one consistent snapshot (see the module comment). */
export function readCredentialSet(dir: string): LoadedCredentialSet {
  try {
    accessSync(dir, constants.R_OK | constants.X_OK);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT')
      throw new IdentityError(
        `identity directory ${dir} does not exist`,
        'issue a certificate into it with `svcca issue <service> --out DIR`',
      );
    if (code === 'EACCES')
      throw new IdentityError(
        `identity directory ${dir} is not readable by this user (uid ${process.getuid?.() ?? '?'})`,
        'run as the user that owns it, or give this user read access (ca-data/ itself is 0700: issue with --out into a folder the sidecar can read)',
      );
    throw new IdentityError(`identity directory ${dir} cannot be read (${code ?? String(err)})`, 'check the path and its permissions');
  }
  const sourceDir = resolveSetFolder(dir);
  const read = (name: string): string => {
    try {
      return readCappedText(join(sourceDir, name), FILE_CAPS.pemBundle, { error: IdentityError });
    } catch (err) {
      if (err instanceof IdentityError) throw err;
      const code = errnoCode(err);
      const why =
        code === 'ENOENT' ? 'is missing' : code === 'EACCES' ? 'is not readable by this user' : `cannot be read (${code ?? String(err)})`;
      throw new IdentityError(
        `${join(dir, name)} ${why}`,
        'a credential set needs tls.crt, tls.key and ca.crt (svcca issue writes all three)',
      );
    }
  };
  // A CSR set has no key in its folder: the owner keeps theirs beside it, as a plain file.
  const ownKey = sourceDir !== resolve(dir) && !present(join(sourceDir, 'tls.key')) && isPlainFile(join(dir, 'tls.key'));
  return {
    certChainPem: read('tls.crt'),
    keyPem: ownKey ? readCappedText(join(dir, 'tls.key'), FILE_CAPS.pemBundle, { error: IdentityError }) : read('tls.key'),
    caPem: read('ca.crt'),
    sourceDir,
  };
}

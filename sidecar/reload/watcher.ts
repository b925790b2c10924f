/**
 * File-system events that say "check again": the identity directory, and the folders of
 * the CRL and policy files. It never reads a file or judges a change — it only calls
 * `onChange` once a burst of events has settled; the store then compares by content hash.
 *
 * Directories, not files, are watched: a Kubernetes secret update swaps the `..data`
 * symlink and fires events on `..data` and the timestamped folders, never on `tls.crt`
 * (envoy#9359 served a stale certificate for exactly that reason). Symlinks are not
 * followed, so `..data` itself is what changes. A CRL or policy folder may hold busy
 * neighbours (the CA's ledger): there only the file's own name and `..`-prefixed
 * Kubernetes entries count.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { errorLine } from '../../common/errors.js';

export interface WatchTarget {
  /** A directory to watch (its entries only, not below). */
  readonly dir: string;
  /** The file that matters in it; undefined: every entry matters (the identity folder). */
  readonly file?: string;
}

export interface WatcherOptions {
  readonly targets: readonly WatchTarget[];
  /** Called once per settled burst. */
  readonly onChange: (paths: readonly string[]) => void;
  readonly logger: Logger;
  /** Quiet time after the last event before onChange. Default 200 ms. */
  readonly debounceMs?: number;
  /** Longest a steady stream of events may defer onChange. Default 2 s. */
  readonly maxWaitMs?: number;
}

/** The targets for a config: the identity dir, and each file's folder (and, when the
 *  file is a symlink, the folder it really lives in). */
export function watchTargets(identityDir: string, files: readonly (string | undefined)[]): WatchTarget[] {
  const targets: WatchTarget[] = [{ dir: identityDir }];
  const real = realOrSelf(identityDir);
  if (real !== identityDir) targets.push({ dir: real });
  for (const f of files) {
    if (!f) continue;
    targets.push({ dir: dirname(f), file: basename(f) });
    const r = realOrSelf(f);
    if (r !== f) targets.push({ dir: dirname(r), file: basename(r) });
  }
  return targets;
}

function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

export class ReloadWatcher {
  readonly #watcher: FSWatcher;
  readonly #opts: WatcherOptions;
  readonly #dirs: Map<string, WatchTarget[]>;
  #timer: NodeJS.Timeout | undefined;
  #firstPendingAt = 0;
  #pending = new Set<string>();
  #closed = false;
  /** chokidar reports symlinks found by its initial scan as 'add' despite ignoreInitial. */
  #ready = false;

  private constructor(opts: WatcherOptions) {
    this.#opts = opts;
    this.#dirs = new Map();
    for (const t of opts.targets) {
      const dir = realOrSelf(t.dir);
      const list = this.#dirs.get(dir) ?? [];
      list.push(t);
      this.#dirs.set(dir, list);
    }
    this.#watcher = watch([...this.#dirs.keys()], {
      ignoreInitial: true,
      depth: 0,
      followSymlinks: false,
      persistent: true,
      atomic: false,
    });
    this.#watcher.on('all', (_event: string, path: string) => this.onEvent(path));
    this.#watcher.on('error', (err: unknown) => {
      // Not fatal: the stat poll and the periodic hash check still catch every change.
      opts.logger.warn({ event: 'watch', reason: errorLine(err) }, 'file watcher error; changes are still caught by the periodic check');
    });
  }

  /** Starts watching; resolves once the initial scan is done (events before it are lost). */
  static async start(opts: WatcherOptions): Promise<ReloadWatcher> {
    const w = new ReloadWatcher(opts);
    await new Promise<void>((resolve) => w.#watcher.once('ready', () => resolve()));
    w.#ready = true;
    return w;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#watcher.close();
  }

  private onEvent(path: string): void {
    if (!this.#ready || this.#closed || !this.matters(path)) return;
    const now = Date.now();
    if (this.#pending.size === 0) this.#firstPendingAt = now;
    this.#pending.add(path);
    if (this.#timer) clearTimeout(this.#timer);
    const debounce = this.#opts.debounceMs ?? 200;
    const maxWait = this.#opts.maxWaitMs ?? 2_000;
    const wait = Math.max(0, Math.min(debounce, this.#firstPendingAt + maxWait - now));
    this.#timer = setTimeout(() => this.fire(), wait);
  }

  private fire(): void {
    this.#timer = undefined;
    const paths = [...this.#pending];
    this.#pending = new Set();
    if (this.#closed || paths.length === 0) return;
    try {
      this.#opts.onChange(paths);
    } catch (err) {
      this.#opts.logger.error({ event: 'watch', reason: errorLine(err) }, 'reload after a file event failed');
    }
  }

  private matters(path: string): boolean {
    const dir = dirname(path);
    const name = basename(path);
    // An event on a watched directory itself (its own rename or removal).
    if (this.#dirs.has(path)) return true;
    const targets = this.#dirs.get(dir);
    if (!targets) return false;
    return targets.some((t) => t.file === undefined || t.file === name || name.startsWith('..'));
  }
}

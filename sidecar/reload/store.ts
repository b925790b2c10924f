/**
 * Holds the current Snapshot and replaces it: load, validate, swap one pointer. A failed
 * reload keeps the last good snapshot and says why. The proxy never sees a half-applied
 * change; it reads `current` once per connection. Listeners (the inbound server's secure
 * context, the live-connection re-check, the outbound session cache) are told after a swap.
 *
 * Every trigger — a file-system event (watcher.ts), SIGHUP, the cheap stat poll, the
 * periodic content-hash check — runs the same `reload()`: re-read the three sources,
 * compare by content hash, validate what differs, apply what passed. Identity, CRL and
 * policy are judged separately, so a torn certificate pair never holds back a revocation
 * that arrives meanwhile; each is judged against the others as they will be in force.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { crlRollbackProblem, crlSetExpired, crlSetNextUpdate } from '../../common/crl.js';
import { errorLine } from '../../common/errors.js';
import { readCredentialSet, resolveSetFolder, type LoadedCredentialSet } from '../../common/credential-set.js';
import type { Metrics } from '../metrics.js';
import type { SidecarConfig } from '../config/schema.js';
import {
  validityProblem,
  type CrlState,
  type Identity,
  type PolicyState,
  type Snapshot,
  type SnapshotSource,
  type SwapListener,
} from '../snapshot.js';
import {
  buildSnapshot,
  composeSnapshot,
  crlStateFromText,
  policyStateFromText,
  readCrlText,
  readPolicyText,
  sha256,
  type CrlReader,
} from './build-snapshot.js';
import { credentialSetHash, identityFromSet, IdentityProblem, type IdentityProblemCode } from './identity.js';

/** What asked for the check: `watch` a file-system event, `poll` a changed stat,
 *  `periodic` the content-hash timer, `signal` SIGHUP, `api` an in-process call,
 *  `fetch` a new https CRL body, `renew` a set the sidecar renewed itself. */
export type ReloadTrigger = 'start' | 'signal' | 'watch' | 'poll' | 'periodic' | 'api' | 'fetch' | 'renew';

export type ReloadKind = 'identity' | 'crl' | 'policy';

/** Stable codes for a refused change: the `refusal` field of its log line. */
export type ReloadRefusalCode =
  | IdentityProblemCode
  | 'expired'
  | 'not-yet-valid'
  | 'different-identity'
  | 'crl-invalid'
  | 'crl-rollback'
  | 'crl-untrusted'
  | 'policy-invalid';

export interface ReloadRefusal {
  readonly kind: ReloadKind;
  readonly code: ReloadRefusalCode;
  readonly reason: string;
}

export interface ReloadOutcome {
  /** A new snapshot is in force. */
  readonly changed: boolean;
  readonly applied: readonly ReloadKind[];
  readonly refused: readonly ReloadRefusal[];
  /** The first refusal's reason, if any. */
  readonly error?: string;
}

export interface StoreOptions {
  /** Injected clock (tests). */
  readonly now?: () => Date;
  /** The CRL text for an https:// identity.crl (the fetcher's last body); files are read otherwise. */
  readonly readCrl?: CrlReader;
}

export interface TimerOptions {
  /** Stat of the resolved files; a difference triggers reload('poll'). */
  readonly statIntervalMs: number;
  /** Full content-hash check whatever the stats say (a missed event, a same-size
   *  rewrite within the mtime granularity). Default 60 s. */
  readonly hashIntervalMs?: number;
  /** How often tick listeners run (open connections past notAfter). Default 1 s. */
  readonly tickMs?: number;
}

interface Candidate<T> {
  readonly hash: string;
  readonly value?: T;
  readonly error?: unknown;
}

/** What was refused, keyed by kind, with the content hash it was refused for. */
interface PendingRefusal extends ReloadRefusal {
  readonly hash: string;
}

export class SnapshotStore implements SnapshotSource {
  #current: Snapshot;
  #stamp: string;
  #statTimer: NodeJS.Timeout | undefined;
  #hashTimer: NodeJS.Timeout | undefined;
  #tickTimer: NodeJS.Timeout | undefined;
  readonly #listeners: SwapListener[] = [];
  readonly #tickListeners: ((snap: Snapshot) => void)[] = [];
  /** The content last refused per kind: the same bad file seen again by an event or a
   *  timer is not logged and counted again (an explicit SIGHUP always is). */
  readonly #lastRefused = new Map<ReloadKind, string>();
  readonly #now: () => Date;
  readonly #readCrl: CrlReader | undefined;

  private constructor(
    private readonly config: SidecarConfig,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    first: Snapshot,
    opts: StoreOptions,
  ) {
    this.#current = first;
    this.#now = opts.now ?? (() => new Date());
    this.#readCrl = opts.readCrl;
    this.#stamp = this.fileStamp();
    this.publish(first);
  }

  /** Loads the first snapshot; throws (one line) when identity, CRL or policy is unusable. */
  static open(config: SidecarConfig, logger: Logger, metrics: Metrics, opts: StoreOptions = {}): SnapshotStore {
    return new SnapshotStore(config, logger, metrics, buildSnapshot(config, undefined, opts.readCrl), opts);
  }

  get current(): Snapshot {
    return this.#current;
  }

  onSwap(listener: SwapListener): void {
    this.#listeners.push(listener);
  }

  /** Called every tick (1 s by default) with the current snapshot: open connections whose
   *  peer reached notAfter since are found here, without any file change. */
  onTick(listener: (snap: Snapshot) => void): void {
    this.#tickListeners.push(listener);
  }

  /**
   * Re-reads identity, CRL and policy, compares each with what is in force by content
   * hash, validates what differs and swaps in what passed. Never throws: a refused change
   * is logged (one line per kind), counted, and the last good state keeps serving.
   */
  reload(trigger: ReloadTrigger): ReloadOutcome {
    const previous = this.#current;
    const now = this.#now();
    this.#stamp = this.fileStamp();
    const refused: PendingRefusal[] = [];
    const applied: ReloadKind[] = [];
    const unchanged: ReloadKind[] = [];

    let identity = previous.identity;
    const id = this.readIdentity();
    if (id.hash === previous.identity.fingerprint) unchanged.push('identity');
    else {
      const problem = id.value ? this.identityRefusal(id.value, previous.identity, now) : this.toRefusal('identity', id.error);
      if (problem) refused.push({ ...problem, hash: id.hash });
      else identity = id.value!;
    }

    let crl = previous.crl;
    if (this.config.identity.crl) {
      const path = this.config.identity.crl;
      const trustChanged = identity.caPem !== previous.identity.caPem;
      const text = this.readText(this.#readCrl ?? (() => readCrlText(path)));
      if (text.error !== undefined) refused.push({ ...this.toRefusal('crl', text.error), hash: text.hash });
      else if (text.hash === previous.crl?.hash && !trustChanged) unchanged.push('crl');
      else {
        let next: CrlState | undefined;
        try {
          next = crlStateFromText(path, text.value!, text.hash, identity);
        } catch (err) {
          if (trustChanged) {
            // The new ca.crt cannot verify the CRL on disk: taking it would mean enforcing
            // revocations nobody can vouch for. Keep both as they are until they agree.
            refused.push({
              kind: 'identity',
              code: 'crl-untrusted',
              reason: `the new ca.crt does not verify ${path}: ${errorLine(err)}`,
              hash: id.hash,
            });
            identity = previous.identity;
            if (text.hash !== previous.crl?.hash) refused.push({ ...this.toRefusal('crl', err), hash: text.hash });
          } else refused.push({ ...this.toRefusal('crl', err), hash: text.hash });
        }
        if (next) {
          const rollback = previous.crl ? crlRollbackProblem(previous.crl.set, next.set) : undefined;
          if (rollback)
            refused.push({
              kind: 'crl',
              code: 'crl-rollback',
              reason: `identity.crl: ${path}: ${rollback}; keeping the newer CRLs`,
              hash: text.hash,
            });
          else if (text.hash === previous.crl?.hash) {
            crl = next; // re-verified under the new trust bundle: same content, not a change
            unchanged.push('crl');
          } else crl = next;
        }
      }
    }
    if (identity !== previous.identity) applied.push('identity');
    if (crl !== previous.crl && crl?.hash !== previous.crl?.hash) applied.push('crl');

    let policy = previous.policy;
    if (this.config.policy) {
      const path = this.config.policy;
      const text = this.readText(() => readPolicyText(path));
      if (text.error !== undefined) refused.push({ ...this.toRefusal('policy', text.error), hash: text.hash });
      else if (text.hash === previous.policy?.hash) unchanged.push('policy');
      else {
        try {
          policy = policyStateFromText(path, text.value!, text.hash);
          applied.push('policy');
        } catch (err) {
          refused.push({ ...this.toRefusal('policy', err), hash: text.hash });
        }
      }
    }

    const loud = trigger === 'signal' || trigger === 'api';
    const reported: ReloadRefusal[] = [];
    for (const r of refused) {
      if (!loud && this.#lastRefused.get(r.kind) === r.hash) continue;
      this.#lastRefused.set(r.kind, r.hash);
      reported.push({ kind: r.kind, code: r.code, reason: r.reason });
      this.metrics.reloads.inc({ kind: r.kind, result: 'refused' });
      this.logger.error(
        { event: 'reload', trigger, kind: r.kind, result: 'failure', refusal: r.code, reason: r.reason },
        `${r.kind} change refused; keeping the last good state`,
      );
    }
    for (const k of [...applied, ...unchanged]) {
      if (!refused.some((r) => r.kind === k)) this.#lastRefused.delete(k);
    }
    for (const k of unchanged) this.metrics.reloads.inc({ kind: k, result: 'unchanged' });
    for (const k of applied) this.metrics.reloads.inc({ kind: k, result: 'applied' });
    const outcome = (changed: boolean): ReloadOutcome => ({
      changed,
      applied,
      refused: reported,
      ...(refused[0] ? { error: refused[0].reason } : {}),
    });

    if (identity === previous.identity && crl === previous.crl && policy === previous.policy) {
      if (reported.length === 0) {
        const line = { event: 'reload', trigger, result: 'unchanged' };
        if (loud) this.logger.info(line, 'nothing changed');
        else this.logger.debug(line, 'nothing changed');
      }
      return outcome(false);
    }
    const next = composeSnapshot(previous, identity, crl, policy);
    this.#current = next;
    this.logger.info(
      {
        event: 'reload',
        trigger,
        result: 'success',
        applied,
        identityChanged: next.identity !== previous.identity,
        crlChanged: next.crl?.hash !== previous.crl?.hash,
        policyChanged: next.policy !== previous.policy,
        generation: next.generation,
        serial: next.identity.leaf.serialHex,
        certificateExpiry: next.identity.leaf.notAfter.toISOString(),
      },
      `reloaded ${applied.join(', ') || 'trust'}`,
    );
    this.publish(next);
    for (const listener of this.#listeners) {
      try {
        listener(next, previous);
      } catch (err) {
        this.logger.error({ event: 'reload', reason: errorLine(err) }, 'a reload listener failed');
      }
    }
    return outcome(true);
  }

  /**
   * Starts the timers: the stat poll, the content-hash check and the tick. All unref'd:
   * they never keep the process alive on their own.
   */
  startTimers(opts: TimerOptions): void {
    this.stopTimers();
    this.#statTimer = setInterval(() => {
      if (this.fileStamp() !== this.#stamp) this.reload('poll');
    }, opts.statIntervalMs);
    this.#hashTimer = setInterval(() => this.reload('periodic'), opts.hashIntervalMs ?? 60_000);
    this.#tickTimer = setInterval(() => {
      this.refreshCrlExpiry();
      for (const listener of this.#tickListeners) {
        try {
          listener(this.#current);
        } catch (err) {
          this.logger.error({ event: 'tick', reason: errorLine(err) }, 'a tick listener failed');
        }
      }
    }, opts.tickMs ?? 1_000);
    for (const t of [this.#statTimer, this.#hashTimer, this.#tickTimer]) t.unref();
  }

  stopTimers(): void {
    for (const t of [this.#statTimer, this.#hashTimer, this.#tickTimer]) if (t) clearInterval(t);
    this.#statTimer = this.#hashTimer = this.#tickTimer = undefined;
  }

  private readIdentity(): Candidate<Identity> {
    const dir = this.config.identity.dir;
    let set: LoadedCredentialSet;
    try {
      set = readCredentialSet(dir);
    } catch (err) {
      return { hash: `unreadable:${errorLine(err)}`, error: new IdentityProblem('unreadable', errorLine(err), '', err) };
    }
    const hash = credentialSetHash(set);
    if (hash === this.#current.identity.fingerprint) return { hash };
    try {
      return { hash, value: identityFromSet(dir, set) };
    } catch (err) {
      return { hash, error: err };
    }
  }

  private readText(read: () => string): Candidate<string> {
    try {
      const text = read();
      return { hash: sha256(text), value: text };
    } catch (err) {
      return { hash: `unreadable:${errorLine(err)}`, error: err };
    }
  }

  /** Why a well-formed candidate identity may still not replace the one in force. */
  private identityRefusal(next: Identity, current: Identity, now: Date): ReloadRefusal | undefined {
    const dir = this.config.identity.dir;
    if (next.id.uri !== current.id.uri) {
      return {
        kind: 'identity',
        code: 'different-identity',
        reason: `${dir}/tls.crt is for ${next.id.uri}, not ${current.id.uri}; a sidecar keeps one identity (restart it to change)`,
      };
    }
    const validity = validityProblem(next.leaf, now);
    if (validity)
      return { kind: 'identity', code: now < next.leaf.notBefore ? 'not-yet-valid' : 'expired', reason: `${dir}/tls.crt: ${validity}` };
    return undefined;
  }

  private toRefusal(kind: ReloadKind, err: unknown): ReloadRefusal {
    const reason = errorLine(err);
    if (kind === 'identity') return { kind, code: err instanceof IdentityProblem ? err.problem : 'unparsable', reason };
    return { kind, code: kind === 'crl' ? 'crl-invalid' : 'policy-invalid', reason };
  }

  /** A CRL may pass its nextUpdate while nothing changes on disk. */
  private refreshCrlExpiry(): void {
    const crl = this.#current.crl;
    const expired = crl ? crlSetExpired(crl.set, this.#now()) : false;
    const was = this.metrics.crlExpiredNow();
    this.metrics.crlExpired.set(expired ? 1 : 0);
    if (expired && !was) this.logCrlExpired(this.#current);
  }

  private publish(snap: Snapshot): void {
    this.metrics.certExpiry.set(snap.identity.leaf.notAfter.getTime() / 1000);
    const crl = snap.crl;
    const expired = crl ? crlSetExpired(crl.set, this.#now()) : false;
    this.metrics.crlExpired.set(expired ? 1 : 0);
    const next = crl ? crlSetNextUpdate(crl.set) : undefined;
    if (next) this.metrics.crlNextUpdate.set(next.getTime() / 1000);
    if (expired) this.logCrlExpired(snap);
  }

  private logCrlExpired(snap: Snapshot): void {
    const crl = snap.crl!;
    const now = this.#now().getTime();
    const stale = crl.set.crls
      .filter((c) => c.nextUpdate && c.nextUpdate.getTime() < now)
      .map((c) => `${c.issuerSubject} (nextUpdate ${c.nextUpdate!.toISOString()})`);
    // Still enforced: refusing everyone over a late CRL is the HAProxy/easy-rsa lock-out.
    this.logger.error(
      { event: 'crl-expired', crl: crl.path, stale },
      'a CRL is past its nextUpdate; its revocations are still enforced; publish a fresh one with `svcca crl`',
    );
  }

  /** A cheap summary of the files on disk — path, inode, size, mtime — read through the
   *  resolved `..data` link, so a Kubernetes secret swap changes it. */
  private fileStamp(): string {
    const parts: string[] = [];
    const stamp = (p: string) => {
      try {
        const st = statSync(p);
        parts.push(`${p}:${st.ino}:${st.size}:${st.mtimeMs}`);
      } catch {
        parts.push(`${p}:missing`);
      }
    };
    let folder: string;
    try {
      folder = resolveSetFolder(this.config.identity.dir);
    } catch {
      folder = this.config.identity.dir;
    }
    for (const name of ['tls.crt', 'tls.key', 'ca.crt']) stamp(join(folder, name));
    if (this.config.identity.crl && !this.config.identity.crlUrl) stamp(this.config.identity.crl);
    if (this.config.policy) stamp(this.config.policy);
    return parts.join('|');
  }
}

export type { CrlState, PolicyState };
